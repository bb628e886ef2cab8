"""This host's signed trust report, as the hub issued it, and checking it (for the OCI hook).

After every acknowledged report the daemon stores the hub's answer in the state directory
(``trust-report.json``: the JWS ``trust_report``, its ``valid_until`` and verdict), and once
per hub key the hub's JWS public key (``hub-jws.pem``, from ``GET /v1/trust-report-key`` over
the mutually authenticated TLS connection the agent reports on). :func:`check_trust_report`
decides whether containers that require a trusted platform may start: the token must be a
compact ES256 JWS (RFC 7515/7518) that verifies with the hub's key (its ``kid``, when present,
naming that key), name this host, say ``trusted``, and not be past its ``valid_until``.
Every "no" is a :class:`TrustReportRefused` with a reason id and a sentence.

Only ``cryptography`` is used (the agent does not depend on jwcrypto); the hub's
``hub.jws`` makes the tokens.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass
from typing import Any, Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from nodeagent.errors import NodeAgentError

MAX_TOKEN_CHARS: Final = 65536
MAX_KEY_PEM_BYTES: Final = 4096


class TrustReportRefused(NodeAgentError):
    """The host's trust report does not allow what was asked (``reason`` says why)."""

    reason = "hook.refused"


@dataclass(frozen=True, slots=True)
class TrustReport:
    """A verified trust report's payload fields the hook uses."""

    host_id: str
    verdict: str
    reasons: tuple[str, ...]
    valid_until: float


def _b64url(text: str) -> bytes:
    if "=" in text or not text.isascii():
        raise ValueError("not unpadded base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def key_id(public_key: ec.EllipticCurvePublicKey) -> str:
    """The hub's key id: base64url SHA-256 of the SubjectPublicKeyInfo, first 16 bytes."""
    spki = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.urlsafe_b64encode(hashlib.sha256(spki).digest()[:16]).rstrip(b"=").decode()


def load_public_key(pem: bytes) -> ec.EllipticCurvePublicKey:
    """A P-256 public key from PEM; raises :class:`TrustReportRefused`."""
    if len(pem) > MAX_KEY_PEM_BYTES:
        raise TrustReportRefused("the hub's key file is too large", reason="hook.key_invalid")
    try:
        key = serialization.load_pem_public_key(pem)
    except ValueError:
        raise TrustReportRefused(
            "the hub's key file is not a PEM public key", reason="hook.key_invalid"
        ) from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise TrustReportRefused("the hub's key is not a P-256 key", reason="hook.key_invalid")
    return key


def verify_jws(token: str, public_key: ec.EllipticCurvePublicKey) -> dict[str, Any]:
    """The payload of a compact ES256 JWS signed by ``public_key``; raises
    :class:`TrustReportRefused` (``hook.report_invalid``)."""

    def bad(why: str) -> TrustReportRefused:
        return TrustReportRefused(
            f"the trust report's signature does not verify ({why})", reason="hook.report_invalid"
        )

    if not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS:
        raise bad("not a token")
    parts = token.split(".")
    if len(parts) != 3:
        raise bad("not a compact JWS")
    try:
        header = json.loads(_b64url(parts[0]))
        payload = json.loads(_b64url(parts[1]))
        signature = _b64url(parts[2])
    except (ValueError, binascii.Error, RecursionError):
        raise bad("not base64url JSON") from None
    if not isinstance(header, dict) or header.get("alg") != "ES256":
        raise bad("algorithm is not ES256")
    if header.get("kid") not in (None, key_id(public_key)):
        raise bad("signed by another hub key")
    if len(signature) != 64:
        raise bad("not an ES256 signature")
    der = encode_dss_signature(
        int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    )
    try:
        public_key.verify(der, f"{parts[0]}.{parts[1]}".encode(), ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise bad("bad signature") from None
    if not isinstance(payload, dict):
        raise bad("payload is not an object")
    return payload


def check_trust_report(
    token: str, public_key: ec.EllipticCurvePublicKey, host_id: str, now: float
) -> TrustReport:
    """The verified report when it lets a container requiring a trusted host start.

    Raises :class:`TrustReportRefused`: ``hook.report_invalid`` (signature, format),
    ``hook.host_mismatch`` (another host's report), ``hook.host_untrusted`` (verdict not
    ``trusted``; the sentence lists the hub's reasons), ``hook.report_expired``.
    """
    payload = verify_jws(token, public_key)
    reasons = payload.get("reasons")
    valid_until = payload.get("valid_until")
    verdict = payload.get("verdict")
    if (
        not isinstance(payload.get("host_id"), str)
        or not isinstance(verdict, str)
        or not isinstance(reasons, list)
        or not all(isinstance(r, str) for r in reasons)
        or isinstance(valid_until, bool)
        or not isinstance(valid_until, int | float)
    ):
        raise TrustReportRefused(
            "the trust report lacks host_id, verdict, reasons or valid_until",
            reason="hook.report_invalid",
        )
    report = TrustReport(payload["host_id"], verdict, tuple(reasons), float(valid_until))
    if report.host_id != host_id:
        raise TrustReportRefused("the trust report is another host's", reason="hook.host_mismatch")
    if report.verdict != "trusted":
        why = ", ".join(report.reasons[:4]) or "no reason given"
        raise TrustReportRefused(
            f"host {report.verdict} ({why})"[:400], reason="hook.host_untrusted"
        )
    if report.valid_until <= now:
        raise TrustReportRefused(
            f"the trust report expired {now - report.valid_until:.0f}s ago "
            "(the agent has not attested since)",
            reason="hook.report_expired",
        )
    return report
