"""Asset tags: the hub's tag certificate, the TPM NV index that holds its hash, and the check.

The hub issues a *tag certificate* per host (X.509, subject CN = host id, signed by the hub's
asset-tag CA) whose extension :data:`TAG_EXTENSION_OID` carries the tags. The agent writes
``SHA-384(certificate DER)`` into the NV index :data:`ASSET_TAG_NV_INDEX` (owner range, 48
bytes, attributes :data:`ASSET_TAG_NV_ATTRIBUTES`) and every report carries, inside the quoted
body, the certificate plus a TPM2_NV_Certify of that index by the AK whose qualifying data is
:func:`assettag_qualifying_data` (``SHA-256("trustplane-assettag-v1" || nonce)``: fresh per
report, and distinct from the quote's). The TPM thus vouches for what the NV index holds;
:func:`verify_asset_tag` checks the chain from the AK to the tags.

The extension OID is under the UUID arc ``2.25`` (ITU-T X.667: an OID made from a UUID needs no
registration): ``2.25.106656756964202343962109582092688125868`` (UUID
503d581d-8c28-4b97-b594-0a6d24936fac). Its value is a DER UTF8String holding the tags as
canonical JSON (sorted keys, no spaces). Issuing certificates (keys, serials, time) is the hub's
job; writing NV is the agent's; this module does no I/O and takes the time as a parameter.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.x509.oid import NameOID

from trustcore.algorithms import TPM_ALG_SHA256
from trustcore.errors import ParseError, TrustcoreError, VerificationError
from trustcore.quote import AttestationKey, verify_nv_certify
from trustcore.tpm.constants import TPMA_NV_WRITTEN

__all__ = [
    "ASSET_TAG_NV_ATTRIBUTES",
    "ASSET_TAG_NV_INDEX",
    "ASSET_TAG_NV_SIZE",
    "MAX_TAGS",
    "TAG_EXTENSION_OID",
    "AssetTagError",
    "VerifiedAssetTags",
    "assettag_qualifying_data",
    "check_tags",
    "decode_tags_extension",
    "encode_tags_extension",
    "expected_nv_public",
    "tag_certificate_digest",
    "verify_asset_tag",
]

# Owner range (TCG handle registry: 0x01800000-0x01BFFFFF is the owner's).
ASSET_TAG_NV_INDEX: Final = 0x01800110
ASSET_TAG_NV_SIZE: Final = 48  # SHA-384
# TPMA_NV: OWNERWRITE | OWNERREAD | AUTHREAD | NO_DA; ordinary index (TPM_NT 0), empty
# authValue and authPolicy, so the AK can certify it with the index's own (empty) auth while
# only the owner can write it.
TPMA_NV_OWNERWRITE: Final = 1 << 1
TPMA_NV_OWNERREAD: Final = 1 << 17
TPMA_NV_AUTHREAD: Final = 1 << 18
TPMA_NV_NO_DA: Final = 1 << 25
ASSET_TAG_NV_ATTRIBUTES: Final = (
    TPMA_NV_OWNERWRITE | TPMA_NV_OWNERREAD | TPMA_NV_AUTHREAD | TPMA_NV_NO_DA
)
TAG_EXTENSION_OID: Final = x509.ObjectIdentifier("2.25.106656756964202343962109582092688125868")
MAX_TAGS: Final = 64
MAX_EXTENSION_BYTES: Final = 8192
_KEY: Final = re.compile(r"[a-z0-9]([a-z0-9_.-]{0,45}[a-z0-9])?")
_VALUE: Final = re.compile(r"([A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?)?")
_UTF8STRING: Final = 0x0C


class AssetTagError(TrustcoreError):
    """Tags that cannot be put in a certificate (or a Kubernetes label)."""

    reason = "assettag.tags_invalid"


def check_tags(tags: Mapping[str, str]) -> dict[str, str]:
    """A copy of ``tags`` after checking them: at most 64; keys 1-47 characters of lower-case
    letters, digits, ``._-`` (starting and ending alphanumeric, so ``asset-<key>`` is a valid
    label name); values empty or a valid Kubernetes label value. Raises :class:`AssetTagError`.
    """
    if len(tags) > MAX_TAGS:
        raise AssetTagError(f"more than {MAX_TAGS} tags")
    out: dict[str, str] = {}
    for key, value in tags.items():
        if not isinstance(key, str) or not _KEY.fullmatch(key):
            raise AssetTagError(f"tag key {key!r} is not 1-47 of [a-z0-9._-] (alphanumeric ends)")
        if not isinstance(value, str) or not _VALUE.fullmatch(value):
            raise AssetTagError(f"tag {key}: value {value!r} is not a Kubernetes label value")
        out[key] = value
    return out


def encode_tags_extension(tags: Mapping[str, str]) -> bytes:
    """The extension value: DER UTF8String of the canonical JSON of the checked ``tags``."""
    text = json.dumps(check_tags(tags), sort_keys=True, separators=(",", ":")).encode("utf-8")
    size = len(text)
    if size < 0x80:
        header = bytes([_UTF8STRING, size])
    else:
        raw = size.to_bytes((size.bit_length() + 7) // 8, "big")
        header = bytes([_UTF8STRING, 0x80 | len(raw)]) + raw
    return header + text


def decode_tags_extension(data: bytes) -> dict[str, str]:
    """The tags in an extension value made by :func:`encode_tags_extension`.

    Raises :class:`ParseError` (``assettag.certificate_invalid``) for anything else.
    """

    def bad(message: str, offset: int = 0) -> ParseError:
        return ParseError(message, offset=offset, reason="assettag.certificate_invalid")

    if len(data) > MAX_EXTENSION_BYTES or len(data) < 2 or data[0] != _UTF8STRING:
        raise bad("the tag extension is not a DER UTF8String")
    first, pos = data[1], 2
    if first < 0x80:
        size = first
    else:
        n = first & 0x7F
        if n == 0 or n > 2 or len(data) < pos + n:
            raise bad("bad DER length", 1)
        size = int.from_bytes(data[pos : pos + n], "big")
        if size < 0x80 or (n == 2 and size < 0x100):
            raise bad("non-minimal DER length", 1)
        pos += n
    if len(data) - pos != size:
        raise bad(f"UTF8String of {size} bytes but {len(data) - pos} follow", pos)
    try:
        tags = json.loads(data[pos:].decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise bad("the tag extension is not UTF-8 JSON", pos) from None
    if not isinstance(tags, dict):
        raise bad("the tag extension is not a JSON object", pos)
    try:
        return check_tags(tags)
    except AssetTagError as e:
        raise bad(e.message, pos) from None


def tag_certificate_digest(certificate_der: bytes) -> bytes:
    """What the agent writes into the NV index: SHA-384 of the certificate's DER bytes."""
    return hashlib.sha384(certificate_der).digest()


