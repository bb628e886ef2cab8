"""TPMS_ATTEST: the structure a TPM signs for Quote, Certify and NV_Certify.

:func:`parse_attest` decodes the header (magic, type, qualifiedSigner, extraData, clockInfo,
firmwareVersion) and the attested union for the three types trustplane uses. It checks shape
only: the magic value, the type a caller expects and the signature are checked by
:mod:`trustcore.quote`, which also has its own faster path for quotes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from trustcore.tpm.constants import TPM_ST_ATTEST_CERTIFY, TPM_ST_ATTEST_NV, TPM_ST_ATTEST_QUOTE
from trustcore.tpm.pcrs import PcrSelection, read_pcr_selection
from trustcore.tpm.public import MAX_DIGEST
from trustcore.tpm.reader import Reader

__all__ = [
    "MAX_DATA",
    "MAX_NAME",
    "MAX_NV_BUFFER",
    "Attest",
    "CertifyInfo",
    "ClockInfo",
    "NvCertifyInfo",
    "QuoteInfo",
    "parse_attest",
]

MAX_NAME: Final = 66  # sizeof(TPMU_NAME): a TPMT_HA with a 64-byte digest
MAX_DATA: Final = 66  # TPM2B_DATA holds at most sizeof(TPMT_HA)
MAX_NV_BUFFER: Final = 2048  # MAX_NV_BUFFER_SIZE in the TSS headers


@dataclass(frozen=True, slots=True)
class ClockInfo:
    """TPMS_CLOCK_INFO."""

    clock: int
    reset_count: int
    restart_count: int
    safe: bool


@dataclass(frozen=True, slots=True)
class QuoteInfo:
    """TPMS_QUOTE_INFO."""

    pcr_select: PcrSelection
    pcr_digest: bytes


@dataclass(frozen=True, slots=True)
class CertifyInfo:
    """TPMS_CERTIFY_INFO."""

    name: bytes
    qualified_name: bytes


@dataclass(frozen=True, slots=True)
class NvCertifyInfo:
    """TPMS_NV_CERTIFY_INFO."""

    index_name: bytes
    offset: int
    nv_contents: bytes


Attested = QuoteInfo | CertifyInfo | NvCertifyInfo


@dataclass(frozen=True, slots=True)
class Attest:
    """A decoded TPMS_ATTEST (unverified: nothing here says who signed it)."""

    magic: int
    type: int
    qualified_signer: bytes
    extra_data: bytes
    clock_info: ClockInfo
    firmware_version: int
    attested: Attested


def read_clock_info(r: Reader) -> ClockInfo:
    """Decode a TPMS_CLOCK_INFO; raises :class:`~trustcore.errors.ParseError`."""
    clock = r.u64("clockInfo.clock")
    reset_count = r.u32("clockInfo.resetCount")
    restart_count = r.u32("clockInfo.restartCount")
    at = r.offset
    safe = r.u8("clockInfo.safe")
    if safe > 1:
        raise r.fail(f"clockInfo.safe is {safe}, not YES or NO", at)
    return ClockInfo(clock, reset_count, restart_count, bool(safe))


def _read_attested(r: Reader, kind: int, at: int) -> Attested:
    if kind == TPM_ST_ATTEST_QUOTE:
        selection = read_pcr_selection(r)
        return QuoteInfo(selection, r.tpm2b("TPMS_QUOTE_INFO pcrDigest", MAX_DIGEST))
    if kind == TPM_ST_ATTEST_CERTIFY:
        name = r.tpm2b("TPMS_CERTIFY_INFO name", MAX_NAME)
        return CertifyInfo(name, r.tpm2b("TPMS_CERTIFY_INFO qualifiedName", MAX_NAME))
    if kind == TPM_ST_ATTEST_NV:
        index_name = r.tpm2b("TPMS_NV_CERTIFY_INFO indexName", MAX_NAME)
        offset = r.u16("TPMS_NV_CERTIFY_INFO offset")
        contents = r.tpm2b("TPMS_NV_CERTIFY_INFO nvContents", MAX_NV_BUFFER)
        return NvCertifyInfo(index_name, offset, contents)
    raise r.fail(f"attestation type 0x{kind:04x} is not supported", at)


def parse_attest(data: bytes) -> Attest:
    """Decode a TPMS_ATTEST of type QUOTE, CERTIFY or NV that fills ``data`` exactly.

    Raises :class:`~trustcore.errors.ParseError` on truncation, trailing bytes, an oversized
    field, a clockInfo.safe other than 0/1, or another attestation type.
    """
    r = Reader(data)
    magic = r.u32("TPMS_ATTEST magic")
    kind = r.u16("TPMS_ATTEST type")
    signer = r.tpm2b("TPMS_ATTEST qualifiedSigner", MAX_NAME)
    extra = r.tpm2b("TPMS_ATTEST extraData", MAX_DATA)
    clock = read_clock_info(r)
    firmware = r.u64("TPMS_ATTEST firmwareVersion")
    attested = _read_attested(r, kind, 4)
    r.expect_end("TPMS_ATTEST")
    return Attest(magic, kind, signer, extra, clock, firmware, attested)
