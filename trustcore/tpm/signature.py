"""TPMT_SIGNATURE: decoding of the RSA (RSASSA, RSAPSS) and ECC (ECDSA and its relatives)
signatures a TPM returns from Quote, Certify and NV_Certify.

Only decoding lives here; checking a signature against a key is
:class:`trustcore.quote.AttestationKey`'s job.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from trustcore.tpm.constants import (
    TPM_ALG_ECDAA,
    TPM_ALG_ECDSA,
    TPM_ALG_ECSCHNORR,
    TPM_ALG_RSAPSS,
    TPM_ALG_RSASSA,
    TPM_ALG_SM2,
)
from trustcore.tpm.public import MAX_ECC_KEY_BYTES, MAX_RSA_KEY_BYTES
from trustcore.tpm.reader import Reader

__all__ = ["ECC_SIGNATURE_ALGS", "EccSignature", "RsaSignature", "Signature", "parse_signature"]

ECC_SIGNATURE_ALGS: Final = frozenset(
    {TPM_ALG_ECDSA, TPM_ALG_ECDAA, TPM_ALG_SM2, TPM_ALG_ECSCHNORR}
)
RSA_SIGNATURE_ALGS: Final = frozenset({TPM_ALG_RSASSA, TPM_ALG_RSAPSS})


@dataclass(frozen=True, slots=True)
class EccSignature:
    """TPMS_SIGNATURE_ECC under ``sig_alg`` (ECDSA, ECDAA, SM2 or ECSCHNORR)."""

    sig_alg: int
    hash_alg: int
    r: bytes
    s: bytes


@dataclass(frozen=True, slots=True)
class RsaSignature:
    """TPMS_SIGNATURE_RSA under ``sig_alg`` (RSASSA or RSAPSS)."""

    sig_alg: int
    hash_alg: int
    sig: bytes


Signature = EccSignature | RsaSignature


def parse_signature(data: bytes) -> Signature:
    """Decode a TPMT_SIGNATURE that fills ``data`` exactly.

    Raises :class:`~trustcore.errors.ParseError` on truncation, trailing bytes, oversized
    fields, or a signature algorithm other than RSASSA, RSAPSS, ECDSA, ECDAA, SM2, ECSCHNORR.
    """
    r = Reader(data)
    sig_alg = r.u16("TPMT_SIGNATURE sigAlg")
    sig: Signature
    if sig_alg in ECC_SIGNATURE_ALGS:
        hash_alg = r.u16("TPMS_SIGNATURE_ECC hash")
        sig_r = r.tpm2b("TPMS_SIGNATURE_ECC signatureR", MAX_ECC_KEY_BYTES)
        sig_s = r.tpm2b("TPMS_SIGNATURE_ECC signatureS", MAX_ECC_KEY_BYTES)
        sig = EccSignature(sig_alg, hash_alg, sig_r, sig_s)
    elif sig_alg in RSA_SIGNATURE_ALGS:
        hash_alg = r.u16("TPMS_SIGNATURE_RSA hash")
        sig = RsaSignature(sig_alg, hash_alg, r.tpm2b("TPMS_SIGNATURE_RSA sig", MAX_RSA_KEY_BYTES))
    else:
        raise r.fail(f"signature algorithm 0x{sig_alg:04x} is not supported", 0)
    r.expect_end("TPMT_SIGNATURE")
    return sig
