"""hub.state.RateLimiter: at most N events in any sliding 60-second window."""

from __future__ import annotations

from hub.state import KeyedRateLimiter, RateLimiter


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


def test_keys_have_their_own_windows_and_say_when_to_retry() -> None:
    clock = Clock()
    limiter = KeyedRateLimiter(2, clock)
    assert [limiter.retry_after("a") for _ in range(2)] == [None, None]
    clock.now += 10.0
    assert limiter.retry_after("a") == 50.0  # the first of the two leaves the window in 50 s
    assert limiter.retry_after("b") is None  # another key's budget is untouched


def test_the_number_of_keys_is_bounded() -> None:
    clock = Clock()
    limiter = KeyedRateLimiter(1, clock, max_keys=3)
    for key in ("a", "b", "c"):
        assert limiter.retry_after(key) is None
    assert limiter.retry_after("d") == 60.0  # every tracked key is busy: refused, not grown
    assert len(limiter) == 3
    clock.now += 60.0  # all idle now: dropped to make room
    assert limiter.retry_after("d") is None
    assert len(limiter) == 1
