"""Patch bodies applied to Node objects: JSON merge patch (RFC 7386), strategic merge patch,
JSON patch (RFC 6902) and the structured merge of a server-side apply configuration.

Strategic merge follows the Node type's patch strategies: `status.conditions`,
`status.addresses` merged by `type`, `metadata.ownerReferences` by `uid`, `metadata.finalizers`
and `spec.podCIDRs` as sets, every other list (`spec.taints` among them) replaced whole; the
directives `$patch` (replace, delete, merge), `$setElementOrder/…`, `$retainKeys` and
`$deleteFromPrimitiveList/…` are understood.
"""

from __future__ import annotations

import copy
from typing import Any

from .fieldsets import _KEYED, _SETS, item_key
from .status import ApiError


class PatchError(ApiError):
    """A patch that cannot be applied (422, like the API server's "the server rejected...")."""

    def __init__(self, message: str) -> None:
        super().__init__(422, "Invalid", message)


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def strategic_merge_patch(target: Any, patch: Any, names: tuple[str, ...] = ()) -> Any:
    """The strategic merge patch of a Node (see the module docstring)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    directive = patch.get("$patch")
    if directive == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    if directive == "delete":
        return None
    if directive not in (None, "merge"):
        raise PatchError(f"Unknown patch type: {directive}")
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if key == "$patch" or key == "$retainKeys" or key.startswith("$setElementOrder/"):
            continue
        if key.startswith("$deleteFromPrimitiveList/"):
            field = key.split("/", 1)[1]
            if isinstance(result.get(field), list) and isinstance(value, list):
                result[field] = [v for v in result[field] if v not in value]
            continue
        sub = (*names, key)
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict):
            merged = strategic_merge_patch(result.get(key), value, sub)
            if merged is None:
                result.pop(key, None)
            else:
                result[key] = merged
        elif isinstance(value, list) and sub in _SETS:
            current = result.get(key)
            old: list[Any] = current if isinstance(current, list) else []
            result[key] = old + [v for v in value if v not in old]
        elif isinstance(value, list) and sub in _KEYED:
            result[key] = _merge_keyed(result.get(key), value, sub)
        else:
            result[key] = copy.deepcopy(value)
    return result


def _merge_keyed(target: Any, patch: list[Any], names: tuple[str, ...]) -> list[Any]:
    items = list(target) if isinstance(target, list) else []
    for entry in patch:
        if not isinstance(entry, dict):
            raise PatchError(f"unable to find merge key in {entry!r}")
        key = item_key(names, entry)
        index = next((i for i, it in enumerate(items) if item_key(names, it) == key), None)
        if entry.get("$patch") == "delete":
            if index is not None:
                del items[index]
            continue
        if index is None:
            items.append(strategic_merge_patch({}, entry, (*names, "[]")))
        else:
            items[index] = strategic_merge_patch(items[index], entry, (*names, "[]"))
    return items


def _pointer(path: Any) -> list[str]:
    if not isinstance(path, str) or (path and not path.startswith("/")):
        raise PatchError(f"invalid JSON pointer {path!r}")
    if path == "":
        return []
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _container(doc: Any, parts: list[str]) -> Any:
    node = doc
    for part in parts:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            raise PatchError(f"doc is missing path: /{'/'.join(parts)}")
    return node


def _get(doc: Any, parts: list[str]) -> Any:
    return _container(doc, parts)


def _remove(doc: Any, parts: list[str]) -> Any:
    if not parts:
        raise PatchError("cannot remove the whole document")
    parent = _container(doc, parts[:-1])
    last = parts[-1]
    if isinstance(parent, dict) and last in parent:
        return parent.pop(last)
    if isinstance(parent, list) and last.isdigit() and int(last) < len(parent):
        return parent.pop(int(last))
    raise PatchError(f"Unable to remove nonexistent key: {last}: missing value")


def _add(doc: Any, parts: list[str], value: Any, replace: bool) -> Any:
    if not parts:
        return copy.deepcopy(value)
    parent = _container(doc, parts[:-1])
    last = parts[-1]
    if isinstance(parent, dict):
        if replace and last not in parent:
            raise PatchError(
                f"replace operation does not apply: doc is missing key: /{'/'.join(parts)}"
            )
        parent[last] = copy.deepcopy(value)
    elif isinstance(parent, list):
        if last == "-" and not replace:
            parent.append(copy.deepcopy(value))
        elif last.isdigit() and int(last) <= len(parent) - (1 if replace else 0):
            if replace:
                parent[int(last)] = copy.deepcopy(value)
            else:
                parent.insert(int(last), copy.deepcopy(value))
        else:
            raise PatchError(f"index out of range: /{'/'.join(parts)}")
    else:
        raise PatchError(f"doc is missing path: /{'/'.join(parts)}")
    return doc


def json_patch(doc: Any, ops: Any) -> Any:
    """RFC 6902 on a copy of `doc`."""
    if not isinstance(ops, list):
        raise ApiError(
            400, "BadRequest", "json: cannot unmarshal object into Go value of type jsonpatch.Patch"
        )
    doc = copy.deepcopy(doc)
    for op in ops:
        if not isinstance(op, dict):
            raise PatchError("invalid JSON patch operation")
        kind = op.get("op")
        parts = _pointer(op.get("path"))
        if kind in ("add", "replace"):
            if "value" not in op:
                raise PatchError(f"{kind} operation has no value")
            doc = _add(doc, parts, op["value"], kind == "replace")
        elif kind == "remove":
            _remove(doc, parts)
        elif kind in ("move", "copy"):
            source = _pointer(op.get("from"))
            value = _remove(doc, source) if kind == "move" else copy.deepcopy(_get(doc, source))
            doc = _add(doc, parts, value, False)
        elif kind == "test":
            if _get(doc, parts) != op.get("value"):
                raise PatchError("testing value /" + "/".join(parts) + " failed: test failed")
        else:
            raise PatchError(f"Unexpected kind: {kind}")
    return doc


def apply_merge(live: Any, applied: Any, names: tuple[str, ...] = ()) -> Any:
    """Merge an apply configuration into the live object (structured merge, no removals)."""
    if not isinstance(applied, dict) or not isinstance(live, dict):
        if isinstance(applied, list) and isinstance(live, list) and names in _KEYED:
            return _apply_keyed(live, applied, names)
        if isinstance(applied, list) and isinstance(live, list) and names in _SETS:
            return list(live) + [v for v in applied if v not in live]
        return copy.deepcopy(applied)
    result = dict(live)
    for key, value in applied.items():
        result[key] = apply_merge(result.get(key), value, (*names, key))
    return result


def _apply_keyed(live: list[Any], applied: list[Any], names: tuple[str, ...]) -> list[Any]:
    items = list(live)
    for entry in applied:
        key = item_key(names, entry)
        index = next((i for i, it in enumerate(items) if item_key(names, it) == key), None)
        if index is None:
            items.append(copy.deepcopy(entry))
        else:
            items[index] = apply_merge(items[index], entry, (*names, "[]"))
    return items
