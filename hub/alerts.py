"""Alert notices: what the hub tells people and webhooks when trust is lost or regained.

The core (:func:`hub.attestation.record_transition`) already writes an ``alerts`` row on every
transition to ``untrusted`` or ``stale`` and publishes the :class:`~hub.state.VerdictChange`.
:class:`AlertCenter` listens on that bus and completes the picture without writing those rows
again: it turns each change into :class:`AlertNotice` values (``firing`` for the new alert,
``resolved`` for the alert the host leaves), raises the one alert the core does not write,
an enrollment refusal (403 on ``/v1/enroll*``), and announces acknowledgements. Notices go to
a :class:`~hub.fanout.Fanout`: webhooks (:mod:`hub.webhooks`) and the status page's live feed
subscribe there. Delivery, HTML and metrics are left to those modules.

An enrollment refusal is seen from outside the handler (:func:`alert_observer`), after the
request body was consumed, so its alert carries no host id (``""``): the reason id and the
peer address say what happened.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Final, Literal

from aiohttp import web

from hub import api
from hub.attestation import ALERTING
from hub.bus import VerdictChange
from hub.errors import Handler
from hub.fanout import Fanout
from hub.state import CLOCK, EVENTS, STATE, Clock
from hub.store import Store

log = logging.getLogger("trustplane.hub")

NoticeStatus = Literal["firing", "resolved", "acknowledged"]
ENROLLMENT_FAILED: Final = "enrollment_failed"
ENROLL_PATHS: Final = frozenset({"/v1/enroll", "/v1/enroll/activate"})


@dataclass(frozen=True, slots=True)
class AlertNotice:
    """One alert's news: it fires, resolves (the host left that state) or was acknowledged."""

    status: NoticeStatus
    kind: str  # untrusted | stale | enrollment_failed
    host_id: str
    hostname: str
    node_name: str | None
    reasons: tuple[str, ...]
    starts_at: float
    ends_at: float | None = None
    alert_id: int | None = None
    acked_by: str | None = None
    peer: str | None = None


SUMMARY_WINDOW: Final = 600.0  # seconds one source's enrollment refusals share one alert
MAX_SOURCES: Final = 32  # sources with their own summary alert per window; the rest share one
OTHER_SOURCES: Final = "other sources"


@dataclass(slots=True)
class _Summary:
    """The open summary alert of one source's enrollment refusals."""

    started: float
    alert_id: int
    attempts: dict[str, int]  # refusal code -> count


