"""The messages the node agent and the hub exchange, and their one encoding.

Every message is a JSON object. Binary fields are standard base64 (with padding); PCR values and
digests are lower-case hex. Decoding is strict: unknown types, missing fields, oversized fields
and wrong encodings raise :class:`WireError` (a :class:`~trustcore.errors.ParseError`) naming the
field, so a handler can answer with a precise 400.

The attestation report binds its whole body to the TPM quote: the agent serialises the body once
(:func:`encode_report_body`, canonical JSON: sorted keys, no spaces, ASCII) and sends those exact
bytes as a string; the quote's qualifying data is ``SHA-256(nonce || SHA-256(body_bytes))``
(:func:`report_qualifying_data`). The hub hashes the bytes it received, never a re-encoding.

This module does no I/O; transport (HTTP paths, TLS) belongs to the agent and the hub.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from trustcore.algorithms import BY_NAME, HASH_ALGORITHMS
from trustcore.errors import ParseError

PROTOCOL_VERSION: Final = 1
NONCE_SIZE: Final = 32

# Upper bounds on field sizes; a report larger than these is refused before any parsing.
MAX_EVENTLOG_BYTES: Final = 4 * 1024 * 1024
MAX_TPM_BLOB_BYTES: Final = 4096
MAX_CERT_BYTES: Final = 16 * 1024
MAX_TEXT: Final = 256
MAX_PCR_INDEX: Final = 23
MAX_BODY_BYTES: Final = 12 * 1024 * 1024


class WireError(ParseError):
    """A message that does not have the agreed shape."""

    reason = "wire.malformed"

    def __init__(self, message: str, *, field_name: str = "") -> None:
        super().__init__(f"{field_name}: {message}" if field_name else message, offset=0)
        self.field_name = field_name


# --- field decoders --------------------------------------------------------------------------


def _obj(value: object, name: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise WireError("expected a JSON object", field_name=name)
    return value


def _req(obj: Mapping[str, Any], key: str, ctx: str) -> Any:  # noqa: ANN401 - JSON value
    if key not in obj:
        raise WireError("missing", field_name=f"{ctx}.{key}" if ctx else key)
    return obj[key]


def _str(value: object, name: str, *, max_len: int = MAX_TEXT, empty: bool = False) -> str:
    if not isinstance(value, str):
        raise WireError("expected a string", field_name=name)
    if len(value) > max_len:
        raise WireError(f"longer than {max_len} characters", field_name=name)
    if not empty and not value:
        raise WireError("must not be empty", field_name=name)
    return value


def _opt_str(value: object, name: str, *, max_len: int = MAX_TEXT) -> str | None:
    return None if value is None else _str(value, name, max_len=max_len, empty=True)


def _int(value: object, name: str, *, lo: int, hi: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise WireError("expected an integer", field_name=name)
    if not lo <= value <= hi:
        raise WireError(f"out of range [{lo}, {hi}]", field_name=name)
    return value


def _b64(value: object, name: str, *, max_len: int) -> bytes:
    text = _str(value, name, max_len=(max_len * 4) // 3 + 4, empty=True)
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise WireError("not valid base64", field_name=name) from None
    if len(raw) > max_len:
        raise WireError(f"longer than {max_len} bytes", field_name=name)
    return raw


def _opt_b64(value: object, name: str, *, max_len: int) -> bytes | None:
    return None if value is None else _b64(value, name, max_len=max_len)


def _hex(value: object, name: str, *, size: int | None = None, max_len: int = 128) -> bytes:
    text = _str(value, name, max_len=max_len)
    if text != text.lower():
        raise WireError("hex must be lower case", field_name=name)
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise WireError("not valid hex", field_name=name) from None
    if size is not None and len(raw) != size:
        raise WireError(f"expected {size} bytes", field_name=name)
    return raw


def b64(data: bytes) -> str:
    """Standard base64 text of ``data`` (the wire's one binary encoding)."""
    return base64.b64encode(data).decode("ascii")


def _bank_id(name: str, field_name: str) -> int:
    alg = BY_NAME.get(name)
    if alg is None:
        raise WireError(f"unknown PCR bank {name!r}", field_name=field_name)
    return alg.alg_id


def _bank_name(alg_id: int) -> str:
    return HASH_ALGORITHMS[alg_id].name


# --- PCR maps --------------------------------------------------------------------------------

PcrSelection = Mapping[int, tuple[int, ...]]
PcrValues = Mapping[int, Mapping[int, bytes]]


def decode_pcr_selection(value: object, name: str = "pcr_selection") -> dict[int, tuple[int, ...]]:
    """``{"sha256": [0, 1, 7]}`` -> ``{0x000b: (0, 1, 7)}``; indices unique, sorted, <= 23."""
    out: dict[int, tuple[int, ...]] = {}
    for bank, pcrs in _obj(value, name).items():
        alg = _bank_id(bank, f"{name}.{bank}")
        if not isinstance(pcrs, list) or len(pcrs) > MAX_PCR_INDEX + 1:
            raise WireError("expected a list of PCR indices", field_name=f"{name}.{bank}")
        idx = [_int(p, f"{name}.{bank}", lo=0, hi=MAX_PCR_INDEX) for p in pcrs]
        if idx != sorted(set(idx)):
            raise WireError("PCR indices must be unique and ascending", field_name=f"{name}.{bank}")
        out[alg] = tuple(idx)
    return out


def encode_pcr_selection(selection: PcrSelection) -> dict[str, list[int]]:
    return {_bank_name(alg): sorted(pcrs) for alg, pcrs in selection.items()}


def decode_pcr_values(value: object, name: str = "pcr_values") -> dict[int, dict[int, bytes]]:
    """``{"sha256": {"0": "hex"}}`` -> ``{0x000b: {0: b"..."}}`` with digest sizes checked."""
    out: dict[int, dict[int, bytes]] = {}
    for bank, pcrs in _obj(value, name).items():
        alg = _bank_id(bank, f"{name}.{bank}")
        size = HASH_ALGORITHMS[alg].digest_size
        values: dict[int, bytes] = {}
        for key, hexval in _obj(pcrs, f"{name}.{bank}").items():
            if not key.isdigit() or int(key) > MAX_PCR_INDEX or str(int(key)) != key:
                raise WireError("PCR index must be 0..23", field_name=f"{name}.{bank}.{key}")
            values[int(key)] = _hex(hexval, f"{name}.{bank}.{key}", size=size)
        out[alg] = values
    return out


def encode_pcr_values(values: PcrValues) -> dict[str, dict[str, str]]:
    return {
        _bank_name(alg): {str(pcr): v.hex() for pcr, v in sorted(pcrs.items())}
        for alg, pcrs in values.items()
    }


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


# --- attestation -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Challenge:
    """A single-use nonce the hub issued, and when it stops being accepted (Unix seconds)."""

    nonce: bytes
    expires_at: float

    def to_json(self) -> dict[str, Any]:
        return {
            "type": "challenge",
            "version": PROTOCOL_VERSION,
            "nonce": b64(self.nonce),
            "expires_at": self.expires_at,
        }

    @classmethod
    def from_json(cls, value: object) -> Challenge:
        """Raises :class:`WireError`."""
        o = _obj(value, "challenge")
        _expect_type(o, "challenge")
        nonce = _b64(_req(o, "nonce", ""), "nonce", max_len=NONCE_SIZE)
        if len(nonce) != NONCE_SIZE:
            raise WireError(f"expected {NONCE_SIZE} bytes", field_name="nonce")
        expires = _req(o, "expires_at", "")
        if not isinstance(expires, int | float) or isinstance(expires, bool):
            raise WireError("expected a number", field_name="expires_at")
        return cls(nonce=nonce, expires_at=float(expires))


@dataclass(frozen=True, slots=True)
class EventLogEvidence:
    """One event log in a report: its SHA-256 always, its bytes unless the hub already has them."""

    sha256: bytes
    data: bytes | None = None

    def to_json(self) -> dict[str, Any]:
        return {"sha256": self.sha256.hex(), "data": _maybe_b64(self.data)}

    @classmethod
    def from_json(cls, value: object, name: str) -> EventLogEvidence:
        o = _obj(value, name)
        digest = _hex(_req(o, "sha256", name), f"{name}.sha256", size=32)
        data = _opt_b64(o.get("data"), f"{name}.data", max_len=MAX_EVENTLOG_BYTES)
        if data is not None and hashlib.sha256(data).digest() != digest:
            raise WireError("data does not match its sha256", field_name=name)
        return cls(sha256=digest, data=data)


@dataclass(frozen=True, slots=True)
class MissingEvidence:
    """Evidence the agent could not collect, and why (no TXT, lockdown, permission...)."""

    source: str
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source, "reason": self.reason}


