"""PolicyAuthorize in software: a binding key usable in whatever PCR state a signer approves.

A TPM object whose authPolicy is ``PolicyAuthorize(keySign)`` can be used in a policy session
that first reached some policy digest ``approvedPolicy`` (here: TPM2_PolicyPCR over the current
PCR values) and then ran TPM2_PolicyAuthorize with a ticket from TPM2_VerifySignature showing
that ``keySign`` signed ``aHash = H(approvedPolicy || policyRef)`` (TPM 2.0 Library, Part 3,
23.16). The hub is that signer (:mod:`hub.keys.broker`): it signs the PolicyPCR digest of each
PCR state it attested as trusted, so a host's binding key follows legitimate reboots, while in
any other state the TPM has no signature that opens the key. The update is::

    policyDigest' = H(0...0 || TPM_CC_PolicyAuthorize || keySign.name)
    policyDigest  = H(policyDigest' || policyRef)

This module computes digests and encodes the TPM structures the signer hands out (an ECC P-256
signing key's TPMT_PUBLIC for TPM2_LoadExternal and an ECDSA TPMT_SIGNATURE); pure, no I/O.
"""

from __future__ import annotations

from typing import Final

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from trustcore.algorithms import TPM_ALG_SHA256, digest
from trustcore.tpm.constants import (
    TPM_ALG_ECC,
    TPM_ALG_ECDSA,
    TPM_ALG_NULL,
    TPM_ECC_NIST_P256,
    TPMA_OBJECT_SIGN_ENCRYPT,
    TPMA_OBJECT_USERWITHAUTH,
)
from trustcore.tpm.public import compute_name

__all__ = [
    "TPM_CC_POLICY_AUTHORIZE",
    "authorize_message",
    "ecc_signing_public",
    "ecdsa_signature",
    "policy_authorize_digest",
    "tpm_name",
]

TPM_CC_POLICY_AUTHORIZE: Final = 0x0000016A
_P256_BYTES: Final = 32


def policy_authorize_digest(key_name: bytes, policy_ref: bytes = b"") -> bytes:
    """The SHA-256 authPolicy of an object usable through PolicyAuthorize by the key named
    ``key_name`` (its TPM name) with ``policy_ref``."""
    first = digest(
        TPM_ALG_SHA256, bytes(32) + TPM_CC_POLICY_AUTHORIZE.to_bytes(4, "big") + key_name
    )
    return digest(TPM_ALG_SHA256, first + policy_ref)


def authorize_message(approved_policy: bytes, policy_ref: bytes = b"") -> bytes:
    """``aHash``: what the signer signs (SHA-256, the signing scheme's hash)."""
    return digest(TPM_ALG_SHA256, approved_policy + policy_ref)


def _b2(data: bytes) -> bytes:
    return len(data).to_bytes(2, "big") + data


def ecc_signing_public(key: ec.EllipticCurvePublicKey) -> bytes:
    """The TPMT_PUBLIC of a P-256 ECDSA-SHA256 signing key (no policy, not restricted)."""
    if not isinstance(key.curve, ec.SECP256R1):
        raise TypeError("only P-256 policy-signing keys are supported")
    numbers = key.public_numbers()
    attributes = TPMA_OBJECT_SIGN_ENCRYPT | TPMA_OBJECT_USERWITHAUTH
    return b"".join(
        [
            TPM_ALG_ECC.to_bytes(2, "big"),
            TPM_ALG_SHA256.to_bytes(2, "big"),
            attributes.to_bytes(4, "big"),
            _b2(b""),  # authPolicy
            TPM_ALG_NULL.to_bytes(2, "big"),  # symmetric
            TPM_ALG_ECDSA.to_bytes(2, "big") + TPM_ALG_SHA256.to_bytes(2, "big"),  # scheme
            TPM_ECC_NIST_P256.to_bytes(2, "big"),
            TPM_ALG_NULL.to_bytes(2, "big"),  # kdf
            _b2(numbers.x.to_bytes(_P256_BYTES, "big")),
            _b2(numbers.y.to_bytes(_P256_BYTES, "big")),
        ]
    )


def tpm_name(public: bytes) -> bytes:
    """The TPM name of a SHA-256 TPMT_PUBLIC: ``TPM_ALG_SHA256 || SHA-256(public)``."""
    return compute_name(TPM_ALG_SHA256, public)


def ecdsa_signature(der: bytes) -> bytes:
    """A DER ECDSA-SHA256 signature (``cryptography``'s form) as a TPMT_SIGNATURE."""
    r, s = decode_dss_signature(der)
    return b"".join(
        [
            TPM_ALG_ECDSA.to_bytes(2, "big"),
            TPM_ALG_SHA256.to_bytes(2, "big"),
            _b2(r.to_bytes(_P256_BYTES, "big")),
            _b2(s.to_bytes(_P256_BYTES, "big")),
        ]
    )
