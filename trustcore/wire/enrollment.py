"""Enrollment messages: the request, the MakeCredential challenge, activation, the result."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Final

from trustcore.wire.fields import (
    MAX_CERT_BYTES,
    MAX_TPM_BLOB_BYTES,
    PROTOCOL_VERSION,
    WireError,
    _b64,
    _expect_type,
    _host_id,
    _maybe_b64,
    _obj,
    _opt_b64,
    _opt_str,
    _req,
    _str,
    b64,
)

# --- enrollment ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EnrollRequest:
    """What an agent sends to enroll: its TPM keys and what it says about itself.

    ``ek_public``, ``ak_public`` and ``binding_public`` are marshalled TPMT_PUBLIC structures;
    ``binding_certify_*`` is the AK's TPM2_Certify of the binding key (attest bytes and
    TPMT_SIGNATURE). ``csr`` is a PEM certificate signing request for the agent's mTLS key.
    """

    ek_public: bytes
    ak_public: bytes
    hostname: str
    ek_certificate: bytes | None = None
    binding_public: bytes | None = None
    binding_certify_attest: bytes | None = None
    binding_certify_signature: bytes | None = None
    dmi_uuid: str | None = None
    node_name: str | None = None
    registration_token: str | None = None
    csr: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "type": "enroll",
            "version": PROTOCOL_VERSION,
            "ek_public": b64(self.ek_public),
            "ek_certificate": None if self.ek_certificate is None else b64(self.ek_certificate),
            "ak_public": b64(self.ak_public),
            "binding_public": _maybe_b64(self.binding_public),
            "binding_certify_attest": _maybe_b64(self.binding_certify_attest),
            "binding_certify_signature": _maybe_b64(self.binding_certify_signature),
            "hostname": self.hostname,
            "dmi_uuid": self.dmi_uuid,
            "node_name": self.node_name,
            "registration_token": self.registration_token,
            "csr": self.csr,
        }

    @classmethod
    def from_json(cls, value: object) -> EnrollRequest:
        """Raises :class:`WireError`."""
        o = _obj(value, "enroll")
        _expect_type(o, "enroll")
        g = o.get
        return cls(
            ek_public=_b64(_req(o, "ek_public", ""), "ek_public", max_len=MAX_TPM_BLOB_BYTES),
            ak_public=_b64(_req(o, "ak_public", ""), "ak_public", max_len=MAX_TPM_BLOB_BYTES),
            hostname=_str(_req(o, "hostname", ""), "hostname"),
            ek_certificate=_opt_b64(g("ek_certificate"), "ek_certificate", max_len=MAX_CERT_BYTES),
            binding_public=_opt_b64(
                g("binding_public"), "binding_public", max_len=MAX_TPM_BLOB_BYTES
            ),
            binding_certify_attest=_opt_b64(
                g("binding_certify_attest"), "binding_certify_attest", max_len=MAX_TPM_BLOB_BYTES
            ),
            binding_certify_signature=_opt_b64(
                g("binding_certify_signature"),
                "binding_certify_signature",
                max_len=MAX_TPM_BLOB_BYTES,
            ),
            dmi_uuid=_opt_str(g("dmi_uuid"), "dmi_uuid"),
            node_name=_opt_str(g("node_name"), "node_name"),
            registration_token=_opt_str(g("registration_token"), "registration_token"),
            csr=_opt_str(g("csr"), "csr", max_len=MAX_CERT_BYTES),
        )


@dataclass(frozen=True, slots=True)
class EnrollChallenge:
    """The hub's answer to an enrollment: a MakeCredential challenge to activate (or pending)."""

    host_id: str
    status: str  # "challenge" | "pending"
    credential_blob: bytes | None = None
    encrypted_secret: bytes | None = None
    # names this challenge: only a request that got it can answer it (ActivateRequest.handle)
    handle: bytes | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "type": "enroll_challenge",
            "version": PROTOCOL_VERSION,
            "host_id": self.host_id,
            "status": self.status,
            "credential_blob": _maybe_b64(self.credential_blob),
            "encrypted_secret": _maybe_b64(self.encrypted_secret),
            "handle": _maybe_b64(self.handle),
        }

    @classmethod
    def from_json(cls, value: object) -> EnrollChallenge:
        """Raises :class:`WireError`."""
        o = _obj(value, "enroll_challenge")
        _expect_type(o, "enroll_challenge")
        status = _str(_req(o, "status", ""), "status")
        if status not in ("challenge", "pending"):
            raise WireError("must be 'challenge' or 'pending'", field_name="status")
        return cls(
            host_id=_host_id(_req(o, "host_id", "")),
            status=status,
            credential_blob=_opt_b64(
                o.get("credential_blob"), "credential_blob", max_len=MAX_TPM_BLOB_BYTES
            ),
            encrypted_secret=_opt_b64(
                o.get("encrypted_secret"), "encrypted_secret", max_len=MAX_TPM_BLOB_BYTES
            ),
            handle=_opt_b64(o.get("handle"), "handle", max_len=HANDLE_SIZE),
        )


