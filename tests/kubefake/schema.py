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
