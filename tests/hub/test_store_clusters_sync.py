"""hub.store.clusters on both backends (a SQLite file and a real PostgreSQL database): clusters
registered once by name, their sync state, and the per-node record of what was announced."""

from __future__ import annotations

import asyncio

from hub.store import ClusterState, NodeRecord, Store


def test_clusters_state_and_node_records(store_target: str) -> None:
    async def go() -> None:
        store = await Store.open(store_target)
        try:
            assert await store.add_cluster("prod", b"\x00sealed\xff", "ctx", 10.0)
            assert not await store.add_cluster("prod", None, None, 11.0)
            assert await store.add_cluster("local", None, None, 12.0)
            clusters = await store.list_clusters()
            assert [(c.name, c.sealed_kubeconfig, c.context, c.added) for c in clusters] == [
                ("local", None, None, 12.0),
                ("prod", b"\x00sealed\xff", "ctx", 10.0),
            ]
            state = ClusterState("prod", True, 5000, 4999, 20.5, "x" * 900, 21.0)
            await store.set_cluster_state(state)
            await store.set_cluster_state(ClusterState("gone", True, 1, 1, None, None, 1.0))
            states = await store.cluster_states()
            assert list(states) == ["prod"]  # (state of an unregistered cluster is dropped)
            assert states["prod"].last_error == "x" * 500  # bounded
            assert (states["prod"].connected, states["prod"].nodes_matched) == (True, 4999)
            await store.set_cluster_node("prod", "n1", NodeRecord("untrusted", ""))
            await store.set_cluster_nodes(
                "prod",
                {"n1": NodeRecord("trusted", ""), "n2": NodeRecord("mismatch", "cluster.x")},
            )
            assert await store.cluster_nodes("prod") == {
                "n1": NodeRecord("trusted", ""),
                "n2": NodeRecord("mismatch", "cluster.x"),
            }
            await store.forget_cluster_node("prod", "n1")
            assert list(await store.cluster_nodes("prod")) == ["n2"]
            assert await store.remove_cluster("prod")
            assert not await store.remove_cluster("prod")
            assert await store.cluster_nodes("prod") == {}
            assert await store.cluster_states() == {}
            assert [c.name for c in await store.list_clusters()] == ["local"]
        finally:
            await store.close()

    asyncio.run(go())
