"""managedFields bookkeeping for server-side apply and updates, as the API server's field
manager keeps it: entries per (manager, operation, subresource), conflicts (409 with
FieldManagerConflict causes), and kubectl's client-side to server-side apply upgrade (the
lastAppliedManager and lastAppliedUpdater of the API server)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from . import fieldsets as fs
from .objects import clone, now_rfc3339
from .status import ApiError


@dataclass
class Entry:
    """One managedFields entry: what one manager owns through one operation."""

    manager: str
    operation: str
    api_version: str
    time: str
    fields: fs.FieldSet
    subresource: str = ""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "manager": self.manager,
            "operation": self.operation,
            "apiVersion": self.api_version,
            "time": self.time,
            "fieldsType": "FieldsV1",
            "fieldsV1": fs.to_fields_v1(self.fields),
        }
        if self.subresource:
            out["subresource"] = self.subresource
        return out


def entries_of(obj: dict[str, Any]) -> list[Entry]:
    raw = obj.get("metadata", {}).get("managedFields") or []
    out = []
    for e in raw if isinstance(raw, list) else []:
        if not isinstance(e, dict) or (not e.get("manager") and not e.get("fieldsV1")):
            continue
        out.append(
            Entry(
                str(e.get("manager", "")),
                str(e.get("operation", "Update")),
                str(e.get("apiVersion", "v1")),
                str(e.get("time", now_rfc3339())),
                fs.from_fields_v1(e.get("fieldsV1")),
                str(e.get("subresource", "")),
            )
        )
    return out


def drop(fields: fs.FieldSet, paths: fs.FieldSet) -> fs.FieldSet:
    """`fields` without `paths` nor anything below or above one of them."""
    return {f for f in fields if not any(fs.covers({p}, f) for p in paths)}


def scoped(config: dict[str, Any], subresource: str, name: str) -> dict[str, Any]:
    """The part of an apply configuration the endpoint applies (status, or all but status)."""
    if subresource == "status":
        return {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": name},
            "status": config.get("status") or {},
        }
    config.pop("status", None)
    return config


def take_over(
    old: dict[str, Any],
    config: dict[str, Any],
    applied: fs.FieldSet,
    others: list[Entry],
    manager: str,
    force: bool,
) -> None:
    """Conflicts: fields this apply changes that other managers own. Refused (409) unless
    forced or forgiven; otherwise the others lose those fields."""
    conflicts: list[tuple[Entry, fs.Path]] = []
    for path in sorted(applied):
        if fs.value_at(old, path) == fs.value_at(config, path):
            continue  # the same value: shared ownership, no conflict
        conflicts += [(e, path) for e in others if fs.covers(e.fields, path)]
    if conflicts and not force and not forgiven(manager, old, conflicts):
        raise apply_conflict(conflicts)
    for e, path in conflicts:
        e.fields = drop(e.fields, {path})


KUBECTL_MANAGER = "kubectl"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def _last_applied(obj: dict[str, Any]) -> dict[str, Any] | None:
    raw = (obj["metadata"].get("annotations") or {}).get(LAST_APPLIED)
    try:
        value = json.loads(raw) if isinstance(raw, str) else None
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def forgiven(manager: str, old: dict[str, Any], conflicts: list[tuple[Entry, fs.Path]]) -> bool:
    """The API server's lastAppliedManager: server-side apply by the manager `kubectl` may
    take over, without force, fields a client-side apply set (those in the live object's
    last-applied-configuration annotation), so `kubectl apply --server-side` can follow
    `kubectl apply`."""
    if manager != KUBECTL_MANAGER:
        return False
    last = _last_applied(old)
    if last is None:
        return False
    allowed = fs.fields_of(last)
    return all(path in allowed for _e, path in conflicts)


def update_last_applied(new: dict[str, Any], config: dict[str, Any]) -> None:
    """The API server's lastAppliedUpdater: after server-side apply by `kubectl`, an existing
    last-applied-configuration annotation is rewritten to the applied configuration."""
    if LAST_APPLIED not in (new["metadata"].get("annotations") or {}):
        return
    applied = clone(config)
    annotations = applied.get("metadata", {}).get("annotations")
    if isinstance(annotations, dict):
        annotations.pop(LAST_APPLIED, None)
        if not annotations:
            del applied["metadata"]["annotations"]
    new["metadata"]["annotations"][LAST_APPLIED] = json.dumps(
        applied, separators=(",", ":"), sort_keys=True
    )


def apply_conflict(conflicts: list[tuple[Entry, fs.Path]]) -> ApiError:
    def who(e: Entry) -> str:
        shown = json.dumps(e.manager)
        if e.subresource:
            shown += f" with subresource {json.dumps(e.subresource)}"
        if e.operation == "Update":
            shown += f" using {e.api_version}"
        return shown

    causes = [
        {
            "reason": "FieldManagerConflict",
            "message": f"conflict with {who(e)}",
            "field": fs.render(p),
        }
        for e, p in conflicts
    ]
    if len(conflicts) == 1:
        e, p = conflicts[0]
        message = f"Apply failed with 1 conflict: conflict with {who(e)}: {fs.render(p)}"
    else:
        by: dict[str, list[str]] = {}
        for e, p in conflicts:
            by.setdefault(who(e), []).append(fs.render(p))
        lines = []
        for manager in sorted(by):
            lines.append(f"conflicts with {manager}")
            lines += [f"- {p}" for p in by[manager]]
        message = f"Apply failed with {len(conflicts)} conflicts: " + "\n".join(lines)
    return ApiError(409, "Conflict", message, {"causes": causes})
