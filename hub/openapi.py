"""The OpenAPI 3.1 description of everything the hub serves, at ``GET /v1/openapi.json``.

Written by hand next to the handlers (not generated from them), so a test can hold the two
against each other: every registered route is described and every described operation is
registered. It covers the agent protocol (enrollment without credentials, challenge and report
over mTLS), the JSON API for people and pipelines (bearer tokens with roles), the HTML pages
(session cookie), the live event stream and ``/metrics``. Every error answer has one schema,
``Error``.

The document itself needs a viewer token (or a session): DESIGN.md has every endpoint
authenticated except health, and the description helps only those who may call the API anyway.
"""

from __future__ import annotations

from typing import Any, Final

from aiohttp import web

from hub.auth import role

JSON: Final = "application/json"
HTML: Final = "text/html"

Op = dict[str, Any]


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": schema}}}


ERROR_TEXT: Final = {
    400: "malformed request",
    401: "no or unknown credentials",
    403: "not allowed",
    404: "no such object",
    409: "conflict with the current state",
    413: "body too large",
    429: "rate limited",
    503: "at capacity",
}


def _errors(*statuses: int) -> dict[str, Any]:
    return {str(s): {"$ref": f"#/components/responses/E{s}"} for s in statuses}


def _op(
    summary: str,
    tag: str,
    security: list[dict[str, list[str]]],
    ok: dict[str, Any],
    *,
    errors: tuple[int, ...] = (401, 403),
    body: dict[str, Any] | None = None,
    params: list[dict[str, Any]] | None = None,
    ok_status: str = "200",
) -> Op:
    op: Op = {
        "summary": summary,
        "tags": [tag],
        "security": security,
        "responses": {ok_status: ok, **_errors(*errors)},
    }
    if body is not None:
        op["requestBody"] = body
    if params:
        op["parameters"] = params
    return op


def _path_param(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": {"type": "string"},
    }


def _json_body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {JSON: {"schema": schema}}}


def _optional_body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": False, "content": {JSON: {"schema": schema}}}


def _form_body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {"application/x-www-form-urlencoded": {"schema": schema}}}


BEARER: Final[list[dict[str, list[str]]]] = [{"bearer": []}]
VIEWER: Final[list[dict[str, list[str]]]] = [{"bearer": []}, {"session": []}]
MTLS: Final[list[dict[str, list[str]]]] = [{"mtls": []}]
NONE: Final[list[dict[str, list[str]]]] = [{}]
HTML_OK: Final = {"description": "the page", "content": {HTML: {"schema": {"type": "string"}}}}
REDIRECT: Final = {"description": "done; go to the Location"}

_STR = {"type": "string"}
_NSTR = {"type": ["string", "null"]}
_NUM = {"type": "number"}
_NNUM = {"type": ["number", "null"]}
_B64 = {"type": "string", "contentEncoding": "base64"}
_NB64 = {"type": ["string", "null"], "contentEncoding": "base64"}
_STRS = {"type": "array", "items": _STR}


def _obj(props: dict[str, Any], required: list[str] | None = None, **extra: Any) -> dict[str, Any]:  # noqa: ANN401
    out: dict[str, Any] = {"type": "object", "properties": props, **extra}
    if required is not None:
        out["required"] = required
    return out


