"""Attestation messages: challenge, report body and report (bound to the quote), result."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from trustcore.wire.fields import (
    MAX_BODY_BYTES,
    MAX_CERT_BYTES,
    MAX_EVENTLOG_BYTES,
    MAX_TPM_BLOB_BYTES,
    NONCE_SIZE,
    PROTOCOL_VERSION,
    PcrSelection,
    PcrValues,
    WireError,
    _b64,
    _expect_type,
    _hex,
    _host_id,
    _int,
    _maybe_b64,
    _number,
    _obj,
    _opt_b64,
    _req,
    _str,
    b64,
    decode_pcr_selection,
    decode_pcr_values,
    encode_pcr_selection,
    encode_pcr_values,
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
