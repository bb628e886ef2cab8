"""The paths of the OpenAPI document: the agent protocol, the JSON API and the pages."""

from __future__ import annotations

from typing import Any, Final

from hub.openapi.parts import (
    _NB64,
    _NSTR,
    _NUM,
    _STR,
    _STRS,
    BEARER,
    HTML_OK,
    MTLS,
    NONE,
    REDIRECT,
    VIEWER,
    Op,
    _form_body,
    _json,
    _json_body,
    _obj,
    _op,
    _optional_body,
    _path_param,
    _ref,
)


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
        "/v1/trust-report-key": {
            "get": _op(
                "The ES256 public key that signs trust reports (the agent's OCI hook checks it)",
                "agent",
                NONE,
                _json(
                    _obj(
                        {
                            "type": {"const": "trust_report_key"},
                            "alg": {"const": "ES256"},
                            "kid": _STR,
                            "public_key": _STR,
                        },
                        ["type", "alg", "kid", "public_key"],
                    ),
                    "the key (PEM SubjectPublicKeyInfo) and its id",
                ),
                errors=(),
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
        "/v1/clusters": {
            "get": _op(
                "Registered Kubernetes clusters and their sync state (never a kubeconfig)",
                "api",
                VIEWER,
                _json(
                    _obj(
                        {
                            "clusters": {
                                "type": "array",
                                "items": _obj(
                                    {
                                        "name": _STR,
                                        "source": {"enum": ["kubeconfig", "in-cluster"]},
                                        "context": _NSTR,
                                        "added": _NUM,
                                        "connected": {"type": "boolean"},
                                        "nodes": {"type": "integer"},
                                        "nodes_matched": {"type": "integer"},
                                        "last_sync": {"type": ["number", "null"]},
                                        "last_error": _NSTR,
                                    },
                                    [
                                        "name",
                                        "source",
                                        "context",
                                        "added",
                                        "connected",
                                        "nodes",
                                        "nodes_matched",
                                        "last_sync",
                                        "last_error",
                                    ],
                                ),
                            }
                        },
                        ["clusters"],
                    ),
                    "clusters",
                ),
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
        "/clusters": {"get": page("Clusters page")},
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