def assettag_qualifying_data(nonce: bytes) -> bytes:
    """The NV certify's qualifying data: ``SHA-256(b"trustplane-assettag-v1" || nonce)``.

    It cannot cover the report body (the certify travels inside it); the quote covers the body.
    """
    return hashlib.sha256(b"trustplane-assettag-v1" + nonce).digest()


def expected_nv_public() -> bytes:
    """The TPMS_NV_PUBLIC a correctly defined and written asset-tag index has: the hub compares
    the certified index name with this one's, so attributes, size and policy are checked."""
    return struct.pack(
        ">IHIHH",
        ASSET_TAG_NV_INDEX,
        TPM_ALG_SHA256,
        ASSET_TAG_NV_ATTRIBUTES | TPMA_NV_WRITTEN,
        0,  # empty authPolicy
        ASSET_TAG_NV_SIZE,
    )


@dataclass(frozen=True, slots=True)
class VerifiedAssetTags:
    """Tags the TPM vouched for: the certificate the NV index holds the hash of verified."""

    tags: Mapping[str, str]
    certificate_sha384: bytes
    serial: int


def _certificate(
    der: bytes, host_id: str, tag_ca: x509.Certificate, now: float
) -> x509.Certificate:
    def invalid(message: str) -> VerificationError:
        return VerificationError(message, reason="assettag.certificate_invalid")

    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError:
        raise invalid("the tag certificate is not DER X.509") from None
    try:
        cert.verify_directly_issued_by(tag_ca)
    except (ValueError, TypeError, InvalidSignature):
        raise invalid("the tag certificate is not signed by the hub's asset-tag CA") from None
    at = dt.datetime.fromtimestamp(now, tz=dt.UTC)
    if not cert.not_valid_before_utc <= at <= cert.not_valid_after_utc:
        raise invalid("the tag certificate is outside its validity period")
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(cn) != 1 or cn[0].value != host_id:
        raise invalid("the tag certificate is for another host")
    return cert


def verify_asset_tag(
    ak: AttestationKey,
    *,
    certificate: bytes,
    nv_attest: bytes,
    nv_signature: bytes,
    nonce: bytes,
    host_id: str,
    tag_ca: x509.Certificate,
    now: float,
) -> VerifiedAssetTags:
    """Check a report's asset-tag evidence, in order: the NV certify is signed by ``ak`` with
    :func:`assettag_qualifying_data` of ``nonce`` over an index named like
    :func:`expected_nv_public`; the certificate is signed by ``tag_ca``, valid at ``now`` and
    for ``host_id``; the NV contents equal SHA-384 of the certificate.

    Whether the certificate is the host's *current* one is the caller's check. Raises
    :class:`VerificationError`: ``assettag.nvcertify_invalid``,
    ``assettag.certificate_invalid``, ``assettag.mismatch``.
    """
    try:
        certified = verify_nv_certify(
            ak,
            nv_attest,
            nv_signature,
            qualifying_data=assettag_qualifying_data(nonce),
            nv_public=expected_nv_public(),
        )
    except TrustcoreError as e:
        raise VerificationError(
            f"NV certify: {e.describe()}", reason="assettag.nvcertify_invalid"
        ) from None
    if certified.offset != 0 or len(certified.contents) != ASSET_TAG_NV_SIZE:
        raise VerificationError(
            "the NV certify does not cover the whole index", reason="assettag.nvcertify_invalid"
        )
    cert = _certificate(certificate, host_id, tag_ca, now)
    digest = tag_certificate_digest(certificate)
    if certified.contents != digest:
        raise VerificationError(
            "the TPM's asset-tag index does not hold the certificate's SHA-384",
            reason="assettag.mismatch",
        )
    try:
        ext = cert.extensions.get_extension_for_oid(TAG_EXTENSION_OID).value
    except x509.ExtensionNotFound:
        raise VerificationError(
            "the tag certificate has no tag extension", reason="assettag.certificate_invalid"
        ) from None
    if not isinstance(ext, x509.UnrecognizedExtension):
        raise VerificationError(
            "unexpected tag extension type", reason="assettag.certificate_invalid"
        )
    try:
        tags = decode_tags_extension(ext.value)
    except ParseError as e:
        raise VerificationError(e.message, reason="assettag.certificate_invalid") from None
    return VerifiedAssetTags(tags, digest, cert.serial_number)
