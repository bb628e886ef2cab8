"""Every registered cluster's :class:`~hub.clusters.sync.ClusterWorker`, kept running.

:class:`ClusterSync` re-reads the registered clusters every few seconds (so ``trustplane-hub
clusters add/remove`` from another process takes effect), starts and stops one worker task per
cluster, hands every verdict change to every worker without waiting, and looks at the hosts'
mapping-relevant facts every few seconds for changes no verdict announced (revoked, re-approved,
new tags). How a worker reconciles a cluster: :mod:`hub.clusters.sync`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives.asymmetric import ec

from hub.clusters.errors import ClusterError
from hub.clusters.sealing import unseal
from hub.clusters.settings import SyncCounters, SyncSettings
from hub.clusters.sync import CLUSTER_LIST_INTERVAL, AlertHook, Clock, ClusterWorker, Connect
from hub.store import Cluster, Store

if TYPE_CHECKING:  # kubernetes_asyncio is imported only when a cluster is synced
    from hub.clusters.client import KubeClient

log = logging.getLogger("trustplane.hub.clusters")


class ClusterSync:
    """Every registered cluster's worker, fed by verdict changes (see the module docstring)."""

    def __init__(
        self,
        store: Store,
        *,
        master_key: bytes,
        jws_key: ec.EllipticCurvePrivateKey,
        settings: SyncSettings,
        clock: Clock,
        alert: AlertHook,
        connect: Connect | None = None,
    ) -> None:
        self._store = store
        self._master_key = master_key
        self._jws_key = jws_key
        self._settings = settings
        self._clock = clock
        self._alert = alert
        self._connect = connect or self._connect_stored
        self.counters = SyncCounters()
        self.workers: dict[str, ClusterWorker] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._pending: set[asyncio.Task[None]] = set()
        self._seen: dict[str, tuple[object, ...]] | None = None

    async def _connect_stored(self, cluster: Cluster) -> KubeClient:
        try:
            from hub.clusters.client import KubeClient  # noqa: PLC0415 - optional dependency
        except ImportError:
            raise ClusterError(
                "kubernetes_asyncio is not installed (python3-kubernetes-asyncio)",
                "cluster.client_missing",
            ) from None
        kubeconfig = (
            None
            if cluster.sealed_kubeconfig is None
            else unseal(self._master_key, cluster.name, cluster.sealed_kubeconfig)
        )
        return await KubeClient.connect(kubeconfig, cluster.context)

    async def run(self) -> None:
        """Keep one worker per registered cluster; runs until cancelled."""
        try:
            while True:
                try:
                    await self._refresh()
                    await self._hosts_changed()
                except Exception:  # the loop boundary: the database may be briefly away
                    log.exception("cannot read the registered clusters or hosts")
                await asyncio.sleep(CLUSTER_LIST_INTERVAL)
        finally:
            for task in [*self._tasks.values(), *self._pending]:
                task.cancel()
            for task in [*self._tasks.values(), *self._pending]:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            self._tasks.clear()
            self.workers.clear()

    async def _hosts_changed(self) -> None:
        """Hand every host whose mapping-relevant facts changed since the last look (revoked,
        re-approved, re-enrolled with other names, new tags; a verdict change this process
        missed) to the workers, as a verdict change is. The report validity is left out: it
        moves with every report and is refreshed by the full reconciles."""
        seen: dict[str, tuple[object, ...]] = {
            h.id: (h.state, h.node_name, h.dmi_uuid, h.verdict, h.reasons, sorted(h.tags.items()))
            for h in await self._store.cluster_hosts()
        }
        before, self._seen = self._seen, seen
        if before is None:
            return  # the workers' first full reconciles read them all
        changed = [i for i, facts in seen.items() if before.get(i) != facts]
        changed += [i for i in before if i not in seen]
        now = self._clock()
        for host_id in changed:
            self.verdict_changed(host_id, now)

    async def _refresh(self) -> None:
        clusters = {c.name: c for c in await self._store.list_clusters()}
        for name in [n for n in self._tasks if n not in clusters]:
            self._tasks.pop(name).cancel()
            self.workers.pop(name, None)
        for name, cluster in clusters.items():
            if name in self._tasks:
                continue
            worker = ClusterWorker(
                cluster,
                store=self._store,
                connect=self._connect,
                settings=self._settings,
                clock=self._clock,
                jws_key=self._jws_key,
                alert=self._alert,
                counters=self.counters,
            )
            self.workers[name] = worker
            self._tasks[name] = asyncio.create_task(worker.run(), name=f"cluster-{name}")

    def verdict_changed(self, host_id: str, at: float) -> None:
        """Hand a verdict change to every cluster's worker (never waits)."""
        for worker in list(self.workers.values()):
            task = asyncio.create_task(self._host_changed(worker, host_id, at))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    async def _host_changed(self, worker: ClusterWorker, host_id: str, at: float) -> None:
        try:
            await worker.host_changed(host_id, at)
        except ClusterError as e:
            self.counters.errors += 1
            log.warning("cluster %s: host %s: %s", worker.name, host_id, e)
        except TimeoutError:
            self.counters.errors += 1
            log.warning("cluster %s: host %s: timed out", worker.name, host_id)
