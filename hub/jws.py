"""Signed trust reports: JWS compact serialisation with ES256 (RFC 7515/7518), by hand.

``sign_jws`` makes ``base64url(header).base64url(payload).base64url(r || s)`` with the header
``{"alg": "ES256", "typ": "JWT", "kid": ...}``; ``verify_jws`` checks the header, the signature
and returns the payload. Expiry is the caller's business (the payload carries ``valid_until``).
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import json
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

_COORD = 32  # P-256


class JwsError(Exception):
    """A token that is malformed, uses another algorithm, or whose signature does not verify."""

    reason = "jws.invalid"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Raises :class:`JwsError` on anything but unpadded base64url."""
    if "=" in text or not text.isascii():
        raise JwsError("not unpadded base64url")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise JwsError("not base64url") from None


def key_id(public_key: ec.EllipticCurvePublicKey) -> str:
    """A stable key id: base64url SHA-256 of the SubjectPublicKeyInfo, first 16 bytes."""
    spki = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return b64url(hashlib.sha256(spki).digest()[:16])


@functools.lru_cache(maxsize=8)
def _encoded_header(key: ec.EllipticCurvePrivateKey) -> str:
    return b64url(_json({"alg": "ES256", "typ": "JWT", "kid": key_id(key.public_key())}))


def _json(obj: object) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode("utf-8")


def sign_jws(payload: dict[str, Any], key: ec.EllipticCurvePrivateKey) -> str:
    """The compact JWS of ``payload`` signed with the P-256 ``key``."""
    if not isinstance(key.curve, ec.SECP256R1):
        raise JwsError("ES256 needs a P-256 key")
    signing_input = f"{_encoded_header(key)}.{b64url(_json(payload))}".encode("ascii")
    r, s = decode_dss_signature(key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
    return f"{signing_input.decode('ascii')}.{b64url(r.to_bytes(_COORD) + s.to_bytes(_COORD))}"


def verify_jws(token: str, public_key: ec.EllipticCurvePublicKey) -> dict[str, Any]:
    """Check a compact ES256 JWS and return its payload. Raises :class:`JwsError`."""
    parts = token.split(".")
    if len(parts) != 3:
        raise JwsError("expected three dot-separated parts")
    try:
        header = json.loads(b64url_decode(parts[0]))
        payload = json.loads(b64url_decode(parts[1]))
    except (ValueError, RecursionError):
        raise JwsError("header or payload is not JSON") from None
    if not isinstance(header, dict) or header.get("alg") != "ES256":
        raise JwsError("algorithm must be ES256")
    if header.get("kid") not in (None, key_id(public_key)):
        raise JwsError("signed by another key")
    if not isinstance(payload, dict):
        raise JwsError("payload must be a JSON object")
    raw = b64url_decode(parts[2])
    if len(raw) != 2 * _COORD:
        raise JwsError("ES256 signature must be 64 bytes")
    der = encode_dss_signature(
        int.from_bytes(raw[:_COORD], "big"), int.from_bytes(raw[_COORD:], "big")
    )
    try:
        public_key.verify(der, f"{parts[0]}.{parts[1]}".encode("ascii"), ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise JwsError("signature does not verify") from None
    return payload
