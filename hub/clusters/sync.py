"""The cluster sync: every enrolled host's trust, reconciled into each registered cluster.

:class:`~hub.clusters.fleet.ClusterSync` runs in the one hub process that holds the
``cluster-sync`` lease (:mod:`hub.singleton`). It keeps a :class:`ClusterWorker` (this module)
per registered cluster (the list is
re-read every few seconds, so ``trustplane-hub clusters add/remove`` from another process takes
effect) and hands every verdict change from the verdict bus to each of them, as well as every
host whose facts changed otherwise (revoked, new tags; the hosts are looked at every few
seconds). A worker owns its cluster: it connects, lists the nodes, reconciles them all, then
watches nodes: a node that joins is labelled as soon as the watch tells of it, and a change
someone else makes to our labels, annotation or taint is repaired at once. Every
``clusters.resync_interval`` seconds it reconciles all nodes again (over the nodes as the watch
keeps them, as an informer's resync does; nodes are listed again only on connecting and when
the watch has to start over). A verdict change is handled at once in a task of its own, beside
a running full reconcile, whose lanes start no new node while such urgent work is in flight, so
a label and taint are in place well within a second. A node whose reconcile failed is tried
again every few seconds. Each cluster has its own task and every request a timeout: one
cluster down or slow never delays another.

Reconciling one node (:meth:`ClusterWorker.reconcile_node`):

1. the host whose enrolment named this node (none, or several: the node gets nothing of ours /
   is treated as a mismatch with an ``cluster.node_ambiguous`` alert);
2. the node's ``status.nodeInfo.systemUUID`` must equal the host's attested DMI product UUID
   (case-insensitively); else no labels, the taint, and one ``cluster.node_uuid_mismatch``
   alert per node (remembered in the store until the UUIDs match again);
3. labels and the trust-report annotation by server-side apply (field manager
   ``trustplane-hub``, force, only our keys), when they differ from what the node carries;
4. the taint by read-modify-write of ``spec.taints`` guarded by ``resourceVersion``, retried on
   409 with a fresh read, leaving every other taint as it is;
5. an Event on the node when the announced trust state changes (TrustLost, TrustStale,
   TrustRestored); the announced state is stored per node after the Event was created, so a
   restarted hub does not repeat it.

A node no enrolled host maps to (a revoked host's, a removed one's) loses our labels,
annotation and taint.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Final

from cryptography.hazmat.primitives.asymmetric import ec

from hub.clusters.errors import ApiServerError, ClusterError
from hub.clusters.labels import (
    ASSET,
    EVENT_NAMESPACE,
    REPORT_ANNOTATION,
    VALID_UNTIL,
    Desired,
    desired_for,
    event_for,
    our_labels,
    taints_with,
)
from hub.clusters.nodeview import (
    HostIndex,
    cluster_host_of,
    event_id_for,
    is_older,
    node_name_of,
    report_payload_of,
    rfc3339,
    system_uuid_of,
    trustplane_fields,
)
from hub.clusters.settings import SyncCounters, SyncSettings
from hub.jws import sign_jws
from hub.store import Cluster, ClusterHost, ClusterState, NodeRecord, Store

if TYPE_CHECKING:  # kubernetes_asyncio is imported only when a cluster is synced
    from hub.clusters.client import KubeClient

log = logging.getLogger("trustplane.hub.clusters")

MISMATCH_ALERT: Final = "cluster.node_uuid_mismatch"
AMBIGUOUS_ALERT: Final = "cluster.node_ambiguous"
CONFLICT_RETRIES: Final = 5
CLUSTER_LIST_INTERVAL: Final = 3.0  # seconds between re-reads of the registered clusters
RETRY_INTERVAL: Final = 2.0  # seconds before a node whose reconcile failed is tried again
RECONNECT_MIN: Final = 1.0
RECONNECT_MAX: Final = 30.0

Clock = Callable[[], float]
Connect = Callable[[Cluster], Coroutine[Any, Any, "KubeClient"]]
AlertHook = Callable[[str, str, tuple[str, ...], float], Coroutine[Any, Any, None]]


class ClusterWorker:
    """One cluster's connection, node cache and reconciles (see the module docstring)."""

    def __init__(
        self,
        cluster: Cluster,
        *,
        store: Store,
        connect: Connect,
        settings: SyncSettings,
        clock: Clock,
        jws_key: ec.EllipticCurvePrivateKey,
        alert: AlertHook,
        counters: SyncCounters,
    ) -> None:
        self.name = cluster.name
        self._cluster = cluster
        self._store = store
        self._connect = connect
        self._settings = settings
        self._clock = clock
        self._jws_key = jws_key
        self._alert = alert
        self.counters = counters
        self._client: KubeClient | None = None
        self._nodes: dict[str, dict[str, Any]] = {}
        self._records: dict[str, NodeRecord] = {}
        self._unsaved: dict[str, NodeRecord] = {}
        self._index = HostIndex([])
        self._locks: dict[str, asyncio.Lock] = {}
        self._full = asyncio.Semaphore(settings.reconcile_concurrency)
        self._urgent = asyncio.Semaphore(settings.verdict_concurrency)
        self._tasks: set[asyncio.Task[None]] = set()
        self._ready = asyncio.Event()
        # urgent reconciles (verdict changes, watch repairs) in flight; the full reconcile's
        # lanes start no new node meanwhile, so the API server serves the urgent ones first
        self._urgent_active = 0
        self._urgent_idle = asyncio.Event()
        self._urgent_idle.set()
        self._retry: set[str] = set()  # nodes whose last reconcile failed
        self.connected = False
        self.last_sync: float | None = None
        self.last_error: str | None = None
        self.matched = 0
        self.full_reconciles = 0  # completed, since this worker started

    # --- the worker's life ---------------------------------------------------------------

    async def run(self) -> None:
        """Connect, reconcile, watch; on any failure record it, wait, start over. For ever."""
        delay = RECONNECT_MIN
        while True:
            done = self.full_reconciles
            try:
                self._client = await self._connect(self._cluster)
                try:
                    await self._serve()
                finally:
                    self._ready.clear()
                    client, self._client = self._client, None
                    await client.close()
            except asyncio.CancelledError:
                raise
            except ClusterError as e:
                await self._failed(str(e))
            except Exception as e:  # the loop boundary: log, record, try again later
                log.exception("cluster %s: sync failed", self.name)
                await self._failed(f"internal error: {type(e).__name__}")
            if self.full_reconciles > done:
                delay = RECONNECT_MIN  # it worked for a while: start over soon
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECONNECT_MAX)

    async def _failed(self, error: str) -> None:
        self.counters.errors += 1
        self.connected = False
        self.last_error = error
        log.warning("cluster %s: %s", self.name, error)
        await self._save_state()

    async def _serve(self) -> None:
        self._records = await self._store.cluster_nodes(self.name)
        self._retry.clear()  # the full reconcile goes over every node
        version = await self.full_reconcile()
        watcher = asyncio.create_task(self._watch(version), name=f"cluster-watch-{self.name}")
        retrier = asyncio.create_task(self._retry_failed(), name=f"cluster-retry-{self.name}")
        try:
            while True:
                # the next resync, or at once when the watch fails or ends
                await asyncio.wait({watcher}, timeout=self._settings.resync_interval)
                if watcher.done():
                    watcher.result()  # raises the watch's failure
                    return  # the watch ended (a 410 Gone): relist
                await self.full_reconcile(relist=False)  # the watch keeps the nodes current
        finally:
            retrier.cancel()
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError, ClusterError):
                await watcher
            for task in list(self._tasks):
                task.cancel()

    async def _retry_failed(self) -> None:
        """Reconcile again, every :data:`RETRY_INTERVAL` seconds, the nodes whose last
        reconcile failed (a timeout, a refusal): a verdict change is never lost to one error."""
        while True:
            await asyncio.sleep(RETRY_INTERVAL)
            names, self._retry = self._retry, set()
            for name in names:
                self._spawn(self._reconcile_name(name, urgent=True))

    async def _watch(self, version: str) -> None:
        client = self._require_client()
        while True:
            async for kind, obj in client.watch_nodes(version):
                if kind == "ERROR":
                    if obj.get("code") == 410:  # too old: the caller lists again
                        return
                    raise ApiServerError(int(obj.get("code") or 0), "watch error")
                meta = obj.get("metadata") or {}
                version = str(meta.get("resourceVersion") or version)
                if kind == "BOOKMARK":
                    continue
                name = node_name_of(obj)
                if kind == "DELETED":
                    self._nodes.pop(name, None)
                    continue
                old = self._nodes.get(name)
                if old is not None and is_older(obj, old):
                    continue  # our own write's answer is already newer than this event
                self._nodes[name] = obj
                # a node that joins, or ours changed by someone else (drift): repair at once;
                # what a verdict change or a resync needs is theirs to do
                joined = old is None
                touched = old is not None and trustplane_fields(old) != trustplane_fields(obj)
                if (joined or touched) and self._needs_work(obj):
                    self._spawn(self._reconcile_name(name, urgent=True))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(self._logged(coro))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _logged(self, coro: Coroutine[Any, Any, None]) -> None:
        try:
            await coro
        except (ClusterError, TimeoutError) as e:
            self.counters.errors += 1
            log.warning("cluster %s: %s", self.name, e or "timed out")

    def _require_client(self) -> KubeClient:
        if self._client is None:
            raise ClusterError("not connected", "cluster.not_connected")
        return self._client

    async def _save_state(self) -> None:
        try:
            await self._store.set_cluster_state(
                ClusterState(
                    self.name,
                    self.connected,
                    len(self._nodes),
                    self.matched,
                    self.last_sync,
                    self.last_error,
                    self._clock(),
                )
            )
        except Exception:  # the state row is information; the sync goes on without it
            log.exception("cluster %s: cannot record its state", self.name)

    # --- reconciles ------------------------------------------------------------------------

    async def full_reconcile(self, *, relist: bool = True) -> str:
        """Reconcile every node with the hosts as the store has them now; returns the list's
        resourceVersion. ``relist``: read the nodes from the API server first (on connecting);
        otherwise the node cache the watch keeps current is used (a periodic resync)."""
        version = ""
        if relist:
            client = self._require_client()
            items, version = await client.list_nodes(
                timeout=max(60.0, self._settings.request_timeout)
            )
            self._nodes = {node_name_of(n): n for n in items if node_name_of(n)}
        for gone in [
            n for n, lock in self._locks.items() if n not in self._nodes and not lock.locked()
        ]:
            del self._locks[gone]  # nodes that left the cluster
        self._index = HostIndex(await self._store.cluster_hosts())
        self.connected = True
        self._ready.set()  # verdict changes from now on find the fresh index
        # a fixed number of lanes, each taking the next node: the full reconcile holds at most
        # that many nodes' locks at a time, so a verdict change never queues behind it
        names = iter(list(self._nodes))
        errors: list[Exception] = []

        async def lane() -> None:
            for name in names:
                await self._urgent_idle.wait()
                try:
                    await self._reconcile_name(name, urgent=False)
                except (ClusterError, TimeoutError) as e:
                    errors.append(e)

        await asyncio.gather(*(lane() for _ in range(self._settings.reconcile_concurrency)))
        unsaved, self._unsaved = self._unsaved, {}
        if unsaved:
            await self._store.set_cluster_nodes(self.name, unsaved)
        self.matched = sum(
            1
            for name, n in self._nodes.items()
            if (hosts := self._index.hosts(name))
            and len(hosts) == 1
            and system_uuid_of(n) == (hosts[0].dmi_uuid or "").strip().lower()
        )
        self.last_sync = self._clock()
        self.full_reconciles += 1
        self.last_error = None
        if errors:
            self.counters.errors += len(errors)
            self.last_error = (
                f"{len(errors)} nodes failed; first: {errors[0] or type(errors[0]).__name__}"
            )
        await self._save_state()
        return version

    async def host_changed(self, host_id: str, at: float) -> None:
        """A verdict change of ``host_id``: reconcile its node now."""
        if not self._ready.is_set():
            return  # not connected: the full reconcile after connecting covers it
        found = await self._store.get_host(host_id, with_rules=False)
        host = None if found is None else cluster_host_of(found)
        old_node = self._index.node_of(host_id)
        if host is not None:
            self._index.put(host)
        else:
            self._index.remove(host_id)
        node = host.node_name if host is not None else old_node
        if old_node is not None and old_node != node and old_node in self._nodes:
            await self._reconcile_name(old_node, urgent=True)  # the node it named before
        if node is None:
            return
        if node not in self._nodes:
            try:
                self._nodes[node] = await self._require_client().get_node(
                    node, timeout=self._settings.request_timeout
                )
            except ApiServerError as e:
                if e.status == 404:
                    return  # this cluster has no such node
                raise
        await self._reconcile_name(node, urgent=True)
        self.counters.observe_delay(max(0.0, self._clock() - at))

    def _needs_work(self, node: dict[str, Any]) -> bool:
        """Whether a node as the watch shows it differs from what it should carry."""
        desired, _, _ = self._desired(node)
        return (
            our_labels(node) != desired.labels
            or self._taints_for(node, desired) is not None
            or self._report_outdated(node, desired)
        )

    def _desired(self, node: dict[str, Any]) -> tuple[Desired, ClusterHost | None, str]:
        """What ``node`` should carry, its host, and the mismatch alert's kind ("" none)."""
        name = node_name_of(node)
        hosts = self._index.hosts(name)
        if not hosts:
            return desired_for(None, (), {}, None), None, ""
        if len(hosts) > 1:
            ids = tuple(sorted(h.id for h in hosts))
            return desired_for("untrusted", ids, {}, None, mismatch=True), hosts[0], AMBIGUOUS_ALERT
        host = hosts[0]
        attested = (host.dmi_uuid or "").strip().lower()
        seen = system_uuid_of(node)
        if not attested or seen != attested:
            reasons = (f"node_uuid:{seen or 'none'}", f"attested_uuid:{attested or 'none'}")
            return (
                desired_for(host.verdict, reasons, {}, None, mismatch=True),
                host,
                MISMATCH_ALERT,
            )
        desired = desired_for(host.verdict, host.reasons, host.tags, host.valid_until)
        return desired, host, ""

    def _taints_for(self, node: dict[str, Any], desired: Desired) -> list[dict[str, Any]] | None:
        effect = self._settings.taint_effect
        tainted = desired.tainted and effect != "none"
        taints = node.get("spec", {}).get("taints") or []
        return taints_with(
            taints, tainted=tainted, effect=effect, now_rfc3339=rfc3339(self._clock())
        )

    def _report_outdated(self, node: dict[str, Any], desired: Desired) -> bool:
        annotations = node.get("metadata", {}).get("annotations") or {}
        payload = report_payload_of(annotations.get(REPORT_ANNOTATION))
        if desired.state in {"none", "mismatch"}:
            return REPORT_ANNOTATION in annotations
        if payload is None:
            return True
        return (
            payload.get("verdict") != desired.state
            or tuple(payload.get("reasons") or ()) != desired.reasons
            or payload.get("valid_until") != desired.labels.get(VALID_UNTIL)
        )

    async def _reconcile_name(self, name: str, *, urgent: bool) -> None:
        if urgent:
            self._urgent_active += 1
            self._urgent_idle.clear()
        try:
            lock = self._locks.setdefault(name, asyncio.Lock())
            async with lock:
                node = self._nodes.get(name)
                if node is not None:
                    await self.reconcile_node(node, urgent=urgent)
        except (ClusterError, TimeoutError):
            self._retry.add(name)  # tried again in RETRY_INTERVAL seconds, until it works
            raise
        finally:
            if urgent:
                self._urgent_active -= 1
                if self._urgent_active == 0:
                    self._urgent_idle.set()

    async def reconcile_node(self, node: dict[str, Any], *, urgent: bool) -> None:
        """Bring one node to what its host's trust says (see the module docstring); a 409 (the
        node changed under us) is retried with a fresh read, up to :data:`CONFLICT_RETRIES`."""
        name = node_name_of(node)
        budget = self._urgent if urgent else self._full
        timeout = self._settings.request_timeout
        client = self._require_client()
        for attempt in range(CONFLICT_RETRIES + 1):
            desired, host, alert_kind = self._desired(node)
            try:
                node = await self._write(client, node, desired, host, budget, timeout)
                break
            except ApiServerError as e:
                if e.status != 409 or attempt == CONFLICT_RETRIES:
                    raise
                self.counters.conflicts += 1
                async with budget:
                    node = await asyncio.wait_for(client.get_node(name), timeout)
                self._nodes[name] = node
        await self._announce(node, desired, host, alert_kind, urgent=urgent)

    async def _write(  # noqa: PLR0917
        self,
        client: KubeClient,
        node: dict[str, Any],
        desired: Desired,
        host: ClusterHost | None,
        budget: asyncio.Semaphore,
        timeout: float,
    ) -> dict[str, Any]:
        """Labels and annotation by server-side apply, then the taints guarded by the node's
        resourceVersion; returns the node as the last write left it."""
        name = node_name_of(node)
        if our_labels(node) != desired.labels or self._report_outdated(node, desired):
            annotations = {}
            if host is not None and desired.state not in {"none", "mismatch"}:
                annotations[REPORT_ANNOTATION] = self._trust_report(host, name, desired)
            async with budget:
                node = await asyncio.wait_for(
                    client.apply_node_metadata(name, desired.labels, annotations), timeout
                )
            self.counters.applies += 1
            self.counters.tags_skipped += desired.skipped_tags
            self._nodes[name] = node
        taints = self._taints_for(node, desired)
        if taints is not None:
            version = str(node.get("metadata", {}).get("resourceVersion") or "")
            async with budget:
                node = await asyncio.wait_for(
                    client.set_node_taints(name, version, taints), timeout
                )
            self.counters.taint_patches += 1
            self._nodes[name] = node
        return node

    def _trust_report(self, host: ClusterHost, node: str, desired: Desired) -> str:
        payload = {
            "host_id": host.id,
            "node_name": node,
            "cluster": self.name,
            "verdict": desired.state,
            "reasons": list(desired.reasons),
            "asset_tags": {
                k[len(ASSET) :]: v for k, v in desired.labels.items() if k.startswith(ASSET)
            },
            "iat": int(self._clock()),
            "valid_until": desired.labels.get(VALID_UNTIL),
        }
        return sign_jws(payload, self._jws_key)

    async def _announce(
        self,
        node: dict[str, Any],
        desired: Desired,
        host: ClusterHost | None,
        alert_kind: str,
        *,
        urgent: bool,
    ) -> None:
        """The Event for a trust change, the mismatch alert, and their record in the store."""
        name = node_name_of(node)
        record = self._records.get(name, NodeRecord("", ""))
        now = self._clock()
        mismatch = record.mismatch
        if alert_kind and mismatch != alert_kind and host is not None:
            reasons = (f"cluster:{self.name}", f"node:{name}", *desired.reasons)
            await self._alert(host.id, alert_kind, reasons, now)
            mismatch = alert_kind
        elif not alert_kind:
            mismatch = ""
        event = event_for(record.announced, desired.state)
        if event is not None:
            reason, kind = event
            await self._event(node, reason, kind, desired, now)
        if desired.state == "none" and not mismatch:
            if name in self._records:  # its host is gone: forget what was said
                await self._store.forget_cluster_node(self.name, name)
                del self._records[name]
            return
        new = NodeRecord(desired.state, mismatch)
        if new == record:
            return
        self._records[name] = new
        if event is None and alert_kind == "" and not urgent:
            self._unsaved[name] = new  # written in one batch at the end of the full reconcile
        else:
            await self._store.set_cluster_node(self.name, name, new)

    async def _event(
        self, node: dict[str, Any], reason: str, kind: str, desired: Desired, now: float
    ) -> None:
        name = node_name_of(node)
        meta = node.get("metadata") or {}
        why = ", ".join(desired.reasons) or "no reason given"
        lost = (
            f"trustplane: the node's system UUID is not the host's attested one ({why})"
            if desired.state == "mismatch"
            else f"trustplane: host is {desired.state} ({why})"
        )
        messages = {
            "TrustLost": lost,
            "TrustStale": f"trustplane: host stopped reporting ({why})",
            "TrustRestored": "trustplane: host is trusted again",
        }
        stamp = rfc3339(now)
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                # the same for a retry of this announcement (the node unchanged since our write
                # and the same reason), so a POST that timed out after it was stored makes
                # no second Event: the retry answers 409 AlreadyExists
                "name": f"{name}.trustplane.{event_id_for(meta, reason)}",
                "namespace": EVENT_NAMESPACE,
            },
            "involvedObject": {
                "apiVersion": "v1",
                "kind": "Node",
                "name": name,
                "uid": str(meta.get("uid") or name),
            },
            "reason": reason,
            "message": messages[reason][:1024],
            "type": kind,
            "source": {"component": "trustplane-hub"},
            "reportingComponent": "trustplane.io/hub",
            "reportingInstance": self._settings.holder[:128],
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
        }
        client = self._require_client()
        try:
            async with self._urgent:
                await asyncio.wait_for(client.create_event(event), self._settings.request_timeout)
        except ApiServerError as e:
            if e.status != 409:
                raise
            return  # created by an earlier try whose answer was lost
        self.counters.events += 1
