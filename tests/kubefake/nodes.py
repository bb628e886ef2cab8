"""The nodes routes: get, list (Table for kubectl), create, update, patch, delete and watch."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from . import tables
from .context import RequestContext
from .objects import clone
from .patches import json_patch, merge_patch, strategic_merge_patch
from .replies import (
    decode_body,
    flag,
    json_response,
    method_not_allowed,
    parse_int,
    parse_rv,
    warn,
)
from .selectors import fields_match, labels_match, parse_field_selector, parse_label_selector
from .status import ApiError, bad_request, conflict, options_invalid, unsupported_media
from .store import NODE_FIELDS, decode_continue, encode_continue
from .watches import WatchRequest, serve_watch


class NodeRoutes(RequestContext):
    async def _nodes(
        self, request: web.Request, rest: list[str], force_watch: bool
    ) -> web.StreamResponse:
        """/api/v1/nodes[/NAME[/status]] (`rest` is what follows `nodes`)."""
        method = request.method
        if not rest:
            if method == "GET":
                if force_watch or flag(request, "watch"):
                    return await self._watch_nodes(request)
                return self._list_nodes(request)
            if method == "POST":
                return await self._create_node(request)
        elif len(rest) == 1:
            name = rest[0]
            if method == "GET":
                self._count("get", "nodes")
                return self._render(request, self.store.get(name))
            if method == "PUT":
                return await self._update_node(request, name)
            if method == "PATCH":
                return await self._patch_node(request, name)
            if method == "DELETE":
                return await self._delete_node(request, name)
        elif len(rest) == 2 and rest[1] == "status":
            name = rest[0]
            if method == "GET":
                self._count("get", "nodes")
                return json_response(self.store.get(name))
            if method == "PUT":
                return await self._update_node(request, name, "status")
            if method == "PATCH":
                return await self._patch_node(request, name, "status")
        raise method_not_allowed(method)

    async def _delete_node(self, request: web.Request, name: str) -> web.Response:
        self._count("delete", "nodes")
        preconditions = await self._delete_preconditions(request)
        self._inject(name)
        node = self.store.delete(name, self._dry_run(request), preconditions)
        return json_response(
            {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Success",
                "details": {"name": name, "kind": "nodes", "uid": node["metadata"]["uid"]},
            }
        )

    async def _delete_preconditions(self, request: web.Request) -> dict[str, str]:
        """DeleteOptions.preconditions (uid, resourceVersion) from a DELETE's body, if any."""
        raw = await self._body(request)
        if not raw.strip():
            return {}
        options = decode_body(raw, yaml_ok=False)
        if not isinstance(options, dict):
            raise bad_request("the body of a DELETE must be a DeleteOptions object")
        pre = options.get("preconditions") or {}
        if not isinstance(pre, dict):
            raise bad_request("preconditions must be an object")
        return {k: str(v) for k, v in pre.items() if k in ("uid", "resourceVersion") and v}

    def _render(self, request: web.Request, node: dict[str, Any]) -> web.Response:
        if tables.wants_table(request.headers.get("Accept", "")):
            include = request.query.get("includeObject", "Metadata")
            return json_response(
                tables.node_table([node], node["metadata"]["resourceVersion"], include)
            )
        return json_response(node)

    def _selected(self, request: web.Request) -> list[dict[str, Any]]:
        reqs = parse_label_selector(request.query.get("labelSelector", ""))
        fsel = parse_field_selector(request.query.get("fieldSelector", ""), NODE_FIELDS)
        return [
            n
            for _, n in sorted(self.store.nodes.items())
            if labels_match(reqs, n["metadata"].get("labels") or {}) and fields_match(fsel, n)
        ]

    def _list_nodes(self, request: web.Request) -> web.Response:
        self._count("list", "nodes")
        rv_param = request.query.get("resourceVersion", "")
        if rv_param not in ("", "0"):
            wanted = parse_rv(rv_param)
            if wanted > self.store.rv:
                raise ApiError(
                    504,
                    "Timeout",
                    f"Too large resource version: {wanted}, current: {self.store.rv}",
                    {
                        "causes": [
                            {
                                "reason": "ResourceVersionTooLarge",
                                "message": "Too large resource version",
                            }
                        ],
                        "retryAfterSeconds": 1,
                    },
                )
        items = self._selected(request)
        cont = request.query.get("continue", "")
        if cont:
            token_rv, after = decode_continue(cont)
            if token_rv < self.store.compacted_rv:
                raise ApiError(
                    410,
                    "Expired",
                    "The provided continue parameter is too old to display a consistent list "
                    "result. You can start a new list without the continue parameter, or use "
                    "the continue token in this response to retrieve the remainder of the "
                    "results. Continuing with the provided token results in an inconsistent "
                    "list - objects that were created, modified, or deleted between the time "
                    "the first chunk was returned and now may show up in the list.",
                )
            items = [n for n in items if n["metadata"]["name"] > after]
        limit = parse_int(request.query.get("limit", "0"), "limit")
        meta: dict[str, Any] = {"resourceVersion": str(self.store.rv)}
        if limit > 0 and len(items) > limit:
            meta["continue"] = encode_continue(self.store.rv, items[limit - 1]["metadata"]["name"])
            meta["remainingItemCount"] = len(items) - limit
            items = items[:limit]
        if tables.wants_table(request.headers.get("Accept", "")):
            table = tables.node_table(
                items, meta["resourceVersion"], request.query.get("includeObject", "Metadata")
            )
            table["metadata"] = meta
            return json_response(table)
        out = []
        for n in items:
            item = dict(n)
            item.pop("kind", None)
            item.pop("apiVersion", None)
            out.append(item)
        return json_response(
            {"kind": "NodeList", "apiVersion": "v1", "metadata": meta, "items": out}
        )

    async def _create_node(self, request: web.Request) -> web.Response:
        self._count("create", "nodes")
        body = await self._json_body(request)
        warnings = self._unknown_fields(request, body)
        node = self.store.create(
            body, self._manager(request, "CreateOptions"), self._dry_run(request)
        )
        return warn(json_response(node, 201), warnings)

    def _inject(self, name: str) -> None:
        code = self.faults.take(name)
        if code is None:
            return
        if code == 409:
            raise conflict("nodes", name)
        raise ApiError(
            code, "InternalError" if code >= 500 else "BadRequest", f"injected failure {code}"
        )

    async def _update_node(
        self, request: web.Request, name: str, subresource: str = ""
    ) -> web.Response:
        self._count("update", "nodes")
        body = await self._json_body(request)
        warnings = self._unknown_fields(request, body)
        self._inject(name)
        node = self.store.update(
            name, body, self._manager(request, "UpdateOptions"), subresource, self._dry_run(request)
        )
        return warn(json_response(node), warnings)

    async def _patch_node(
        self, request: web.Request, name: str, subresource: str = ""
    ) -> web.Response:
        self._count("patch", "nodes")
        ctype = request.content_type
        raw = await self._body(request)
        dry_run = self._dry_run(request)
        force = flag(request, "force")
        if ctype == "application/apply-patch+yaml":
            if "fieldManager" not in request.query:
                raise options_invalid(
                    "PatchOptions",
                    [
                        (
                            "FieldValueRequired",
                            "fieldManager",
                            "Required value: is required for apply patch",
                        )
                    ],
                )
            config = decode_body(raw, yaml_ok=True)
            self._unknown_fields(request, config, apply=True)
            self._inject(name)
            manager = self._manager(request, "PatchOptions")
            return json_response(
                self.store.apply(name, config, manager, force, subresource, dry_run)
            )
        if force:
            raise options_invalid(
                "PatchOptions",
                [
                    (
                        "FieldValueForbidden",
                        "force",
                        "Forbidden: may not be specified for non-apply patch",
                    )
                ],
            )
        patch = decode_body(raw, yaml_ok=False)
        manager = self._manager(request, "PatchOptions")
        self._inject(name)
        old = clone(self.store.get(name))
        if ctype in ("application/merge-patch+json", "application/strategic-merge-patch+json"):
            if not isinstance(patch, dict):
                raise bad_request(
                    "json: cannot unmarshal array into Go value of type map[string]interface {}"
                )
            if ctype == "application/merge-patch+json":
                patched = merge_patch(old, patch)
            else:
                patched = strategic_merge_patch(old, patch)
        elif ctype == "application/json-patch+json":
            patched = json_patch(old, patch)
        else:
            raise unsupported_media(ctype)
        # a resourceVersion left in the patched object is a precondition (the old one passes)
        warnings = self._unknown_fields(request, patched)
        node = self.store.replace_patched(name, patched, manager, subresource, dry_run)
        return warn(json_response(node), warnings)

    async def _watch_nodes(self, request: web.Request) -> web.StreamResponse:
        self._count("watch", "nodes")
        reqs = parse_label_selector(request.query.get("labelSelector", ""))
        fsel = parse_field_selector(request.query.get("fieldSelector", ""), NODE_FIELDS)
        rv_param = request.query.get("resourceVersion", "")
        if rv_param not in ("", "0"):
            parse_rv(rv_param)

        def matches(obj: dict[str, Any] | None) -> bool:
            return (
                obj is not None
                and labels_match(reqs, obj["metadata"].get("labels") or {})
                and fields_match(fsel, obj)
            )

        watch = WatchRequest(
            rv_param,
            matches,
            flag(request, "allowWatchBookmarks"),
            parse_int(request.query.get("timeoutSeconds", "0"), "timeoutSeconds"),
        )
        current = self._selected(request) if rv_param in ("", "0") else []
        return await serve_watch(
            request,
            self.store,
            watch,
            current,
            self.bookmark_interval,
            lambda: self.abrupt_down,
        )
