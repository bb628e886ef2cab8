"""Field sets and managedFields (FieldsV1) of Node objects, for server-side apply ownership.

A field set is a Python set of paths; a path is a tuple of FieldsV1 path elements
(`f:metadata`, `f:labels`, `f:team`; `k:{"type":"Ready"}` for an item of a keyed list;
`v:"x"` for an item of a set list) ending at a leaf the manager owns. A keyed-list item itself
is owned through the `.` marker (the path of the item followed by ".").

The Node schema is modelled only as far as ownership needs: objects are granular (each field
owned alone) except the atomic ones listed below; lists are atomic (owned as a whole, like
`spec.taints`) except `status.conditions` and `status.addresses` (keyed by `type`),
`metadata.ownerReferences` (keyed by `uid`) and the sets `metadata.finalizers` and
`spec.podCIDRs`.
"""

from __future__ import annotations

import json
from typing import Any

Path = tuple[str, ...]
FieldSet = set[Path]

# Keyed lists (listType=map) by field-name path, with their key fields.
_KEYED: dict[tuple[str, ...], tuple[str, ...]] = {
    ("status", "conditions"): ("type",),
    ("status", "addresses"): ("type",),
    ("metadata", "ownerReferences"): ("uid",),
}
_SETS = {("metadata", "finalizers"), ("spec", "podCIDRs")}
# Fields that are not part of what a manager can own.
_IGNORED_TOP = {"apiVersion", "kind"}
_IGNORED_META = {
    "managedFields",
    "resourceVersion",
    "uid",
    "creationTimestamp",
    "generation",
    "selfLink",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
}


def item_key(names: tuple[str, ...], item: Any) -> str | None:
    """The FieldsV1 element naming `item` in the list at `names`, or None for atomic lists."""
    if names in _SETS:
        return "v:" + json.dumps(item, separators=(",", ":"))
    keys = _KEYED.get(names)
    if keys is None or not isinstance(item, dict):
        return None
    return "k:" + json.dumps({k: item.get(k) for k in keys}, separators=(",", ":"), sort_keys=True)


def is_list_granular(names: tuple[str, ...]) -> bool:
    return names in _SETS or names in _KEYED


def fields_of(obj: dict[str, Any]) -> FieldSet:
    """The leaf paths that `obj` (an applied configuration or a whole object) sets."""
    return set(leaves_of(obj))


def leaves_of(obj: dict[str, Any]) -> dict[Path, Any]:
    """Each leaf path `obj` sets, with its value (a keyed-list item's `.`: the item)."""
    out: dict[Path, Any] = {}
    for key, value in obj.items():
        if key in _IGNORED_TOP:
            continue
        if key == "metadata" and isinstance(value, dict):
            for mkey, mvalue in value.items():
                if mkey in _IGNORED_META or mkey in ("name", "namespace"):
                    continue
                _walk(("f:metadata", f"f:{mkey}"), ("metadata", mkey), mvalue, out)
            continue
        _walk((f"f:{key}",), (key,), value, out)
    return out


def _walk(path: Path, names: tuple[str, ...], value: Any, out: dict[Path, Any]) -> None:
    if isinstance(value, dict) and not value:
        return  # an empty object sets no field
    if isinstance(value, dict):
        for key, sub in value.items():
            _walk((*path, f"f:{key}"), (*names, key), sub, out)
    elif isinstance(value, list) and is_list_granular(names):
        for item in value:
            elem = item_key(names, item)
            if elem is None:
                continue
            if names in _SETS:
                out[(*path, elem)] = item
                continue
            out[(*path, elem, ".")] = item
            if isinstance(item, dict):
                for key, sub in item.items():
                    _walk((*path, elem, f"f:{key}"), (*names, "[]", key), sub, out)
    else:
        out[path] = value


def to_fields_v1(fields: FieldSet) -> dict[str, Any]:
    """The FieldsV1 JSON object of a field set."""
    root: dict[str, Any] = {}
    for path in fields:
        node = root
        for elem in path:
            if elem == ".":
                node["."] = {}
                break
            node = node.setdefault(elem, {})
    return root


def from_fields_v1(tree: Any, prefix: Path = ()) -> FieldSet:
    """The field set of a FieldsV1 JSON object (as a client sent it; garbage yields nothing)."""
    out: FieldSet = set()
    if not isinstance(tree, dict):
        return out
    for elem, sub in tree.items():
        if not isinstance(elem, str):
            continue
        if elem == ".":
            out.add((*prefix, "."))
        elif isinstance(sub, dict) and sub:
            out |= from_fields_v1(sub, (*prefix, elem))
        else:
            out.add((*prefix, elem))
    return out


def value_at(obj: Any, path: Path) -> tuple[bool, Any]:
    """(present, value) of the field at `path` in `obj`."""
    node = obj
    names: tuple[str, ...] = ()
    for elem in path:
        if elem == ".":
            return True, node
        kind, _, raw = elem.partition(":")
        if kind == "f":
            if not isinstance(node, dict) or raw not in node:
                return False, None
            node = node[raw]
            names = (*names, raw)
        elif kind in ("k", "v"):
            if not isinstance(node, list):
                return False, None
            found = [item for item in node if item_key(names, item) == elem]
            if not found:
                return False, None
            node = found[0]
            names = (*names, "[]")
        else:
            return False, None
    return True, node


def remove_at(obj: dict[str, Any], path: Path) -> None:
    """Remove the field at `path` from `obj` (in place); a missing field is left alone."""
    if path and path[-1] == ".":
        path = path[:-1]
    if not path:
        return
    parent_present, parent = value_at(obj, path[:-1]) if len(path) > 1 else (True, obj)
    if not parent_present:
        return
    names = tuple(e[2:] for e in path[:-1] if e.startswith("f:"))
    last = path[-1]
    if last.startswith("f:") and isinstance(parent, dict):
        parent.pop(last[2:], None)
    elif isinstance(parent, list):
        parent[:] = [item for item in parent if item_key(names, item) != last]


def prune_empty(obj: dict[str, Any], keep: tuple[str, ...] = ("metadata",)) -> None:
    """Drop maps and granular lists left empty by removals (but never `keep` at the top)."""
    for key in list(obj):
        value = obj[key]
        if isinstance(value, dict):
            prune_empty(value, ())
            if not value and key not in keep:
                del obj[key]


def changed_fields(old: dict[str, Any], new: dict[str, Any]) -> tuple[FieldSet, FieldSet]:
    """(fields set or changed in `new`, fields present in `old` and gone in `new`)."""
    before = leaves_of(old)
    after = leaves_of(new)
    missing = object()
    changed = {p for p, v in after.items() if before.get(p, missing) != v}
    removed = set(before) - set(after)
    return changed, removed


def covers(owned: FieldSet, path: Path) -> bool:
    """True when `owned` holds `path` or a leaf of which `path` is a part, or an ancestor."""
    if path in owned:
        return True
    for i in range(1, len(path)):
        if path[:i] in owned:
            return True
    return any(p[: len(path)] == path for p in owned)


def render(path: Path) -> str:
    """A path as the API server prints it in conflict messages (`.metadata.labels.team`)."""
    out = ""
    for elem in path:
        if elem == ".":
            continue
        kind, _, raw = elem.partition(":")
        if kind == "f":
            out += "." + raw
        elif kind == "k":
            keys = json.loads(raw)
            out += "[" + ",".join(f"{k}={json.dumps(v)}" for k, v in keys.items()) + "]"
        else:
            out += f"[={raw}]"
    return out
