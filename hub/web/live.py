"""Live updates for the status page: ``GET /v1/events``, a Server-Sent Events stream.

Two pumps (one per application) turn verdict changes (the core's bus) and alert notices
(:mod:`hub.alerts`) into :class:`LiveEvent` values with the reason sentences already attached,
and fan them out to every open stream. Each stream has a bounded queue: a browser that stops
reading loses events, never slows the hub. A comment line every ``KEEPALIVE`` seconds keeps
proxies from closing an idle stream; at shutdown every stream is ended.

Events: ``verdict`` ``{host_id, previous, verdict, reasons: [{id, text}], at, alert_id}`` and
``alert`` ``{id, status, kind, host_id, hostname, node_name, reasons, at, acked_by}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Final

from aiohttp import web

from hub.alerts import ALERT_FEED, AlertNotice
from hub.auth import role
from hub.bus import VerdictChange
from hub.fanout import Fanout
from hub.state import EVENTS
from hub.web.reasons import describe_reason

KEEPALIVE: Final = 15.0
STREAM_QUEUE: Final = 64


@dataclass(frozen=True, slots=True)
class LiveEvent:
    kind: str  # verdict | alert
    data: dict[str, Any]

    def encode(self) -> bytes:
        return f"event: {self.kind}\ndata: {json.dumps(self.data, sort_keys=True)}\n\n".encode()


def reasons_json(reasons: tuple[str, ...]) -> list[dict[str, str]]:
    return [{"id": r, "text": describe_reason(r)} for r in reasons]


def verdict_event(change: VerdictChange) -> LiveEvent:
    return LiveEvent(
        "verdict",
        {
            "host_id": change.host_id,
            "previous": change.previous,
            "verdict": change.verdict,
            "reasons": reasons_json(change.reasons),
            "at": change.at,
            "alert_id": change.alert_id,
        },
    )


def alert_event(notice: AlertNotice) -> LiveEvent:
    return LiveEvent(
        "alert",
        {
            "id": notice.alert_id,
            "status": notice.status,
            "kind": notice.kind,
            "host_id": notice.host_id,
            "hostname": notice.hostname,
            "node_name": notice.node_name,
            "reasons": reasons_json(notice.reasons),
            "at": notice.starts_at,
            "acked_by": notice.acked_by,
        },
    )


LIVE: web.AppKey[Fanout[LiveEvent | None]] = web.AppKey("trustplane_live")


@role("viewer")
async def events(request: web.Request) -> web.StreamResponse:
    """The SSE stream; ends when the client goes away or the hub shuts down."""
    live = request.app[LIVE]
    queue = live.subscribe(STREAM_QUEUE)
    try:
        resp = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-store",
                "X-Accel-Buffering": "no",
            }
        )
        await resp.prepare(request)
        await resp.write(b"retry: 3000\n: connected\n\n")
        with contextlib.suppress(ConnectionError):  # the browser went away
            while True:
                try:
                    item = await asyncio.wait_for(queue.get(), KEEPALIVE)
                except TimeoutError:
                    await resp.write(b": keepalive\n\n")
                    continue
                if item is None:
                    break
                await resp.write(item.encode())
        return resp
    finally:
        live.unsubscribe(queue)


async def live_context(app: web.Application) -> AsyncIterator[None]:
    """Cleanup context: pump verdict changes and alert notices into the live feed."""
    live = app[LIVE]
    verdicts = app[EVENTS].subscribe()
    alerts = app[ALERT_FEED].subscribe()

    async def pump_verdicts() -> None:
        while True:
            live.publish(verdict_event(await verdicts.get()))

    async def pump_alerts() -> None:
        while True:
            live.publish(alert_event(await alerts.get()))

    tasks = [
        asyncio.create_task(pump_verdicts(), name="hub-live-verdicts"),
        asyncio.create_task(pump_alerts(), name="hub-live-alerts"),
    ]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        app[EVENTS].unsubscribe(verdicts)
        app[ALERT_FEED].unsubscribe(alerts)


async def end_streams(app: web.Application) -> None:
    """On shutdown: tell every open stream to finish."""
    app[LIVE].publish(None)


def setup_live(app: web.Application) -> None:
    app[LIVE] = Fanout("live page")
    app.cleanup_ctx.append(live_context)
    app.on_shutdown.append(end_streams)
    app.router.add_get("/v1/events", events)
