"""The JSON API for people and pipelines: health, hosts, approvals, alerts, flavors.

Viewers read, admins also write (approve hosts, acknowledge alerts); every write is audited.
The status page, metrics and OpenAPI description are built on top of these by other modules.
"""

from __future__ import annotations

from typing import Any, Final

from aiohttp import web

from hub.auth import principal, public, role
from hub.errors import ApiError, path_id, read_json
from hub.state import STATE
from hub.store import Alert, Host, Store
from trustcore.errors import TrustcoreError
from trustcore.flavors.document import flavor_from_json

FLAVOR_BODY_LIMIT: Final = 4 * 1024 * 1024


def host_json(host: Host, *, detail: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": host.id,
        "state": host.state,
        "hostname": host.hostname,
        "node_name": host.node_name,
        "verdict": host.verdict,
        "reasons": list(host.reasons),
        "last_report": host.last_report,
        "valid_until": host.valid_until,
        "tags": host.tags,
        "flavors": list(host.flavors),
        "group": host.group,
    }
    if detail:
        out["dmi_uuid"] = host.dmi_uuid
        out["created"] = host.created
        out["rules"] = list(host.rule_results)
    return out


def alert_json(alert: Alert) -> dict[str, Any]:
    return {
        "id": alert.id,
        "host_id": alert.host_id,
        "at": alert.at,
        "kind": alert.kind,
        "reasons": list(alert.reasons),
        "acked_at": alert.acked_at,
        "acked_by": alert.acked_by,
    }


@public
async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


@role("viewer")
async def list_hosts(request: web.Request) -> web.Response:
    hosts = await request.app[STATE].store.list_hosts()
    return web.json_response({"hosts": [host_json(h) for h in hosts]})


async def _host_or_404(request: web.Request) -> Host:
    host = await request.app[STATE].store.get_host(request.match_info["host_id"])
    if host is None:
        raise ApiError(404, "host.unknown", "no such host")
    return host


@role("viewer")
async def show_host(request: web.Request) -> web.Response:
    host = await _host_or_404(request)
    reports = await request.app[STATE].store.list_reports(host.id)
    out = host_json(host, detail=True)
    out["reports"] = [
        {
            "received": r.received,
            "verdict": r.verdict,
            "reasons": list(r.reasons),
            "seq": r.sequence,
        }
        for r in reversed(reports)
    ]
    return web.json_response(out)


@role("admin")
async def approve_host(request: web.Request) -> web.Response:
    st = request.app[STATE]
    host = await _host_or_404(request)
    replace = None
    if request.can_read_body:
        body = await read_json(request, 4096)
        value = body.get("replace") if isinstance(body, dict) else None
        if value is not None and not isinstance(value, str):
            raise ApiError(400, "host.replace_invalid", "replace must be a host id")
        replace = value
    who = principal(request)
    try:
        await approve(st.store, host, replace=replace, actor=f"token:{who.name}", now=st.clock())
    except ApprovalRefused as e:
        raise ApiError(409, e.code, str(e)) from None
    answer = {"id": host.id, "state": "approved"}
    if replace is not None:
        answer["retired"] = replace
    return web.json_response(answer)


