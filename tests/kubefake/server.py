"""The aiohttp application and its lifecycle: TLS, authentication, routing, faults.

`FakeApiServer` owns a private directory (CA, serving and client certificates, kubeconfigs), the
`Store`, and an aiohttp runner on 127.0.0.1 that it can take down and bring back on the same
port (a test hook for "the cluster is down"). Requests are authenticated by a client
certificate signed by the fake's CA or by a bearer token it issued; anything else gets the
API server's 401 Status. Every authenticated request is counted by its Kubernetes verb.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import secrets
import shutil
import socket
import ssl
import tempfile
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml
from aiohttp import web

from . import discovery, tables
from .patches import json_patch, merge_patch, strategic_merge_patch
from .pki import Authority
from .schema import prune_unknown
from .selectors import (
    fields_match,
    labels_match,
    parse_field_selector,
    parse_label_selector,
)
from .status import ApiError, bad_request, conflict, not_found, unauthorized, unsupported_media
from .store import EVENT_FIELDS, NODE_FIELDS, Store, WatchEvent, decode_continue, encode_continue

MAX_BODY = 3 * 1024 * 1024
NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
ADMIN_USER = "kubernetes-admin"
ADMIN_GROUPS = ("system:masters",)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Faults:
    """Test hooks: latency added to every request, and one-shot failures of writes to a node."""

    latency: float = 0.0
    fail_next: dict[str, list[int]] = field(default_factory=dict)

    def fail_next_write(self, node: str, code: int = 409, times: int = 1) -> None:
        """The next `times` PUT/PATCH requests on `node` fail with `code` (409 Conflict...)."""
        self.fail_next.setdefault(node, []).extend([code] * times)

    def take(self, node: str) -> int | None:
        pending = self.fail_next.get(node)
        if not pending:
            return None
        code = pending.pop(0)
        if not pending:
            del self.fail_next[node]
        return code


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=json.dumps(data, separators=(",", ":")).encode(),
        status=status,
        content_type="application/json",
    )


def _error(err: ApiError) -> web.Response:
    return _json(err.body(), err.code)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _flag(request: web.Request, name: str) -> bool:
    return request.query.get(name, "").lower() in ("1", "true")


class FakeApiServer:
    """A fake Kubernetes API server on 127.0.0.1 over HTTPS (see the package docstring).

    Use as `async with FakeApiServer() as api:`; `api.url`, `api.write_kubeconfig(path)`,
    `api.store` (nodes and events), `api.faults`, `api.requests` (a Counter by verb),
    `await api.go_down()` / `await api.come_up()`.
    """

    def __init__(
        self,
        port: int = 0,
        *,
        history_size: int = 10000,
        bookmark_interval: float = 1.0,
        tokens: dict[str, str] | None = None,
        directory: Path | None = None,
        verbose: bool = False,
    ) -> None:
        self.verbose = verbose
        self.port = port or _free_port()
        self.bookmark_interval = bookmark_interval
        self.store = Store(history_size=history_size)
        self.faults = Faults()
        self.requests: Counter[str] = Counter()
        self.resource_requests: Counter[tuple[str, str]] = Counter()
        self.request_log: deque[tuple[str, str, str]] = deque(maxlen=2000)
        self._own_dir = directory is None
        self.directory = directory or Path(tempfile.mkdtemp(prefix="kubefake-"))
        self.directory.chmod(0o700)
        self.authority = Authority(self.directory)
        self.serving = self.authority.issue("apiserver", "kube-apiserver", server=True)
        self.admin_cert = self.authority.issue("admin", ADMIN_USER, ADMIN_GROUPS)
        self.tokens: dict[str, str] = dict(tokens or {})
        self.admin_token = self.issue_token(ADMIN_USER)
        self._runner: web.AppRunner | None = None
        self._watches: set[asyncio.Task[Any]] = set()

    # ---- lifecycle ----------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def up(self) -> bool:
        return self._runner is not None

    def issue_token(self, user: str) -> str:
        """A new bearer token that authenticates as `user`."""
        token = secrets.token_urlsafe(32)
        self.tokens[token] = user
        return token

    def _ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(
            ssl.Purpose.CLIENT_AUTH, cafile=str(self.authority.ca_file)
        )
        ctx.load_cert_chain(str(self.serving.cert), str(self.serving.key))
        ctx.verify_mode = ssl.CERT_OPTIONAL
        return ctx

    def _app(self) -> web.Application:
        app = web.Application(
            client_max_size=MAX_BODY, middlewares=[self._middleware], handler_args={}
        )
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        return app

    async def come_up(self) -> None:
        """Start serving (again) on `self.port`."""
        if self._runner is not None:
            return
        runner = web.AppRunner(self._app(), access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(
            runner, "127.0.0.1", self.port, ssl_context=self._ssl_context(), reuse_address=True
        )
        await site.start()
        self._runner = runner

    async def go_down(self) -> None:
        """Stop serving: open watches end, new connections are refused, state is kept."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        for q in list(self.store.watchers):
            q.put_nowait(None)
        await runner.cleanup()

    async def __aenter__(self) -> FakeApiServer:
        await self.come_up()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.go_down()
        if self._own_dir:
            shutil.rmtree(self.directory, ignore_errors=True)

    def write_kubeconfig(
        self, path: Path | str, user: str = "cert", token: str | None = None
    ) -> Path:
        """A kubeconfig (0600) for this server: `user="cert"` (admin client certificate) or
        `"token"` (`token`, by default the admin's bearer token)."""
        path = Path(path)
        if user == "cert":
            creds = {
                "client-certificate": str(self.admin_cert.cert),
                "client-key": str(self.admin_cert.key),
            }
        elif user == "token":
            creds = {"token": token or self.admin_token}
        else:
            raise ValueError(f"user must be 'cert' or 'token', not {user!r}")
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "kubefake",
                    "cluster": {
                        "server": self.url,
                        "certificate-authority": str(self.authority.ca_file),
                    },
                }
            ],
            "users": [{"name": f"kubefake-{user}", "user": creds}],
            "contexts": [
                {
                    "name": "kubefake",
                    "context": {"cluster": "kubefake", "user": f"kubefake-{user}"},
                }
            ],
            "current-context": "kubefake",
            "preferences": {},
        }
        fd = path.open("w", encoding="utf-8")
        path.chmod(0o600)
        with fd:
            json.dump(config, fd, indent=1)
        return path

    # ---- request plumbing ---------------------------------------------------------------------

    def _user(self, request: web.Request) -> str | None:
        auth = request.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            return self.tokens.get(auth[7:].strip())
        if request.transport is None:
            return None
        peer = request.transport.get_extra_info("peercert")
        if isinstance(peer, dict):
            for rdn in peer.get("subject", ()):
                for key, value in rdn:
                    if key == "commonName":
                        return str(value)
        return None

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if self.faults.latency:
            await asyncio.sleep(self.faults.latency)
        self.request_log.append((request.method, request.path_qs, request.content_type))
        if self.verbose:
            print("kubefake:", request.method, request.path_qs, request.content_type, flush=True)
        try:
            if self._user(request) is None:
                raise unauthorized()
            return await handler(request)
        except ApiError as err:
            return _error(err)
        except web.HTTPRequestEntityTooLarge:
            return _error(
                ApiError(
                    413, "RequestEntityTooLarge", f"Request entity too large: limit is {MAX_BODY}"
                )
            )

    def _count(self, verb: str, resource: str) -> None:
        self.requests[verb] += 1
        self.resource_requests[(verb, resource)] += 1

    async def _body(self, request: web.Request) -> bytes:
        try:
            return await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise
        except (ConnectionError, asyncio.IncompleteReadError) as exc:
            raise bad_request("the request body could not be read") from exc

    async def _json_body(self, request: web.Request) -> Any:
        raw = await self._body(request)
        ctype = request.content_type
        if ctype not in ("application/json", "", "application/yaml"):
            raise unsupported_media(ctype)
        return _decode(raw, yaml_ok=ctype == "application/yaml")

    def _manager(self, request: web.Request) -> str:
        manager = request.query.get("fieldManager")
        if manager is None:
            agent = request.headers.get("User-Agent", "")
            manager = agent.split("/", 1)[0]
        if len(manager) > 128 or any(not ch.isprintable() for ch in manager):
            raise ApiError(
                422,
                "Invalid",
                "fieldManager: Too long: must have at most 128 bytes"
                if len(manager) > 128
                else "fieldManager: Invalid value: must only contain printable characters",
            )
        return manager

    def _unknown_fields(self, request: web.Request, body: Any, apply: bool = False) -> list[str]:
        """Drop unknown fields as the API server's decoder does; refuse them when Strict."""
        mode = request.query.get("fieldValidation", "Warn")
        if mode not in ("Ignore", "Warn", "Strict"):
            raise bad_request(
                f'fieldValidation: Unsupported value: "{mode[:64]}": supported values: '
                '"Ignore", "Warn", "Strict"'
            )
        unknown = prune_unknown(body)
        if unknown and apply:
            raise bad_request(
                "failed to create typed patch object: "
                + ", ".join(f".{u}: field not declared in schema" for u in unknown)
            )
        if unknown and mode == "Strict":
            shown = ", ".join(f'unknown field "{u}"' for u in unknown)
            raise bad_request(
                f'Node in version "v1" cannot be handled as a Node: strict decoding error: {shown}'
            )
        return unknown if mode == "Warn" else []

    def _dry_run(self, request: web.Request) -> bool:
        values = request.query.getall("dryRun", [])
        for value in values:
            if value != "All":
                raise bad_request(f'dryRun: Unsupported value: "{value}": supported values: "All"')
        return bool(values)

    # ---- routing ------------------------------------------------------------------------------

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        parts = [p for p in request.path.split("/") if p]
        method = request.method
        address = f"127.0.0.1:{self.port}"
        if method == "GET":
            simple: dict[tuple[str, ...], Any] = {
                ("version",): discovery.VERSION,
                ("api",): discovery.api_versions(address),
                ("api", "v1"): discovery.core_v1(),
                ("apis",): discovery.api_groups(address),
                ("apis", "events.k8s.io", "v1"): discovery.events_v1(),
            }
            if tuple(parts) in simple:
                self._count("get", "discovery")
                return _json(simple[tuple(parts)])
            if parts == ["openapi", "v2"]:
                self._count("get", "openapi")
                return web.Response(
                    body=discovery.openapi_v2_protobuf(),
                    content_type="application/com.github.proto-openapi.spec.v2.v1.0+protobuf",
                )
            if parts == ["healthz"] or parts == ["readyz"] or parts == ["livez"]:
                return web.Response(text="ok")
        if parts[:2] == ["api", "v1"]:
            rest = parts[2:]
            if rest[:1] == ["watch"] and method == "GET":
                return await self._core(request, rest[1:], force_watch=True)
            return await self._core(request, rest)
        if parts[:3] == ["apis", "coordination.k8s.io", "v1"] and len(parts) == 7:
            self._count("get", "leases")
            raise ApiError(
                404,
                "NotFound",
                f'leases.coordination.k8s.io "{parts[6]}" not found',
                {"name": parts[6], "group": "coordination.k8s.io", "kind": "leases"},
            )
        if parts[:3] == ["apis", "events.k8s.io", "v1"]:
            return await self._events_v1(request, parts[3:])
        raise ApiError(404, "NotFound", "the server could not find the requested resource", {})

    async def _core(
        self, request: web.Request, rest: list[str], force_watch: bool = False
    ) -> web.StreamResponse:
        method = request.method
        if rest[:1] == ["nodes"]:
            if len(rest) == 1:
                if method == "GET":
                    if force_watch or _flag(request, "watch"):
                        return await self._watch_nodes(request)
                    return self._list_nodes(request)
                if method == "POST":
                    return await self._create_node(request)
            elif len(rest) == 2:
                name = rest[1]
                if method == "GET":
                    self._count("get", "nodes")
                    return self._render(request, self.store.get(name))
                if method == "PUT":
                    return await self._update_node(request, name)
                if method == "PATCH":
                    return await self._patch_node(request, name)
                if method == "DELETE":
                    self._count("delete", "nodes")
                    node = self.store.delete(name, self._dry_run(request))
                    return _json(
                        {
                            "kind": "Status",
                            "apiVersion": "v1",
                            "metadata": {},
                            "status": "Success",
                            "details": {
                                "name": name,
                                "kind": "nodes",
                                "uid": node["metadata"]["uid"],
                            },
                        }
                    )
            raise _method_not_allowed(method)
        if rest == ["events"] and method == "GET":
            return self._list_events(request, None)
        if rest[:1] == ["namespaces"] and len(rest) >= 2:
            ns = rest[1]
            if len(rest) == 2 and method == "GET":
                self._count("get", "namespaces")
                return _json(_namespace(ns))
            if ns not in NAMESPACES:
                raise not_found("namespaces", ns)
            if rest[2:3] == ["events"]:
                return await self._core_events(request, ns, rest[3:])
            if rest[2:3] == ["pods"] and len(rest) == 3 and method == "GET":
                self._count("list", "pods")
                return _json(_empty_list("PodList", self.store.rv))
        if rest == ["namespaces"] and method == "GET":
            self._count("list", "namespaces")
            items = [_namespace(ns) for ns in NAMESPACES]
            return _json({**_empty_list("NamespaceList", self.store.rv), "items": items})
        if rest == ["pods"] and method == "GET":
            self._count("list", "pods")
            return _json(_empty_list("PodList", self.store.rv))
        raise ApiError(404, "NotFound", "the server could not find the requested resource", {})

    # ---- nodes --------------------------------------------------------------------------------

    def _render(self, request: web.Request, node: dict[str, Any]) -> web.Response:
        if tables.wants_table(request.headers.get("Accept", "")):
            include = request.query.get("includeObject", "Metadata")
            return _json(tables.node_table([node], node["metadata"]["resourceVersion"], include))
        return _json(node)

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
            wanted = _parse_rv(rv_param)
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
            _rv, after = decode_continue(cont)
            items = [n for n in items if n["metadata"]["name"] > after]
        limit = _parse_int(request.query.get("limit", "0"), "limit")
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
            return _json(table)
        out = []
        for n in items:
            item = dict(n)
            item.pop("kind", None)
            item.pop("apiVersion", None)
            out.append(item)
        return _json({"kind": "NodeList", "apiVersion": "v1", "metadata": meta, "items": out})

    async def _create_node(self, request: web.Request) -> web.Response:
        self._count("create", "nodes")
        body = await self._json_body(request)
        warnings = self._unknown_fields(request, body)
        node = self.store.create(body, self._manager(request), self._dry_run(request))
        return _warn(_json(node, 201), warnings)

    def _inject(self, name: str) -> None:
        code = self.faults.take(name)
        if code is None:
            return
        if code == 409:
            raise conflict("nodes", name)
        raise ApiError(
            code, "InternalError" if code >= 500 else "BadRequest", f"injected failure {code}"
        )

    async def _update_node(self, request: web.Request, name: str) -> web.Response:
        self._count("update", "nodes")
        body = await self._json_body(request)
        warnings = self._unknown_fields(request, body)
        self._inject(name)
        node = self.store.update(name, body, self._manager(request), self._dry_run(request))
        return _warn(_json(node), warnings)

    async def _patch_node(self, request: web.Request, name: str) -> web.Response:
        self._count("patch", "nodes")
        ctype = request.content_type
        raw = await self._body(request)
        dry_run = self._dry_run(request)
        force = _flag(request, "force")
        if ctype == "application/apply-patch+yaml":
            if "fieldManager" not in request.query:
                raise bad_request(
                    "PATCH /api/v1/nodes: fieldManager is required for apply requests"
                )
            config = _decode(raw, yaml_ok=True)
            self._unknown_fields(request, config, apply=True)
            self._inject(name)
            return _json(self.store.apply(name, config, self._manager(request), force, dry_run))
        if force:
            raise bad_request(
                "force: Invalid value: true: may not be specified for non-apply patch"
            )
        patch = _decode(raw, yaml_ok=False)
        manager = self._manager(request)
        self._inject(name)
        old = copy.deepcopy(self.store.get(name))
        if ctype == "application/merge-patch+json":
            if not isinstance(patch, dict):
                raise bad_request(
                    "json: cannot unmarshal into Go value of type map[string]interface {}"
                )
            patched = merge_patch(old, patch)
        elif ctype == "application/strategic-merge-patch+json":
            if not isinstance(patch, dict):
                raise bad_request(
                    "json: cannot unmarshal into Go value of type map[string]interface {}"
                )
            patched = strategic_merge_patch(old, patch)
        elif ctype == "application/json-patch+json":
            patched = json_patch(old, patch)
        else:
            raise unsupported_media(ctype)
        if isinstance(patched, dict) and isinstance(patched.get("metadata"), dict):
            meta = patched["metadata"]
            if (
                meta.get("resourceVersion") == old["metadata"]["resourceVersion"]
                and not (
                    isinstance(patch, dict)
                    and isinstance(patch.get("metadata"), dict)
                    and "resourceVersion" in patch["metadata"]
                )
                and ctype != "application/json-patch+json"
            ) or (
                ctype == "application/json-patch+json"
                and meta.get("resourceVersion") == old["metadata"]["resourceVersion"]
            ):
                meta.pop("resourceVersion")
        warnings = self._unknown_fields(request, patched)
        return _warn(_json(self.store.replace_patched(name, patched, manager, dry_run)), warnings)

    async def _watch_nodes(self, request: web.Request) -> web.StreamResponse:
        self._count("watch", "nodes")
        reqs = parse_label_selector(request.query.get("labelSelector", ""))
        fsel = parse_field_selector(request.query.get("fieldSelector", ""), NODE_FIELDS)
        bookmarks = _flag(request, "allowWatchBookmarks")
        rv_param = request.query.get("resourceVersion", "")
        timeout = _parse_int(request.query.get("timeoutSeconds", "0"), "timeoutSeconds")

        def matches(obj: dict[str, Any] | None) -> bool:
            return (
                obj is not None
                and labels_match(reqs, obj["metadata"].get("labels") or {})
                and fields_match(fsel, obj)
            )

        queue: asyncio.Queue[WatchEvent | None] = asyncio.Queue()
        self.store.watchers.add(queue)
        try:
            backlog: list[tuple[str, dict[str, Any]]] = []
            expired: ApiError | None = None
            if rv_param in ("", "0"):
                backlog = [("ADDED", n) for n in self._selected(request)]
                last = self.store.rv
            else:
                last = _parse_rv(rv_param)
                try:
                    events = self.store.since(last)
                except ApiError as err:
                    expired = err
                    events = []
                for ev in events:
                    shown = _filter(ev, matches)
                    if shown:
                        backlog.append(shown)
                    last = ev.rv
            response = web.StreamResponse(headers={"Content-Type": "application/json"})
            response.enable_chunked_encoding()
            await response.prepare(request)
            if expired is not None:
                await _send(response, "ERROR", expired.body())
                return response
            for kind, obj in backlog:
                await _send(response, kind, obj)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout if timeout > 0 else None
            while True:
                wait = self.bookmark_interval if bookmarks else 3600.0
                if deadline is not None:
                    wait = min(wait, deadline - loop.time())
                    if wait <= 0:
                        break
                try:
                    ev = await asyncio.wait_for(queue.get(), wait)
                except TimeoutError:
                    if bookmarks and (deadline is None or loop.time() < deadline):
                        await _send(
                            response,
                            "BOOKMARK",
                            {
                                "kind": "Node",
                                "apiVersion": "v1",
                                "metadata": {
                                    "resourceVersion": str(self.store.rv),
                                    "creationTimestamp": None,
                                },
                            },
                        )
                    continue
                if ev is None:
                    break
                if ev.rv <= last:
                    continue
                last = ev.rv
                shown = _filter(ev, matches)
                if shown:
                    await _send(response, *shown)
            with contextlib.suppress(ConnectionError, RuntimeError):
                await response.write_eof()
            return response
        except (ConnectionError, asyncio.CancelledError):
            raise
        finally:
            self.store.watchers.discard(queue)

    # ---- events -------------------------------------------------------------------------------

    def _list_events(self, request: web.Request, namespace: str | None) -> web.Response:
        self._count("list", "events")
        fsel = parse_field_selector(request.query.get("fieldSelector", ""), EVENT_FIELDS)
        items = [
            {k: v for k, v in ev.items() if k not in ("kind", "apiVersion")}
            for (ns, _name), ev in sorted(self.store.events.items())
            if (namespace is None or ns == namespace) and fields_match(fsel, ev)
        ]
        limit = _parse_int(request.query.get("limit", "0"), "limit")
        meta: dict[str, Any] = {"resourceVersion": str(self.store.rv)}
        if limit > 0 and len(items) > limit:
            items = items[:limit]
        return _json({"kind": "EventList", "apiVersion": "v1", "metadata": meta, "items": items})

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
                    return _json(body, 201)
                return _json(self.store.create_event(ns, body), 201)
        elif len(rest) == 1 and method == "GET":
            self._count("get", "events")
            return _json(self.store.get_event(ns, rest[0]))
        raise _method_not_allowed(method)

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
                core = self.store.create_event(ns, _events_v1_to_core(body))
                return _json(_core_to_events_v1(core), 201)
            if method == "GET":
                self._count("list", "events")
                items = [
                    _core_to_events_v1(ev)
                    for (n, _), ev in sorted(self.store.events.items())
                    if n == ns
                ]
                return _json(
                    {
                        "kind": "EventList",
                        "apiVersion": "events.k8s.io/v1",
                        "metadata": {"resourceVersion": str(self.store.rv)},
                        "items": items,
                    }
                )
        raise ApiError(404, "NotFound", "the server could not find the requested resource", {})


