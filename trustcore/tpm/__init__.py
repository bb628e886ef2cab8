"""TPM 2.0 structures decoded without a TPM library.

Submodules: :mod:`~trustcore.tpm.reader` (bounded big-endian reads),
:mod:`~trustcore.tpm.pcrs` (TPML_PCR_SELECTION), :mod:`~trustcore.tpm.public` (TPMT_PUBLIC,
TPMS_NV_PUBLIC, keys and names), :mod:`~trustcore.tpm.signature` (TPMT_SIGNATURE),
:mod:`~trustcore.tpm.attest` (TPMS_ATTEST). Every decoder raises only
:class:`~trustcore.errors.ParseError` on malformed input. Verification (signatures, nonces,
digests) is in :mod:`trustcore.quote`; talking to a TPM is the node agent's business.
"""

from __future__ import annotations

from trustcore.tpm.attest import (
    Attest,
    CertifyInfo,
    ClockInfo,
    NvCertifyInfo,
    QuoteInfo,
    parse_attest,
)
from trustcore.tpm.pcrs import PcrBank, PcrSelection, parse_pcr_selection
from trustcore.tpm.public import (
    EccParameters,
    EccPoint,
    NvPublic,
    Public,
    PublicKey,
    RsaParameters,
    Scheme,
    SymmetricDefinition,
    compute_name,
    parse_nv_public,
    parse_public,
    parse_tpm2b_nv_public,
    parse_tpm2b_public,
)
from trustcore.tpm.reader import Reader
from trustcore.tpm.signature import EccSignature, RsaSignature, Signature, parse_signature

__all__ = [
    "Attest",
    "CertifyInfo",
    "ClockInfo",
    "EccParameters",
    "EccPoint",
    "EccSignature",
    "NvCertifyInfo",
    "NvPublic",
    "PcrBank",
    "PcrSelection",
    "Public",
    "PublicKey",
    "QuoteInfo",
    "Reader",
    "RsaParameters",
    "RsaSignature",
    "Scheme",
    "Signature",
    "SymmetricDefinition",
    "compute_name",
    "parse_attest",
    "parse_nv_public",
    "parse_pcr_selection",
    "parse_public",
    "parse_signature",
    "parse_tpm2b_nv_public",
    "parse_tpm2b_public",
]
