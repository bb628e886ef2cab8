"""The fake API server's state: nodes and events under one resourceVersion counter.

Like etcd behind a real API server, every write takes the next resourceVersion (shared by all
resources); a bounded history of node changes lets watches resume from a resourceVersion and
answers 410 Expired for one older than the history keeps. Writes keep managedFields the way
the API server's field manager does (see `fieldsets`): an update makes its manager own the
fields it changed and takes them from others; a server-side apply owns exactly what it applied,
conflicts (409) with other owners of a field whose value it changes unless forced, and removes
fields it applied before and leaves out now when no other manager owns them (`ownership`).
"""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import fieldsets as fs
from .objects import clone, now_rfc3339
from .ownership import (
    KUBECTL_MANAGER,
    Entry,
    drop,
    entries_of,
    scoped,
    take_over,
    update_last_applied,
)
from .patches import apply_merge
from .schema import decode_errors
from .selectors import FieldGetter
from .status import ApiError, already_exists, bad_request, conflict, invalid, not_found
from .validation import event_causes, validate_node

# NodeSystemInfo's fields have no omitempty: a node without a kubelet shows them empty
NODE_INFO_KEYS = (
    "machineID",
    "systemUUID",
    "bootID",
    "kernelVersion",
    "osImage",
    "containerRuntimeVersion",
    "kubeletVersion",
    "kubeProxyVersion",
    "operatingSystem",
    "architecture",
)
NOT_READY_TAINT = {"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}


def _str(obj: dict[str, Any], *path: str) -> str:
    node: Any = obj
    for part in path:
        if not isinstance(node, dict):
            return ""
        node = node.get(part)
    if node is None:
        return ""
    if isinstance(node, bool):
        return "true" if node else "false"
    return str(node)


NODE_FIELDS: dict[str, FieldGetter] = {
    "metadata.name": lambda o: _str(o, "metadata", "name"),
    "metadata.namespace": lambda o: "",
    "spec.unschedulable": lambda o: _str(o, "spec", "unschedulable") or "false",
}
EVENT_FIELDS: dict[str, FieldGetter] = {
    "metadata.name": lambda o: _str(o, "metadata", "name"),
    "metadata.namespace": lambda o: _str(o, "metadata", "namespace"),
    "involvedObject.kind": lambda o: _str(o, "involvedObject", "kind"),
    "involvedObject.namespace": lambda o: _str(o, "involvedObject", "namespace"),
    "involvedObject.name": lambda o: _str(o, "involvedObject", "name"),
    "involvedObject.uid": lambda o: _str(o, "involvedObject", "uid"),
    "involvedObject.apiVersion": lambda o: _str(o, "involvedObject", "apiVersion"),
    "involvedObject.resourceVersion": lambda o: _str(o, "involvedObject", "resourceVersion"),
    "involvedObject.fieldPath": lambda o: _str(o, "involvedObject", "fieldPath"),
    "reason": lambda o: _str(o, "reason"),
    "reportingComponent": lambda o: _str(o, "reportingComponent"),
    "source": lambda o: _str(o, "source", "component"),
    "type": lambda o: _str(o, "type"),
}


@dataclass
class WatchEvent:
    rv: int
    type: str  # ADDED, MODIFIED, DELETED
    obj: dict[str, Any]
    old: dict[str, Any] | None = None


@dataclass
class Store:
    history_size: int = 10000
    rv: int = 1
    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)
    events: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    history: deque[WatchEvent] = field(default_factory=deque)
    compacted_rv: int = 1
    watchers: set[asyncio.Queue[WatchEvent | None]] = field(default_factory=set)
    on_write: Callable[[str], None] | None = None

    # ---- resourceVersion, history, watchers -------------------------------------------------

    def _next_rv(self) -> str:
        self.rv += 1
        return str(self.rv)

    def _publish(self, kind: str, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
        # stored objects are never changed in place (every write builds a new one): share them
        ev = WatchEvent(self.rv, kind, obj, old)
        self.history.append(ev)
        while len(self.history) > self.history_size:
            dropped = self.history.popleft()
            self.compacted_rv = dropped.rv
        for q in self.watchers:
            q.put_nowait(ev)

    def compact(self) -> None:
        """Forget the node history (a test hook: older resourceVersions then get 410 Expired)."""
        self.history.clear()
        self.compacted_rv = self.rv

    def since(self, rv: int) -> list[WatchEvent]:
        if rv < self.compacted_rv:
            raise ApiError(410, "Expired", f"too old resource version: {rv} ({self.compacted_rv})")
        return [ev for ev in self.history if ev.rv > rv]

    # ---- nodes --------------------------------------------------------------------------------

    def get(self, name: str) -> dict[str, Any]:
        node = self.nodes.get(name)
        if node is None:
            raise not_found("nodes", name)
        return node

    def _check_body(self, body: Any, name: str | None) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise bad_request("the body of the request is not a JSON object")
        if body.get("kind", "Node") != "Node" or body.get("apiVersion", "v1") != "v1":
            raise bad_request(
                f"the API version in the data ({body.get('apiVersion')}) does not match the "
                "expected API version (v1)"
                if body.get("apiVersion", "v1") != "v1"
                else f'Node in version "v1" cannot be handled as a {body.get("kind")}'
            )
        problem = decode_errors(body)
        if problem is not None:
            raise bad_request(f'Node in version "v1" cannot be handled as a Node: {problem}')
        meta = body.get("metadata")
        if meta is None:
            body["metadata"] = meta = {}
        if name is not None and meta.get("name") not in (None, name):
            raise bad_request(
                f"the name of the object ({meta.get('name')}) does not match the name on the URL "
                f"({name})"
            )
        return body

    def _finish(self, node: dict[str, Any]) -> None:
        node["kind"] = "Node"
        node["apiVersion"] = "v1"
        meta = node["metadata"]
        for key in ("labels", "annotations"):
            if meta.get(key) == {}:
                del meta[key]
        if node.get("spec") is None:
            node["spec"] = {}
        status = node.get("status")
        if not isinstance(status, dict):
            node["status"] = status = {}
        status.setdefault("daemonEndpoints", {"kubeletEndpoint": {"Port": 0}})
        info = status.setdefault("nodeInfo", {})
        if isinstance(info, dict):
            for key in NODE_INFO_KEYS:
                info.setdefault(key, "")
        node["spec"] = {k: v for k, v in node["spec"].items() if v is not None}
        if node["spec"].get("taints") == []:
            del node["spec"]["taints"]
        causes = validate_node(node)
        if causes:
            raise invalid("Node", str(meta.get("name") or ""), causes)

    def create(self, body: Any, manager: str, dry_run: bool = False) -> dict[str, Any]:
        node: dict[str, Any] = clone(self._check_body(body, None))
        meta = node["metadata"]
        name = meta.get("name")
        if not name and isinstance(meta.get("generateName"), str):
            name = meta["generateName"] + uuid.uuid4().hex[:5]
            meta["name"] = name
        if isinstance(name, str) and name in self.nodes:
            raise already_exists("nodes", name)
        if meta.get("resourceVersion"):
            raise bad_request("resourceVersion should not be set on objects to be created")
        meta.pop("managedFields", None)
        owned = fs.fields_of(node)
        spec = node.setdefault("spec", {}) or {}
        node["spec"] = spec
        if isinstance(spec, dict):
            taints = spec.get("taints") or []
            if isinstance(taints, list) and not any(
                isinstance(t, dict) and t.get("key") == NOT_READY_TAINT["key"] for t in taints
            ):
                spec["taints"] = [*taints, dict(NOT_READY_TAINT)]
        self._finish(node)
        meta.update(uid=str(uuid.uuid4()), creationTimestamp=now_rfc3339())
        meta["managedFields"] = [Entry(manager, "Update", "v1", now_rfc3339(), owned).to_json()]
        if dry_run:
            meta["resourceVersion"] = ""
            return node
        meta["resourceVersion"] = self._next_rv()
        self.nodes[name] = node
        self._publish("ADDED", node, None)
        return node

    def _store(self, old: dict[str, Any], new: dict[str, Any], dry_run: bool) -> dict[str, Any]:
        for key in ("uid", "creationTimestamp", "name"):
            new["metadata"][key] = old["metadata"][key]
        if dry_run:
            return new
        if new == old:
            return old  # a no-op write keeps the resourceVersion, as the API server does
        new["metadata"]["resourceVersion"] = self._next_rv()
        self.nodes[old["metadata"]["name"]] = new
        self._publish("MODIFIED", new, old)
        return new

    def _managed_after_update(
        self, old: dict[str, Any], new: dict[str, Any], manager: str, subresource: str
    ) -> list[dict[str, Any]]:
        sent = new["metadata"].get("managedFields")
        base = old
        if isinstance(sent, list) and sent and sent != old["metadata"].get("managedFields"):
            base = {"metadata": {"managedFields": sent}}  # the client rewrote managedFields
        entries = entries_of(base)
        changed, removed = fs.changed_fields(old, new)
        gone = changed | removed
        for e in entries:
            e.fields = drop(e.fields, gone)
        mine = next(
            (
                e
                for e in entries
                if e.manager == manager and e.operation == "Update" and e.subresource == subresource
            ),
            None,
        )
        if changed:
            if mine is None:
                mine = Entry(manager, "Update", "v1", now_rfc3339(), set(), subresource)
                entries.append(mine)
            mine.fields |= changed
            mine.time = now_rfc3339()
        return [e.to_json() for e in entries if e.fields]

    def _precondition(self, old: dict[str, Any], new: dict[str, Any], name: str) -> None:
        rv = new["metadata"].get("resourceVersion")
        if rv and rv != old["metadata"]["resourceVersion"]:
            raise conflict("nodes", name)
        if new["metadata"].get("uid") not in (None, "", old["metadata"]["uid"]):
            raise conflict("nodes", name)

    def _write(
        self,
        name: str,
        body: Any,
        manager: str,
        subresource: str,
        dry_run: bool,
    ) -> dict[str, Any]:
        old = self.get(name)
        new: dict[str, Any] = clone(self._check_body(body, name))
        self._precondition(old, new, name)
        new["metadata"]["name"] = name
        _reset(old, new, subresource)
        self._finish(new)
        new["metadata"]["managedFields"] = self._managed_after_update(
            old, new, manager, subresource
        )
        return self._store(old, new, dry_run)

    def update(
        self, name: str, body: Any, manager: str, subresource: str = "", dry_run: bool = False
    ) -> dict[str, Any]:
        """PUT: optimistic concurrency on metadata.resourceVersion when the body has one; the
        main resource keeps the old status, the status subresource the old spec and metadata."""
        return self._write(name, body, manager, subresource, dry_run)

    def replace_patched(
        self, name: str, patched: Any, manager: str, subresource: str = "", dry_run: bool = False
    ) -> dict[str, Any]:
        """The result of a merge/strategic/JSON patch: a resourceVersion in it is a precondition."""
        return self._write(name, patched, manager, subresource, dry_run)

    def apply(
        self,
        name: str,
        config: Any,
        manager: str,
        force: bool,
        subresource: str = "",
        dry_run: bool = False,
    ) -> dict[str, Any]:
        """Server-side apply of `config` by `manager` (creates the node when it is missing).

        Fields the strategy resets (status on the main resource; all but status on the status
        subresource) are neither applied nor owned, as with the API server's reset fields.
        """
        config = self._check_body(clone(config), name)
        if "kind" not in config or "apiVersion" not in config:
            raise bad_request("apply requests need apiVersion and kind in the body")
        config["metadata"]["name"] = name
        old = self.nodes.get(name)
        if old is None:
            return self._apply_create(name, config, manager, subresource, dry_run)
        self._precondition(old, config, name)
        config = scoped(config, subresource, name)
        applied = fs.fields_of(config)
        entries = entries_of(old)
        me = next(
            (
                e
                for e in entries
                if e.manager == manager and e.operation == "Apply" and e.subresource == subresource
            ),
            None,
        )
        others = [e for e in entries if e is not me]
        take_over(old, config, applied, others, manager, force)
        new = apply_merge(clone(old), config)
        for path in (me.fields if me else set()) - applied:
            if not any(fs.covers(e.fields, path) for e in others):
                fs.remove_at(new, path)  # applied before, left out now, owned by nobody else
        fs.prune_empty(new)
        if manager == KUBECTL_MANAGER:
            update_last_applied(new, config)
        self._finish(new)
        # fields removed from the object by this apply are owned by nobody now
        changed, removed = fs.changed_fields(old, new)
        for e in others:
            e.fields = drop(e.fields, removed)
        mine = Entry(manager, "Apply", "v1", now_rfc3339(), applied, subresource)
        if me is not None and me.fields == applied and not changed and not removed:
            mine.time = me.time
        result = [e.to_json() for e in others if e.fields]
        index = entries.index(me) if me is not None else len(result)
        result.insert(min(index, len(result)), mine.to_json())
        new["metadata"]["managedFields"] = result
        return self._store(old, new, dry_run)

    def _apply_create(
        self, name: str, config: dict[str, Any], manager: str, subresource: str, dry_run: bool
    ) -> dict[str, Any]:
        if subresource:
            raise not_found("nodes", name)
        config.pop("status", None)
        created = self.create(dict(config.items()), manager, dry_run=dry_run)
        applied = fs.fields_of(config)
        created["metadata"]["managedFields"] = [
            Entry(manager, "Apply", "v1", now_rfc3339(), applied).to_json()
        ]
        return created

    def delete(
        self, name: str, dry_run: bool = False, preconditions: dict[str, str] | None = None
    ) -> dict[str, Any]:
        """Delete a node; DeleteOptions preconditions (uid, resourceVersion) must hold (409)."""
        node = self.get(name)
        meta = node["metadata"]
        for key, label in (("uid", "UID"), ("resourceVersion", "ResourceVersion")):
            wanted = (preconditions or {}).get(key)
            if wanted is not None and wanted != meta[key]:
                raise ApiError(
                    409,
                    "Conflict",
                    f'Operation cannot be fulfilled on nodes "{name}": Precondition failed: '
                    f"{label} in precondition: {wanted}, {label} in object meta: {meta[key]}",
                    {"name": name, "kind": "nodes"},
                )
        if dry_run:
            return node
        del self.nodes[name]
        self._next_rv()
        gone = clone(node)
        gone["metadata"]["resourceVersion"] = str(self.rv)
        self._publish("DELETED", gone, node)
        return node

    # ---- events -------------------------------------------------------------------------------

    def create_event(self, namespace: str, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise bad_request("the body of the request is not a JSON object")
        ev: dict[str, Any] = clone(body)
        meta = ev.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise bad_request("metadata must be an object")
        if not meta.get("name") and isinstance(meta.get("generateName"), str):
            meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
        name = meta.get("name")
        if meta.get("namespace") not in (None, namespace):
            raise bad_request(
                "the namespace of the provided object does not match the namespace sent on the "
                "request"
            )
        causes = event_causes(ev, namespace)
        if causes:
            raise invalid("Event", str(name or ""), causes)
        assert isinstance(name, str)
        if (namespace, name) in self.events:
            raise already_exists("events", name)
        meta.update(
            namespace=namespace,
            uid=str(uuid.uuid4()),
            creationTimestamp=now_rfc3339(),
            resourceVersion=self._next_rv(),
        )
        ev["kind"] = "Event"
        ev["apiVersion"] = "v1"
        self.events[(namespace, name)] = ev
        return ev

    def get_event(self, namespace: str, name: str) -> dict[str, Any]:
        ev = self.events.get((namespace, name))
        if ev is None:
            raise not_found("events", name)
        return ev


def _reset(old: dict[str, Any], new: dict[str, Any], subresource: str) -> None:
    """What the node strategies reset: status on the main resource; spec and metadata (but
    resourceVersion and managedFields) through the status subresource."""
    if subresource == "status":
        sent = new["metadata"]
        new["metadata"] = clone(old["metadata"])
        for key in ("resourceVersion", "managedFields"):
            if key in sent:
                new["metadata"][key] = sent[key]
            else:
                new["metadata"].pop(key, None)
        new["spec"] = clone(old.get("spec"))
    else:
        new["status"] = clone(old.get("status"))


def encode_continue(rv: int, after: str) -> str:
    raw = json.dumps({"v": "meta.k8s.io/v1", "rv": rv, "start": after + "\x00"})
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_continue(token: str) -> tuple[int, str]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = json.loads(raw)
        rv = int(data["rv"])
        start = str(data["start"])
    except (ValueError, KeyError, TypeError) as exc:
        raise bad_request(
            "continue key is not valid: incorrect encoded start resourceVersion"
        ) from exc
    return rv, start.rstrip("\x00")
