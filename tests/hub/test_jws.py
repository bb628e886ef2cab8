"""hub.jws: ES256 compact JWS made by hand, checked against RFC 7515's shape."""

from __future__ import annotations

import base64
import json

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from hub.jws import JwsError, b64url_decode, key_id, sign_jws, verify_jws


def part(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def test_token_shape_and_independent_verification() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    token = sign_jws({"host_id": "ab", "verdict": "trusted", "iat": 5}, key)
    header_b64, payload_b64, sig_b64 = token.split(".")
    assert "=" not in token
    header = json.loads(part(header_b64))
    assert header == {"alg": "ES256", "typ": "JWT", "kid": key_id(key.public_key())}
    assert json.loads(part(payload_b64)) == {"host_id": "ab", "verdict": "trusted", "iat": 5}
    raw = part(sig_b64)
    assert len(raw) == 64
    # verify with cryptography directly: r || s over "header.payload"
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    key.public_key().verify(der, f"{header_b64}.{payload_b64}".encode(), ec.ECDSA(hashes.SHA256()))
    assert verify_jws(token, key.public_key())["verdict"] == "trusted"


def test_tampered_payload_is_refused() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    h, _, s = sign_jws({"verdict": "untrusted"}, key).split(".")
    forged = base64.urlsafe_b64encode(b'{"verdict":"trusted"}').rstrip(b"=").decode()
    with pytest.raises(JwsError, match="signature does not verify"):
        verify_jws(f"{h}.{forged}.{s}", key.public_key())


def test_other_key_is_refused() -> None:
    token = sign_jws({"a": 1}, ec.generate_private_key(ec.SECP256R1()))
    with pytest.raises(JwsError, match="another key"):
        verify_jws(token, ec.generate_private_key(ec.SECP256R1()).public_key())


@pytest.mark.parametrize(
    "token",
    ["", "a.b", "a.b.c.d", "e30.e30.AAAA", "bm90IGpzb24.e30.AAAA", "eyJhbGciOiJub25lIn0.e30."],
)
def test_malformed_tokens_raise_jws_error(token: str) -> None:
    with pytest.raises(JwsError):
        verify_jws(token, ec.generate_private_key(ec.SECP256R1()).public_key())


def test_padding_is_refused() -> None:
    with pytest.raises(JwsError):
        b64url_decode("YQ==")
