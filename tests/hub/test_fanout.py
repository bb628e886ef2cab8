"""hub.fanout: publishing never blocks; following survives a failing handler and cleans up."""

from __future__ import annotations

import asyncio
import logging

import pytest

from hub.fanout import Fanout
from hub.state import VerdictChange, VerdictEvents


def test_following_hands_items_on_survives_errors_and_unsubscribes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen: list[int] = []

    async def handle(item: int) -> None:
        if item == 2:
            raise ValueError("boom")
        seen.append(item)

    async def main() -> int:
        feed: Fanout[int] = Fanout("numbers")
        async with feed.following(handle, name="test-follow"):
            assert feed.subscribers == 1
            for i in (1, 2, 3):
                feed.publish(i)
            for _ in range(50):
                if seen == [1, 3]:
                    break
                await asyncio.sleep(0.01)
        return feed.subscribers

    with caplog.at_level(logging.ERROR, logger="trustplane.hub"):
        assert asyncio.run(main()) == 0
    assert seen == [1, 3]
    assert "test-follow: handling an event failed" in caplog.text


def test_a_full_subscriber_loses_events_and_the_publisher_does_not_wait() -> None:
    async def main() -> tuple[int, int]:
        bus = VerdictEvents(queue_size=2)
        slow = bus.subscribe()
        change = VerdictChange("ab" * 32, "trusted", "untrusted", ("x",), 0.0)
        for _ in range(5):
            bus.publish(change)
        return slow.qsize(), bus.subscribers

    assert asyncio.run(main()) == (2, 1)
