"""The status pages (server-rendered, autoescaped Jinja2) and the JSON twins the core lacks.

Pages and their JSON twins (the twin serves the same data to API clients):

=========================  =================================  ==============================
page                       twin                               what
=========================  =================================  ==============================
``GET /``                  ``GET /v1/hosts``                  hosts, verdicts, reasons, tags
``GET /hosts/{host_id}``   ``GET /v1/hosts/{host_id}``        rules, differences, reports
``GET /alerts``            ``GET /v1/alerts``                 open and acknowledged alerts
``POST /alerts/{id}/ack``  ``POST /v1/alerts/{id}/ack``       acknowledge (admin, CSRF)
``GET /flavors``           ``GET /v1/flavors``                flavors assigned to hosts
``GET /clusters``          ``GET /v1/clusters``               clusters (:mod:`hub.clusters`)
(live updates)             ``GET /v1/events``                 SSE stream (:mod:`.live`)
=========================  =================================  ==============================

``/login`` is the only page without a login. Every answer carries a Content-Security-Policy
that allows only this page's own inline style and script (by nonce) and requests to the hub.
The HTML is the templates' business; the data comes from the store, as the core's API reads it.
"""

from __future__ import annotations

import hmac
import json
import secrets
from typing import Any, Final

import jinja2
from aiohttp import web

from hub import api
from hub.alerts import ALERT_CENTER, ENROLLMENT_FAILED
from hub.auth import principal, public, role
from hub.errors import ApiError, read_form
from hub.state import CLOCK, STATE
from hub.statedir import token_hash
from hub.store import Alert, Host, Store
from hub.web.reasons import describe_reason
from hub.web.session import (
    COOKIE,
    LOGIN_COOKIE,
    SESSIONS,
    current_session,
    page,
    safe_next,
    set_cookie,
)

TEMPLATES = web.AppKey("trustplane_templates", jinja2.Environment)
PAGE_ROLES: Final = frozenset({"viewer", "admin"})
LOGIN_FORM_LIMIT: Final = 8192


