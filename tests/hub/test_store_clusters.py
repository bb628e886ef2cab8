"""hub.store.clusters on both backends: registered clusters, their sync state, what was
announced per node; one registration of a name when two connections add it at once."""

from __future__ import annotations

import asyncio

from hub.store import Store
from hub.store.clusters import MAX_ERROR_CHARS, ClusterState, NodeRecord


def test_clusters_state_and_nodes(store_target: str) -> None:
    async def go() -> None:
        store = await Store.open(store_target)
        assert await store.add_cluster("prod", b"\x00sealed", "ctx", 1.0) is True
        assert await store.add_cluster("prod", None, None, 2.0) is False
        assert await store.add_cluster("in-cluster", None, None, 3.0) is True
        clusters = await store.list_clusters()
        assert [(c.name, c.sealed_kubeconfig, c.context, c.added) for c in clusters] == [
            ("in-cluster", None, None, 3.0),
            ("prod", b"\x00sealed", "ctx", 1.0),
        ]
        state = ClusterState("prod", True, 5, 4, 10.0, "x" * (MAX_ERROR_CHARS + 10), 11.0)
        await store.set_cluster_state(state)
        await store.set_cluster_state(ClusterState("gone", False, 0, 0, None, None, 12.0))
        states = await store.cluster_states()
        assert set(states) == {"prod"}  # a state for an unknown cluster is dropped
        assert states["prod"].last_error == "x" * MAX_ERROR_CHARS
        assert (states["prod"].connected, states["prod"].nodes_matched) == (True, 4)
        await store.set_cluster_node("prod", "n1", NodeRecord("trusted", ""))
        await store.set_cluster_nodes(
            "prod", {"n1": NodeRecord("untrusted", "node.uuid_mismatch"), "n2": NodeRecord("", "")}
        )
        assert await store.cluster_nodes("prod") == {
            "n1": NodeRecord("untrusted", "node.uuid_mismatch"),
            "n2": NodeRecord("", ""),
        }
        await store.forget_cluster_node("prod", "n2")
        assert set(await store.cluster_nodes("prod")) == {"n1"}
        assert await store.remove_cluster("prod") is True
        assert await store.remove_cluster("prod") is False
        assert (await store.cluster_nodes("prod"), await store.cluster_states()) == ({}, {})
        await store.close()

    asyncio.run(go())


def test_one_registration_when_two_connections_add_a_name_at_once(store_target: str) -> None:
    async def go() -> None:
        one = await Store.open(store_target)
        two = await Store.open(store_target)
        added = await asyncio.gather(
            *(s.add_cluster(f"c{i}", None, None, 1.0) for i in range(20) for s in (one, two)),
            return_exceptions=True,
        )
        assert [added[2 * i : 2 * i + 2].count(True) for i in range(20)] == [1] * 20
        assert added.count(False) == 20
        await one.close()
        await two.close()

    asyncio.run(go())
