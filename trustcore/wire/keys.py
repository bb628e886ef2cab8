"""The key-release messages: a fresh report with the key blobs to unwrap, and the hub's answer.

``POST /v1/keys/release`` carries a :class:`KeyReleaseRequest`: a complete signed
:class:`~trustcore.wire.Report` (its nonce from ``POST /v1/keys/challenge``), verified and
recorded by the hub exactly as ``POST /v1/report`` does, and 1 to :data:`MAX_ANNOTATIONS`
key blobs (:mod:`trustcore.keyblob`, base64). The :class:`KeyReleaseResult` holds the hub's
:class:`~trustcore.wire.ReportResult` for that report, one :class:`ReleasedKey` per blob in
order (the layer secret sealed to the host's TPM binding key,
:mod:`trustcore.releasedsecret`, or a reason id and a sentence), and, for a binding key whose
policy is PolicyAuthorize by the hub's policy-signing key, the :class:`ReleaseAuthorization`
the TPM needs to use the key in the attested PCR state (docs/protocol.md, "Key release").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from trustcore.keyblob import MAX_KEY_BLOB_BYTES
from trustcore.wire.attestation import Report, ReportResult
from trustcore.wire.fields import (
    MAX_TPM_BLOB_BYTES,
    PROTOCOL_VERSION,
    WireError,
    _b64,
    _expect_type,
    _number,
    _obj,
    _req,
    _str,
    b64,
)

__all__ = [
    "MAX_ANNOTATIONS",
    "MAX_RELEASED_SECRET_BYTES",
    "KeyReleaseRequest",
    "KeyReleaseResult",
    "ReleaseAuthorization",
    "ReleasedKey",
]

MAX_ANNOTATIONS: Final = 64
# a sealed secret (trustcore.releasedsecret): an RSA-4096 OAEP block at most, the IV, and
# AES-GCM of a blob's largest secret
MAX_RELEASED_SECRET_BYTES: Final = 512 + 12 + 2048 + 16
_MAX_REASON: Final = 64
_MAX_MESSAGE: Final = 512


def _annotations(value: object) -> tuple[bytes, ...]:
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_ANNOTATIONS:
        raise WireError(f"expected a list of 1 to {MAX_ANNOTATIONS}", field_name="annotations")
    return tuple(
        _b64(a, f"annotations[{i}]", max_len=MAX_KEY_BLOB_BYTES) for i, a in enumerate(value)
    )


@dataclass(frozen=True, slots=True)
class KeyReleaseRequest:
    """A fresh signed report and the key blobs (raw bytes) the host asks to unwrap."""

    report: Report
    annotations: tuple[bytes, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "type": "key_release",
            "version": PROTOCOL_VERSION,
            "report": self.report.to_json(),
            "annotations": [b64(a) for a in self.annotations],
        }

    @classmethod
    def from_json(cls, value: object) -> KeyReleaseRequest:
        """Raises :class:`WireError`."""
        o = _obj(value, "key_release")
        _expect_type(o, "key_release")
        annotations = _annotations(_req(o, "annotations", ""))
        return cls(report=Report.from_json(_req(o, "report", "")), annotations=annotations)


@dataclass(frozen=True, slots=True)
class ReleaseAuthorization:
    """The hub's signature approving a PolicyPCR digest for a PolicyAuthorize binding key.

    ``signing_key`` is the hub policy-signing key's TPMT_PUBLIC (the TPM loads it to verify),
    ``approved_policy`` the PolicyPCR digest of the attested PCR values, ``signature`` a
    TPMT_SIGNATURE over ``SHA-256(approved_policy || policy_ref)``.
    """

    signing_key: bytes
    approved_policy: bytes
    signature: bytes
    policy_ref: bytes = b""

    def to_json(self) -> dict[str, Any]:
        return {
            "signing_key": b64(self.signing_key),
            "approved_policy": b64(self.approved_policy),
            "policy_ref": b64(self.policy_ref),
            "signature": b64(self.signature),
        }

    @classmethod
    def from_json(cls, value: object) -> ReleaseAuthorization:
        o = _obj(value, "authorization")
        return cls(
            signing_key=_b64(
                _req(o, "signing_key", "authorization"),
                "authorization.signing_key",
                max_len=MAX_TPM_BLOB_BYTES,
            ),
            approved_policy=_b64(
                _req(o, "approved_policy", "authorization"),
                "authorization.approved_policy",
                max_len=64,
            ),
            policy_ref=_b64(o.get("policy_ref", ""), "authorization.policy_ref", max_len=64),
            signature=_b64(
                _req(o, "signature", "authorization"),
                "authorization.signature",
                max_len=MAX_TPM_BLOB_BYTES,
            ),
        )


@dataclass(frozen=True, slots=True)
class ReleasedKey:
    """One blob's outcome: ``secret`` (encrypted to the binding key) and ``expires_at``, or a
    ``reason`` id and a ``message``."""

    ok: bool
    secret: bytes | None = None
    expires_at: float | None = None
    reason: str = ""
    message: str = ""

    def to_json(self) -> dict[str, Any]:
        if self.ok:
            return {"ok": True, "secret": b64(self.secret or b""), "expires_at": self.expires_at}
        return {"ok": False, "reason": self.reason, "message": self.message}

    @classmethod
    def from_json(cls, value: object, name: str) -> ReleasedKey:
        o = _obj(value, name)
        ok = _req(o, "ok", name)
        if ok is True:
            return cls(
                ok=True,
                secret=_b64(
                    _req(o, "secret", name), f"{name}.secret", max_len=MAX_RELEASED_SECRET_BYTES
                ),
                expires_at=_number(_req(o, "expires_at", name), f"{name}.expires_at"),
            )
        if ok is False:
            return cls(
                ok=False,
                reason=_str(_req(o, "reason", name), f"{name}.reason", max_len=_MAX_REASON),
                message=_str(
                    _req(o, "message", name), f"{name}.message", max_len=_MAX_MESSAGE, empty=True
                ),
            )
        raise WireError("expected true or false", field_name=f"{name}.ok")


@dataclass(frozen=True, slots=True)
class KeyReleaseResult:
    """The hub's answer: the report's result, one entry per blob, and the authorization."""

    report: ReportResult
    results: tuple[ReleasedKey, ...]
    authorization: ReleaseAuthorization | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "type": "key_release_result",
            "version": PROTOCOL_VERSION,
            "report": self.report.to_json(),
            "results": [r.to_json() for r in self.results],
        }
        if self.authorization is not None:
            out["authorization"] = self.authorization.to_json()
        return out

    @classmethod
    def from_json(cls, value: object) -> KeyReleaseResult:
        """Raises :class:`WireError`."""
        o = _obj(value, "key_release_result")
        _expect_type(o, "key_release_result")
        results = _req(o, "results", "")
        if not isinstance(results, list) or len(results) > MAX_ANNOTATIONS:
            raise WireError(f"expected a list of at most {MAX_ANNOTATIONS}", field_name="results")
        auth = o.get("authorization")
        return cls(
            report=ReportResult.from_json(_req(o, "report", "")),
            results=tuple(ReleasedKey.from_json(r, f"results[{i}]") for i, r in enumerate(results)),
            authorization=None if auth is None else ReleaseAuthorization.from_json(auth),
        )