def _wire(kind: str, props: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return _obj(
        {"type": {"const": kind}, "version": {"type": "integer"}, **props},
        ["type", "version", *required],
    )


def schemas() -> dict[str, Any]:
    host = _obj(
        {
            "id": _STR,
            "state": {"enum": ["pending", "approved", "enrolled"]},
            "hostname": _STR,
            "node_name": _NSTR,
            "verdict": {"enum": ["trusted", "untrusted", "stale", "pending"]},
            "reasons": _STRS,
            "last_report": _NNUM,
            "valid_until": _NNUM,
            "tags": {"type": "object", "additionalProperties": _STR},
            "flavors": _STRS,
            "group": _NSTR,
        },
        ["id", "state", "hostname", "verdict", "reasons", "tags", "flavors", "group"],
    )
    return {
        "Error": _obj(
            {
                "error": _obj(
                    # last_sequence: with report.sequence_old, the host's last recorded report
                    {"code": _STR, "message": _STR, "last_sequence": {"type": "integer"}},
                    ["code", "message"],
                )
            },
            ["error"],
        ),
        "Host": host,
        "HostDetail": {
            "allOf": [
                host,
                _obj(
                    {
                        "dmi_uuid": _NSTR,
                        "created": _NUM,
                        "rules": {"type": "array", "items": {"type": "object"}},
                        "reports": {
                            "type": "array",
                            "items": _obj(
                                {"received": _NUM, "verdict": _STR, "reasons": _STRS, "seq": {}}
                            ),
                        },
                    }
                ),
            ]
        },
        "Alert": _obj(
            {
                "id": {"type": "integer"},
                "host_id": _STR,
                "at": _NUM,
                "kind": {"enum": ["untrusted", "stale", "enrollment_failed"]},
                "reasons": _STRS,
                "acked_at": _NNUM,
                "acked_by": _NSTR,
            },
            ["id", "host_id", "at", "kind", "reasons"],
        ),
        "HostGroup": _obj(
            {"name": _STR, "flavors": _STRS, "hosts": _STRS}, ["name", "flavors", "hosts"]
        ),
        "Flavor": _obj(
            {
                "id": _STR,
                "stored": {"type": "boolean"},
                "name": _STR,
                "part": _STR,
                "description": _STR,
                "rules": {"type": "integer"},
                "hosts": _STRS,
            },
            ["id", "stored", "hosts"],
        ),
        "FlavorDocument": _obj(
            {"schema": _STR, "id": _STR, "name": _STR, "part": _STR},
            ["schema", "id"],
            description="a flavor in the firmware_measurements/flavor.schema.json format",
        ),
        "EnrollRequest": _wire(
            "enroll",
            {
                "ek_public": _B64,
                "ek_certificate": _NB64,
                "ak_public": _B64,
                "binding_public": _NB64,
                "binding_certify_attest": _NB64,
                "binding_certify_signature": _NB64,
                "hostname": _STR,
                "dmi_uuid": _NSTR,
                "node_name": _NSTR,
                "registration_token": _NSTR,
                "csr": _NSTR,
            },
            ["ek_public", "ak_public", "hostname"],
        ),
        "EnrollChallenge": _wire(
            "enroll_challenge",
            {
                "host_id": _STR,
                "status": {"enum": ["challenge", "pending"]},
                "credential_blob": _NB64,
                "encrypted_secret": _NB64,
            },
            ["host_id", "status"],
        ),
        "ActivateRequest": _wire(
            "activate", {"host_id": _STR, "secret": _B64}, ["host_id", "secret"]
        ),
        "Enrollment": _wire(
            "enrollment",
            {
                "host_id": _STR,
                "status": _STR,
                "client_certificate": _NSTR,
                "ca_certificate": _NSTR,
            },
            ["host_id", "status"],
        ),
        "Challenge": _wire(
            "challenge", {"nonce": _B64, "expires_at": _NUM}, ["nonce", "expires_at"]
        ),
        "Report": _wire(
            "report",
            {
                "body": {"type": "string", "description": "the canonical ReportBody JSON text"},
                "attest": _B64,
                "signature": _B64,
            },
            ["body", "attest", "signature"],
        ),
        "ReportResult": _wire(
            "report_result",
            {
                "verdict": {"enum": ["trusted", "untrusted", "stale", "pending"]},
                "reasons": _STRS,
                "trust_report": {"type": "string", "description": "JWS (ES256) compact form"},
                "valid_until": _NUM,
                "next_report_in": _NUM,
                "missing_eventlogs": _STRS,
                "tag_certificate": _B64,  # asset tags (hub.assettags)
            },
            ["verdict", "reasons", "trust_report", "valid_until", "next_report_in"],
        ),
    }


def _responses() -> dict[str, Any]:
    return {f"E{s}": _json(_ref("Error"), d) for s, d in ERROR_TEXT.items()}


def _agent_paths() -> dict[str, Any]:
    return {
        "/v1/enroll": {
            "post": _op(
                "Start enrollment: EK, AK, binding key, CSR -> MakeCredential challenge",
                "agent",
                NONE,
                _json(_ref("EnrollChallenge"), "a challenge, or pending until approved"),
                errors=(400, 403, 413, 429, 503),
                body=_json_body(_ref("EnrollRequest")),
            )
        },
        "/v1/enroll/activate": {
            "post": _op(
                "Answer the challenge with the activated secret -> client certificate",
                "agent",
                NONE,
                _json(_ref("Enrollment"), "enrolled; the client certificate"),
                errors=(400, 403, 413, 429),
                body=_json_body(_ref("ActivateRequest")),
            )
        },
        "/v1/challenge": {
            "post": _op(
                "A single-use nonce for the next report",
                "agent",
                MTLS,
                _json(_ref("Challenge"), "the nonce"),
                errors=(400, 401, 403, 413),
                body=_json_body({"type": "object"}),
            )
        },
        "/v1/report": {
            "post": _op(
                "An attestation report -> verdict and signed trust report",
                "agent",
                MTLS,
                _json(_ref("ReportResult"), "the verdict"),
                errors=(400, 401, 403, 409, 413),
                body=_json_body(_ref("Report")),
            )
        },
        # --- asset tags (hub.assettags) ---
        "/v1/tags": {
            "post": _op(
                "This host's asset tags and current tag certificate",
                "agent",
                MTLS,
                _json(_TAG_CERTIFICATE, "tags and certificate (null when none)"),
                errors=(400, 401, 403, 413),
                body=_json_body({"type": "object"}),
            )
        },
    }


_TAG_CERTIFICATE: Final = {
    "type": "object",
    "properties": {
        "type": {"const": "tag_certificate"},
        "version": {"type": "integer"},
        "host_id": _STR,
        "tags": {"type": "object", "additionalProperties": _STR},
        "certificate": _NB64,
        "sha384": _NSTR,
    },
    "required": ["type", "version", "host_id", "tags", "certificate", "sha384"],
}


def _api_paths() -> dict[str, Any]:
    host_id = [_path_param("host_id", "the host id (hex SHA-256 of the EK public area)")]
    alert_id = [_path_param("alert_id", "the alert id")]
    return {
        # --- asset tags (hub.assettags) ---
        "/v1/hosts/{host_id}/tags": {
            "put": _op(
                "Replace a host's asset tags and issue its tag certificate (empty: remove)",
                "api",
                BEARER,
                _json(_TAG_CERTIFICATE, "the issued certificate"),
                errors=(400, 401, 403, 404, 413),
                body=_json_body(
                    _obj({"tags": {"type": "object", "additionalProperties": _STR}}, ["tags"])
                ),
                params=host_id,
            )
        },
        "/health": {
            "get": _op("Liveness", "api", NONE, _json(_obj({"status": _STR}), "ok"), errors=())
        },
        "/v1/hosts": {
            "get": _op(
                "Every host with its verdict (twin of /)",
                "api",
                VIEWER,
                _json(_obj({"hosts": {"type": "array", "items": _ref("Host")}}), "the hosts"),
            )
        },
        "/v1/hosts/{host_id}": {
            "get": _op(
                "One host with its rules and reports (twin of /hosts/{host_id})",
                "api",
                VIEWER,
                _json(_ref("HostDetail"), "the host"),
                errors=(401, 403, 404),
                params=host_id,
            )
        },
        "/v1/hosts/{host_id}/approve": {
            "post": _op(
                "Approve a pending host, or re-admit a revoked one; replace names the active "
                "host whose hostname, node name or DMI UUID it takes over, which is retired "
                "(admin)",
                "api",
                BEARER,
                _json(_obj({"id": _STR, "state": _STR, "retired": _NSTR}), "approved"),
                errors=(400, 401, 403, 404, 409, 413),
                body=_optional_body(_obj({"replace": _NSTR})),
                params=host_id,
            )
        },
        "/v1/hosts/{host_id}/revoke": {
            "post": _op(
                "Revoke a host: its client certificate stops working, it cannot enroll again "
                "until approved (admin)",
                "api",
                BEARER,
                _json(_obj({"id": _STR, "state": _STR}), "revoked"),
                errors=(401, 403, 404),
                params=host_id,
            )
        },
        "/v1/hosts/{host_id}/flavors": {
            "put": _op(
                "Assign flavors to a host (admin)",
                "api",
                BEARER,
                _json(_obj({"id": _STR, "flavors": _STRS}), "assigned"),
                errors=(400, 401, 403, 404, 413),
                body=_json_body(_obj({"flavors": _STRS}, ["flavors"])),
                params=host_id,
            )
        },
        "/v1/hosts/{host_id}/group": {
            "put": _op(
                "Put a host in a host group, or in none with null (admin)",
                "api",
                BEARER,
                _json(_obj({"id": _STR, "group": _NSTR}), "the host's group"),
                errors=(400, 401, 403, 404, 413),
                body=_json_body(_obj({"group": _NSTR}, ["group"])),
                params=host_id,
            )
        },
        "/v1/groups": {
            "get": _op(
                "Host groups with their flavors and member hosts",
                "api",
                VIEWER,
                _json(_obj({"groups": {"type": "array", "items": _ref("HostGroup")}}), "groups"),
            )
        },
        "/v1/groups/{name}/flavors": {
            "put": _op(
                "Assign flavors to a host group (admin; made if new)",
                "api",
                BEARER,
                _json(_obj({"name": _STR, "flavors": _STRS}), "assigned"),
                errors=(400, 401, 403, 413),
                body=_json_body(_obj({"flavors": _STRS}, ["flavors"])),
                params=[_path_param("name", "the group name (1-63 of a-z0-9._-)")],
            )
        },
        "/v1/alerts": {
            "get": _op(
                "Alerts, newest first (twin of /alerts)",
                "api",
                VIEWER,
                _json(_obj({"alerts": {"type": "array", "items": _ref("Alert")}}), "the alerts"),
                params=[
                    {
                        "name": "open",
                        "in": "query",
                        "required": False,
                        "description": "1 or true: only alerts not yet acknowledged; 0 or "
                        "false (the default): all (anything else: 400 query.open_invalid)",
                        "schema": {"type": "string", "enum": ["1", "true", "0", "false"]},
                    }
                ],
                errors=(400, 401, 403),
            )
        },
        "/v1/alerts/{alert_id}/ack": {
            "post": _op(
                "Acknowledge an open alert (admin)",
                "api",
                BEARER,
                _json(_obj({"id": {"type": "integer"}, "acked_at": _NUM, "acked_by": _STR}), "ok"),
                errors=(401, 403, 404),
                params=alert_id,
            )
        },
        "/v1/flavors": {
            "get": _op(
                "Flavors assigned to hosts (twin of /flavors)",
                "api",
                VIEWER,
                _json(_obj({"flavors": {"type": "array", "items": _ref("Flavor")}}), "flavors"),
            )
        },
        "/v1/flavors/{name}": {
            "put": _op(
                "Store a flavor document (admin)",
                "api",
                BEARER,
                _json(_obj({"id": _STR, "part": _STR}), "stored"),
                errors=(400, 401, 403, 413),
                body=_json_body(_ref("FlavorDocument")),
                params=[_path_param("name", "the flavor id")],
            )
        },
        "/v1/events": {
            "get": _op(
                "Live verdict and alert changes (Server-Sent Events: `verdict`, `alert`)",
                "api",
                VIEWER,
                {
                    "description": "an endless event stream",
                    "content": {"text/event-stream": {"schema": {"type": "string"}}},
                },
            )
        },
        "/v1/openapi.json": {
            "get": _op(
                "This document",
                "api",
                VIEWER,
                _json({"type": "object"}, "OpenAPI 3.1"),
            )
        },
        "/metrics": {
            "get": _op(
                "Prometheus metrics (viewer/admin token or metrics.token)",
                "api",
                BEARER,
                {
                    "description": "text exposition format 0.0.4",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                },
            )
        },
    }


def _page_paths() -> dict[str, Any]:
    def page(summary: str, **kw: Any) -> Op:  # noqa: ANN401
        return _op(summary, "pages", VIEWER, HTML_OK, errors=(), **kw)

    ack_form = _form_body(_obj({"csrf": _STR}, ["csrf"]))
    return {
        "/": {"get": page("Hosts page")},
        "/hosts/{host_id}": {
            "get": page("Host page", params=[_path_param("host_id", "the host id")])
        },
        "/alerts": {"get": page("Alerts page")},
        "/alerts/{alert_id}/ack": {
            "post": _op(
                "Acknowledge from the page (admin session, CSRF token)",
                "pages",
                VIEWER,
                REDIRECT,
                errors=(),
                ok_status="303",
                body=ack_form,
                params=[_path_param("alert_id", "the alert id")],
            )
        },
        "/flavors": {"get": page("Flavors page")},
        "/login": {
            "get": _op("Login form", "pages", NONE, HTML_OK, errors=()),
            "post": _op(
                "Log in with a bearer token: sets the session cookie",
                "pages",
                NONE,
                REDIRECT,
                errors=(),
                ok_status="303",
                body=_form_body(
                    _obj({"token": _STR, "csrf": _STR, "next": _STR}, ["token", "csrf"])
                ),
            ),
        },
        "/logout": {
            "post": _op(
                "Log out (CSRF token)",
                "pages",
                VIEWER,
                REDIRECT,
                errors=(),
                ok_status="303",
                body=ack_form,
            )
        },
    }


def build_openapi(version: str = "0") -> dict[str, Any]:
    """The whole document (a new dict each call)."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "trustplane hub",
            "version": version,
            "description": "Attestation of hosts, trust verdicts, alerts. Errors are always "
            '`{"error": {"code": "<stable id>", "message": "..."}}`.',
        },
        "paths": {**_agent_paths(), **_api_paths(), **_page_paths()},
        "components": {
            "schemas": schemas(),
            "responses": _responses(),
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "a token from `trustplane-hub tokens create` (viewer, "
                    "pipeline or admin); admin grants everything",
                },
                "mtls": {
                    "type": "mutualTLS",
                    "description": "the client certificate issued at enrollment (CN = host id)",
                },
                "session": {
                    "type": "apiKey",
                    "in": "cookie",
                    "name": "trustplane_session",
                    "description": "set by POST /login; writes also need the CSRF token",
                },
            },
        },
    }


@role("viewer")
async def openapi_json(request: web.Request) -> web.Response:
    return web.json_response(build_openapi())


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/openapi.json", openapi_json)
