"""The aiohttp application and its lifecycle: TLS, authentication, routing, faults.

`FakeApiServer` owns a private directory (CA, serving and client certificates, kubeconfigs), the
`Store`, and an aiohttp runner on 127.0.0.1 that it can take down and bring back on the same
port (a test hook for "the cluster is down"). Requests are authenticated by a client
certificate signed by the fake's CA or by a bearer token it issued; anything else gets the
API server's 401 Status. Every authenticated request is counted by its Kubernetes verb.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import shutil
import ssl
import tempfile
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import TracebackType
from typing import Any

from aiohttp import web

from . import discovery
from .authorization import attributes, authorize
from .context import Faults
from .events import EventRoutes
from .nodes import NodeRoutes
from .pki import Authority
from .replies import (
    NAMESPACES,
    empty_list,
    error_response,
    free_port,
    json_response,
    namespace_object,
)
from .status import ApiError, not_found, unauthorized
from .store import Store

MAX_BODY = 3 * 1024 * 1024
ADMIN_USER = "kubernetes-admin"
ADMIN_GROUPS = ("system:masters",)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class FakeApiServer(NodeRoutes, EventRoutes):
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
        self.port = port or free_port()
        self.bookmark_interval = bookmark_interval
        self.abrupt_down = False
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
        self.grants: dict[str, list[dict[str, Any]]] = {}
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

    def grant(self, user: str, rules: list[dict[str, Any]]) -> None:
        """Restrict `user` to these RBAC rules (a ClusterRole's `rules`, bound cluster-wide);
        users never granted anything are cluster admins (see `authorization`)."""
        self.grants[user] = [dict(rule) for rule in rules]

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

    async def go_down(self, abrupt: bool = False) -> None:
        """Stop serving, keeping the state: new connections are refused; open watches end
        cleanly as in an API server's graceful shutdown, or with `abrupt` are cut mid-stream
        as when it crashes or the network fails."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        self.abrupt_down = abrupt
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
            user = self._user(request)
            if user is None:
                raise unauthorized()
            rules = self.grants.get(user)
            if rules is not None:
                watch = request.query.get("watch", "").lower() in ("1", "true")
                attrs = attributes(request.method, request.path, watch)
                if attrs is not None:
                    authorize(user, rules, attrs)
            return await handler(request)
        except ApiError as err:
            return error_response(err)
        except web.HTTPRequestEntityTooLarge:
            return error_response(
                ApiError(
                    413, "RequestEntityTooLarge", f"Request entity too large: limit is {MAX_BODY}"
                )
            )

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
                return json_response(simple[tuple(parts)])
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
            return await self._nodes(request, rest[1:], force_watch)
        if rest == ["events"] and method == "GET":
            return self._list_events(request, None)
        if rest[:1] == ["namespaces"] and len(rest) >= 2:
            ns = rest[1]
            if len(rest) == 2 and method == "GET":
                self._count("get", "namespaces")
                return json_response(namespace_object(ns))
            if ns not in NAMESPACES:
                raise not_found("namespaces", ns)
            if rest[2:3] == ["events"]:
                return await self._core_events(request, ns, rest[3:])
            if rest[2:3] == ["pods"] and len(rest) == 3 and method == "GET":
                self._count("list", "pods")
                return json_response(empty_list("PodList", self.store.rv))
        if rest == ["namespaces"] and method == "GET":
            self._count("list", "namespaces")
            items = [namespace_object(ns) for ns in NAMESPACES]
            return json_response({**empty_list("NamespaceList", self.store.rv), "items": items})
        if rest == ["pods"] and method == "GET":
            self._count("list", "pods")
            return json_response(empty_list("PodList", self.store.rv))
        raise ApiError(404, "NotFound", "the server could not find the requested resource", {})

    # ---- nodes --------------------------------------------------------------------------------
