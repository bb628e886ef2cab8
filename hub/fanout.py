"""A typed fan-out of in-process events to subscribers, each with its own bounded queue.

The verdict bus in :mod:`hub.state` does this for verdict changes; this generic twin carries
the other events the status page and webhooks need (alert notices, live page updates). A
subscriber that falls behind loses events (logged); a publisher never waits.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Generic, TypeVar

log = logging.getLogger("trustplane.hub")

T = TypeVar("T")


class Fanout(Generic[T]):
    """Publish ``T`` to every subscribed queue without blocking."""

    def __init__(self, name: str, queue_size: int = 256) -> None:
        self._name = name
        self._queue_size = queue_size
        self._subscribers: set[asyncio.Queue[T]] = set()

    def subscribe(self, queue_size: int | None = None) -> asyncio.Queue[T]:
        queue: asyncio.Queue[T] = asyncio.Queue(queue_size or self._queue_size)
        self._subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[T]) -> None:
        self._subscribers.discard(queue)

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    def publish(self, item: T) -> None:
        for queue in list(self._subscribers):
            try:
                queue.put_nowait(item)
            except asyncio.QueueFull:
                log.warning("%s subscriber is full; dropped an event", self._name)