@dataclass(frozen=True, slots=True)
class AssetTagEvidence:
    """The host's tag certificate (DER) and the AK's TPM2_NV_Certify of the asset-tag NV index
    (TPMS_ATTEST and TPMT_SIGNATURE), qualifying data
    :func:`trustcore.assettag.assettag_qualifying_data` of the report's nonce."""

    certificate: bytes
    nv_attest: bytes
    nv_signature: bytes

    def to_json(self) -> dict[str, Any]:
        return {
            "certificate": b64(self.certificate),
            "nv_attest": b64(self.nv_attest),
            "nv_signature": b64(self.nv_signature),
        }

    @classmethod
    def from_json(cls, value: object, name: str = "asset_tag") -> AssetTagEvidence:
        """Raises :class:`WireError`."""
        o = _obj(value, name)
        return cls(
            certificate=_b64(
                _req(o, "certificate", name), f"{name}.certificate", max_len=MAX_CERT_BYTES
            ),
            nv_attest=_b64(
                _req(o, "nv_attest", name), f"{name}.nv_attest", max_len=MAX_TPM_BLOB_BYTES
            ),
            nv_signature=_b64(
                _req(o, "nv_signature", name), f"{name}.nv_signature", max_len=MAX_TPM_BLOB_BYTES
            ),
        )