def security_headers(response: web.StreamResponse, nonce: str) -> None:
    response.headers["Content-Security-Policy"] = (
        f"default-src 'none'; style-src 'nonce-{nonce}'; script-src 'nonce-{nonce}'; "
        "connect-src 'self'; img-src 'self' data:; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    )
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "no-store"


def render(
    request: web.Request, template: str, context: dict[str, Any], *, status: int = 200
) -> web.Response:
    """Render ``template`` with the common context (who, CSRF token, CSP nonce, clock)."""
    nonce = secrets.token_urlsafe(16)
    session = current_session(request)
    who = principal(request)
    common = {
        "nonce": nonce,
        "csrf": session.csrf if session else "",
        "user": who.name if who.kind == "token" else "",
        "role": who.role,
        "now": request.app[CLOCK](),
        "path": request.path,
    }
    html = request.app[TEMPLATES].get_template(template).render(**common, **context)
    response = web.Response(text=html, status=status, content_type="text/html")
    security_headers(response, nonce)
    return response


def see_other(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


def error_page(request: web.Request, status: int, code: str, message: str) -> web.Response:
    return render(
        request, "error.html", {"status": status, "code": code, "message": message}, status=status
    )


def host_label(host: Host | None, host_id: str) -> str:
    if host is None:
        return host_id[:12] if host_id else "unknown host"
    return host.hostname or host.id[:12]


def reason_rows(reasons: tuple[str, ...]) -> list[dict[str, str]]:
    return [{"id": r, "text": describe_reason(r)} for r in reasons]


# --- login ---------------------------------------------------------------------------------


@public
@page
async def login_form(request: web.Request) -> web.Response:
    token = secrets.token_urlsafe(24)
    resp = render(
        request,
        "login.html",
        {"login_csrf": token, "next": safe_next(request.query.get("next")), "error": ""},
    )
    set_cookie(resp, LOGIN_COOKIE, token, 3600)
    return resp


async def _login_refused(request: web.Request, status: int, message: str, nxt: str) -> web.Response:
    token = secrets.token_urlsafe(24)
    resp = render(
        request, "login.html", {"login_csrf": token, "next": nxt, "error": message}, status=status
    )
    set_cookie(resp, LOGIN_COOKIE, token, 3600)
    return resp


@public
@page
async def login(request: web.Request) -> web.StreamResponse:
    form = await read_form(request, LOGIN_FORM_LIMIT)
    nxt = safe_next(form.get("next", ""))
    given = str(form.get("csrf", ""))
    expected = request.cookies.get(LOGIN_COOKIE, "")
    if not expected or not hmac.compare_digest(given.encode(), expected.encode()):
        return await _login_refused(request, 403, "The form expired; please try again.", nxt)
    token = str(form.get("token", "")).strip()
    st = request.app[STATE]
    want = token_hash(token)
    found = await st.store.find_token(want) if token else None
    if found is None or not hmac.compare_digest(found.hash, want):
        return await _login_refused(request, 401, "Unknown or revoked token.", nxt)
    if found.role not in PAGE_ROLES:
        return await _login_refused(
            request, 403, f"A {found.role} token cannot open the status page.", nxt
        )
    sessions = request.app[SESSIONS]
    sid, _ = await sessions.open(token, found.name, found.role)
    await st.store.audit(
        at=st.clock(),
        actor=f"token:{found.name}",
        action="web.login",
        subject=found.name,
        details={"role": found.role},
    )
    resp = see_other(nxt)
    set_cookie(resp, COOKIE, sid, sessions.ttl)
    resp.del_cookie(LOGIN_COOKIE, path="/")
    return resp


@role("viewer")
@page
async def logout(request: web.Request) -> web.StreamResponse:
    sid = request.cookies.get(COOKIE)
    if sid:
        await request.app[SESSIONS].close(sid)
    resp = see_other("/login")
    resp.del_cookie(COOKIE, path="/")
    return resp


# --- pages ---------------------------------------------------------------------------------


@role("viewer")
@page
async def hosts_page(request: web.Request) -> web.Response:
    store = request.app[STATE].store
    hosts = await store.list_hosts()
    open_alerts = await store.list_alerts(open_only=True)
    return render(
        request,
        "hosts.html",
        {
            "hosts": [(h, reason_rows(h.reasons)) for h in hosts],
            "open_alerts": len(open_alerts),
            "counts": {v: sum(1 for h in hosts if h.verdict == v) for v in VERDICTS},
        },
    )


VERDICTS: Final = ("trusted", "untrusted", "stale", "pending")


@role("viewer")
@page
async def host_page(request: web.Request) -> web.Response:
    store = request.app[STATE].store
    host = await store.get_host(request.match_info["host_id"])
    if host is None:
        raise ApiError(404, "host.unknown", "no such host")
    reports = await store.list_reports(host.id)
    verdicts = await store.list_verdicts(host.id)
    alerts = [a for a in await store.list_alerts() if a.host_id == host.id]
    return render(
        request,
        "host.html",
        {
            "host": host,
            "reasons": reason_rows(host.reasons),
            "rules": [rule_view(r) for r in host.rule_results],
            "reports": list(reversed(reports)),
            "verdicts": [
                {**v, "reasons": reason_rows(tuple(_json_list(v.get("reasons"))))}
                for v in reversed(verdicts)
            ],
            "alerts": alerts,
            "key_refusals": await store.list_key_events(host.id, refusals_only=True),
        },
    )


def _json_list(value: object) -> list[str]:
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except ValueError:
            return []
        return [str(x) for x in parsed] if isinstance(parsed, list) else []
    return []


DIFFERENCE_KEYS: Final = (
    "kind",
    "pcr",
    "type_name",
    "index",
    "position",
    "expected_digest",
    "actual_digest",
    "description",
)


def rule_view(rule: dict[str, Any]) -> dict[str, Any]:
    """A stored rule result (the hub's ``RuleOutcome`` or trustcore's ``RuleResult`` shape),
    with every key the template reads present."""
    reason = str(rule.get("reason") or "")
    differences = [d for d in rule.get("differences") or () if isinstance(d, dict)]
    return {
        "rule": rule.get("rule") or rule.get("rule_id") or "",
        "flavor": rule.get("flavor_id") or "",
        "pcr": rule.get("pcr"),
        "passed": bool(rule.get("passed")),
        "reason": reason,
        "text": describe_reason(reason) if reason else "",
        "expected": rule.get("expected") or "",
        "actual": rule.get("actual") or "",
        "detail": rule.get("detail") or "",
        "differences": [{k: d.get(k) for k in DIFFERENCE_KEYS} for d in differences],
    }


async def _alert_rows(store: Store) -> list[dict[str, Any]]:
    alerts = await store.list_alerts()
    hosts = {h.id: h for h in await store.list_hosts()}
    return [alert_view(a, hosts.get(a.host_id)) for a in alerts]


def alert_view(alert: Alert, host: Host | None) -> dict[str, Any]:
    return {
        "alert": alert,
        "host": host_label(host, alert.host_id),
        "node": host.node_name if host else None,
        "reasons": reason_rows(alert.reasons),
        "title": "enrollment refused" if alert.kind == ENROLLMENT_FAILED else alert.kind,
    }


@role("viewer")
@page
async def alerts_page(request: web.Request) -> web.Response:
    rows = await _alert_rows(request.app[STATE].store)
    return render(
        request,
        "alerts.html",
        {
            "open": [r for r in rows if r["alert"].acked_at is None],
            "acked": [r for r in rows if r["alert"].acked_at is not None],
        },
    )


@role("admin")
@page
async def ack_page(request: web.Request) -> web.StreamResponse:
    """Acknowledge through the API's own handler (same checks, same audit row)."""
    resp = await api.ack_alert(request)
    if resp.status == 200:
        center = request.app.get(ALERT_CENTER)
        if center is not None:
            await center.acknowledged(int(request.match_info["alert_id"]))
    return see_other("/alerts")


async def flavors_data(store: Store) -> list[dict[str, Any]]:
    """Every flavor assigned to some host, with the hosts that use it.

    The store can fetch flavors only by name, so a flavor no host uses is not listed.
    """
    hosts = await store.list_hosts()
    users: dict[str, list[str]] = {}
    for h in hosts:
        for name in h.flavors:
            users.setdefault(name, []).append(h.id)
    documents = await store.get_flavors(sorted(users))
    out = []
    for name in sorted(users):
        doc = documents.get(name)
        out.append(
            {
                "id": name,
                "stored": doc is not None,
                "name": str(doc.get("name", name)) if doc else name,
                "part": str(doc.get("part", "")) if doc else "",
                "description": str(doc.get("description", "")) if doc else "",
                "rules": len(doc.get("rules", ())) if doc else 0,
                "hosts": users[name],
            }
        )
    return out


@role("viewer")
@page
async def flavors_page(request: web.Request) -> web.Response:
    store = request.app[STATE].store
    hosts = {h.id: h for h in await store.list_hosts()}
    return render(request, "flavors.html", {"flavors": await flavors_data(store), "hosts": hosts})


@role("viewer")
async def list_flavors(request: web.Request) -> web.Response:
    return web.json_response({"flavors": await flavors_data(request.app[STATE].store)})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/login", login_form)
    app.router.add_post("/login", login)
    app.router.add_post("/logout", logout)
    app.router.add_get("/", hosts_page)
    app.router.add_get("/hosts/{host_id}", host_page)
    app.router.add_get("/alerts", alerts_page)
    app.router.add_post("/alerts/{alert_id}/ack", ack_page)
    app.router.add_get("/flavors", flavors_page)
    if not _has_route(app, "GET", "/v1/flavors"):  # the core may serve its own twin
        app.router.add_get("/v1/flavors", list_flavors)


def _has_route(app: web.Application, method: str, path: str) -> bool:
    return any(
        r.method == method and r.resource is not None and r.resource.canonical == path
        for r in app.router.routes()
    )
