"""The cluster sync's Prometheus metrics, in the hub's registry (:mod:`hub.metrics`).

Per cluster, from the store (so every hub process reports them, whichever one syncs; re-read
every few seconds): ``trustplane_hub_cluster_connected{cluster}``,
``trustplane_hub_cluster_nodes{cluster}``, ``trustplane_hub_cluster_nodes_matched{cluster}``,
``trustplane_hub_cluster_last_sync_timestamp_seconds{cluster}``. Totals of this process's sync
(zero in processes that do not hold the lease): ``trustplane_hub_cluster_applies_total``,
``..._taint_patches_total``, ``..._conflicts_total`` (409s retried), ``..._events_total``,
``..._errors_total``, ``..._tags_skipped_total`` (asset tags label syntax cannot hold), and
the histogram ``trustplane_hub_cluster_verdict_to_label_seconds`` (each verdict change until
its node's labels and taint are written, per cluster). With
``server.workers`` above 1 the totals are mirrored into prometheus_client's multiprocess
counters every few seconds (as the webhook totals are), so every worker's ``/metrics`` shows
the same sums whichever worker holds the lease.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final

from prometheus_client import Counter as PromCounter
from prometheus_client import Histogram as PromHistogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from hub.clusters.settings import SyncCounters
from hub.store import ClusterState

_P: Final = "trustplane_hub_cluster_"


DELAY_BUCKETS: Final = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
TOTALS: Final = (
    ("applies", "Server-side applies of node labels"),
    ("taint_patches", "Node taint updates"),
    ("conflicts", "Taint updates refused with 409 and retried"),
    ("events", "Kubernetes Events created"),
    ("errors", "Failed cluster requests and reconciles"),
    ("tags_skipped", "Asset tags left out: not valid label syntax"),
)


class ClusterCollector(Collector):
    def __init__(self, counters: SyncCounters, *, totals: bool = True) -> None:
        self.counters = counters
        self.totals = totals  # False: the multiprocess counters carry them
        self.states: dict[str, ClusterState] = {}

    def collect(self) -> Iterator[Metric]:
        gauges = {
            "connected": GaugeMetricFamily(
                _P + "connected", "1 when the sync reaches the cluster", labels=["cluster"]
            ),
            "nodes": GaugeMetricFamily(
                _P + "nodes", "Nodes seen in the last full reconcile", labels=["cluster"]
            ),
            "matched": GaugeMetricFamily(
                _P + "nodes_matched",
                "Nodes mapped to an enrolled host with the attested system UUID",
                labels=["cluster"],
            ),
            "sync": GaugeMetricFamily(
                _P + "last_sync_timestamp_seconds",
                "End of the last full reconcile (unix seconds)",
                labels=["cluster"],
            ),
        }
        for name, st in sorted(self.states.items()):
            gauges["connected"].add_metric([name], 1.0 if st.connected else 0.0)
            gauges["nodes"].add_metric([name], st.nodes)
            gauges["matched"].add_metric([name], st.nodes_matched)
            if st.last_sync is not None:
                gauges["sync"].add_metric([name], st.last_sync)
        yield from gauges.values()
        if self.totals:
            for name, text in TOTALS:
                yield CounterMetricFamily(_P + name, text, value=getattr(self.counters, name))


class ClusterMetrics:
    """The collector in ``registry``; in multiprocess mode also the mirrored totals."""

    def __init__(
        self, counters: SyncCounters, registry: CollectorRegistry, *, multiprocess: bool
    ) -> None:
        self.collector = ClusterCollector(counters, totals=not multiprocess)
        self.registry = registry
        registry.register(self.collector)
        self._mirrors = (
            {name: PromCounter(_P + name, text, registry=None) for name, text in TOTALS}
            if multiprocess
            else {}
        )
        self._mirrored: dict[str, int] = {}
        self.delay = PromHistogram(
            _P + "verdict_to_label_seconds",
            "From a verdict change to its node's labels and taint written",
            buckets=DELAY_BUCKETS,
            registry=None if multiprocess else registry,
        )
        counters.observe_delay = self.delay.observe

    def mirror(self) -> None:
        """Add what this process counted since the last call to the multiprocess counters."""
        for name, counter in self._mirrors.items():
            value = getattr(self.collector.counters, name)
            delta = value - self._mirrored.get(name, 0)
            if delta > 0:
                counter.inc(delta)
                self._mirrored[name] = value

    def close(self) -> None:
        self.registry.unregister(self.collector)
        if not self._mirrors:
            self.registry.unregister(self.delay)
