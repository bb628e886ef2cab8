"""What the cluster sync reads off nodes and hosts: a node's name and system UUID, the trust
report payload it carries, what of it is trustplane's, Event ids, resourceVersion order, and the
index of enrolled hosts by the node name they gave at enrolment (:mod:`hub.clusters.sync`)."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime
from typing import Any, Final

from hub.clusters.labels import REPORT_ANNOTATION, TAINT_KEY, our_labels
from hub.store import ClusterHost, Host

ACTIVE_STATES: Final = frozenset({"enrolled"})


def rfc3339(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def node_name_of(node: dict[str, Any]) -> str:
    return str(node.get("metadata", {}).get("name") or "")


def system_uuid_of(node: dict[str, Any]) -> str:
    """The node's system UUID, lower case; anything but a UUID's characters (the kubelet of a
    compromised node writes this field) is dropped and the length bounded, since it goes into
    alert reasons and Events."""
    info = node.get("status", {}).get("nodeInfo") or {}
    text = str(info.get("systemUUID") or "").strip().lower()[:64]
    return "".join(c for c in text if c in UUID_CHARS)


UUID_CHARS: Final = frozenset("0123456789abcdef-")


def report_payload_of(annotation: str | None) -> dict[str, Any] | None:
    """The payload of the trust report a node carries (its signature is the hub's: checked by
    consumers, not here)."""
    if not annotation:
        return None
    parts = annotation.split(".")
    if len(parts) != 3:
        return None
    try:
        data = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def cluster_host_of(h: Host) -> ClusterHost:
    return ClusterHost(
        h.id, h.state, h.node_name, h.dmi_uuid, h.verdict, h.reasons, dict(h.tags), h.valid_until
    )


def event_id_for(meta: dict[str, Any], reason: str) -> str:
    """16 hex digits naming an Event: the node's uid and resourceVersion and the reason."""
    key = f"{meta.get('uid', '')}|{meta.get('resourceVersion', '')}|{reason}"
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def is_older(new: dict[str, Any], cached: dict[str, Any]) -> bool:
    """Whether ``new`` is an older version of the node than ``cached`` (resourceVersions are
    compared as numbers when both are, as etcd's revisions are; otherwise never older)."""
    a = str(new.get("metadata", {}).get("resourceVersion") or "")
    b = str(cached.get("metadata", {}).get("resourceVersion") or "")
    return a.isdigit() and b.isdigit() and int(a) < int(b)


def trustplane_fields(node: dict[str, Any]) -> tuple[object, ...]:
    """What of a node is trustplane's: our labels, annotation and taint."""
    annotations = node.get("metadata", {}).get("annotations") or {}
    taints = [t for t in node.get("spec", {}).get("taints") or [] if t.get("key") == TAINT_KEY]
    return (
        sorted(our_labels(node).items()),
        annotations.get(REPORT_ANNOTATION),
        [(t.get("effect"), t.get("value")) for t in taints],
    )


class HostIndex:
    """Enrolled hosts by the node name they gave at enrolment."""

    def __init__(self, hosts: list[ClusterHost]) -> None:
        self._by_node: dict[str, dict[str, ClusterHost]] = {}
        self._node_of: dict[str, str] = {}
        for host in hosts:
            self.put(host)

    def put(self, host: ClusterHost) -> None:
        self.remove(host.id)
        if host.state in ACTIVE_STATES and host.node_name:
            self._by_node.setdefault(host.node_name, {})[host.id] = host
            self._node_of[host.id] = host.node_name

    def remove(self, host_id: str) -> None:
        old = self._node_of.pop(host_id, None)
        if old is not None:
            self._by_node.get(old, {}).pop(host_id, None)

    def hosts(self, node: str) -> list[ClusterHost]:
        return list(self._by_node.get(node, {}).values())

    def node_of(self, host_id: str) -> str | None:
        return self._node_of.get(host_id)