def _warn(response: web.Response, unknown: list[str]) -> web.Response:
    for u in unknown:
        response.headers.add("Warning", f'299 - "unknown field \\"{u}\\""')
    return response


def _method_not_allowed(method: str) -> ApiError:
    return ApiError(
        405,
        "MethodNotAllowed",
        f"the server does not allow this method on the requested resource ({method})",
        {},
    )


def _namespace(ns: str) -> dict[str, Any]:
    if ns not in NAMESPACES:
        raise not_found("namespaces", ns)
    return {
        "kind": "Namespace",
        "apiVersion": "v1",
        "metadata": {"name": ns, "labels": {"kubernetes.io/metadata.name": ns}},
        "spec": {"finalizers": ["kubernetes"]},
        "status": {"phase": "Active"},
    }


def _empty_list(kind: str, rv: int) -> dict[str, Any]:
    return {"kind": kind, "apiVersion": "v1", "metadata": {"resourceVersion": str(rv)}, "items": []}


def _parse_int(text: str, name: str) -> int:
    if not text.isdigit() or len(text) > 18:
        raise bad_request(
            f"{name}: Invalid value: {json.dumps(text)}: must be a non-negative integer"
        )
    return int(text)


def _parse_rv(text: str) -> int:
    if not text.isdigit() or len(text) > 18:
        raise bad_request(
            f'invalid resource version "{text}"' if len(text) <= 64 else "invalid resource version"
        )
    return int(text)


