"""Discovery documents: /version, /api, /api/v1, /apis, /apis/events.k8s.io/v1, /openapi/v2.

The legacy (unaggregated) discovery format: kubectl 1.32 asks for aggregated discovery
(apidiscovery.k8s.io/v2) first and falls back to these when the server answers plain
APIVersions/APIGroupList, as it does with a server older than 1.26. /openapi/v2 is answered in
protobuf (what kubectl asks for) as an OpenAPI document that declares no definitions: kubectl's
client-side validation then finds no schema for Node and accepts the object (it does the same
for kinds a server does not describe), and its strategic-merge patches fall back to the Node
type compiled into kubectl. /openapi/v3 is not served (404), so kubectl does not send the
fieldValidation parameter, as with a server that predates it.
"""

from __future__ import annotations

from typing import Any

VERSION = {
    "major": "1",
    "minor": "30",
    "gitVersion": "v1.30.0-kubefake",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2026-01-01T00:00:00Z",
    "goVersion": "go1.22.0",
    "compiler": "gc",
    "platform": "linux/amd64",
}

_VERBS_NODES = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
_VERBS_EVENTS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]


def api_versions(address: str) -> dict[str, Any]:
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": address}],
    }


def core_v1() -> dict[str, Any]:
    return {
        "kind": "APIResourceList",
        "groupVersion": "v1",
        "resources": [
            {
                "name": "events",
                "singularName": "event",
                "namespaced": True,
                "kind": "Event",
                "verbs": _VERBS_EVENTS,
                "shortNames": ["ev"],
            },
            {
                "name": "namespaces",
                "singularName": "namespace",
                "namespaced": False,
                "kind": "Namespace",
                "verbs": ["get", "list"],
                "shortNames": ["ns"],
            },
            {
                "name": "nodes",
                "singularName": "node",
                "namespaced": False,
                "kind": "Node",
                "verbs": _VERBS_NODES,
                "shortNames": ["no"],
            },
            {
                "name": "nodes/status",
                "singularName": "",
                "namespaced": False,
                "kind": "Node",
                "verbs": ["get", "patch", "update"],
            },
            {
                "name": "pods",
                "singularName": "pod",
                "namespaced": True,
                "kind": "Pod",
                "verbs": ["get", "list"],
                "shortNames": ["po"],
                "categories": ["all"],
            },
        ],
    }


def api_groups(address: str) -> dict[str, Any]:
    def group(name: str, version: str) -> dict[str, Any]:
        gv = {"groupVersion": f"{name}/{version}", "version": version}
        return {
            "name": name,
            "versions": [gv],
            "preferredVersion": gv,
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": address}],
        }

    return {
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": [group("events.k8s.io", "v1")],
    }


def events_v1() -> dict[str, Any]:
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": "events.k8s.io/v1",
        "resources": [
            {
                "name": "events",
                "singularName": "event",
                "namespaced": True,
                "kind": "Event",
                "verbs": _VERBS_EVENTS,
                "shortNames": ["ev"],
            }
        ],
    }


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field."""
    size = len(payload)
    varint = bytearray()
    while True:
        byte = size & 0x7F
        size >>= 7
        if size:
            varint.append(byte | 0x80)
        else:
            varint.append(byte)
            break
    return bytes([(number << 3) | 2]) + bytes(varint) + payload


def openapi_v2_protobuf() -> bytes:
    """gnostic openapi_v2.Document {swagger: "2.0", info: {title, version}} in protobuf."""
    info = _field(1, b"Kubernetes") + _field(2, VERSION["gitVersion"].encode())
    return _field(1, b"2.0") + _field(2, info)
