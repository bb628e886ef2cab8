"""Webhooks: alert notices POSTed to configured URLs in Alertmanager's webhook JSON format.

:func:`alertmanager_message` builds the message (pure): ``version`` ``"4"``, one alert per
message, its ``labels`` (``alertname``, ``host``, ``node``, ``severity``, ``service``) identical
for the ``firing`` and ``resolved`` message of one alert, so a receiver can pair them.
:class:`WebhookSender` keeps one bounded queue and one worker per URL: a full queue drops the
new message (counted), a failed POST (connection error, timeout, 408, 429, 5xx) is retried
with exponential backoff up to ``alerts.webhook_retries`` times; other 4xx answers are final.
Nothing here ever makes verification wait: notices arrive through a
:class:`~hub.fanout.Fanout` queue. Acknowledgements are not sent (Alertmanager has no such
state). With several hub processes on one database (``server.workers``, replicas) one of them
delivers: the one holding the ``webhook-delivery`` lease (:mod:`hub.singleton`); every
process sees every verdict change (:mod:`hub.bus`), so its notices are complete for trust
losses and recoveries (an enrollment refusal's notice is seen only by the process that refused).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import quote

import aiohttp
from aiohttp import web

from hub.alerts import ALERT_FEED, ENROLLMENT_FAILED, AlertNotice
from hub.config import AlertsConfig, HubConfig
from hub.singleton import holder_id, run_singleton
from hub.state import CLOCK, CONFIG, STATE

log = logging.getLogger("trustplane.hub")

ALERTNAMES: Final = {
    "untrusted": "TrustplaneHostUntrusted",
    "stale": "TrustplaneHostStale",
    ENROLLMENT_FAILED: "TrustplaneEnrollmentFailed",
}
SEVERITIES: Final = {"untrusted": "critical", "stale": "warning", ENROLLMENT_FAILED: "warning"}
ZERO_TIME: Final = "0001-01-01T00:00:00Z"  # Alertmanager's endsAt of a firing alert
RECEIVER: Final = "trustplane"
RETRY_STATUSES: Final = frozenset({408, 429})

Sleep = Callable[[float], Awaitable[None]]


def rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def external_url(config: HubConfig) -> str:
    """``alerts.external_url``, or the listen address with the scheme TLS implies."""
    if config.alerts.external_url:
        return config.alerts.external_url.rstrip("/")
    scheme = "https" if config.server.tls else "http"
    return f"{scheme}://{config.server.listen}"


def alert_labels(notice: AlertNotice) -> dict[str, str]:
    labels = {
        "alertname": ALERTNAMES.get(notice.kind, "TrustplaneAlert"),
        "host": notice.host_id or "unknown",
        "severity": SEVERITIES.get(notice.kind, "warning"),
        "service": "trustplane-hub",
    }
    if notice.node_name:
        labels["node"] = notice.node_name
    return labels


def _summary(notice: AlertNotice) -> str:
    who = notice.node_name or notice.hostname or notice.host_id or "an unknown host"
    if notice.kind == ENROLLMENT_FAILED:
        peer = f" from {notice.peer}" if notice.peer else ""
        return f"enrollment refused{peer}: {', '.join(notice.reasons)}"
    return f"{who} is {notice.kind}: {', '.join(notice.reasons) or 'no reason given'}"


def alertmanager_message(notice: AlertNotice, base_url: str) -> dict[str, Any]:
    """The webhook body for one notice (``firing`` or ``resolved``)."""
    labels = alert_labels(notice)
    annotations = {
        "summary": _summary(notice),
        "reasons": " ".join(notice.reasons),
    }
    if notice.hostname:
        annotations["hostname"] = notice.hostname
    if notice.alert_id is not None:
        annotations["alert_id"] = str(notice.alert_id)
    path = f"/hosts/{quote(notice.host_id, safe='')}" if notice.host_id else "/alerts"
    fingerprint = hashlib.sha256(json.dumps(labels, sort_keys=True).encode()).hexdigest()[:16]
    alert = {
        "status": notice.status,
        "labels": labels,
        "annotations": annotations,
        "startsAt": rfc3339(notice.starts_at),
        "endsAt": rfc3339(notice.ends_at) if notice.ends_at is not None else ZERO_TIME,
        "generatorURL": base_url + path,
        "fingerprint": fingerprint,
    }
    group = {"alertname": labels["alertname"]}
    return {
        "version": "4",
        "groupKey": f"{{}}:{{alertname={json.dumps(labels['alertname'])}}}",
        "truncatedAlerts": 0,
        "status": notice.status,
        "receiver": RECEIVER,
        "groupLabels": group,
        "commonLabels": labels,
        "commonAnnotations": annotations,
        "externalURL": base_url,
        "alerts": [alert],
    }


def retry_delay(config: AlertsConfig, retry: int) -> float:
    """Delay before retry number ``retry`` (1-based): backoff * 2**(retry-1), capped."""
    return float(min(config.webhook_backoff * 2 ** (retry - 1), config.webhook_backoff_max))


@dataclass(slots=True)
class WebhookCounts:
    """Totals for :mod:`hub.metrics`: messages by final result, failed attempts."""

    delivered: int = 0
    failed: int = 0
    dropped: int = 0
    attempts_failed: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"delivered": self.delivered, "failed": self.failed, "dropped": self.dropped}


@dataclass(slots=True)
class _Target:
    url: str
    queue: asyncio.Queue[dict[str, Any]]
    task: asyncio.Task[None] | None = field(default=None)


class WebhookSender:
    """One queue and worker per URL; :meth:`submit` never waits."""

    def __init__(
        self,
        config: HubConfig,
        session: aiohttp.ClientSession,
        *,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._config = config.alerts
        self._base_url = external_url(config)
        self._session = session
        self._sleep = sleep
        self.counts = WebhookCounts()
        self._targets = [
            _Target(url, asyncio.Queue(self._config.webhook_queue)) for url in self._config.webhooks
        ]

    def start(self) -> None:
        for target in self._targets:
            target.task = asyncio.create_task(self._work(target), name="hub-webhook")

    async def stop(self) -> None:
        for target in self._targets:
            if target.task is not None:
                target.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await target.task

    def submit(self, notice: AlertNotice) -> None:
        if notice.status == "acknowledged":
            return
        message = alertmanager_message(notice, self._base_url)
        for target in self._targets:
            try:
                target.queue.put_nowait(message)
            except asyncio.QueueFull:
                self.counts.dropped += 1
                log.warning("webhook queue for %s is full; dropped an alert", target.url)

    async def _work(self, target: _Target) -> None:
        while True:
            message = await target.queue.get()
            try:
                ok = await self.deliver(target.url, message)
            except Exception:  # the loop boundary: log, count, keep going
                log.exception("webhook delivery to %s failed", target.url)
                ok = False
            if ok:
                self.counts.delivered += 1
            else:
                self.counts.failed += 1

    async def _post(self, url: str, message: dict[str, Any]) -> int | None:
        timeout = aiohttp.ClientTimeout(total=self._config.webhook_timeout)
        try:
            async with self._session.post(
                url, json=message, timeout=timeout, allow_redirects=False
            ) as resp:
                await resp.read()
                return resp.status
        except (aiohttp.ClientError, TimeoutError) as e:
            log.warning("webhook %s: %s", url, type(e).__name__)
            return None

    async def deliver(self, url: str, message: dict[str, Any]) -> bool:
        """POST with retries; True when a 2xx answer came back."""
        for attempt in range(self._config.webhook_retries + 1):
            if attempt:
                await self._sleep(retry_delay(self._config, attempt))
            status = await self._post(url, message)
            if status is not None and 200 <= status < 300:
                return True
            self.counts.attempts_failed += 1
            if status is not None and status < 500 and status not in RETRY_STATUSES:
                log.warning("webhook %s answered %d; not retrying", url, status)
                return False
        return False


WEBHOOKS = web.AppKey("trustplane_webhooks", WebhookSender)


async def webhooks_context(app: web.Application) -> AsyncIterator[None]:
    """Cleanup context: the sender and its feed subscription live while the app runs."""
    config = app[CONFIG]
    feed = app[ALERT_FEED]
    async with aiohttp.ClientSession() as session:
        sender = WebhookSender(config, session)
        app[WEBHOOKS] = sender
        sender.start()

        async def deliver() -> None:  # while this process holds the lease
            async with feed.following(
                sender.submit, name="hub-webhook-feed", queue_size=config.alerts.webhook_queue
            ):
                await asyncio.Event().wait()

        # every process sees every verdict change (hub.bus), so one of them delivers
        lease = asyncio.create_task(
            run_singleton(
                app[STATE].store,
                "webhook-delivery",
                deliver,
                holder=holder_id(),
                clock=app[CLOCK],
                ttl=config.state.lease_ttl,
            ),
            name="hub-webhook-lease",
        )
        try:
            yield
        finally:
            lease.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await lease
            await sender.stop()


def setup_webhooks(app: web.Application) -> None:
    app.cleanup_ctx.append(webhooks_context)