@dataclass(frozen=True, slots=True)
class ReportBody:
    """Everything a report asserts. Bound to the quote through :func:`report_qualifying_data`."""

    host_id: str
    boot_id: str
    nonce: bytes
    pcr_selection: PcrSelection
    pcr_values: PcrValues
    eventlogs: Mapping[str, EventLogEvidence] = field(default_factory=dict)
    missing_evidence: tuple[MissingEvidence, ...] = ()
    facts: Mapping[str, str] = field(default_factory=dict)
    agent_version: str = ""
    sequence: int = 0
    # optional, additive: the key is absent from the encoding when there is no evidence
    asset_tag: AssetTagEvidence | None = None

    def to_json(self) -> dict[str, Any]:
        out = self._to_json()
        if self.asset_tag is not None:
            out["asset_tag"] = self.asset_tag.to_json()
        return out

    def _to_json(self) -> dict[str, Any]:
        return {
            "type": "report_body",
            "version": PROTOCOL_VERSION,
            "host_id": self.host_id,
            "boot_id": self.boot_id,
            "nonce": b64(self.nonce),
            "sequence": self.sequence,
            "pcr_selection": encode_pcr_selection(self.pcr_selection),
            "pcr_values": encode_pcr_values(self.pcr_values),
            "eventlogs": {k: v.to_json() for k, v in sorted(self.eventlogs.items())},
            "missing_evidence": [m.to_json() for m in self.missing_evidence],
            "facts": dict(sorted(self.facts.items())),
            "agent_version": self.agent_version,
        }

    @classmethod
    def from_json(cls, value: object) -> ReportBody:
        """Raises :class:`WireError`."""
        o = _obj(value, "report_body")
        _expect_type(o, "report_body")
        logs = {
            _str(k, "eventlogs", max_len=32): EventLogEvidence.from_json(v, f"eventlogs.{k}")
            for k, v in _obj(o.get("eventlogs", {}), "eventlogs").items()
        }
        if len(logs) > 4:
            raise WireError("at most 4 event logs", field_name="eventlogs")
        missing_raw = o.get("missing_evidence", [])
        if not isinstance(missing_raw, list) or len(missing_raw) > 16:
            raise WireError("expected a list of at most 16", field_name="missing_evidence")
        missing = tuple(
            MissingEvidence(
                source=_str(_req(_obj(m, "missing_evidence"), "source", "missing"), "source"),
                reason=_str(
                    _req(_obj(m, "missing_evidence"), "reason", "missing"), "reason", max_len=1024
                ),
            )
            for m in missing_raw
        )
        facts_raw = _obj(o.get("facts", {}), "facts")
        if len(facts_raw) > 32:
            raise WireError("at most 32 facts", field_name="facts")
        facts = {
            _str(k, "facts", max_len=64): _str(v, f"facts.{k}", max_len=1024, empty=True)
            for k, v in facts_raw.items()
        }
        nonce = _b64(_req(o, "nonce", ""), "nonce", max_len=NONCE_SIZE)
        if len(nonce) != NONCE_SIZE:
            raise WireError(f"expected {NONCE_SIZE} bytes", field_name="nonce")
        return cls(
            host_id=_host_id(_req(o, "host_id", "")),
            boot_id=_str(_req(o, "boot_id", ""), "boot_id", max_len=64),
            nonce=nonce,
            sequence=_int(o.get("sequence", 0), "sequence", lo=0, hi=2**63 - 1),
            pcr_selection=decode_pcr_selection(_req(o, "pcr_selection", "")),
            pcr_values=decode_pcr_values(_req(o, "pcr_values", "")),
            eventlogs=logs,
            missing_evidence=missing,
            facts=facts,
            agent_version=_str(o.get("agent_version", ""), "agent_version", empty=True),
            asset_tag=None
            if o.get("asset_tag") is None
            else AssetTagEvidence.from_json(o["asset_tag"]),
        )


