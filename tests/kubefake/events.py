"""The events routes: core/v1 create, get and list (field selectors), and events.k8s.io/v1
create and list on the same stored objects, converted as the API server converts them."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from . import tables
from .context import RequestContext
from .replies import NAMESPACES, json_response, method_not_allowed, parse_int
from .selectors import fields_match, parse_field_selector
from .status import ApiError, not_found
from .store import EVENT_FIELDS, decode_continue, encode_continue


def _key(ev: dict[str, Any]) -> str:
    return f"{ev['metadata']['namespace']}/{ev['metadata']['name']}"


class EventRoutes(RequestContext):
    def _list_events(self, request: web.Request, namespace: str | None) -> web.Response:
        self._count("list", "events")
        fsel = parse_field_selector(request.query.get("fieldSelector", ""), EVENT_FIELDS)
        chosen = [
            ev
            for (ns, _name), ev in sorted(self.store.events.items())
            if (namespace is None or ns == namespace) and fields_match(fsel, ev)
        ]
        cont = request.query.get("continue", "")
        if cont:
            _rv, after = decode_continue(cont)
            chosen = [e for e in chosen if _key(e) > after]
        limit = parse_int(request.query.get("limit", "0"), "limit")
        meta: dict[str, Any] = {"resourceVersion": str(self.store.rv)}
        if limit > 0 and len(chosen) > limit:
            meta["continue"] = encode_continue(self.store.rv, _key(chosen[limit - 1]))
            meta["remainingItemCount"] = len(chosen) - limit
            chosen = chosen[:limit]
        if tables.wants_table(request.headers.get("Accept", "")):
            include = request.query.get("includeObject", "Metadata")
            table = tables.event_table(chosen, meta["resourceVersion"], include)
            table["metadata"] = meta
            return json_response(table)
        items = [{k: v for k, v in ev.items() if k not in ("kind", "apiVersion")} for ev in chosen]
        return json_response(
            {"kind": "EventList", "apiVersion": "v1", "metadata": meta, "items": items}
        )

    async def _core_events(
        self, request: web.Request, ns: str, rest: list[str]
    ) -> web.StreamResponse:
        method = request.method
        if not rest:
            if method == "GET":
                return self._list_events(request, ns)
            if method == "POST":
                self._count("create", "events")
                body = await self._json_body(request)
                if self._dry_run(request):
                    return json_response(body, 201)
                return json_response(self.store.create_event(ns, body), 201)
        elif len(rest) == 1 and method == "GET":
            self._count("get", "events")
            return json_response(self.store.get_event(ns, rest[0]))
        elif len(rest) == 1 and method == "DELETE":
            self._count("delete", "events")
            event = self.store.get_event(ns, rest[0])
            if not self._dry_run(request):
                del self.store.events[(ns, rest[0])]
            return json_response(
                {
                    "kind": "Status",
                    "apiVersion": "v1",
                    "metadata": {},
                    "status": "Success",
                    "details": {
                        "name": rest[0],
                        "kind": "events",
                        "uid": event["metadata"]["uid"],
                    },
                }
            )
        raise method_not_allowed(method)

    async def _events_v1(self, request: web.Request, rest: list[str]) -> web.StreamResponse:
        """events.k8s.io/v1, stored as core/v1 Events (the API server keeps one object)."""
        method = request.method
        if len(rest) == 3 and rest[0] == "namespaces" and rest[2] == "events":
            ns = rest[1]
            if ns not in NAMESPACES:
                raise not_found("namespaces", ns)
            if method == "POST":
                self._count("create", "events")
                body = await self._json_body(request)
                core = self.store.create_event(ns, events_v1_to_core(body))
                return json_response(core_to_events_v1(core), 201)
            if method == "GET":
                self._count("list", "events")
                items = [
                    core_to_events_v1(ev)
                    for (n, _), ev in sorted(self.store.events.items())
                    if n == ns
                ]
                return json_response(
                    {
                        "kind": "EventList",
                        "apiVersion": "events.k8s.io/v1",
                        "metadata": {"resourceVersion": str(self.store.rv)},
                        "items": items,
                    }
                )
        raise ApiError(404, "NotFound", "the server could not find the requested resource", {})


def events_v1_to_core(body: Any) -> Any:
    if not isinstance(body, dict):
        return body
    core = {
        k: v
        for k, v in body.items()
        if k
        not in (
            "regarding",
            "note",
            "reportingController",
            "deprecatedSource",
            "deprecatedFirstTimestamp",
            "deprecatedLastTimestamp",
            "deprecatedCount",
            "apiVersion",
            "kind",
        )
    }
    core["involvedObject"] = body.get("regarding")
    if "note" in body:
        core["message"] = body["note"]
    if "reportingController" in body:
        core["reportingComponent"] = body["reportingController"]
        core["source"] = {"component": body["reportingController"]}
    return core


def core_to_events_v1(core: dict[str, Any]) -> dict[str, Any]:
    out = {
        k: v
        for k, v in core.items()
        if k
        not in (
            "involvedObject",
            "message",
            "reportingComponent",
            "source",
            "firstTimestamp",
            "lastTimestamp",
            "count",
            "kind",
            "apiVersion",
        )
    }
    out.update(kind="Event", apiVersion="events.k8s.io/v1", regarding=core.get("involvedObject"))
    if "message" in core:
        out["note"] = core["message"]
    if core.get("reportingComponent"):
        out["reportingController"] = core["reportingComponent"]
    for old, new in (
        ("firstTimestamp", "deprecatedFirstTimestamp"),
        ("lastTimestamp", "deprecatedLastTimestamp"),
        ("count", "deprecatedCount"),
        ("source", "deprecatedSource"),
    ):
        if core.get(old) is not None:
            out[new] = core[old]
    return out
