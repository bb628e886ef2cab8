"""``GET /v1/clusters`` and the status page's Clusters page: each registered cluster's state.

Both read the store (every hub process answers, whichever one syncs): name, how it connects
(kubeconfig context or in-cluster, never the kubeconfig itself), connected, nodes seen, nodes
matched to an enrolled host with the attested UUID, the last full reconcile and the last error.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from hub.auth import role
from hub.state import STATE
from hub.store import Cluster, ClusterState, Store
from hub.web.pages import render
from hub.web.session import page


def cluster_json(cluster: Cluster, state: ClusterState | None) -> dict[str, Any]:
    return {
        "name": cluster.name,
        "source": "in-cluster" if cluster.sealed_kubeconfig is None else "kubeconfig",
        "context": cluster.context,
        "added": cluster.added,
        "connected": bool(state and state.connected),
        "nodes": state.nodes if state else 0,
        "nodes_matched": state.nodes_matched if state else 0,
        "last_sync": state.last_sync if state else None,
        "last_error": state.last_error if state else None,
    }


async def clusters_data(store: Store) -> list[dict[str, Any]]:
    states = await store.cluster_states()
    return [cluster_json(c, states.get(c.name)) for c in await store.list_clusters()]


@role("viewer")
async def list_clusters(request: web.Request) -> web.Response:
    return web.json_response({"clusters": await clusters_data(request.app[STATE].store)})


@role("viewer")
@page
async def clusters_page(request: web.Request) -> web.Response:
    data = await clusters_data(request.app[STATE].store)
    return render(request, "clusters.html", {"clusters": data})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/clusters", list_clusters)
    app.router.add_get("/clusters", clusters_page)