def encode_report_body(body: ReportBody) -> bytes:
    """The canonical bytes of a report body: sorted keys, no spaces, ASCII only."""
    return json.dumps(
        body.to_json(), sort_keys=True, separators=(",", ":"), ensure_ascii=True
    ).encode("ascii")


def report_qualifying_data(nonce: bytes, body_bytes: bytes) -> bytes:
    """The quote's qualifying data: ``SHA-256(nonce || SHA-256(body_bytes))``."""
    return hashlib.sha256(nonce + hashlib.sha256(body_bytes).digest()).digest()


def binding_qualifying_data(ek_public: bytes, ak_public: bytes) -> bytes:
    """The qualifying data of the AK's TPM2_Certify of the binding key at enrollment:
    ``SHA-256(b"trustplane-binding-v1" || SHA-256(ek_public) || SHA-256(ak_public))``."""
    return hashlib.sha256(
        b"trustplane-binding-v1"
        + hashlib.sha256(ek_public).digest()
        + hashlib.sha256(ak_public).digest()
    ).digest()


@dataclass(frozen=True, slots=True)
class Report:
    """A signed report: the body's exact bytes plus the TPM quote over them.

    ``attest`` is the marshalled TPMS_ATTEST, ``signature`` the marshalled TPMT_SIGNATURE.
    """

    body_bytes: bytes
    attest: bytes
    signature: bytes

    def to_json(self) -> dict[str, Any]:
        return {
            "type": "report",
            "version": PROTOCOL_VERSION,
            "body": self.body_bytes.decode("ascii"),
            "attest": b64(self.attest),
            "signature": b64(self.signature),
        }

    @classmethod
    def from_json(cls, value: object) -> Report:
        """Raises :class:`WireError`. The body stays bytes; decode it with :meth:`body`."""
        o = _obj(value, "report")
        _expect_type(o, "report")
        body = _str(_req(o, "body", ""), "body", max_len=MAX_BODY_BYTES)
        if not body.isascii():
            raise WireError("must be ASCII", field_name="body")
        return cls(
            body_bytes=body.encode("ascii"),
            attest=_b64(_req(o, "attest", ""), "attest", max_len=MAX_TPM_BLOB_BYTES),
            signature=_b64(_req(o, "signature", ""), "signature", max_len=MAX_TPM_BLOB_BYTES),
        )

    def body(self) -> ReportBody:
        """Decode the body bytes. Raises :class:`WireError`."""
        try:
            value = json.loads(self.body_bytes)
        except (ValueError, RecursionError):
            raise WireError("body is not valid JSON", field_name="body") from None
        return ReportBody.from_json(value)


