"""The Node fields the fake knows, for the API server's unknown-field handling.

A real API server decodes a body into its Go types, so an unknown field is dropped; with
`fieldValidation=Strict` the request is refused instead (400 "strict decoding error"), with
`Warn` (the default) it is dropped and named in a `Warning: 299` header. Server-side apply
refuses unknown fields always ("field not declared in schema"). Only the levels listed here
are checked; deeper values (status.nodeInfo contents, conditions...) are kept as sent.
"""

from __future__ import annotations

from typing import Any

_TOP = {"apiVersion", "kind", "metadata", "spec", "status"}
_META = {
    "name",
    "generateName",
    "namespace",
    "selfLink",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "labels",
    "annotations",
    "ownerReferences",
    "finalizers",
    "managedFields",
}
_SPEC = {
    "podCIDR",
    "podCIDRs",
    "providerID",
    "unschedulable",
    "taints",
    "configSource",
    "externalID",
}
_TAINT = {"key", "value", "effect", "timeAdded"}
_STATUS = {
    "capacity",
    "allocatable",
    "phase",
    "conditions",
    "addresses",
    "daemonEndpoints",
    "nodeInfo",
    "images",
    "volumesInUse",
    "volumesAttached",
    "config",
    "runtimeHandlers",
    "features",
}


def _prune(obj: Any, known: set[str], prefix: str, out: list[str]) -> None:
    if not isinstance(obj, dict):
        return
    for key in sorted(obj):
        if key not in known:
            out.append(f"{prefix}{key}")
            del obj[key]


def prune_unknown(node: Any) -> list[str]:
    """Remove unknown fields from `node` (in place); return their dotted paths."""
    out: list[str] = []
    if not isinstance(node, dict):
        return out
    _prune(node, _TOP, "", out)
    _prune(node.get("metadata"), _META, "metadata.", out)
    _prune(node.get("spec"), _SPEC, "spec.", out)
    _prune(node.get("status"), _STATUS, "status.", out)
    spec = node.get("spec")
    taints = spec.get("taints") if isinstance(spec, dict) else None
    if isinstance(taints, list):
        for i, taint in enumerate(taints):
            _prune(taint, _TAINT, f"spec.taints[{i}].", out)
    return out


# the Go types of the Node fields the fake reads (decoding anything else is a 400)
_OBJ, _STR, _BOOL, _LIST = "object", "string", "bool", "array"
_TYPES: dict[tuple[str, ...], tuple[str, str]] = {
    ("metadata",): (_OBJ, "v1.ObjectMeta"),
    ("metadata", "name"): (_STR, "string"),
    ("metadata", "generateName"): (_STR, "string"),
    ("metadata", "namespace"): (_STR, "string"),
    ("metadata", "uid"): (_STR, "types.UID"),
    ("metadata", "resourceVersion"): (_STR, "string"),
    ("metadata", "creationTimestamp"): (_STR, "v1.Time"),
    ("metadata", "labels"): (_OBJ, "map[string]string"),
    ("metadata", "annotations"): (_OBJ, "map[string]string"),
    ("metadata", "finalizers"): (_LIST, "[]string"),
    ("metadata", "managedFields"): (_LIST, "[]v1.ManagedFieldsEntry"),
    ("metadata", "ownerReferences"): (_LIST, "[]v1.OwnerReference"),
    ("spec",): (_OBJ, "v1.NodeSpec"),
    ("spec", "taints"): (_LIST, "[]v1.Taint"),
    ("spec", "unschedulable"): (_BOOL, "bool"),
    ("spec", "podCIDR"): (_STR, "string"),
    ("spec", "podCIDRs"): (_LIST, "[]string"),
    ("spec", "providerID"): (_STR, "string"),
    ("status",): (_OBJ, "v1.NodeStatus"),
    ("status", "nodeInfo"): (_OBJ, "v1.NodeSystemInfo"),
    ("status", "conditions"): (_LIST, "[]v1.NodeCondition"),
    ("status", "addresses"): (_LIST, "[]v1.NodeAddress"),
    ("status", "daemonEndpoints"): (_OBJ, "v1.NodeDaemonEndpoints"),
    ("status", "capacity"): (_OBJ, "v1.ResourceList"),
    ("status", "allocatable"): (_OBJ, "v1.ResourceList"),
}
# element types of lists and maps
_ITEMS: dict[tuple[str, ...], tuple[str, str]] = {
    ("metadata", "labels"): (_STR, "string"),
    ("metadata", "annotations"): (_STR, "string"),
    ("metadata", "finalizers"): (_STR, "string"),
    ("metadata", "managedFields"): (_OBJ, "v1.ManagedFieldsEntry"),
    ("metadata", "ownerReferences"): (_OBJ, "v1.OwnerReference"),
    ("spec", "taints"): (_OBJ, "v1.Taint"),
    ("spec", "podCIDRs"): (_STR, "string"),
    ("status", "nodeInfo"): (_STR, "string"),
    ("status", "conditions"): (_OBJ, "v1.NodeCondition"),
    ("status", "addresses"): (_OBJ, "v1.NodeAddress"),
}
_TAINT_FIELDS = {
    "key": "string",
    "value": "string",
    "effect": "v1.TaintEffect",
    "timeAdded": "v1.Time",
}


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    return "number"


def _fits(value: Any, want: str) -> bool:
    return value is None or _json_type(value) == want


def decode_errors(node: Any) -> str | None:
    """The Go JSON decoder's complaint about `node` as a v1.Node, or None when it decodes."""
    if not isinstance(node, dict):
        return f"json: cannot unmarshal {_json_type(node)} into Go value of type v1.Node"
    for path, (want, go) in _TYPES.items():
        parent: Any = node
        for part in path[:-1]:
            parent = parent.get(part) if isinstance(parent, dict) else None
        if not isinstance(parent, dict) or path[-1] not in parent:
            continue
        value = parent[path[-1]]
        where = "Node." + ".".join(path)
        if not _fits(value, want):
            return (
                f"json: cannot unmarshal {_json_type(value)} into Go struct field {where} "
                f"of type {go}"
            )
        item = _ITEMS.get(path)
        if item is not None and value is not None:
            members = value.values() if isinstance(value, dict) else value
            for member in members:
                if not _fits(member, item[0]):
                    return (
                        f"json: cannot unmarshal {_json_type(member)} into Go struct field "
                        f"{where} of type {item[1]}"
                    )
        if path == ("spec", "taints") and isinstance(value, list):
            for taint in value:
                for key, go_type in _TAINT_FIELDS.items():
                    if isinstance(taint, dict) and not _fits(taint.get(key), _STR):
                        return (
                            f"json: cannot unmarshal {_json_type(taint[key])} into Go struct "
                            f"field Taint.spec.taints.{key} of type {go_type}"
                        )
    return None
