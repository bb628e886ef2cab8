"""Clusters: the registered Kubernetes clusters, their sync state, and what was said per node.

``clusters`` holds one row per registered cluster: its name, the kubeconfig sealed with the
hub's master key (:mod:`hub.clusters.sealing`; never stored in clear, never returned by the
API), the context to use, or ``in_cluster`` for the pod's service account. ``cluster_state``
is what the sync last saw (connected, nodes matched, last sync, last error), written by the one
process that holds the sync lease and read by every process's API and pages.
``cluster_nodes`` remembers, per (cluster, node), the trust state last announced with a
Kubernetes Event and whether a node-UUID mismatch alert is open, so a restarted hub neither
repeats Events nor raises the same alert twice.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from hub.store.backend import StoreBackend


@dataclass(frozen=True, slots=True)
class Cluster:
    name: str
    sealed_kubeconfig: bytes | None  # None: in-cluster config
    context: str | None
    added: float


@dataclass(frozen=True, slots=True)
class ClusterState:
    name: str
    connected: bool
    nodes: int  # nodes seen in the last full reconcile
    nodes_matched: int  # of those, mapped to an enrolled host with a matching UUID
    last_sync: float | None  # end of the last successful full reconcile
    last_error: str | None  # bounded text of the last error ("" / None: none)
    updated: float


@dataclass(frozen=True, slots=True)
class NodeRecord:
    """What the hub last told a cluster about a node."""

    announced: str  # trust state last announced by an Event (or recorded silently): "" none
    mismatch: str  # "" or the alert reason that is open for this node (one alert per node)


@dataclass(frozen=True, slots=True)
class ClusterHost:
    """What the sync needs of a host (read without its rule results, the largest column)."""

    id: str
    state: str
    node_name: str | None
    dmi_uuid: str | None
    verdict: str
    reasons: tuple[str, ...]
    tags: dict[str, str]
    valid_until: float | None


MAX_ERROR_CHARS = 500


class ClustersStore(StoreBackend):
    """The clusters' methods (plain, portable SQL)."""

    async def add_cluster(
        self, name: str, sealed_kubeconfig: bytes | None, context: str | None, now: float
    ) -> bool:
        """Register a cluster; ``False`` when the name is taken."""

        def run() -> bool:
            with self.db.atomic():
                # one statement: two hub processes adding one name at once get one True
                cur = self.db.execute(
                    "INSERT INTO clusters (name, kubeconfig, context, added) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (name) DO NOTHING",
                    [name, sealed_kubeconfig, context, now],
                )
                return cur.rowcount == 1

        return await self._run(run)

    async def remove_cluster(self, name: str) -> bool:
        def run() -> bool:
            with self.db.atomic():
                self.db.execute("DELETE FROM cluster_nodes WHERE cluster = ?", [name])
                self.db.execute("DELETE FROM cluster_state WHERE name = ?", [name])
                cur = self.db.execute("DELETE FROM clusters WHERE name = ?", [name])
                return cur.rowcount == 1

        return await self._run(run)

    async def list_clusters(self) -> list[Cluster]:
        def run() -> list[Cluster]:
            rows = self.db.execute(
                "SELECT name, kubeconfig, context, added FROM clusters ORDER BY name"
            ).fetchall()
            return [Cluster(r[0], None if r[1] is None else bytes(r[1]), r[2], r[3]) for r in rows]

        return await self._run(run)

    async def cluster_hosts(self) -> list[ClusterHost]:
        """Every host that names a node, with what the sync needs of it."""

        def run() -> list[ClusterHost]:
            rows = self.db.execute(
                "SELECT id, state, node_name, dmi_uuid, verdict, reasons, tags, valid_until "
                "FROM hosts WHERE node_name IS NOT NULL ORDER BY id"
            ).fetchall()
            return [
                ClusterHost(
                    r[0],
                    r[1],
                    r[2],
                    r[3],
                    r[4],
                    tuple(json.loads(r[5] or "[]")),
                    json.loads(r[6] or "{}"),
                    r[7],
                )
                for r in rows
            ]

        return await self._run(run)

    async def set_cluster_state(self, state: ClusterState) -> None:
        error = None if state.last_error is None else state.last_error[:MAX_ERROR_CHARS]

        def run() -> None:
            with self.db.atomic():
                if (
                    self.db.execute(
                        "SELECT 1 FROM clusters WHERE name = ?", [state.name]
                    ).fetchone()
                    is None
                ):
                    return  # removed meanwhile
                self.db.execute("DELETE FROM cluster_state WHERE name = ?", [state.name])
                self.db.execute(
                    "INSERT INTO cluster_state "
                    "(name, connected, nodes, nodes_matched, last_sync, last_error, updated) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [
                        state.name,
                        int(state.connected),
                        state.nodes,
                        state.nodes_matched,
                        state.last_sync,
                        error,
                        state.updated,
                    ],
                )

        await self._run(run)

    async def cluster_states(self) -> dict[str, ClusterState]:
        def run() -> dict[str, ClusterState]:
            rows = self.db.execute(
                "SELECT name, connected, nodes, nodes_matched, last_sync, last_error, updated "
                "FROM cluster_state"
            ).fetchall()
            return {
                r[0]: ClusterState(r[0], bool(r[1]), r[2], r[3], r[4], r[5], r[6]) for r in rows
            }

        return await self._run(run)

    async def cluster_nodes(self, cluster: str) -> dict[str, NodeRecord]:
        def run() -> dict[str, NodeRecord]:
            rows = self.db.execute(
                "SELECT node, announced, mismatch FROM cluster_nodes WHERE cluster = ?", [cluster]
            ).fetchall()
            return {r[0]: NodeRecord(r[1], r[2]) for r in rows}

        return await self._run(run)

    async def set_cluster_node(self, cluster: str, node: str, record: NodeRecord) -> None:
        def run() -> None:
            with self.db.atomic():
                self.db.execute(
                    "DELETE FROM cluster_nodes WHERE cluster = ? AND node = ?", [cluster, node]
                )
                self.db.execute(
                    "INSERT INTO cluster_nodes (cluster, node, announced, mismatch) "
                    "VALUES (?, ?, ?, ?)",
                    [cluster, node, record.announced, record.mismatch],
                )

        await self._run(run)

    async def set_cluster_nodes(self, cluster: str, records: dict[str, NodeRecord]) -> None:
        """Many :meth:`set_cluster_node` in one transaction."""

        def run() -> None:
            with self.db.atomic():
                for node, record in records.items():
                    self.db.execute(
                        "DELETE FROM cluster_nodes WHERE cluster = ? AND node = ?", [cluster, node]
                    )
                    self.db.execute(
                        "INSERT INTO cluster_nodes (cluster, node, announced, mismatch) "
                        "VALUES (?, ?, ?, ?)",
                        [cluster, node, record.announced, record.mismatch],
                    )

        await self._run(run)

    async def forget_cluster_node(self, cluster: str, node: str) -> None:
        def run() -> None:
            with self.db.atomic():
                self.db.execute(
                    "DELETE FROM cluster_nodes WHERE cluster = ? AND node = ?", [cluster, node]
                )

        await self._run(run)
