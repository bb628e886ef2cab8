"""hub.state.RateLimiter: at most N events in any sliding 60-second window."""

from __future__ import annotations

from hub.state import RateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_sliding_window() -> None:
    clock = Clock()
    limiter = RateLimiter(3, clock)
    assert [limiter.allow() for _ in range(4)] == [True, True, True, False]
    clock.now += 30.0
    assert limiter.allow() is False  # the first three are 30 s old
    clock.now += 29.9
    assert limiter.allow() is False  # 59.9 s old: still in the window
    clock.now += 0.1
    assert [limiter.allow() for _ in range(4)] == [True, True, True, False]


def test_refused_events_do_not_count() -> None:
    clock = Clock()
    limiter = RateLimiter(1, clock)
    assert limiter.allow() is True
    for _ in range(100):
        clock.now += 0.5
        assert limiter.allow() is (clock.now - 1000.0 >= 60.0)
