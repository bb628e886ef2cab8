"""A released layer secret, encrypted to a host's TPM binding key (hybrid RSA-OAEP + AES-GCM).

RSA-OAEP with SHA-256 under a 2048-bit key carries at most 190 bytes, and ocicrypt's
``optsdata`` is larger (193 bytes from skopeo), so the hub seals each secret in two layers::

    sealed = RSA-OAEP-SHA256(binding key, K) || IV (12) || AES-256-GCM(K, IV, secret, aad)
    aad    = SHA-256(annotation blob bytes)

``K`` is a fresh 32-byte key per secret; only the host's TPM can recover it (the RSA part,
``TPM2_RSA_Decrypt`` under the binding key's policy), so the secret stays bound to the TPM and
its attested state. The associated data ties each sealed secret to the blob it was released
for: a secret answered for one annotation does not open as another's.

Pure: the caller supplies ``K`` and the IV (the hub's randomness); no I/O.
"""

from __future__ import annotations

import hashlib
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from trustcore.errors import TrustcoreError

__all__ = [
    "CONTENT_KEY_BYTES",
    "IV_BYTES",
    "ReleasedSecretError",
    "open_content",
    "seal_secret",
    "split_sealed",
]

CONTENT_KEY_BYTES: Final = 32
IV_BYTES: Final = 12
TAG_BYTES: Final = 16
_OAEP: Final = padding.OAEP(
    mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None
)


class ReleasedSecretError(TrustcoreError):
    """A sealed secret that is malformed or does not open."""

    reason = "release.secret_invalid"


def _aad(annotation: bytes) -> bytes:
    return hashlib.sha256(annotation).digest()


def seal_secret(
    binding_key: rsa.RSAPublicKey,
    secret: bytes,
    annotation: bytes,
    *,
    content_key: bytes,
    iv: bytes,
) -> bytes:
    """Seal ``secret`` for the holder of ``binding_key``'s private key (see the module)."""
    if len(content_key) != CONTENT_KEY_BYTES or len(iv) != IV_BYTES:
        raise ValueError("a 32-byte content key and a 12-byte IV are needed")
    wrapped = binding_key.encrypt(content_key, _OAEP)
    return wrapped + iv + AESGCM(content_key).encrypt(iv, secret, _aad(annotation))


def split_sealed(sealed: bytes, modulus_bytes: int) -> tuple[bytes, bytes, bytes]:
    """``(RSA part, IV, AES-GCM part)`` of a sealed secret for a ``modulus_bytes`` key.

    Raises :class:`ReleasedSecretError` when it is too short to hold them.
    """
    if len(sealed) < modulus_bytes + IV_BYTES + TAG_BYTES:
        raise ReleasedSecretError(f"a sealed secret of {len(sealed)} bytes is too short")
    rest = sealed[modulus_bytes:]
    return sealed[:modulus_bytes], rest[:IV_BYTES], rest[IV_BYTES:]


def open_content(content_key: bytes, iv: bytes, ciphertext: bytes, annotation: bytes) -> bytes:
    """The secret, once the TPM recovered ``content_key``. Raises :class:`ReleasedSecretError`
    (another annotation's secret, a changed byte, a wrong key)."""
    if len(content_key) != CONTENT_KEY_BYTES:
        raise ReleasedSecretError("the recovered content key has the wrong size")
    try:
        return AESGCM(content_key).decrypt(iv, ciphertext, _aad(annotation))
    except (InvalidTag, ValueError):
        raise ReleasedSecretError("the sealed secret does not open for this annotation") from None
