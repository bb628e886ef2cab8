"""Node watches: the backlog from a resourceVersion, then live changes, bookmarks and the end.

A watch starts at the current state (no resourceVersion, or "0": a synthetic ADDED per node),
or after a resourceVersion (the kept history's later events; ERROR 410 Expired when that
history is gone). Events pass the watch's selectors as the watch cache filters them (an
object moving out of the selection is DELETED for it, moving in is ADDED). Bookmarks carry only
a resourceVersion. The body ends at `timeoutSeconds` or when the server stops (cleanly, or cut
mid-stream when it stops abruptly).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from . import tables
from .replies import filter_event, send_event
from .status import ApiError
from .store import Store, WatchEvent

Matcher = Callable[[dict[str, Any] | None], bool]


@dataclass(frozen=True)
class WatchRequest:
    """What a watch asks for (parsed from its query by the nodes routes)."""

    resource_version: str  # "" / "0": from now, with the current state; else after it
    matches: Matcher
    bookmarks: bool
    timeout: int  # seconds, 0 for none


class _Writer:
    """Writes watch events as JSON lines; for kubectl's `get -w` (Accept as=Table) each
    object becomes a one-row Table, with the column definitions in the first one only."""

    def __init__(self, response: web.StreamResponse, request: web.Request) -> None:
        self.response = response
        self.include = request.query.get("includeObject", "Metadata")
        self.table = tables.wants_table(request.headers.get("Accept", ""))
        self.first = True

    async def send(self, kind: str, obj: dict[str, Any]) -> None:
        if self.table and kind != "BOOKMARK":
            table = tables.node_table([obj], obj["metadata"]["resourceVersion"], self.include)
            if not self.first:
                table["columnDefinitions"] = None
            self.first = False
            obj = table
        await send_event(self.response, kind, obj)


def _backlog(
    store: Store, watch: WatchRequest, current: list[dict[str, Any]]
) -> tuple[list[tuple[str, dict[str, Any]]], int]:
    """(events to send first, the resourceVersion they reach); raises 410 Expired."""
    if watch.resource_version in ("", "0"):
        return [("ADDED", n) for n in current], store.rv
    last = int(watch.resource_version)
    out = []
    for ev in store.since(last):
        shown = filter_event(ev, watch.matches)
        if shown:
            out.append(shown)
        last = ev.rv
    return out, last


def _bookmark(store: Store) -> dict[str, Any]:
    return {
        "kind": "Node",
        "apiVersion": "v1",
        "metadata": {"resourceVersion": str(store.rv), "creationTimestamp": None},
    }


async def serve_watch(
    request: web.Request,
    store: Store,
    watch: WatchRequest,
    current: list[dict[str, Any]],
    bookmark_interval: float,
    abrupt_down: Callable[[], bool],
) -> web.StreamResponse:
    """Stream a node watch to `request` (see the module docstring)."""
    queue: asyncio.Queue[WatchEvent | None] = asyncio.Queue()
    store.watchers.add(queue)  # before the backlog is read, so nothing falls in between
    try:
        expired: ApiError | None = None
        try:
            backlog, last = _backlog(store, watch, current)
        except ApiError as err:
            expired, backlog, last = err, [], 0
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        if expired is not None:
            await send_event(response, "ERROR", expired.body())
            return response
        writer = _Writer(response, request)
        for kind, obj in backlog:
            await writer.send(kind, obj)
        if await _follow(queue, writer, store, watch, last, bookmark_interval):
            with contextlib.suppress(ConnectionError, RuntimeError):
                await response.write_eof()
        elif abrupt_down() and request.transport is not None:
            request.transport.abort()  # a crash: the connection drops mid-stream
        else:
            with contextlib.suppress(ConnectionError, RuntimeError):
                await response.write_eof()  # a graceful stop ends the body cleanly
        return response
    finally:
        store.watchers.discard(queue)


async def _follow(
    queue: asyncio.Queue[WatchEvent | None],
    writer: _Writer,
    store: Store,
    watch: WatchRequest,
    last: int,
    bookmark_interval: float,
) -> bool:
    """Send live events until the timeout (True) or until the server stops (False)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + watch.timeout if watch.timeout > 0 else None
    while True:
        wait = bookmark_interval if watch.bookmarks else 3600.0
        if deadline is not None:
            wait = min(wait, deadline - loop.time())
            if wait <= 0:
                return True
        try:
            item = await asyncio.wait_for(queue.get(), wait)
        except TimeoutError:
            if watch.bookmarks and (deadline is None or loop.time() < deadline):
                await writer.send("BOOKMARK", _bookmark(store))
            continue
        if item is None:
            return False
        if item.rv <= last:
            continue
        last = item.rv
        shown = filter_event(item, watch.matches)
        if shown:
            await writer.send(*shown)