class ApprovalRefused(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


async def approve(store: Store, host: Host, *, replace: str | None, actor: str, now: float) -> None:
    """Approve a pending (or re-admit a revoked) host. When it uses the hostname, node name or
    DMI UUID of an active host, the operator must name that host as ``replace``: it is retired
    (its certificate stops working, it cannot enroll again) and the new one approved.

    Raises :class:`ApprovalRefused`: ``host.not_pending``, ``host.identity_conflict``.
    """
    if host.state not in APPROVABLE:
        raise ApprovalRefused("host.not_pending", f"host is {host.state}, not pending or revoked")
    conflicts = await store.identity_conflicts(
        host.id, host.hostname, host.node_name, host.dmi_uuid
    )
    others = {other for other, _ in conflicts}
    if others and others != {replace}:
        named = ", ".join(f"{field} of {other}" for other, field in conflicts)
        raise ApprovalRefused(
            "host.identity_conflict",
            f"host {host.id} uses the {named}: approve it with replace=<that host> to retire it",
        )
    if replace is not None and not others:
        raise ApprovalRefused("host.identity_conflict", f"host {host.id} replaces no host")
    if replace is not None:
        await store.set_host_state(replace, "retired")
        await store.audit(
            at=now, actor=actor, action="host.retire", subject=replace, details={"by": host.id}
        )
    await store.set_host_state(host.id, "approved")
    await store.audit(
        at=now, actor=actor, action="host.approve", subject=host.id, details={"replace": replace}
    )


APPROVABLE: Final = frozenset({"pending", "revoked"})


async def revoke_host(store: Store, host_id: str, *, actor: str, now: float) -> None:
    """Revoke a host: its client certificate stops working at once (only ``enrolled`` hosts are
    served), it cannot enroll again until an operator approves it, and it goes stale."""
    await store.set_host_state(host_id, "revoked")
    await store.audit(at=now, actor=actor, action="host.revoke", subject=host_id, details={})


@role("admin")
async def revoke(request: web.Request) -> web.Response:
    st = request.app[STATE]
    host = await _host_or_404(request)
    who = principal(request)
    await revoke_host(st.store, host.id, actor=f"token:{who.name}", now=st.clock())
    return web.json_response({"id": host.id, "state": "revoked"})


_OPEN_FLAGS: Final = {"1": True, "true": True, "0": False, "false": False}


@role("viewer")
async def list_alerts(request: web.Request) -> web.Response:
    flag = request.query.get("open", "false")
    if flag not in _OPEN_FLAGS:
        raise ApiError(400, "query.open_invalid", "open must be one of 1, true, 0, false")
    open_only = _OPEN_FLAGS[flag]
    alerts = await request.app[STATE].store.list_alerts(open_only=open_only)
    return web.json_response({"alerts": [alert_json(a) for a in alerts]})


@role("admin")
async def ack_alert(request: web.Request) -> web.Response:
    st = request.app[STATE]
    alert_id = path_id(request, "alert_id", code="alert.unknown", message="no such alert")
    who = principal(request)
    now = st.clock()
    if not await st.store.ack_alert(alert_id, now, who.name):
        raise ApiError(404, "alert.unknown", "no such open alert")
    await st.store.audit(
        at=now, actor=f"token:{who.name}", action="alert.ack", subject=str(alert_id), details={}
    )
    return web.json_response({"id": alert_id, "acked_at": now, "acked_by": who.name})


@role("admin")
async def put_flavor(request: web.Request) -> web.Response:
    """Store a flavor document (``firmware_measurements`` schema) under its ``id``."""
    st = request.app[STATE]
    document = await read_json(request, FLAVOR_BODY_LIMIT)
    try:
        flavor = flavor_from_json(document)
    except TrustcoreError as e:
        raise ApiError(400, e.reason, e.message) from None
    if flavor.id != request.match_info["name"]:
        raise ApiError(400, "flavor.id_mismatch", f"the document's id is {flavor.id!r}")
    assert isinstance(document, dict)
    now = st.clock()
    await st.store.put_flavor(flavor.id, document, now)
    who = principal(request)
    await st.store.audit(
        at=now, actor=f"token:{who.name}", action="flavor.put", subject=flavor.id, details={}
    )
    return web.json_response({"id": flavor.id, "part": str(flavor.part)})


@role("admin")
async def assign_flavors(request: web.Request) -> web.Response:
    """Set the flavors a host is evaluated against: ``{"flavors": ["id", ...]}``."""
    st = request.app[STATE]
    host = await _host_or_404(request)
    body = await read_json(request, FLAVOR_BODY_LIMIT)
    names = body.get("flavors") if isinstance(body, dict) else None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ApiError(400, "flavor.assignment_invalid", 'expected {"flavors": [ids]}')
    known = await st.store.get_flavors(names)
    unknown = sorted(set(names) - set(known))
    if unknown:
        raise ApiError(400, "flavor.unknown", f"no such flavors: {', '.join(unknown)}")
    await st.store.set_host_flavors(host.id, names)
    who = principal(request)
    await st.store.audit(
        at=st.clock(),
        actor=f"token:{who.name}",
        action="host.flavors",
        subject=host.id,
        details={"flavors": names},
    )
    return web.json_response({"id": host.id, "flavors": names})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/health", health)
    app.router.add_get("/v1/hosts", list_hosts)
    app.router.add_get("/v1/hosts/{host_id}", show_host)
    app.router.add_post("/v1/hosts/{host_id}/approve", approve_host)
    app.router.add_post("/v1/hosts/{host_id}/revoke", revoke)
    app.router.add_get("/v1/alerts", list_alerts)
    app.router.add_post("/v1/alerts/{alert_id}/ack", ack_alert)
    app.router.add_put("/v1/flavors/{name}", put_flavor)
    app.router.add_put("/v1/hosts/{host_id}/flavors", assign_flavors)
