"""meta.k8s.io/v1 Table renderings of nodes, as `kubectl get nodes` asks for them.

Columns and cell texts follow the API server's node printer: NAME, STATUS (the Ready
condition: Ready, NotReady or Unknown when the node has none, then `,SchedulingDisabled` when
cordoned), ROLES (from `node-role.kubernetes.io/<role>` labels, `<none>` without), AGE and
VERSION (the kubelet's, empty here since no kubelet runs).
"""

from __future__ import annotations

import datetime
from typing import Any

_COLUMNS = [
    ("Name", "string", "name", 0),
    ("Status", "string", "", 0),
    ("Roles", "string", "", 0),
    ("Age", "string", "", 0),
    ("Version", "string", "", 0),
    ("Internal-IP", "string", "", 1),
    ("External-IP", "string", "", 1),
    ("OS-Image", "string", "", 1),
    ("Kernel-Version", "string", "", 1),
    ("Container-Runtime", "string", "", 1),
]


def _age(created: str) -> str:
    try:
        then = datetime.datetime.strptime(created, "%Y-%m-%dT%H:%M:%SZ").replace(
            tzinfo=datetime.UTC
        )
    except ValueError:
        return "<unknown>"
    seconds = int((datetime.datetime.now(datetime.UTC) - then).total_seconds())
    if seconds < 120:
        return f"{max(seconds, 0)}s"
    if seconds < 600:
        return f"{seconds // 60}m{seconds % 60}s" if seconds % 60 else f"{seconds // 60}m"
    if seconds < 3 * 3600:
        return f"{seconds // 60}m"
    if seconds < 8 * 3600:
        return f"{seconds // 3600}h{(seconds % 3600) // 60}m"
    if seconds < 48 * 3600:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"


def node_status(node: dict[str, Any]) -> str:
    conditions = (node.get("status") or {}).get("conditions") or []
    ready = next((c for c in conditions if c.get("type") == "Ready"), None)
    if ready is None:
        text = "Unknown"
    elif ready.get("status") == "True":
        text = "Ready"
    else:
        text = "NotReady"
    if (node.get("spec") or {}).get("unschedulable"):
        text += ",SchedulingDisabled"
    return text


def _roles(labels: dict[str, str]) -> str:
    roles = sorted(
        k.split("/", 1)[1]
        for k in labels
        if k.startswith("node-role.kubernetes.io/") and k.split("/", 1)[1]
    )
    roles += sorted(v for k, v in labels.items() if k == "kubernetes.io/role" and v)
    return ",".join(roles) if roles else "<none>"


def _address(node: dict[str, Any], kind: str) -> str:
    for a in (node.get("status") or {}).get("addresses") or []:
        if a.get("type") == kind:
            return str(a.get("address", ""))
    return "<none>"


def node_table(nodes: list[dict[str, Any]], rv: str, include: str) -> dict[str, Any]:
    rows = []
    for node in nodes:
        meta = node["metadata"]
        info = (node.get("status") or {}).get("nodeInfo") or {}
        cells = [
            meta["name"],
            node_status(node),
            _roles(meta.get("labels") or {}),
            _age(meta.get("creationTimestamp", "")),
            info.get("kubeletVersion", ""),
            _address(node, "InternalIP"),
            _address(node, "ExternalIP"),
            info.get("osImage") or "<unknown>",
            info.get("kernelVersion") or "<unknown>",
            info.get("containerRuntimeVersion") or "<unknown>",
        ]
        row: dict[str, Any] = {"cells": cells}
        if include == "Object":
            row["object"] = node
        elif include != "None":
            row["object"] = {
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": meta,
            }
        rows.append(row)
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": rv},
        "columnDefinitions": [
            {"name": n, "type": t, "format": f, "description": "", "priority": p}
            for n, t, f, p in _COLUMNS
        ],
        "rows": rows,
    }


_EVENT_COLUMNS = [
    ("Last Seen", "string", "", 0),
    ("Type", "string", "", 0),
    ("Reason", "string", "", 0),
    ("Object", "string", "", 0),
    ("Subobject", "string", "", 1),
    ("Source", "string", "", 1),
    ("Message", "string", "", 0),
    ("First Seen", "string", "", 1),
    ("Count", "integer", "", 1),
    ("Name", "string", "name", 1),
]


def _seen(stamp: Any) -> str:
    return _age(stamp) if isinstance(stamp, str) and stamp else "<unknown>"


def event_table(events: list[dict[str, Any]], rv: str, include: str) -> dict[str, Any]:
    """core/v1 Events as the API server's event printer renders them (`kubectl get events`)."""
    rows = []
    for ev in events:
        involved = ev.get("involvedObject") or {}
        source = ev.get("source") or {}
        last = ev.get("lastTimestamp") or ev.get("eventTime") or ""
        if isinstance(last, str) and "." in last:
            last = last.split(".")[0] + "Z"
        first = ev.get("firstTimestamp") or last
        cells = [
            _seen(last),
            ev.get("type", ""),
            ev.get("reason", ""),
            f"{str(involved.get('kind', '')).lower()}/{involved.get('name', '')}",
            involved.get("fieldPath", ""),
            ", ".join(v for v in (source.get("component", ""), source.get("host", "")) if v),
            str(ev.get("message", "")).strip(),
            _seen(first),
            int(ev.get("count") or 1),
            ev["metadata"]["name"],
        ]
        row: dict[str, Any] = {"cells": cells}
        if include == "Object":
            row["object"] = ev
        elif include != "None":
            row["object"] = {
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": ev["metadata"],
            }
        rows.append(row)
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": rv},
        "columnDefinitions": [
            {"name": n, "type": t, "format": f, "description": "", "priority": p}
            for n, t, f, p in _EVENT_COLUMNS
        ],
        "rows": rows,
    }


def wants_table(accept: str) -> bool:
    first = accept.split(",", maxsplit=1)[0]
    return "as=Table" in first