def _decode(raw: bytes, yaml_ok: bool) -> Any:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise bad_request("the request body is not valid UTF-8") from exc
    try:
        return json.loads(text)
    except ValueError:
        if not yaml_ok:
            raise bad_request(
                "couldn't get version/kind; json parse error: invalid character in the request body"
            ) from None
    try:
        tokens = list(yaml.scan(text))
    except yaml.YAMLError as exc:
        raise bad_request(f"error converting YAML to JSON: {exc.__class__.__name__}") from exc
    if sum(isinstance(t, yaml.AliasToken) for t in tokens) > 100:
        raise bad_request("error converting YAML to JSON: too many aliases")
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise bad_request(f"error converting YAML to JSON: {exc.__class__.__name__}") from exc


def _filter(
    ev: WatchEvent, matches: Callable[[dict[str, Any] | None], bool]
) -> tuple[str, dict[str, Any]] | None:
    """The event a watch with selectors sees: objects moving out of the selection are DELETED."""
    now, before = matches(ev.obj), matches(ev.old)
    if ev.type == "ADDED":
        return ("ADDED", ev.obj) if now else None
    if ev.type == "DELETED":
        return ("DELETED", ev.obj) if before else None
    if now and before:
        return ("MODIFIED", ev.obj)
    if now:
        return ("ADDED", ev.obj)
    if before:
        gone = copy.deepcopy(ev.old) if ev.old is not None else copy.deepcopy(ev.obj)
        gone["metadata"]["resourceVersion"] = ev.obj["metadata"]["resourceVersion"]
        return ("DELETED", gone)
    return None


async def _send(response: web.StreamResponse, kind: str, obj: dict[str, Any]) -> None:
    line = json.dumps({"type": kind, "object": obj}, separators=(",", ":")) + "\n"
    await response.write(line.encode())


def _events_v1_to_core(body: Any) -> Any:
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


def _core_to_events_v1(core: dict[str, Any]) -> dict[str, Any]:
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