class AlertCenter:
    """Turns verdict changes, enrollment refusals and acks into :class:`AlertNotice` values.

    Enrollment refusals are anonymous and cheap to cause, so they are summarised: the first
    refusal from a client address opens one alert (and one webhook notice); further refusals
    from it within :data:`SUMMARY_WINDOW` seconds only count in that alert's reasons
    (``attempts:N``). At most :data:`MAX_SOURCES` addresses get their own alert per window;
    refusals from more addresses share one alert (``other sources``). A flood of bogus
    activations thus opens a bounded number of alerts, never one each.
    """

    def __init__(self, store: Store, clock: Clock, feed: Fanout[AlertNotice]) -> None:
        self._store = store
        self._clock = clock
        self.feed = feed
        self._summaries: dict[str, _Summary] = {}

    async def _names(self, host_id: str) -> tuple[str, str | None]:
        host = await self._store.get_host(host_id) if host_id else None
        return (host.hostname, host.node_name) if host else ("", None)

    async def _started(self, host_id: str, kind: str) -> tuple[int | None, float | None]:
        for alert in await self._store.list_alerts():  # newest first
            if alert.host_id == host_id and alert.kind == kind:
                return alert.id, alert.at
        return None, None

    async def on_verdict_change(self, change: VerdictChange) -> list[AlertNotice]:
        """Publish ``resolved`` for the state the host left, ``firing`` for the one it entered."""
        if change.previous == change.verdict:
            return []
        hostname, node = await self._names(change.host_id)
        out: list[AlertNotice] = []
        if change.previous in ALERTING:
            alert_id, started = await self._started(change.host_id, change.previous)
            out.append(
                AlertNotice(
                    "resolved",
                    change.previous,
                    change.host_id,
                    hostname,
                    node,
                    change.reasons,
                    started if started is not None else change.at,
                    ends_at=change.at,
                    alert_id=alert_id,
                )
            )
        if change.verdict in ALERTING and change.alert_id is not None:
            out.append(
                AlertNotice(
                    "firing",
                    change.verdict,
                    change.host_id,
                    hostname,
                    node,
                    change.reasons,
                    change.at,
                    alert_id=change.alert_id,
                )
            )
        for notice in out:
            self.feed.publish(notice)
        return out

    async def enrollment_failed(self, code: str, peer: str | None, host_id: str = "") -> int:
        """Count an enrollment refusal in its source's summary alert (opening and announcing
        one when the source has none open in the window); returns the alert id."""
        now = self._clock()
        for source in [s for s, v in self._summaries.items() if now - v.started >= SUMMARY_WINDOW]:
            del self._summaries[source]
        source = peer or "unknown"
        if source not in self._summaries and len(self._summaries) >= MAX_SOURCES:
            source = OTHER_SOURCES
        summary = self._summaries.get(source)
        if summary is not None:
            summary.attempts[code] = summary.attempts.get(code, 0) + 1
            await self._store.set_alert_reasons(summary.alert_id, _summary_reasons(summary))
            return summary.alert_id
        alert_id = await self._store.add_alert(host_id, now, ENROLLMENT_FAILED, (code,))
        self._summaries[source] = _Summary(now, alert_id, {code: 1})
        hostname, node = await self._names(host_id)
        self.feed.publish(
            AlertNotice(
                "firing",
                ENROLLMENT_FAILED,
                host_id,
                hostname,
                node,
                (code,),
                now,
                alert_id=alert_id,
                peer=peer,
            )
        )
        return alert_id

    async def acknowledged(self, alert_id: int) -> None:
        """Announce an acknowledgement the store already recorded."""
        for alert in await self._store.list_alerts():
            if alert.id == alert_id:
                hostname, node = await self._names(alert.host_id)
                self.feed.publish(
                    AlertNotice(
                        "acknowledged",
                        alert.kind,
                        alert.host_id,
                        hostname,
                        node,
                        alert.reasons,
                        alert.at,
                        alert_id=alert.id,
                        acked_by=alert.acked_by,
                    )
                )
                return


ALERT_FEED: web.AppKey[Fanout[AlertNotice]] = web.AppKey("trustplane_alert_feed")
ALERT_CENTER = web.AppKey("trustplane_alert_center", AlertCenter)


@web.middleware
async def alert_observer(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Watch final answers: enrollment refusals raise an alert, API acks are announced.

    Sits outside the error middleware, so it sees the JSON answer every client sees.
    """
    response = await handler(request)
    center = request.app.get(ALERT_CENTER)
    if center is None or request.method != "POST":
        return response
    if request.path in ENROLL_PATHS and response.status == 403:
        code = _error_code(response) or "enroll.refused"
        try:
            await center.enrollment_failed(code, request.remote)
        except Exception:  # an alert that cannot be written must not change the answer
            log.exception("could not record an enrollment alert")
    elif request.match_info.handler is api.ack_alert and response.status == 200:
        with contextlib.suppress(ValueError):
            await center.acknowledged(int(request.match_info["alert_id"]))
    return response


def _error_code(response: web.StreamResponse) -> str | None:
    if not isinstance(response, web.Response) or not isinstance(response.body, bytes):
        return None
    try:
        body = json.loads(response.body)
        code = body["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return None
    return code if isinstance(code, str) else None


async def alerts_context(app: web.Application) -> AsyncIterator[None]:
    """Cleanup context: the alert center follows the verdict bus while the app runs."""
    center = AlertCenter(app[STATE].store, app[CLOCK], app[ALERT_FEED])
    app[ALERT_CENTER] = center
    async with app[EVENTS].following(center.on_verdict_change, name="hub-alerts"):
        yield


def setup_alerts(app: web.Application) -> None:
    """Register the feed, the observer middleware (outermost) and the cleanup context."""
    app[ALERT_FEED] = Fanout("alert notices")
    app.middlewares.insert(0, alert_observer)
    app.cleanup_ctx.append(alerts_context)


def _summary_reasons(summary: _Summary) -> tuple[str, ...]:
    codes = tuple(sorted(summary.attempts))
    return (*codes, f"attempts:{sum(summary.attempts.values())}")
