"""Verification of TPM quotes, certifications and NV certifications made by an attestation key.

The order of checks is fixed and each failure has its own reason id:
signature over the raw TPMS_ATTEST bytes (``*.signature_invalid``) -> magic TPM_GENERATED_VALUE
(``*.magic_invalid``) -> attestation type (``*.type_invalid``) -> qualifying data equal to the
expected bytes (``*.qualifying_data_mismatch``) -> the type-specific checks. For a quote those are:
the quoted PCR selection names exactly the requested (bank, PCR) pairs, nothing more and nothing
less (``quote.pcr_selection_mismatch``); every selected PCR has a supplied value of the bank's
digest size (``quote.pcr_values_missing``); and the hash of the values in selection order equals
pcrDigest (``quote.pcr_digest_mismatch``). Malformed structures raise
:class:`~trustcore.errors.ParseError` with reason ``quote.malformed`` (``certify.malformed``,
``nvcertify.malformed``).

An :class:`AttestationKey` holds the decoded AK and its ``cryptography`` key, so a verifier
handling many quotes from one host decodes the key once. The quote path does its own inline,
bounded reads (no intermediate objects) because the hub verifies quotes at the rate of ECDSA.

This module decides nothing about nonces' freshness, which PCRs a policy needs, or event logs:
that is the hub's and :mod:`trustcore.attestation`'s work.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from trustcore.algorithms import HASH_ALGORITHMS
from trustcore.errors import ParseError, VerificationError
from trustcore.tpm.attest import (
    MAX_DATA,
    MAX_NAME,
    Attest,
    CertifyInfo,
    ClockInfo,
    NvCertifyInfo,
    parse_attest,
)
from trustcore.tpm.constants import (
    TPM_ALG_ECC,
    TPM_ALG_ECDSA,
    TPM_ALG_NULL,
    TPM_ALG_RSA,
    TPM_ALG_RSAPSS,
    TPM_ALG_RSASSA,
    TPM_ALG_SHA256,
    TPM_ALG_SHA384,
    TPM_ALG_SHA512,
    TPM_GENERATED_VALUE,
    TPM_ST_ATTEST_CERTIFY,
    TPM_ST_ATTEST_NV,
    TPM_ST_ATTEST_QUOTE,
    TPMA_OBJECT_DECRYPT,
    TPMA_OBJECT_FIXEDTPM,
    TPMA_OBJECT_RESTRICTED,
    TPMA_OBJECT_SIGN_ENCRYPT,
)
from trustcore.tpm.pcrs import PcrSelection, read_pcr_selection
from trustcore.tpm.public import (
    MAX_DIGEST,
    MAX_ECC_KEY_BYTES,
    EccParameters,
    NvPublic,
    Public,
    PublicKey,
    RsaParameters,
    parse_nv_public,
    parse_public,
    parse_tpm2b_public,
)
from trustcore.tpm.reader import Reader
from trustcore.tpm.signature import EccSignature, RsaSignature, parse_signature

__all__ = [
    "AttestationKey",
    "VerifiedCertify",
    "VerifiedNvCertify",
    "VerifiedQuote",
    "verify_certify",
    "verify_nv_certify",
    "verify_quote",
]

# Signature hashes an AK may use; SHA-1 is refused.
_SIG_HASHES: Final[dict[int, hashes.HashAlgorithm]] = {
    TPM_ALG_SHA256: hashes.SHA256(),
    TPM_ALG_SHA384: hashes.SHA384(),
    TPM_ALG_SHA512: hashes.SHA512(),
}
_ECDSA: Final = {alg: ec.ECDSA(h) for alg, h in _SIG_HASHES.items()}
_HASHLIB: Final = {
    TPM_ALG_SHA256: hashlib.sha256,
    TPM_ALG_SHA384: hashlib.sha384,
    TPM_ALG_SHA512: hashlib.sha512,
}
_DIGEST_SIZES: Final = {alg: a.digest_size for alg, a in HASH_ALGORITHMS.items()}

_U16: Final = struct.Struct(">H")
_SIG_HEAD: Final = struct.Struct(">HHH")  # sigAlg, hash, signatureR.size
_ATTEST_HEAD: Final = struct.Struct(">IHH")  # magic, type, qualifiedSigner.size
_CLOCK_FW: Final = struct.Struct(">QIIBQ")  # clock, resetCount, restartCount, safe, firmware
_ATTEST_AK_ATTRS: Final = TPMA_OBJECT_SIGN_ENCRYPT | TPMA_OBJECT_RESTRICTED | TPMA_OBJECT_FIXEDTPM


@dataclass(frozen=True, slots=True)
class AttestationKey:
    """A restricted signing key (AK) decoded once: its public area, name and usable key.

    Build it with ``AttestationKey(public)``, :meth:`from_tpmt_public` or
    :meth:`from_tpm2b_public`; building checks that the key is a restricted, fixedTPM signing
    key (RSA or ECC) with an RSASSA/RSAPSS/ECDSA scheme (or none) over SHA-256/384/512, and
    raises :class:`VerificationError` (``ak.invalid``) otherwise, or :class:`ParseError`
    (``tpm.public_unsupported``) for a key ``cryptography`` cannot use.
    """

    public: Public
    name: bytes = field(init=False)
    key: PublicKey = field(init=False, repr=False)
    scheme: int = field(init=False)  # the key's signing scheme, or TPM_ALG_NULL if it has none
    scheme_hash: int = field(init=False)  # that scheme's hash, or TPM_ALG_NULL
    # (key, algorithm, hash id) for the inline ECDSA path, when the key's scheme is ECDSA.
    _ecdsa: tuple[ec.EllipticCurvePublicKey, ec.ECDSA, int] | None = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        public = self.public
        if not public.has(_ATTEST_AK_ATTRS) or public.has(TPMA_OBJECT_DECRYPT):
            raise VerificationError("not a restricted, fixedTPM signing key", reason="ak.invalid")
        params = public.parameters
        if isinstance(params, RsaParameters):
            allowed = {TPM_ALG_RSASSA, TPM_ALG_RSAPSS}
        elif isinstance(params, EccParameters):
            allowed = {TPM_ALG_ECDSA}
        else:
            raise VerificationError(
                f"object type 0x{public.type:04x} cannot sign", reason="ak.invalid"
            )
        scheme = params.scheme
        if scheme.scheme != TPM_ALG_NULL and (
            scheme.scheme not in allowed or scheme.hash_alg not in _SIG_HASHES
        ):
            raise VerificationError(
                f"signing scheme 0x{scheme.scheme:04x}/0x{scheme.hash_alg:04x} is not supported",
                reason="ak.invalid",
            )
        key = public.public_key()
        fast = None
        if isinstance(key, ec.EllipticCurvePublicKey) and scheme.scheme == TPM_ALG_ECDSA:
            fast = (key, _ECDSA[scheme.hash_alg], scheme.hash_alg)
        for attr, value in (
            ("name", public.name()),
            ("key", key),
            ("scheme", scheme.scheme),
            ("scheme_hash", scheme.hash_alg or TPM_ALG_NULL),
            ("_ecdsa", fast),
        ):
            object.__setattr__(self, attr, value)

    @classmethod
    def from_public(cls, public: Public) -> AttestationKey:
        """The same as ``AttestationKey(public)``."""
        return cls(public)

    @classmethod
    def from_tpmt_public(cls, data: bytes) -> AttestationKey:
        """From TPMT_PUBLIC bytes; raises :class:`ParseError` or :class:`VerificationError`."""
        return cls.from_public(parse_public(data))

    @classmethod
    def from_tpm2b_public(cls, data: bytes) -> AttestationKey:
        """From TPM2B_PUBLIC bytes; raises :class:`ParseError` or :class:`VerificationError`."""
        return cls.from_public(parse_tpm2b_public(data))

    def verify_signature(self, data: bytes, signature: bytes, prefix: str) -> int:
        """Check a TPMT_SIGNATURE over ``data``; return its hash algorithm.

        Raises :class:`VerificationError` (``{prefix}.signature_invalid``) when it does not
        verify or its scheme does not fit this key, and :class:`ParseError`
        (``{prefix}.malformed``) when the signature bytes are not a TPMT_SIGNATURE.
        """
        fast = self._ecdsa
        if fast is not None and len(signature) >= 8:
            sig_alg, hash_alg, r_size = _SIG_HEAD.unpack_from(signature, 0)
            if sig_alg == TPM_ALG_ECDSA:
                return _verify_ecdsa(fast, data, signature, hash_alg, r_size=r_size, prefix=prefix)
        try:
            sig = parse_signature(signature)
        except ParseError as exc:
            exc.reason = f"{prefix}.malformed"
            raise
        self._check_scheme(sig.sig_alg, sig.hash_alg, prefix)
        try:
            _verify_parsed(self.key, sig, data)
        except InvalidSignature:
            raise _bad_signature(prefix) from None
        return sig.hash_alg

    def _check_scheme(self, sig_alg: int, hash_alg: int, prefix: str) -> None:
        if self.scheme != TPM_ALG_NULL:
            fits = sig_alg == self.scheme and hash_alg == self.scheme_hash
        else:
            fits = hash_alg in _SIG_HASHES and _fits_key_type(sig_alg, self.public.type)
        if not fits:
            raise VerificationError(
                f"signature scheme 0x{sig_alg:04x}/0x{hash_alg:04x} does not fit the key",
                reason=f"{prefix}.signature_invalid",
            )


def _verify_parsed(key: PublicKey, sig: EccSignature | RsaSignature, data: bytes) -> None:
    """Raises ``InvalidSignature``; the scheme was already checked against the key."""
    if isinstance(sig, EccSignature) and isinstance(key, ec.EllipticCurvePublicKey):
        der = encode_dss_signature(int.from_bytes(sig.r, "big"), int.from_bytes(sig.s, "big"))
        key.verify(der, data, _ECDSA[sig.hash_alg])
    elif isinstance(sig, RsaSignature) and isinstance(key, rsa.RSAPublicKey):
        key.verify(sig.sig, data, _rsa_padding(sig), _SIG_HASHES[sig.hash_alg])
    else:
        raise InvalidSignature


def _verify_ecdsa(
    fast: tuple[ec.EllipticCurvePublicKey, ec.ECDSA, int],
    data: bytes,
    signature: bytes,
    hash_alg: int,
    *,
    r_size: int,
    prefix: str,
) -> int:
    """The ECDSA path with inline, bounded reads; same checks as the general path."""
    end_r = 6 + r_size
    total = len(signature)
    if r_size > MAX_ECC_KEY_BYTES or total < end_r + 2:
        raise ParseError("TPMS_SIGNATURE_ECC signatureR", offset=4, reason=f"{prefix}.malformed")
    s_size = _U16.unpack_from(signature, end_r)[0]
    if s_size > MAX_ECC_KEY_BYTES or end_r + 2 + s_size != total:
        raise ParseError(
            "TPMS_SIGNATURE_ECC signatureS size does not fill the signature",
            offset=end_r,
            reason=f"{prefix}.malformed",
        )
    key, algorithm, scheme_hash = fast
    if hash_alg != scheme_hash:
        raise VerificationError(
            f"signature hash 0x{hash_alg:04x} is not the key's scheme hash",
            reason=f"{prefix}.signature_invalid",
        )
    der = encode_dss_signature(
        int.from_bytes(signature[6:end_r], "big"), int.from_bytes(signature[end_r + 2 :], "big")
    )
    try:
        key.verify(der, data, algorithm)
    except InvalidSignature:
        raise _bad_signature(prefix) from None
    return hash_alg


def _fits_key_type(sig_alg: int, key_type: int) -> bool:
    if key_type == TPM_ALG_ECC:
        return sig_alg == TPM_ALG_ECDSA
    return key_type == TPM_ALG_RSA and sig_alg in (TPM_ALG_RSASSA, TPM_ALG_RSAPSS)


def _rsa_padding(sig: RsaSignature) -> padding.AsymmetricPadding:
    if sig.sig_alg == TPM_ALG_RSASSA:
        return padding.PKCS1v15()
    return padding.PSS(mgf=padding.MGF1(_SIG_HASHES[sig.hash_alg]), salt_length=padding.PSS.AUTO)


def _bad_signature(prefix: str) -> VerificationError:
    return VerificationError(
        "the signature does not verify with the attestation key",
        reason=f"{prefix}.signature_invalid",
    )


# --- quotes ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VerifiedQuote:
    """A quote whose signature, nonce binding, PCR selection and PCR digest all checked out.

    ``pcr_values`` holds exactly the quoted PCRs (``alg -> pcr -> value``); ``attest`` is the
    signed TPMS_ATTEST, from which the clock, firmware version and signer are read on demand.
    Only :func:`verify_quote` makes these.
    """

    pcr_values: Mapping[int, Mapping[int, bytes]]
    pcr_selection: PcrSelection
    pcr_digest: bytes
    hash_alg: int
    extra_data: bytes
    attest: bytes = field(repr=False)
    _clock_at: int = field(repr=False)

    @property
    def qualified_signer(self) -> bytes:
        return self.attest[8 : 8 + _U16.unpack_from(self.attest, 6)[0]]

    @property
    def clock_info(self) -> ClockInfo:
        clock, resets, restarts, safe, _ = _CLOCK_FW.unpack_from(self.attest, self._clock_at)
        return ClockInfo(clock, resets, restarts, bool(safe))

    @property
    def firmware_version(self) -> int:
        return int(_CLOCK_FW.unpack_from(self.attest, self._clock_at)[4])


def _malformed(message: str, offset: int) -> ParseError:
    return ParseError(message, offset=offset, reason="quote.malformed")


def verify_quote(
    ak: AttestationKey,
    attest: bytes,
    signature: bytes,
    *,
    qualifying_data: bytes,
    pcr_selection: PcrSelection,
    pcr_values: Mapping[int, Mapping[int, bytes]],
) -> VerifiedQuote:
    """Verify a TPM2_Quote (``attest`` = TPMS_ATTEST bytes, ``signature`` = TPMT_SIGNATURE).

    ``qualifying_data`` must equal extraData byte for byte; ``pcr_selection`` must select
    exactly what the quote selected; ``pcr_values`` (``alg -> pcr -> value``) must hold a value
    for every selected PCR (other entries are ignored and not returned).

    Raises :class:`VerificationError` with reason ``quote.signature_invalid``,
    ``quote.magic_invalid``, ``quote.type_invalid``, ``quote.qualifying_data_mismatch``,
    ``quote.pcr_selection_mismatch``, ``quote.pcr_values_missing`` or
    ``quote.pcr_digest_mismatch``, in that order of checking; :class:`ParseError` with reason
    ``quote.malformed``; ``ValueError`` if ``pcr_selection`` selects nothing (a caller's bug).
    """
    if not pcr_selection.digest_plan():
        raise ValueError("a quote over no PCRs proves nothing: select at least one PCR")
    hash_alg = ak.verify_signature(attest, signature, "quote")
    total = len(attest)
    if total < 10:
        raise _malformed("TPMS_ATTEST is shorter than its header", 0)
    magic, kind, signer_size = _ATTEST_HEAD.unpack_from(attest, 0)
    if magic != TPM_GENERATED_VALUE:
        raise VerificationError(
            f"magic 0x{magic:08x} is not TPM_GENERATED", reason="quote.magic_invalid"
        )
    if kind != TPM_ST_ATTEST_QUOTE:
        raise VerificationError(f"type 0x{kind:04x} is not a quote", reason="quote.type_invalid")
    pos = 8 + signer_size
    if signer_size > MAX_NAME or total < pos + 2:
        raise _malformed("TPMS_ATTEST qualifiedSigner", 6)
    extra_size = _U16.unpack_from(attest, pos)[0]
    start = pos + 2
    pos = start + extra_size
    if extra_size > MAX_DATA or total < pos + 25:
        raise _malformed("TPMS_ATTEST extraData or clockInfo", start - 2)
    extra = attest[start:pos]
    if extra != qualifying_data:
        raise VerificationError(
            "extraData does not equal the expected qualifying data",
            reason="quote.qualifying_data_mismatch",
        )
    clock_at = pos
    if attest[pos + 16] > 1:
        raise _malformed("clockInfo.safe is neither YES nor NO", pos + 16)
    pos += 25
    wire = pcr_selection.marshal()
    end = pos + len(wire)
    if attest[pos:end] == wire:
        selection, pos = pcr_selection, end
    else:
        selection, pos = _quoted_selection(attest, pos, pcr_selection)
    if total < pos + 2:
        raise _malformed("TPMS_QUOTE_INFO pcrDigest size", pos)
    digest_size = _U16.unpack_from(attest, pos)[0]
    if digest_size > MAX_DIGEST or pos + 2 + digest_size != total:
        raise _malformed("TPMS_QUOTE_INFO pcrDigest does not end the structure", pos)
    pcr_digest = attest[pos + 2 :]
    verified = _check_pcr_digest(selection, pcr_values, hash_alg, pcr_digest)
    return VerifiedQuote(verified, selection, pcr_digest, hash_alg, extra, attest, clock_at)


def _quoted_selection(attest: bytes, pos: int, requested: PcrSelection) -> tuple[PcrSelection, int]:
    reader = Reader(attest, pos)
    try:
        quoted = read_pcr_selection(reader)
    except ParseError as exc:
        exc.reason = "quote.malformed"
        raise
    if not quoted.same_pcrs(requested):
        raise VerificationError(
            f"the quote selects {quoted.as_dict()}, the verifier asked for {requested.as_dict()}",
            reason="quote.pcr_selection_mismatch",
        )
    return quoted, reader.offset


def _check_pcr_digest(
    selection: PcrSelection,
    pcr_values: Mapping[int, Mapping[int, bytes]],
    hash_alg: int,
    pcr_digest: bytes,
) -> dict[int, dict[int, bytes]]:
    verified: dict[int, dict[int, bytes]] = {}
    parts: list[bytes] = []
    for alg, pcrs, size in selection.digest_plan():
        bank = pcr_values.get(alg)
        try:
            chosen = {pcr: bank[pcr] for pcr in pcrs}  # type: ignore[index]
        except (KeyError, TypeError):
            missing = [pcr for pcr in pcrs if bank is None or pcr not in bank]
            raise VerificationError(
                f"no value supplied for bank 0x{alg:04x} PCRs {missing}",
                reason="quote.pcr_values_missing",
            ) from None
        for value in chosen.values():
            if len(value) != size:
                raise VerificationError(
                    f"bank 0x{alg:04x}: a {len(value)}-byte value where {size} bytes belong",
                    reason="quote.pcr_digest_mismatch",
                )
        verified[alg] = chosen
        parts += chosen.values()
    if _HASHLIB[hash_alg](b"".join(parts)).digest() != pcr_digest:
        raise VerificationError(
            "the supplied PCR values do not hash to the quoted pcrDigest",
            reason="quote.pcr_digest_mismatch",
        )
    return verified


# --- certify and NV certify ------------------------------------------------------------------


def _verify_attest(
    ak: AttestationKey,
    attest: bytes,
    signature: bytes,
    *,
    qualifying_data: bytes,
    kind: int,
    prefix: str,
) -> Attest:
    ak.verify_signature(attest, signature, prefix)
    if len(attest) < 6:
        raise ParseError(
            "TPMS_ATTEST is shorter than its header", offset=0, reason=f"{prefix}.malformed"
        )
    magic, got_kind = struct.unpack_from(">IH", attest, 0)
    if magic != TPM_GENERATED_VALUE:
        raise VerificationError(
            f"magic 0x{magic:08x} is not TPM_GENERATED", reason=f"{prefix}.magic_invalid"
        )
    if got_kind != kind:
        raise VerificationError(
            f"type 0x{got_kind:04x} is not 0x{kind:04x}", reason=f"{prefix}.type_invalid"
        )
    try:
        parsed = parse_attest(attest)
    except ParseError as exc:
        exc.reason = f"{prefix}.malformed"
        raise
    if parsed.extra_data != qualifying_data:
        raise VerificationError(
            "extraData does not equal the expected qualifying data",
            reason=f"{prefix}.qualifying_data_mismatch",
        )
    return parsed


@dataclass(frozen=True, slots=True)
class VerifiedCertify:
    """The AK vouched that the TPM holds the object ``public`` (its name matched)."""

    public: Public
    name: bytes
    qualified_name: bytes
    attest: Attest


def verify_certify(
    ak: AttestationKey,
    attest: bytes,
    signature: bytes,
    *,
    qualifying_data: bytes,
    certified: Public | bytes,
) -> VerifiedCertify:
    """Verify a TPM2_Certify of ``certified`` (a :class:`Public` or TPMT_PUBLIC bytes) by ``ak``.

    Raises :class:`VerificationError` with ``certify.signature_invalid``,
    ``certify.magic_invalid``, ``certify.type_invalid``, ``certify.qualifying_data_mismatch`` or
    ``certify.name_mismatch``; :class:`ParseError` with ``certify.malformed`` (also when
    ``certified`` bytes are not a TPMT_PUBLIC).
    """
    if isinstance(certified, bytes):
        try:
            certified = parse_public(certified)
        except ParseError as exc:
            exc.reason = "certify.malformed"
            raise
    parsed = _verify_attest(
        ak,
        attest,
        signature,
        qualifying_data=qualifying_data,
        kind=TPM_ST_ATTEST_CERTIFY,
        prefix="certify",
    )
    info = parsed.attested
    assert isinstance(info, CertifyInfo)  # the type was checked
    if info.name != certified.name():
        raise VerificationError(
            "the certified name is not the name of the given public area",
            reason="certify.name_mismatch",
        )
    return VerifiedCertify(certified, info.name, info.qualified_name, parsed)


@dataclass(frozen=True, slots=True)
class VerifiedNvCertify:
    """The AK vouched that NV index ``nv_public`` holds ``contents`` at ``offset``."""

    nv_public: NvPublic
    offset: int
    contents: bytes
    attest: Attest


def verify_nv_certify(
    ak: AttestationKey,
    attest: bytes,
    signature: bytes,
    *,
    qualifying_data: bytes,
    nv_public: NvPublic | bytes,
    contents: bytes | None = None,
) -> VerifiedNvCertify:
    """Verify a TPM2_NV_Certify of the NV index described by ``nv_public`` (an
    :class:`NvPublic` or TPMS_NV_PUBLIC bytes).

    When ``contents`` is given, the certified bytes must equal it (and start at offset 0).
    Raises :class:`VerificationError` with ``nvcertify.signature_invalid``,
    ``nvcertify.magic_invalid``, ``nvcertify.type_invalid``,
    ``nvcertify.qualifying_data_mismatch``, ``nvcertify.name_mismatch`` or
    ``nvcertify.contents_mismatch``; :class:`ParseError` with ``nvcertify.malformed`` (also when
    ``nv_public`` bytes are not a TPMS_NV_PUBLIC).
    """
    if isinstance(nv_public, bytes):
        try:
            nv_public = parse_nv_public(nv_public)
        except ParseError as exc:
            exc.reason = "nvcertify.malformed"
            raise
    parsed = _verify_attest(
        ak,
        attest,
        signature,
        qualifying_data=qualifying_data,
        kind=TPM_ST_ATTEST_NV,
        prefix="nvcertify",
    )
    info = parsed.attested
    assert isinstance(info, NvCertifyInfo)  # the type was checked
    if info.index_name != nv_public.name():
        raise VerificationError(
            "the certified index name is not the name of the given NV public area",
            reason="nvcertify.name_mismatch",
        )
    if contents is not None and (info.offset != 0 or info.nv_contents != contents):
        raise VerificationError(
            "the certified NV contents are not the expected bytes",
            reason="nvcertify.contents_mismatch",
        )
    return VerifiedNvCertify(nv_public, info.offset, info.nv_contents, parsed)
