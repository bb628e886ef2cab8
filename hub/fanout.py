"""A typed fan-out of in-process events to subscribers, each with its own bounded queue.

The verdict bus in :mod:`hub.state` does this for verdict changes; this generic twin carries
the other events the status page and webhooks need (alert notices, live page updates). A
subscriber that falls behind loses events (logged); a publisher never waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import AsyncIterator, Callable
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

    @contextlib.asynccontextmanager
    async def following(
        self,
        handle: Callable[[T], object],
        *,
        name: str,
        queue_size: int | None = None,
    ) -> AsyncIterator[None]:
        """While the block runs, a task hands every published item to ``handle``.

        For cleanup contexts: subscribe, follow, and on exit cancel the task and unsubscribe.
        ``handle`` may be a plain or an async function; an exception from it is logged and the
        following goes on (this is the loop boundary).
        """
        queue = self.subscribe(queue_size)

        async def pump() -> None:
            while True:
                item = await queue.get()
                try:
                    result = handle(item)
                    if inspect.isawaitable(result):
                        await result
                except Exception:  # the loop boundary: log and keep following
                    log.exception("%s: handling an event failed", name)

        task = asyncio.create_task(pump(), name=name)
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            self.unsubscribe(queue)

    def publish(self, item: T) -> None:
        for queue in list(self._subscribers):
            try:
                queue.put_nowait(item)
            except asyncio.QueueFull:
                log.warning("%s subscriber is full; dropped an event", self._name)