@dataclass(frozen=True, slots=True)
class ReportResult:
    """The hub's answer to a report: the verdict, its signed form, and when to report next."""

    verdict: str
    reasons: tuple[str, ...]
    trust_report: str
    valid_until: float
    next_report_in: float
    missing_eventlogs: tuple[str, ...] = ()
    # the host's current tag certificate (DER) when the report did not carry it; the agent
    # writes its SHA-384 into the asset-tag NV index and reports again
    tag_certificate: bytes | None = None
    # a single-use nonce for the host's next report, so that a steady-state report is one
    # request (docs/protocol.md, "The next report's nonce"); absent from older hubs
    next_challenge: Challenge | None = None

    def to_json(self) -> dict[str, Any]:
        out = self._to_json()
        if self.tag_certificate is not None:
            out["tag_certificate"] = b64(self.tag_certificate)
        if self.next_challenge is not None:
            out["next_challenge"] = self.next_challenge.to_json()
        return out

    def _to_json(self) -> dict[str, Any]:
        return {
            "type": "report_result",
            "version": PROTOCOL_VERSION,
            "verdict": self.verdict,
            "reasons": list(self.reasons),
            "trust_report": self.trust_report,
            "valid_until": self.valid_until,
            "next_report_in": self.next_report_in,
            "missing_eventlogs": list(self.missing_eventlogs),
        }

    @classmethod
    def from_json(cls, value: object) -> ReportResult:
        """Raises :class:`WireError`."""
        o = _obj(value, "report_result")
        _expect_type(o, "report_result")
        reasons = _req(o, "reasons", "")
        if not isinstance(reasons, list) or len(reasons) > 64:
            raise WireError("expected a list of at most 64", field_name="reasons")
        missing = o.get("missing_eventlogs", [])
        if not isinstance(missing, list) or len(missing) > 4:
            raise WireError("expected a list of at most 4", field_name="missing_eventlogs")
        return cls(
            verdict=_str(_req(o, "verdict", ""), "verdict", max_len=32),
            reasons=tuple(_str(r, "reasons", max_len=128) for r in reasons),
            trust_report=_str(_req(o, "trust_report", ""), "trust_report", max_len=65536),
            valid_until=_number(_req(o, "valid_until", ""), "valid_until"),
            next_report_in=_number(_req(o, "next_report_in", ""), "next_report_in"),
            missing_eventlogs=tuple(_str(m, "missing_eventlogs", max_len=32) for m in missing),
            tag_certificate=_opt_b64(
                o.get("tag_certificate"), "tag_certificate", max_len=MAX_CERT_BYTES
            ),
            next_challenge=(
                None
                if o.get("next_challenge") is None
                else Challenge.from_json(o["next_challenge"])
            ),
        )


# --- helpers ---------------------------------------------------------------------------------


def host_id_from_ek(ek_public: bytes) -> str:
    """A host's identity: the SHA-256 (hex) of its marshalled EK public area."""
    return hashlib.sha256(ek_public).hexdigest()


def _host_id(value: object) -> str:
    text = _str(value, "host_id", max_len=64)
    _hex(text, "host_id", size=32)
    return text


def _number(value: object, name: str) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise WireError("expected a number", field_name=name)
    return float(value)


def _maybe_b64(data: bytes | None) -> str | None:
    return None if data is None else b64(data)


def _expect_type(o: Mapping[str, Any], kind: str) -> None:
    if o.get("type") != kind:
        raise WireError(f"expected type {kind!r}", field_name="type")
    if o.get("version") != PROTOCOL_VERSION:
        raise WireError(f"unsupported protocol version {o.get('version')!r}", field_name="version")
