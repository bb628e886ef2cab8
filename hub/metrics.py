"""Prometheus metrics of the hub, served at ``/metrics`` in the text exposition format.

Counted where it happens without touching the verification path: :func:`report_observer`
(outermost middleware) times every ``POST /v1/report`` and counts its result from the answer
the agent gets; a subscriber on the verdict bus counts verdict changes; host and alert gauges
are read from the store at scrape time; webhook totals come from :mod:`hub.webhooks`.
Each application has its own counters (no process-global registry); the exposition is
written here (the format is small) so the hub needs no Prometheus library at run time.

``/metrics`` accepts a viewer or admin bearer token, or ``metrics.token`` (a token that can
read nothing else). The core's auth middleware lets the route through as ``public``;
:func:`metrics` checks the token itself, before anything is read.

Metrics: ``trustplane_hub_reports_total{result}`` (trusted, untrusted, missing_eventlogs,
nonce_rejected, refused, error), ``trustplane_hub_report_duration_seconds`` (histogram),
``trustplane_hub_verdict_changes_total{verdict}``, ``trustplane_hub_hosts{state,verdict}``,
``trustplane_hub_alerts_open``, ``trustplane_hub_webhook_messages_total{result}`` (delivered,
failed, dropped), ``trustplane_hub_webhook_attempts_failed_total``.
"""

from __future__ import annotations

import bisect
import contextlib
import hmac
import json
import math
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

from aiohttp import web

from hub.auth import public
from hub.errors import ApiError, Handler
from hub.state import CONFIG, EVENTS, STATE, VerdictChange
from hub.statedir import token_hash
from hub.webhooks import WEBHOOKS

REPORT_PATH: Final = "/v1/report"
LATENCY_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
METRICS_ROLES: Final = frozenset({"viewer", "admin"})
CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _sample(name: str, labels: Mapping[str, str], value: float) -> str:
    if not labels:
        return f"{name} {_number(value)}"
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
    return f"{name}{{{inner}}} {_number(value)}"


def family(
    name: str, kind: str, help_text: str, samples: Iterable[tuple[str, Mapping[str, str], float]]
) -> list[str]:
    """One metric family in the text format: HELP, TYPE, then its samples."""
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
    lines.extend(_sample(n, labels, v) for n, labels, v in samples)
    return lines


@dataclass(slots=True)
class Histogram:
    """Cumulative buckets, sum and count, as Prometheus histograms are exposed."""

    buckets: tuple[float, ...] = LATENCY_BUCKETS
    counts: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS) + 1))
    total: float = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.total += value

    def samples(self, name: str) -> list[tuple[str, Mapping[str, str], float]]:
        out: list[tuple[str, Mapping[str, str], float]] = []
        running = 0
        for bound, n in zip((*self.buckets, math.inf), self.counts, strict=True):
            running += n
            out.append((f"{name}_bucket", {"le": _number(bound)}, running))
        out.append((f"{name}_sum", {}, self.total))
        out.append((f"{name}_count", {}, running))
        return out


class HubMetrics:
    """The counters of one application; gauges are read at scrape time."""

    def __init__(self) -> None:
        self.reports: Counter[str] = Counter()
        self.report_seconds = Histogram()
        self.verdict_changes: Counter[str] = Counter()

    def count_change(self, change: VerdictChange) -> None:
        self.verdict_changes[change.verdict] += 1

    def exposition(
        self,
        hosts: Mapping[tuple[str, str], int],
        alerts_open: int,
        webhooks: Mapping[str, int],
        attempts_failed: int,
    ) -> str:
        """The whole scrape in the text exposition format (version 0.0.4)."""
        p = "trustplane_hub_"
        lines = [
            *family(
                p + "reports_total",
                "counter",
                "Attestation reports handled, by result",
                ((p + "reports_total", {"result": r}, n) for r, n in sorted(self.reports.items())),
            ),
            *family(
                p + "report_duration_seconds",
                "histogram",
                "Time to handle one report (decode, verify, record, sign)",
                self.report_seconds.samples(p + "report_duration_seconds"),
            ),
            *family(
                p + "verdict_changes_total",
                "counter",
                "Verdict changes, by the new verdict",
                (
                    (p + "verdict_changes_total", {"verdict": v}, n)
                    for v, n in sorted(self.verdict_changes.items())
                ),
            ),
            *family(
                p + "hosts",
                "gauge",
                "Hosts by enrollment state and verdict",
                (
                    (p + "hosts", {"state": s, "verdict": v}, n)
                    for (s, v), n in sorted(hosts.items())
                ),
            ),
            *family(
                p + "alerts_open",
                "gauge",
                "Alerts not yet acknowledged",
                [(p + "alerts_open", {}, alerts_open)],
            ),
            *family(
                p + "webhook_messages_total",
                "counter",
                "Webhook messages by final result",
                (
                    (p + "webhook_messages_total", {"result": r}, n)
                    for r, n in sorted(webhooks.items())
                ),
            ),
            *family(
                p + "webhook_attempts_failed_total",
                "counter",
                "Webhook POSTs that failed (each retry counts)",
                [(p + "webhook_attempts_failed_total", {}, attempts_failed)],
            ),
        ]
        return "\n".join(lines) + "\n"


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
    metrics.reports[report_result(response)] += 1
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
    text = request.app[METRICS].exposition(hosts, alerts_open, webhooks, failed)
    resp = web.Response(text=text)
    resp.headers["Content-Type"] = CONTENT_TYPE
    return resp


async def metrics_context(app: web.Application) -> AsyncIterator[None]:
    """Cleanup context: count verdict changes from the bus."""
    async with app[EVENTS].following(app[METRICS].count_change, name="hub-metrics"):
        yield


def setup_metrics(app: web.Application) -> None:
    app[METRICS] = HubMetrics()
    app.middlewares.insert(0, report_observer)
    app.cleanup_ctx.append(metrics_context)
    app.router.add_get("/metrics", metrics)