HANDLE_SIZE: Final = 16


@dataclass(frozen=True, slots=True)
class ActivateRequest:
    """The agent's proof: the secret ActivateCredential recovered, for the challenge its
    enrollment request got (``handle``)."""

    host_id: str
    secret: bytes
    handle: bytes = b""

    def to_json(self) -> dict[str, Any]:
        return {
            "type": "activate",
            "version": PROTOCOL_VERSION,
            "host_id": self.host_id,
            "secret": b64(self.secret),
            "handle": b64(self.handle),
        }

    @classmethod
    def from_json(cls, value: object) -> ActivateRequest:
        """Raises :class:`WireError` (also for a missing or malformed ``handle``)."""
        o = _obj(value, "activate")
        _expect_type(o, "activate")
        handle = _b64(_req(o, "handle", ""), "handle", max_len=HANDLE_SIZE)
        if len(handle) != HANDLE_SIZE:
            raise WireError(f"expected {HANDLE_SIZE} bytes", field_name="handle")
        return cls(
            host_id=_host_id(_req(o, "host_id", "")),
            secret=_b64(_req(o, "secret", ""), "secret", max_len=64),
            handle=handle,
        )


@dataclass(frozen=True, slots=True)
class Enrollment:
    """The hub's final answer: the agent's client certificate and the CA to trust."""

    host_id: str
    status: str  # "enrolled" | "pending"
    client_certificate: str | None = None
    ca_certificate: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "type": "enrollment",
            "version": PROTOCOL_VERSION,
            "host_id": self.host_id,
            "status": self.status,
            "client_certificate": self.client_certificate,
            "ca_certificate": self.ca_certificate,
        }

    @classmethod
    def from_json(cls, value: object) -> Enrollment:
        """Raises :class:`WireError`."""
        o = _obj(value, "enrollment")
        _expect_type(o, "enrollment")
        status = _str(_req(o, "status", ""), "status")
        if status not in ("enrolled", "pending"):
            raise WireError("must be 'enrolled' or 'pending'", field_name="status")
        return cls(
            host_id=_host_id(_req(o, "host_id", "")),
            status=status,
            client_certificate=_opt_str(
                o.get("client_certificate"), "client_certificate", max_len=MAX_CERT_BYTES
            ),
            ca_certificate=_opt_str(
                o.get("ca_certificate"), "ca_certificate", max_len=MAX_CERT_BYTES
            ),
        )


def binding_qualifying_data(ek_public: bytes, ak_public: bytes) -> bytes:
    """The qualifying data of the AK's TPM2_Certify of the binding key at enrollment:
    ``SHA-256(b"trustplane-binding-v1" || SHA-256(ek_public) || SHA-256(ak_public))``."""
    return hashlib.sha256(
        b"trustplane-binding-v1"
        + hashlib.sha256(ek_public).digest()
        + hashlib.sha256(ak_public).digest()
    ).digest()
