"""Who is calling: bearer tokens with roles for people and pipelines, client certificates for
agents, and the middleware that enforces each route's access rule.

Every handler declares its rule with one of the decorators (:func:`public`, :func:`enrollment`,
:func:`agent`, :func:`role`); a handler without one is refused to everybody (closed by default).
Tokens are looked up by their SHA-256 and the stored hash is compared in constant time. An
agent's identity is its client certificate's subject CN (the host id), verified by TLS against
the hub CA; the host must still be enrolled.
"""

from __future__ import annotations

import hmac
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal, TypeVar

from aiohttp import web
from aiohttp.typedefs import Middleware

from hub.errors import ApiError, Handler
from hub.state import CLOCK as CLOCK_KEY
from hub.statedir import token_hash
from hub.store import Host, Store

Access = Literal["public", "enrollment", "agent", "viewer", "pipeline", "admin"]
ACCESS_ATTR: Final = "__trustplane_access__"

# which token roles satisfy a route's rule
_ROLE_GRANTS: Final[dict[str, frozenset[str]]] = {
    "viewer": frozenset({"viewer", "admin"}),
    "pipeline": frozenset({"pipeline", "admin"}),
    "admin": frozenset({"admin"}),
}

H = TypeVar("H", bound=Handler)


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller: a token holder (``role``) or an agent (``host_id``)."""

    kind: Literal["anonymous", "token", "agent"]
    name: str = ""
    role: str = ""
    host_id: str = ""


ANONYMOUS: Final = Principal("anonymous")
PRINCIPAL_KEY: Final = web.RequestKey("trustplane_principal", Principal)
# an agent's host as the middleware read it (handlers need not fetch it again), without its
# rule_results (Store.get_host(with_rules=False))
AGENT_HOST_KEY: Final = web.RequestKey("trustplane_agent_host", Host)


def _access(rule: Access) -> Callable[[H], H]:
    def mark(handler: H) -> H:
        setattr(handler, ACCESS_ATTR, rule)
        return handler

    return mark


def public(handler: H) -> H:
    """Anyone (only ``/health``)."""
    return _access("public")(handler)


def enrollment(handler: H) -> H:
    """A new agent without a certificate (the route bounds and rate-limits itself)."""
    return _access("enrollment")(handler)


def agent(handler: H) -> H:
    """An enrolled agent with its client certificate."""
    return _access("agent")(handler)


def role(rule: Literal["viewer", "pipeline", "admin"]) -> Callable[[H], H]:
    """A bearer token whose role grants ``rule`` (admin grants everything)."""
    return _access(rule)


def principal(request: web.Request) -> Principal:
    found: Principal = request.get(PRINCIPAL_KEY, ANONYMOUS)
    return found


def peer_host_id(request: web.Request) -> str | None:
    """The CN of a TLS-verified client certificate, or ``None``."""
    transport = request.transport
    if transport is None:
        return None
    cert = transport.get_extra_info("peercert")
    if not isinstance(cert, dict):
        return None
    names = [
        value
        for rdn in cert.get("subject", ())
        for key, value in rdn
        if key == "commonName" and isinstance(value, str)
    ]
    return names[0] if len(names) == 1 else None


def peer_serial(request: web.Request) -> int | None:
    """The serial number of the TLS-verified client certificate, or ``None``."""
    transport = request.transport
    cert = transport.get_extra_info("peercert") if transport is not None else None
    if not isinstance(cert, dict):
        return None
    serial = cert.get("serialNumber")
    try:
        return int(serial, 16) if isinstance(serial, str) else None
    except ValueError:
        return None


def resumed_certificate_expired(request: web.Request, now: float) -> bool:
    """Whether the request came on a resumed TLS session whose client certificate expired.

    A resumed session (an agent's session ticket, :mod:`nodeagent.tlssession`) carries the
    certificate verified at its full handshake, and TLS does not check it again; so the hub
    checks its ``notAfter`` itself. A full handshake is checked by TLS."""
    transport = request.transport
    if transport is None:
        return False
    obj = transport.get_extra_info("ssl_object")
    if obj is None or not obj.session_reused:
        return False
    cert = transport.get_extra_info("peercert")
    not_after = cert.get("notAfter") if isinstance(cert, dict) else None
    if not isinstance(not_after, str):
        return True
    try:
        return ssl.cert_time_to_seconds(not_after) < now
    except ValueError:
        return True


def _now(request: web.Request) -> float:
    clock = request.app.get(CLOCK_KEY)
    return clock() if clock is not None else time.time()


async def _token_principal(request: web.Request, store: Store) -> Principal | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    want = token_hash(token.strip())
    found = await store.find_token(want)
    if found is None or not hmac.compare_digest(found.hash, want):
        raise ApiError(401, "auth.invalid_token", "unknown or revoked token")
    return Principal("token", name=found.name, role=found.role)


def auth_middleware(store_of: Callable[[web.Request], Store]) -> Middleware:
    """The middleware; ``store_of`` finds the store for a request (the app's state)."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        match_info = request.match_info
        if match_info.http_exception is not None:
            raise match_info.http_exception  # 404/405 before anything else
        rule = getattr(match_info.handler, ACCESS_ATTR, None)
        if rule == "public":
            return await handler(request)
        store = store_of(request)
        host_id = peer_host_id(request)
        if rule == "agent":
            if host_id is None:
                raise ApiError(401, "auth.client_certificate_required", "client certificate needed")
            host = await store.get_host(host_id, with_rules=False)
            if host is None or host.state != "enrolled":
                raise ApiError(403, "host.unknown", "this host is not enrolled")
            if host.cert_serial is not None and peer_serial(request) != int(host.cert_serial, 16):
                raise ApiError(
                    401, "auth.certificate_superseded", "a newer client certificate was issued"
                )
            if resumed_certificate_expired(request, _now(request)):
                raise ApiError(
                    401,
                    "auth.client_certificate_expired",
                    "the client certificate of this resumed TLS session has expired",
                )
            request[PRINCIPAL_KEY] = Principal("agent", name=host_id, host_id=host_id)
            request[AGENT_HOST_KEY] = host
            return await handler(request)
        if rule == "enrollment":
            return await handler(request)
        if rule in _ROLE_GRANTS:
            who = await _token_principal(request, store)
            if who is None:
                raise ApiError(401, "auth.required", "a bearer token is required")
            if who.role not in _ROLE_GRANTS[rule]:
                raise ApiError(403, "auth.forbidden", f"role {who.role!r} may not do this")
            request[PRINCIPAL_KEY] = who
            return await handler(request)
        raise ApiError(403, "auth.forbidden", "this route has no access rule")

    return middleware
