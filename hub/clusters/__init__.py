"""Cluster integration: each host's trust as labels, a taint and Events on its Kubernetes node.

Parts: :mod:`.labels` (what a node should carry: keys, tag sanitising, taint list, Event
choice), :mod:`.sealing` (kubeconfigs encrypted at rest with the master key), :mod:`.client`
(one API server through kubernetes_asyncio), :mod:`.sync` (the per-cluster workers, fed by the
verdict bus, run under the ``cluster-sync`` lease), :mod:`.routes` (``GET /v1/clusters`` and
the Clusters page), :mod:`.cli` (``trustplane-hub clusters add|list|remove``). The store's
part is :mod:`hub.store.clusters`.

:func:`install` adds the routes and a cleanup context to the hub application: while the app
runs, every process follows the verdict bus, and the one holding the lease syncs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Final

from aiohttp import web

from hub.alerts import ALERT_FEED, AlertNotice
from hub.bus import VerdictChange
from hub.clusters import routes
from hub.clusters.fleet import ClusterSync
from hub.clusters.metrics import ClusterMetrics
from hub.clusters.settings import SyncSettings
from hub.metrics import METRICS
from hub.singleton import holder_id, run_singleton
from hub.state import CLOCK, EVENTS, STATE

__all__ = ["CLUSTER_SYNC", "LEASE", "install"]

log = logging.getLogger("trustplane.hub.clusters")

LEASE: Final = "cluster-sync"
STATE_REFRESH: Final = 5.0  # seconds between reads of the clusters' state for metrics
CLUSTER_SYNC = web.AppKey("trustplane_cluster_sync", ClusterSync)


async def _clusters_context(app: web.Application) -> AsyncIterator[None]:
    st = app[STATE]
    config = st.config.clusters
    if not config.sync:
        yield
        return
    async with _cluster_sync(app):
        yield


@contextlib.asynccontextmanager
async def _cluster_sync(app: web.Application) -> AsyncIterator[None]:
    st = app[STATE]
    config = st.config.clusters
    holder = holder_id()
    feed = app.get(ALERT_FEED)

    async def alert(host_id: str, kind: str, reasons: tuple[str, ...], at: float) -> None:
        alert_id = await st.store.add_alert(host_id, at, kind, reasons)
        if feed is not None:
            host = await st.store.get_host(host_id, with_rules=False)
            feed.publish(
                AlertNotice(
                    "firing",
                    kind,
                    host_id,
                    host.hostname if host else "",
                    host.node_name if host else None,
                    reasons,
                    at,
                    alert_id=alert_id,
                )
            )

    sync = ClusterSync(
        st.store,
        master_key=st.keys.master_key,
        jws_key=st.keys.jws_key,
        settings=SyncSettings(
            taint_effect=config.taint_effect,
            resync_interval=config.resync_interval,
            request_timeout=config.request_timeout,
            holder=holder,
        ),
        clock=app[CLOCK],
        alert=alert,
    )
    app[CLUSTER_SYNC] = sync
    hub_metrics = app.get(METRICS)
    metrics = (
        None
        if hub_metrics is None
        else ClusterMetrics(
            sync.counters,
            hub_metrics.registry,
            multiprocess=hub_metrics.multiprocess_dir is not None,
        )
    )

    async def refresh() -> None:
        while True:
            try:
                if metrics is not None:
                    metrics.collector.states = await st.store.cluster_states()
                    metrics.mirror()
            except Exception:  # the loop boundary: metrics only
                log.exception("cannot read the clusters' state")
            await asyncio.sleep(STATE_REFRESH)

    leading = asyncio.Event()

    async def work() -> None:
        leading.set()
        try:
            await sync.run()
        finally:
            leading.clear()

    def follow(change: VerdictChange) -> None:
        if leading.is_set() and change.previous != change.verdict:
            sync.verdict_changed(change.host_id, change.at)

    task = asyncio.create_task(
        run_singleton(
            st.store, LEASE, work, holder=holder, clock=app[CLOCK], ttl=st.config.state.lease_ttl
        ),
        name="hub-cluster-sync",
    )
    refresher = asyncio.create_task(refresh(), name="hub-cluster-metrics")
    try:
        async with app[EVENTS].following(follow, name="hub-clusters", queue_size=4096):
            yield
    finally:
        for t in (task, refresher):
            t.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await t
        if metrics is not None:
            metrics.close()


def install(app: web.Application) -> None:
    """Add ``GET /v1/clusters``, the Clusters page and the sync's cleanup context."""
    app.cleanup_ctx.append(_clusters_context)
    routes.add_routes(app)
