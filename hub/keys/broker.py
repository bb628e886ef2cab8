"""The key broker's cryptography: keys sealed under the master key, blobs, the policy key.

Every key-encryption key is 32 random bytes, stored only sealed: AES-256-GCM under a sub-key of
the hub's master key (HKDF-SHA256, info ``trustplane-hub key broker v1``) with the key id as
associated data, so a sealed key moved to another row does not open. Blobs
(:mod:`trustcore.keyblob`) are AES-256-GCM under the key itself with
:meth:`~trustcore.keyblob.KeyBlob.associated_data`.

The *policy-signing key* is an ECDSA P-256 key derived from the master key (HKDF-SHA256, info
``trustplane-hub binding policy key v1``): a binding key's authPolicy is PolicyAuthorize by it
(:func:`trustcore.tpm.authorize.policy_authorize_digest` of its TPM name), and the hub signs the
PolicyPCR digest of each trusted report it releases against. It is derived, not stored, so it
is as durable as the master key and never written anywhere.

Nothing here logs, and no exception message carries key material.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from hub.errors import ApiError
from trustcore.keyblob import IV_BYTES, KeyBlob
from trustcore.tpm.authorize import ecc_signing_public, policy_authorize_digest, tpm_name

__all__ = ["KEY_BYTES", "Broker", "PolicySigner"]

KEY_BYTES: Final = 32
_SEAL_INFO: Final = b"trustplane-hub key broker v1"
_SIGNER_INFO: Final = b"trustplane-hub binding policy key v1"
_P256_ORDER: Final = int("FFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551", 16)


def _hkdf(master: bytes, info: bytes, length: int) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=info).derive(master)


class OpenFailed(Exception):
    """A sealed key or a blob did not open (tampered, another key, another hub)."""


@dataclass(frozen=True, slots=True)
class PolicySigner:
    """The hub's policy-signing key and what a binding key's policy names of it."""

    key: ec.EllipticCurvePrivateKey
    public: bytes  # TPMT_PUBLIC (ECC P-256, ECDSA-SHA256 signing, as TPM2_LoadExternal takes)
    name: bytes  # its TPM name (nameAlg SHA-256)
    authorize_policy: bytes  # PolicyAuthorize(name, policyRef empty): a binding key's authPolicy


def derive_policy_signer(master: bytes) -> PolicySigner:
    """The policy-signing key derived from the master key (the same key every start)."""
    scalar = int.from_bytes(_hkdf(master, _SIGNER_INFO, 48), "big") % (_P256_ORDER - 1) + 1
    key = ec.derive_private_key(scalar, ec.SECP256R1())
    public = ecc_signing_public(key.public_key())
    name = tpm_name(public)
    return PolicySigner(key, public, name, policy_authorize_digest(name, b""))


class Broker:
    """Seals and opens keys and blobs for one hub (built from its master key)."""

    def __init__(
        self, master_key: bytes, *, random_bytes: Callable[[int], bytes] = os.urandom
    ) -> None:
        self._seal = AESGCM(_hkdf(master_key, _SEAL_INFO, KEY_BYTES))
        self._random = random_bytes
        self.random_bytes = random_bytes  # the hub's randomness, for sealing released secrets
        self.signer = derive_policy_signer(master_key)

    def new_key(self, policy: str) -> tuple[str, bytes]:
        """A new key for ``policy``: its id and its sealed material (the key is not kept)."""
        key_id = f"{policy[:40]}.{secrets.token_hex(6)}"
        key = self._random(KEY_BYTES)
        iv = self._random(IV_BYTES)
        return key_id, iv + self._seal.encrypt(iv, key, key_id.encode())

    def _open_material(self, key_id: str, material: bytes) -> bytes:
        try:
            return self._seal.decrypt(material[:IV_BYTES], material[IV_BYTES:], key_id.encode())
        except (InvalidTag, ValueError):
            raise OpenFailed("sealed key does not open under this hub's master key") from None

    def wrap(self, key_id: str, material: bytes, policy: str, hub: str, secret: bytes) -> KeyBlob:
        """A blob carrying ``secret`` under the key. Raises :class:`ApiError` 500-free: a sealed
        key that does not open is ``keys.key_unusable`` (409)."""
        try:
            key = self._open_material(key_id, material)
        except OpenFailed:
            raise ApiError(
                409, "keys.key_unusable", f"key {key_id} does not open under the master key"
            ) from None
        iv = self._random(IV_BYTES)
        probe = KeyBlob(key_id=key_id, policy=policy, hub=hub, iv=iv, ciphertext=bytes(17))
        ct = AESGCM(key).encrypt(iv, secret, probe.associated_data())
        return KeyBlob(key_id=key_id, policy=policy, hub=hub, iv=iv, ciphertext=ct)

    def unwrap(self, blob: KeyBlob, material: bytes) -> bytes:
        """The blob's secret. Raises :class:`OpenFailed` (tampered blob, or wrong key)."""
        key = self._open_material(blob.key_id, material)
        try:
            return AESGCM(key).decrypt(blob.iv, blob.ciphertext, blob.associated_data())
        except (InvalidTag, ValueError):
            raise OpenFailed("the blob does not open under its key") from None
