"""The key broker's part of the OpenAPI document (hub.keys): wrap, release, the key API."""

from __future__ import annotations

from typing import Any, Final

from hub.openapi.parts import (
    _B64,
    _NNUM,
    _NUM,
    _STR,
    BEARER,
    HTML_OK,
    MTLS,
    NONE,
    VIEWER,
    _json,
    _json_body,
    _obj,
    _op,
    _optional_body,
    _path_param,
    _ref,
    _wire,
)

_KEY: Final = _obj(
    {
        "id": _STR,
        "policy": _STR,
        "version": {"type": "integer"},
        "created": _NUM,
        "retired": _NNUM,
        "releases": {"type": "integer"},
        "refusals": {"type": "integer"},
        "last_use": _NNUM,
    },
    ["id", "policy", "version", "created", "retired", "releases", "refusals", "last_use"],
)
_POLICY: Final = _obj(
    {
        "name": _STR,
        "predicate": _STR,
        "max_age": _NUM,
        "created": _NUM,
        "updated": _NUM,
        "keys": {"type": "array", "items": _KEY},
    },
    ["name", "predicate", "max_age", "created", "updated", "keys"],
)
_RELEASED: Final = {
    "oneOf": [
        _obj(
            {"ok": {"const": True}, "secret": _B64, "expires_at": _NUM},
            ["ok", "secret", "expires_at"],
        ),
        _obj(
            {"ok": {"const": False}, "reason": _STR, "message": _STR},
            ["ok", "reason", "message"],
        ),
    ]
}


def key_schemas() -> dict[str, Any]:
    return {
        "KeyReleaseRequest": _wire(
            "key_release",
            {
                "report": _ref("Report"),
                "annotations": {"type": "array", "items": _B64, "minItems": 1, "maxItems": 64},
            },
            ["report", "annotations"],
        ),
        "KeyReleaseResult": _wire(
            "key_release_result",
            {
                "report": _ref("ReportResult"),
                "results": {"type": "array", "items": _RELEASED},
                "authorization": _obj(
                    {
                        "signing_key": _B64,
                        "approved_policy": _B64,
                        "policy_ref": _B64,
                        "signature": _B64,
                    },
                    ["signing_key", "approved_policy", "signature"],
                ),
            },
            ["report", "results"],
        ),
        "Key": _KEY,
        "KeyPolicy": _POLICY,
    }


def key_paths() -> dict[str, Any]:
    key_id = [_path_param("key_id", "the key id (as in a key blob's kid)")]
    policy = [_path_param("policy", "the policy name (a DNS label)")]
    wrap_body = _obj(
        {"policy": _STR, "key_id": _STR, "optsdata": _B64},
        ["optsdata"],
        description="exactly one of policy and key_id",
    )
    return {
        "/v1/keys/wrap": {
            "post": _op(
                "Wrap a layer's optsdata under a policy's key (made on first use) or a key",
                "keys",
                BEARER,
                _json(
                    _obj(
                        {"annotation": _B64, "key_id": _STR, "policy": _STR},
                        ["annotation", "key_id", "policy"],
                    ),
                    "the key blob for the provider's annotation",
                ),
                errors=(400, 401, 403, 404, 409, 413),
                body=_json_body(wrap_body),
            )
        },
        "/v1/keys/challenge": {
            "post": _op(
                "A single-use nonce for a key release (its issue time bounds the evidence age)",
                "keys",
                MTLS,
                _json(_ref("Challenge"), "the nonce"),
                errors=(400, 401, 403, 413, 429),
                body=_optional_body({"type": "object"}),
            )
        },
        "/v1/keys/release": {
            "post": _op(
                "A fresh report and key blobs -> each secret encrypted to the TPM binding key, "
                "or a reason",
                "keys",
                MTLS,
                _json(_ref("KeyReleaseResult"), "one result per blob, in order"),
                errors=(400, 401, 403, 409, 413, 429),
                body=_json_body(_ref("KeyReleaseRequest")),
            )
        },
        "/v1/enroll/policy-key": {
            "get": _op(
                "The hub's policy-signing key (binding keys are PolicyAuthorize by it)",
                "agent",
                NONE,
                _json(
                    _obj(
                        {"public": _B64, "name": _STR, "authorize_policy": _STR},
                        ["public", "name", "authorize_policy"],
                    ),
                    "the TPMT_PUBLIC, its TPM name and the binding keys' authPolicy (hex)",
                ),
                errors=(),
            )
        },
        "/v1/keys": {
            "get": _op(
                "Every key policy with its keys (no key material)",
                "keys",
                VIEWER,
                _json(
                    _obj({"policies": {"type": "array", "items": _ref("KeyPolicy")}}, ["policies"]),
                    "the policies",
                ),
            )
        },
        "/v1/keys/{key_id}": {
            "get": _op(
                "One key (no key material)",
                "keys",
                VIEWER,
                _json(_ref("Key"), "the key"),
                errors=(401, 403, 404),
                params=key_id,
            )
        },
        "/v1/keys/{key_id}/retire": {
            "post": _op(
                "Retire a key: it neither wraps nor unwraps any more",
                "keys",
                BEARER,
                _json(_ref("Key"), "the retired key"),
                errors=(400, 401, 403, 404, 409, 413),
                params=key_id,
                body=_optional_body({"type": "object"}),
            )
        },
        "/v1/keys/policies": {
            "post": _op(
                "Create a key policy (asset-tag predicate, maximum evidence age)",
                "keys",
                BEARER,
                _json(_ref("KeyPolicy"), "the policy"),
                errors=(400, 401, 403, 409, 413),
                body=_json_body(_obj({"name": _STR, "predicate": _STR, "max_age": _NUM}, ["name"])),
                ok_status="201",
            )
        },
        "/v1/keys/policies/{policy}": {
            "put": _op(
                "Set a policy's predicate and maximum evidence age",
                "keys",
                BEARER,
                _json(_ref("KeyPolicy"), "the policy"),
                errors=(400, 401, 403, 404, 413),
                params=policy,
                body=_json_body(_obj({"predicate": _STR, "max_age": _NUM})),
            )
        },
        "/keys": {
            "get": _op("Keys page", "pages", VIEWER, HTML_OK, errors=()),
        },
        "/v1/keys/policies/{policy}/rotate": {
            "post": _op(
                "A new version of the policy's key (older versions unwrap until retired)",
                "keys",
                BEARER,
                _json(_ref("Key"), "the new key"),
                errors=(400, 401, 403, 404, 413),
                params=policy,
                body=_optional_body({"type": "object"}),
                ok_status="201",
            )
        },
    }
