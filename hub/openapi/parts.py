"""The parts the OpenAPI document is built of: schema helpers, shared schemas, errors."""

from __future__ import annotations

from typing import Any, Final

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
