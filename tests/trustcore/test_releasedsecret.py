"""trustcore.releasedsecret: the hybrid seal of a released secret (RSA-OAEP + AES-256-GCM)."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from trustcore.releasedsecret import ReleasedSecretError, open_content, seal_secret, split_sealed

KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OAEP = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
CK = bytes(range(32))
IV = bytes(range(12))


def _open(sealed: bytes, annotation: bytes) -> bytes:
    rsa_part, iv, rest = split_sealed(sealed, 256)
    return open_content(KEY.decrypt(rsa_part, OAEP), iv, rest, annotation)


@pytest.mark.parametrize("size", [1, 190, 193, 2048])
def test_round_trip_any_size(size: int) -> None:
    secret = bytes(i % 251 for i in range(size))
    sealed = seal_secret(KEY.public_key(), secret, b"blob-a", content_key=CK, iv=IV)
    assert len(sealed) == 256 + 12 + size + 16
    assert sealed[256:268] == IV
    assert _open(sealed, b"blob-a") == secret


def test_bound_to_its_annotation_and_every_byte() -> None:
    sealed = seal_secret(KEY.public_key(), b"optsdata", b"blob-a", content_key=CK, iv=IV)
    with pytest.raises(ReleasedSecretError) as err:
        _open(sealed, b"blob-b")
    assert err.value.reason == "release.secret_invalid"
    flipped = sealed[:-1] + bytes([sealed[-1] ^ 1])
    with pytest.raises(ReleasedSecretError):
        _open(flipped, b"blob-a")
    with pytest.raises(ReleasedSecretError):
        split_sealed(sealed[: 256 + 12 + 15], 256)
    with pytest.raises(ValueError, match="32-byte content key"):
        seal_secret(KEY.public_key(), b"x", b"a", content_key=b"short", iv=IV)
