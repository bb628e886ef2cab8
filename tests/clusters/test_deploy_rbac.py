"""deploy/rbac.yaml's ClusterRole, granted to the hub's service account on the fake API server,
lets that account do what the cluster sync does (list, watch and get nodes; server-side apply
of labels; guarded taint patches; core/v1 Events) and refuses the rest with the RBAC
authorizer's 403 (as a real API server refused deleting nodes; ../shared/real-peers.md)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import yaml
from kubernetes_asyncio import client, watch

from tests.clusters.kubechecks import api_client
from tests.kubefake import FakeApiServer

RBAC = Path(__file__).resolve().parents[2] / "deploy" / "rbac.yaml"
HUB = "system:serviceaccount:trustplane:trustplane-hub"


def rules() -> list[dict[str, Any]]:
    role = next(d for d in yaml.safe_load_all(RBAC.read_text()) if d["kind"] == "ClusterRole")
    out: list[dict[str, Any]] = role["rules"]
    return out


async def _forbidden(call: Any) -> dict[str, Any]:
    try:
        await call
    except client.ApiException as exc:
        status, body = exc.status, json.loads(exc.body)
    else:
        raise AssertionError("the request was allowed")
    assert status == 403
    return dict(body)


def test_the_hub_role_allows_the_sync_and_nothing_else(tmp_path: Path) -> None:
    async def main() -> None:
        async with FakeApiServer() as api:
            admin_kc = api.write_kubeconfig(tmp_path / "admin")
            api.grant(HUB, rules())
            hub_kc = api.write_kubeconfig(
                tmp_path / "hub", user="token", token=api.issue_token(HUB)
            )
            async with await api_client(admin_kc) as ac:
                await client.CoreV1Api(ac).create_node(
                    client.V1Node(metadata=client.V1ObjectMeta(name="n1"))
                )
            async with await api_client(hub_kc) as hc:
                v1 = client.CoreV1Api(hc)
                listed = await v1.list_node()
                assert [n.metadata.name for n in listed.items] == ["n1"]
                async for _ev in watch.Watch().stream(
                    v1.list_node,
                    resource_version=listed.metadata.resource_version,
                    timeout_seconds=1,
                ):
                    pass
                node = await v1.read_node("n1")
                body = {
                    "apiVersion": "v1",
                    "kind": "Node",
                    "metadata": {
                        "name": "n1",
                        "labels": {"trustplane.node-restriction.kubernetes.io/trusted": "false"},
                    },
                }
                await v1.patch_node(
                    "n1",
                    body,
                    field_manager="trustplane-hub",
                    force=True,
                    _content_type="application/apply-patch+yaml",
                )
                taints = [
                    *(node.spec.taints or []),
                    {"key": "trustplane.io/untrusted", "value": "true", "effect": "NoExecute"},
                ]
                patch = {
                    "metadata": {
                        "resourceVersion": (await v1.read_node("n1")).metadata.resource_version
                    },
                    "spec": {"taints": taints},
                }
                await v1.patch_node(
                    "n1",
                    patch,
                    field_manager="trustplane-hub",
                    _content_type="application/merge-patch+json",
                )
                event = {
                    "metadata": {"name": "n1.trustplane.1"},
                    "involvedObject": {"kind": "Node", "name": "n1", "uid": node.metadata.uid},
                    "reason": "TrustLost",
                    "message": "untrusted",
                    "type": "Warning",
                    "source": {"component": "trustplane-hub"},
                }
                await v1.create_namespaced_event("default", event)

                denied = await _forbidden(v1.delete_node("n1"))
                assert denied == {
                    "kind": "Status",
                    "apiVersion": "v1",
                    "metadata": {},
                    "status": "Failure",
                    "message": f'nodes "n1" is forbidden: User "{HUB}" cannot delete resource '
                    '"nodes" in API group "" at the cluster scope',
                    "reason": "Forbidden",
                    "details": {"name": "n1", "kind": "nodes"},
                    "code": 403,
                }
                denied = await _forbidden(v1.replace_node("n1", await v1.read_node("n1")))
                assert denied["message"].endswith(
                    'cannot update resource "nodes" in API group "" at the cluster scope'
                )
                denied = await _forbidden(
                    v1.patch_node_status("n1", {"status": {"nodeInfo": {"systemUUID": "x"}}})
                )
                assert 'cannot patch resource "nodes/status"' in denied["message"]
                denied = await _forbidden(
                    v1.create_node(client.V1Node(metadata=client.V1ObjectMeta(name="n2")))
                )
                assert (
                    denied["message"]
                    == f'nodes is forbidden: User "{HUB}" cannot create resource "nodes" in API '
                    'group "" at the cluster scope'
                )
                denied = await _forbidden(v1.list_namespaced_event("default"))
                assert (
                    denied["message"]
                    == f'events is forbidden: User "{HUB}" cannot list resource "events" in API '
                    'group "" in the namespace "default"'
                )
                denied = await _forbidden(v1.list_pod_for_all_namespaces())
                assert denied["details"] == {"kind": "pods"}
                assert (await client.VersionApi(hc).get_code()).git_version.startswith("v1.")
            node = api.store.get("n1")
            assert node["metadata"]["labels"] == {
                "trustplane.node-restriction.kubernetes.io/trusted": "false"
            }
            assert {
                "key": "trustplane.io/untrusted",
                "value": "true",
                "effect": "NoExecute",
            } in node["spec"]["taints"]

    asyncio.run(main())
