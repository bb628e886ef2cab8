"""Prometheus metrics of the hub, served at ``/metrics`` in the text exposition format.

Counted where it happens without touching the verification path: :func:`report_observer`
(outermost middleware) times every ``POST /v1/report`` and counts its result from the answer
the agent gets; a subscriber on the verdict bus counts verdict changes; host and alert gauges
are read from the store at scrape time; webhook totals come from :mod:`hub.webhooks`. The
metrics are prometheus_client's, each application with its own registry (no process-global
state, no process or platform collectors: the node's exporter has those). With
``server.workers`` above 1 (:mod:`hub.supervisor`) the counters and the histogram are
prometheus_client's multiprocess values (files in ``<state dir>/metrics``, emptied at each
start) and every worker's ``/metrics`` shows their sum over all workers, dead ones included (a
restarted worker does not reset a counter); the host and alert gauges are read from the
database as before (never summed); the webhook totals of the worker that holds the webhook
lease are mirrored into multiprocess counters every few seconds.

``/metrics`` accepts a viewer or admin bearer token, or ``metrics.token`` (a token that can
read nothing else). The core's auth middleware lets the route through as ``public``;
:func:`metrics` checks the token itself, before anything is read.

Metrics: ``trustplane_hub_reports_total{result}`` (trusted, untrusted, missing_eventlogs,
nonce_rejected, refused, error), ``trustplane_hub_report_duration_seconds`` (histogram),
``trustplane_hub_verdict_changes_total{verdict}``, ``trustplane_hub_hosts{state,verdict}``,
``trustplane_hub_alerts_open``, ``trustplane_hub_webhook_messages_total{result}`` (delivered,
failed, dropped), ``trustplane_hub_webhook_attempts_failed_total``. The cluster sync adds its
own (``trustplane_hub_cluster_*``, :mod:`hub.clusters.metrics`) to the same registry.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import struct
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client import Counter as PromCounter
from prometheus_client import Histogram as PromHistogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from hub.auth import public
from hub.bus import VerdictChange
from hub.errors import ApiError, Handler
from hub.state import BUS, CONFIG, STATE
from hub.statedir import token_hash
from hub.webhooks import WEBHOOKS

log = logging.getLogger("trustplane.hub")

REPORT_PATH: Final = "/v1/report"
MIRROR_EVERY: Final = 5.0  # seconds between two mirrorings of the webhook totals
LATENCY_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
METRICS_ROLES: Final = frozenset({"viewer", "admin"})
CONTENT_TYPE: Final = CONTENT_TYPE_PLAIN_0_0_4  # what every Prometheus reads
_P: Final = "trustplane_hub_"


@dataclass(slots=True)
class Scrape:
    """What is read from the store and the webhook sender at scrape time."""

    hosts: Mapping[tuple[str, str], int] = field(default_factory=dict)
    alerts_open: int = 0
    webhooks: Mapping[str, int] = field(default_factory=dict)
    attempts_failed: int = 0


class _ScrapeCollector(Collector):
    """Exposes the last :class:`Scrape` (set just before the registry is rendered)."""

    def __init__(self, *, webhooks: bool = True) -> None:
        self.scrape = Scrape()
        self._webhooks = webhooks  # (multiprocess mode: the mirrored counters have them)

    def collect(self) -> Iterator[Metric]:
        hosts = GaugeMetricFamily(
            _P + "hosts", "Hosts by enrollment state and verdict", labels=["state", "verdict"]
        )
        for (state, verdict), n in sorted(self.scrape.hosts.items()):
            hosts.add_metric([state, verdict], n)
        yield hosts
        yield GaugeMetricFamily(
            _P + "alerts_open", "Alerts not yet acknowledged", value=self.scrape.alerts_open
        )
        if not self._webhooks:
            return
        messages = CounterMetricFamily(
            _P + "webhook_messages", "Webhook messages by final result", labels=["result"]
        )
        for result, n in sorted(self.scrape.webhooks.items()):
            messages.add_metric([result], n)
        yield messages
        yield CounterMetricFamily(
            _P + "webhook_attempts_failed",
            "Webhook POSTs that failed (each retry counts)",
            value=self.scrape.attempts_failed,
        )


class HubMetrics:
    """The metrics of one application, in a registry of its own."""

    def __init__(self, multiprocess_dir: Path | None = None) -> None:
        """``multiprocess_dir``: the workers' shared directory (:mod:`hub.supervisor`); the
        counters and the histogram are then summed over every process that wrote there."""
        # (auto_describe would read the other workers' files at registration, racing a worker
        # that is just creating its own)
        self.registry = CollectorRegistry(auto_describe=multiprocess_dir is None)
        self.multiprocess_dir = multiprocess_dir
        # in multiprocess mode the values live in the directory's files, not in a registry
        own = None if multiprocess_dir is not None else self.registry
        self.reports = PromCounter(
            _P + "reports",
            "Attestation reports handled, by result",
            ["result"],
            registry=own,
        )
        self.report_seconds = PromHistogram(
            _P + "report_duration_seconds",
            "Time to handle one report (decode, verify, record, sign)",
            buckets=LATENCY_BUCKETS,
            registry=own,
        )
        self.verdict_changes = PromCounter(
            _P + "verdict_changes",
            "Verdict changes, by the new verdict",
            ["verdict"],
            registry=own,
        )
        # webhook totals: this process's sender counts, mirrored (a worker may hold the lease)
        self.webhook_messages = PromCounter(
            _P + "webhook_messages",
            "Webhook messages by final result",
            ["result"],
            registry=None,
        )
        self.webhook_attempts_failed = PromCounter(
            _P + "webhook_attempts_failed",
            "Webhook POSTs that failed (each retry counts)",
            registry=None,
        )
        self._mirrored: dict[str, int] = {}
        self._scrape = _ScrapeCollector(webhooks=multiprocess_dir is None)
        self.registry.register(self._scrape)
        if multiprocess_dir is not None:
            MultiProcessCollector(self.registry, str(multiprocess_dir))  # type: ignore[no-untyped-call]

    def mirror_webhooks(self, counts: Mapping[str, int], attempts_failed: int) -> None:
        """Add what the webhook sender counted since the last call (multiprocess mode)."""
        for result, n in (*counts.items(), ("attempts_failed", attempts_failed)):
            delta = n - self._mirrored.get(result, 0)
            if delta <= 0:
                continue
            self._mirrored[result] = n
            if result == "attempts_failed":
                self.webhook_attempts_failed.inc(delta)
            else:
                self.webhook_messages.labels(result).inc(delta)

    def count_change(self, change: VerdictChange) -> None:
        self.verdict_changes.labels(change.verdict).inc()

    def exposition(self, scrape: Scrape) -> bytes:
        """The whole scrape in the text exposition format."""
        self._scrape.scrape = scrape
        try:
            return generate_latest(self.registry)
        except struct.error:  # a worker was creating its metrics file just then: once more
            return generate_latest(self.registry)


METRICS = web.AppKey("trustplane_metrics", HubMetrics)


def report_result(response: web.StreamResponse) -> str:
    """What a ``/v1/report`` answer says: its verdict, or the kind of refusal."""
    if response.status >= 500:
        return "error"
    if response.status == 409:
        return "nonce_rejected"
    if response.status != 200:
        return "refused"
    body: object = None
    if isinstance(response, web.Response) and isinstance(response.body, bytes):
        with contextlib.suppress(ValueError):
            body = json.loads(response.body)
    if not isinstance(body, dict):
        return "error"
    if body.get("missing_eventlogs"):
        return "missing_eventlogs"
    verdict = body.get("verdict")
    return verdict if verdict in ("trusted", "untrusted") else "error"


@web.middleware
async def report_observer(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Time and count ``POST /v1/report`` from outside the error middleware."""
    if request.path != REPORT_PATH or request.method != "POST":
        return await handler(request)
    metrics = request.app[METRICS]
    started = time.perf_counter()
    response = await handler(request)
    metrics.report_seconds.observe(time.perf_counter() - started)
    metrics.reports.labels(report_result(response)).inc()
    return response


