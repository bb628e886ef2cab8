"""The agent's Prometheus metrics, the way node daemons expose them.

Off by default. ``[metrics] listen = "127.0.0.1:9464"`` serves ``/metrics`` on a loopback
address (the config refuses any other: the node's exporter or a local Prometheus agent scrapes
it); ``[metrics] textfile = "/var/lib/prometheus/node-exporter/trustplane.prom"`` rewrites that
file atomically after every attestation step for node_exporter's textfile collector. Both may
be set. What is counted:

``trustplane_agent_attestation_cycles_total``
    reports the hub acknowledged.
``trustplane_agent_attestation_failures_total{reason}``
    failed steps by reason: ``hub_unreachable``, ``hub_refused``, ``tpm_fault``, ``tpm_absent``,
    ``error`` (state directory, evidence) and ``internal`` (a bug caught at the loop boundary).
``trustplane_agent_last_success_timestamp_seconds``
    when the hub last acknowledged a report (0 before the first).
``trustplane_agent_hub_round_trip_seconds``
    a histogram of each HTTP request to the hub, by ``endpoint``.
``trustplane_agent_queue_length``
    reports owed to the hub.
``trustplane_agent_trusted``
    1 while the last verdict is ``trusted``, else 0.

The registry is private to the daemon (no process or platform collectors: the node's exporter
has those). Serving and file writing are here; the daemon only calls the ``record_*`` methods.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

log = logging.getLogger("trustplane.agent.metrics")

FAILURE_REASONS = ("hub_unreachable", "hub_refused", "tpm_fault", "tpm_absent", "error", "internal")
UNWRAP_OUTCOMES = ("cached", "released", "refused", "failed")


class AgentMetrics:
    """The daemon's counters and gauges, in their own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.cycles = Counter(
            "trustplane_agent_attestation_cycles",
            "Reports the hub acknowledged.",
            registry=self.registry,
        )
        self.failures = Counter(
            "trustplane_agent_attestation_failures",
            "Failed attestation steps, by reason.",
            ["reason"],
            registry=self.registry,
        )
        for reason in FAILURE_REASONS:  # every series exists from the start (rate() needs it)
            self.failures.labels(reason)
        self.last_success = Gauge(
            "trustplane_agent_last_success_timestamp_seconds",
            "Unix time of the last report the hub acknowledged (0 before the first).",
            registry=self.registry,
        )
        self.round_trip = Histogram(
            "trustplane_agent_hub_round_trip_seconds",
            "Time of one HTTP request to the hub, by endpoint.",
            ["endpoint"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
            registry=self.registry,
        )
        self.queue = Gauge(
            "trustplane_agent_queue_length", "Reports owed to the hub.", registry=self.registry
        )
        self.trusted = Gauge(
            "trustplane_agent_trusted",
            "1 while the hub's last verdict for this host is trusted, else 0.",
            registry=self.registry,
        )

        self.unwraps = Counter(
            "trustplane_agent_key_unwraps",
            "Layer-key unwraps answered on the key socket, by outcome (cached: from the sealed "
            "cache; released: by the hub; refused: the hub's release.* refusal; failed: hub "
            "away, TPM fault, not enrolled).",
            ["outcome"],
            registry=self.registry,
        )
        for outcome in UNWRAP_OUTCOMES:
            self.unwraps.labels(outcome)
        self.key_releases = Counter(
            "trustplane_agent_key_releases",
            "Key release requests sent to the hub (one per batch of unwraps).",
            registry=self.registry,
        )

    def record_unwrap(self, outcome: str) -> None:
        if outcome not in UNWRAP_OUTCOMES:
            raise ValueError(f"unknown unwrap outcome {outcome!r}")
        self.unwraps.labels(outcome).inc()

    def record_key_release(self) -> None:
        self.key_releases.inc()

    def record_delivery(self, at: float, verdict: str) -> None:
        self.cycles.inc()
        self.last_success.set(at)
        self.trusted.set(1 if verdict == "trusted" else 0)

    def record_failure(self, reason: str) -> None:
        if reason not in FAILURE_REASONS:
            raise ValueError(f"unknown failure reason {reason!r}")
        self.failures.labels(reason).inc()

    def record_round_trip(self, endpoint: str, seconds: float) -> None:
        self.round_trip.labels(endpoint).observe(seconds)

    def record_queue(self, length: int) -> None:
        self.queue.set(length)

    def exposition(self) -> bytes:
        """The text exposition format of every metric."""
        return generate_latest(self.registry)

    def write_textfile(self, path: Path) -> None:
        """Replace ``path`` with the exposition (0644: metrics are not secrets), atomically
        (node_exporter must never read half a file). Raises ``OSError``."""
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(self.exposition())
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


async def start_metrics_server(metrics: AgentMetrics, host: str, port: int) -> web.AppRunner:
    """Serve ``GET /metrics`` on ``host:port`` (the config allows loopback addresses only).
    Raises ``OSError`` when the address cannot be bound."""

    async def handle(_request: web.Request) -> web.Response:
        return web.Response(
            body=metrics.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    app = web.Application()
    app.router.add_get("/metrics", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError:
        await runner.cleanup()
        raise
    log.info("metrics on http://%s:%d/metrics", host, port)
    return runner
