"""Signed trust reports: JWS compact serialisation with ES256 (RFC 7515/7518), with jwcrypto.

``sign_jws`` makes ``base64url(header).base64url(payload).base64url(r || s)`` with the protected
header ``{"alg":"ES256","kid":...,"typ":"JWT"}`` and the payload, both as compact JSON with
sorted keys (the token format the hub has always issued); ``verify_jws`` accepts only ES256 by
the given key (the ``kid``, when present, must be that key's) and returns the payload. The JOSE
work is jwcrypto's (Fedora packages it as python3-jwcrypto); this module fixes the format and
turns every failure into :class:`JwsError`. Expiry is the caller's business (the payload
carries ``valid_until``).
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import json
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jwcrypto import jwk, jws
from jwcrypto.common import JWException

_ALG = "ES256"


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


def _json(obj: object) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


@functools.lru_cache(maxsize=8)
def _signing_key(key: ec.EllipticCurvePrivateKey) -> tuple[jwk.JWK, str]:
    header = _json({"alg": _ALG, "typ": "JWT", "kid": key_id(key.public_key())})
    return jwk.JWK.from_pyca(key), header


def sign_jws(payload: dict[str, Any], key: ec.EllipticCurvePrivateKey) -> str:
    """The compact JWS of ``payload`` signed with the P-256 ``key``."""
    if not isinstance(key.curve, ec.SECP256R1):
        raise JwsError("ES256 needs a P-256 key")
    signer, header = _signing_key(key)
    token = jws.JWS(_json(payload).encode("utf-8"))
    token.add_signature(signer, alg=_ALG, protected=header)
    compact: str = token.serialize(compact=True)
    return compact


def verify_jws(token: str, public_key: ec.EllipticCurvePublicKey) -> dict[str, Any]:
    """Check a compact ES256 JWS and return its payload. Raises :class:`JwsError`."""
    parts = token.split(".")
    if len(parts) != 3:
        raise JwsError("expected three dot-separated parts")
    try:
        header = json.loads(b64url_decode(parts[0]))
    except (ValueError, RecursionError):
        raise JwsError("header is not JSON") from None
    if not isinstance(header, dict) or header.get("alg") != _ALG:
        raise JwsError("algorithm must be ES256")
    if header.get("kid") not in (None, key_id(public_key)):
        raise JwsError("signed by another key")
    checked = jws.JWS()
    checked.allowed_algs = [_ALG]
    try:
        checked.deserialize(token)
        checked.verify(jwk.JWK.from_pyca(public_key), alg=_ALG)
    except (JWException, ValueError, TypeError) as e:
        raise JwsError(f"signature does not verify ({type(e).__name__})") from None
    try:
        payload = json.loads(checked.payload)
    except (ValueError, RecursionError):
        raise JwsError("payload is not JSON") from None
    if not isinstance(payload, dict):
        raise JwsError("payload must be a JSON object")
    return payload