async def _authorize(request: web.Request) -> None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise ApiError(401, "auth.required", "a bearer token is required")
    configured = request.app[CONFIG].metrics.token
    if configured and hmac.compare_digest(token.encode(), configured.encode()):
        return
    want = token_hash(token)
    found = await request.app[STATE].store.find_token(want)
    if found is None or not hmac.compare_digest(found.hash, want):
        raise ApiError(401, "auth.invalid_token", "unknown or revoked token")
    if found.role not in METRICS_ROLES:
        raise ApiError(403, "auth.forbidden", f"role {found.role!r} may not read metrics")


@public  # the core lets it through; _authorize checks viewer/admin or metrics.token
async def metrics(request: web.Request) -> web.Response:
    await _authorize(request)
    store = request.app[STATE].store
    hosts = Counter((h.state, h.verdict) for h in await store.list_hosts())
    alerts_open = len(await store.list_alerts(open_only=True))
    sender = request.app.get(WEBHOOKS)
    webhooks = sender.counts.as_dict() if sender else {"delivered": 0, "failed": 0, "dropped": 0}
    failed = sender.counts.attempts_failed if sender else 0
    if request.app[METRICS].multiprocess_dir is not None:
        request.app[METRICS].mirror_webhooks(webhooks, failed)
    body = request.app[METRICS].exposition(Scrape(hosts, alerts_open, webhooks, failed))
    resp = web.Response(body=body)
    resp.headers["Content-Type"] = CONTENT_TYPE
    return resp


async def metrics_context(app: web.Application) -> AsyncIterator[None]:
    """Cleanup context: count the verdict changes this process wrote (every process counts its
    own: summed across workers and replicas, each change counts once)."""
    bus = app[BUS]

    async def count() -> None:
        after = await bus.position()
        while True:
            try:
                async for posted in bus.changes(after):
                    after = posted.id
                    if posted.local:
                        app[METRICS].count_change(posted.change)
            except Exception:  # the loop boundary: a database error; read again in a moment
                log.exception("metrics: reading the verdict bus failed")
                await asyncio.sleep(1.0)

    async def mirror() -> None:
        metrics = app[METRICS]
        while True:
            await asyncio.sleep(MIRROR_EVERY)
            sender = app.get(WEBHOOKS)
            if sender is not None:
                metrics.mirror_webhooks(sender.counts.as_dict(), sender.counts.attempts_failed)

    tasks = [asyncio.create_task(count(), name="hub-metrics")]
    if app[METRICS].multiprocess_dir is not None:
        tasks.append(asyncio.create_task(mirror(), name="hub-metrics-webhooks"))
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def setup_metrics(app: web.Application, multiprocess_dir: Path | None = None) -> None:
    app[METRICS] = HubMetrics(multiprocess_dir)
    app.middlewares.insert(0, report_observer)
    app.cleanup_ctx.append(metrics_context)
    app.router.add_get("/metrics", metrics)
