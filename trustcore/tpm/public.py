"""TPMT_PUBLIC and TPMS_NV_PUBLIC: decoding, conversion to ``cryptography`` keys, and names.

An object's name is ``nameAlg || H_nameAlg(TPMT_PUBLIC bytes)``; an NV index's name is
``nameAlg || H_nameAlg(TPMS_NV_PUBLIC bytes)``. Both are computed from the exact bytes that were
parsed (kept in ``raw``), never from a re-encoding. RSA, ECC, KEYEDHASH and SYMCIPHER public
areas are decoded; only RSA and ECC convert to public keys. Whether a key is fit for a purpose
(an AK, an EK) is decided by the callers (:mod:`trustcore.quote`, :mod:`trustcore.credential`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from cryptography.hazmat.primitives.asymmetric import ec, rsa

from trustcore.algorithms import HASH_ALGORITHMS, digest
from trustcore.errors import ParseError
from trustcore.tpm.constants import (
    TPM_ALG_AES,
    TPM_ALG_CAMELLIA,
    TPM_ALG_ECC,
    TPM_ALG_ECDAA,
    TPM_ALG_ECDH,
    TPM_ALG_ECDSA,
    TPM_ALG_ECMQV,
    TPM_ALG_ECSCHNORR,
    TPM_ALG_HMAC,
    TPM_ALG_KDF1_SP800_56A,
    TPM_ALG_KDF1_SP800_108,
    TPM_ALG_KDF2,
    TPM_ALG_KEYEDHASH,
    TPM_ALG_MGF1,
    TPM_ALG_NULL,
    TPM_ALG_OAEP,
    TPM_ALG_RSA,
    TPM_ALG_RSAES,
    TPM_ALG_RSAPSS,
    TPM_ALG_RSASSA,
    TPM_ALG_SM2,
    TPM_ALG_SM4,
    TPM_ALG_SYMCIPHER,
    TPM_ALG_XOR,
    TPM_ECC_NIST_P192,
    TPM_ECC_NIST_P224,
    TPM_ECC_NIST_P256,
    TPM_ECC_NIST_P384,
    TPM_ECC_NIST_P521,
)
from trustcore.tpm.reader import Reader

__all__ = [
    "EccParameters",
    "EccPoint",
    "KeyedHashParameters",
    "NvPublic",
    "Public",
    "PublicKey",
    "RsaParameters",
    "Scheme",
    "SymCipherParameters",
    "SymmetricDefinition",
    "compute_name",
    "parse_nv_public",
    "parse_public",
    "parse_tpm2b_nv_public",
    "parse_tpm2b_public",
]

MAX_DIGEST: Final = 64  # sizeof(TPMU_HA)
MAX_RSA_KEY_BYTES: Final = 512
MAX_ECC_KEY_BYTES: Final = 128
RSA_DEFAULT_EXPONENT: Final = 65537

PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey

_CURVES: Final[dict[int, ec.EllipticCurve]] = {
    TPM_ECC_NIST_P192: ec.SECP192R1(),
    TPM_ECC_NIST_P224: ec.SECP224R1(),
    TPM_ECC_NIST_P256: ec.SECP256R1(),
    TPM_ECC_NIST_P384: ec.SECP384R1(),
    TPM_ECC_NIST_P521: ec.SECP521R1(),
}
_BLOCK_CIPHERS: Final = frozenset({TPM_ALG_AES, TPM_ALG_SM4, TPM_ALG_CAMELLIA})


@dataclass(frozen=True, slots=True)
class SymmetricDefinition:
    """TPMT_SYM_DEF_OBJECT: ``algorithm`` is TPM_ALG_NULL (then bits and mode are 0) or a block
    cipher with its key size and mode."""

    algorithm: int
    key_bits: int = 0
    mode: int = 0


@dataclass(frozen=True, slots=True)
class Scheme:
    """A TPMT_*_SCHEME or TPMT_KDF_SCHEME: ``scheme`` TPM_ALG_NULL means none (hash_alg 0).

    ``extra`` is the ECDAA ``count`` or the XOR scheme's KDF; 0 otherwise.
    """

    scheme: int
    hash_alg: int = 0
    extra: int = 0


@dataclass(frozen=True, slots=True)
class RsaParameters:
    symmetric: SymmetricDefinition
    scheme: Scheme
    key_bits: int
    exponent: int  # as marshalled: 0 means the default 65537

    @property
    def effective_exponent(self) -> int:
        return self.exponent or RSA_DEFAULT_EXPONENT


@dataclass(frozen=True, slots=True)
class EccParameters:
    symmetric: SymmetricDefinition
    scheme: Scheme
    curve: int
    kdf: Scheme


@dataclass(frozen=True, slots=True)
class KeyedHashParameters:
    scheme: Scheme


@dataclass(frozen=True, slots=True)
class SymCipherParameters:
    symmetric: SymmetricDefinition


@dataclass(frozen=True, slots=True)
class EccPoint:
    x: bytes
    y: bytes


Parameters = RsaParameters | EccParameters | KeyedHashParameters | SymCipherParameters


def compute_name(name_alg: int, raw: bytes) -> bytes:
    """``nameAlg || H(raw)``; raises :class:`~trustcore.algorithms.UnsupportedAlgorithm`."""
    return name_alg.to_bytes(2, "big") + digest(name_alg, raw)


@dataclass(frozen=True, slots=True)
class Public:
    """A decoded TPMT_PUBLIC. ``unique`` is the RSA modulus, an ECC point, or a digest."""

    type: int
    name_alg: int
    attributes: int
    auth_policy: bytes
    parameters: Parameters
    unique: bytes | EccPoint
    raw: bytes

    def has(self, attributes: int) -> bool:
        """True when every bit of ``attributes`` is set in objectAttributes."""
        return self.attributes & attributes == attributes

    def name(self) -> bytes:
        """The TPM name; raises ``UnsupportedAlgorithm`` if nameAlg is not a known hash."""
        return compute_name(self.name_alg, self.raw)

    def public_key(self) -> PublicKey:
        """The ``cryptography`` public key of an RSA or ECC public area.

        Raises :class:`ParseError` (reason ``tpm.public_unsupported``) for other types, unknown
        curves, or numbers that do not form a valid key.
        """
        params, unique = self.parameters, self.unique
        if isinstance(params, RsaParameters) and isinstance(unique, bytes):
            return _rsa_key(params, unique)
        if isinstance(params, EccParameters) and isinstance(unique, EccPoint):
            return _ecc_key(params, unique)
        raise _unsupported(f"object type 0x{self.type:04x} has no public key")


def _unsupported(message: str) -> ParseError:
    return ParseError(message, offset=0, reason="tpm.public_unsupported")


def _rsa_key(params: RsaParameters, modulus: bytes) -> rsa.RSAPublicKey:
    n = int.from_bytes(modulus, "big")
    if n.bit_length() != params.key_bits or len(modulus) * 8 != params.key_bits:
        raise _unsupported(f"RSA modulus is not {params.key_bits} bits")
    try:
        return rsa.RSAPublicNumbers(params.effective_exponent, n).public_key()
    except ValueError as exc:
        raise _unsupported(f"invalid RSA public key: {exc}") from None


def _ecc_key(params: EccParameters, point: EccPoint) -> ec.EllipticCurvePublicKey:
    curve = _CURVES.get(params.curve)
    if curve is None:
        raise _unsupported(f"ECC curve 0x{params.curve:04x} is not supported")
    size = (curve.key_size + 7) // 8
    if len(point.x) > size or len(point.y) > size:
        raise _unsupported("ECC point coordinates are longer than the curve")
    encoded = b"\x04" + point.x.rjust(size, b"\0") + point.y.rjust(size, b"\0")
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(curve, encoded)
    except ValueError:
        raise _unsupported("ECC point is not on the curve") from None


def _read_symmetric(r: Reader) -> SymmetricDefinition:
    at = r.offset
    alg = r.u16("TPMT_SYM_DEF_OBJECT algorithm")
    if alg == TPM_ALG_NULL:
        return SymmetricDefinition(alg)
    if alg not in _BLOCK_CIPHERS:
        raise r.fail(f"symmetric algorithm 0x{alg:04x} is not allowed for objects", at)
    return SymmetricDefinition(alg, r.u16("keyBits"), r.u16("mode"))


_RSA_SCHEMES: Final = frozenset(
    {TPM_ALG_NULL, TPM_ALG_RSASSA, TPM_ALG_RSAPSS, TPM_ALG_RSAES, TPM_ALG_OAEP}
)
_ECC_SCHEMES: Final = frozenset(
    {
        TPM_ALG_NULL,
        TPM_ALG_ECDSA,
        TPM_ALG_ECDAA,
        TPM_ALG_SM2,
        TPM_ALG_ECSCHNORR,
        TPM_ALG_ECDH,
        TPM_ALG_ECMQV,
    }
)
_KDF_SCHEMES: Final = frozenset(
    {TPM_ALG_NULL, TPM_ALG_MGF1, TPM_ALG_KDF1_SP800_56A, TPM_ALG_KDF2, TPM_ALG_KDF1_SP800_108}
)


def _read_scheme(r: Reader, what: str, allowed: frozenset[int]) -> Scheme:
    at = r.offset
    scheme = r.u16(f"{what} scheme")
    if scheme not in allowed:
        raise r.fail(f"{what}: scheme 0x{scheme:04x} is not allowed here", at)
    # NULL and RSAES are the schemes whose details are empty.
    if scheme in (TPM_ALG_NULL, TPM_ALG_RSAES):
        return Scheme(scheme)
    hash_alg = r.u16(f"{what} hashAlg")
    extra = r.u16(f"{what} count") if scheme == TPM_ALG_ECDAA else 0
    return Scheme(scheme, hash_alg, extra)


def _read_keyedhash_scheme(r: Reader) -> Scheme:
    at = r.offset
    scheme = r.u16("TPMT_KEYEDHASH_SCHEME scheme")
    if scheme == TPM_ALG_NULL:
        return Scheme(scheme)
    if scheme not in (TPM_ALG_HMAC, TPM_ALG_XOR):
        raise r.fail(f"TPMT_KEYEDHASH_SCHEME: scheme 0x{scheme:04x} is not allowed here", at)
    hash_alg = r.u16("TPMT_KEYEDHASH_SCHEME hashAlg")
    kdf = r.u16("TPMS_SCHEME_XOR kdf") if scheme == TPM_ALG_XOR else 0
    return Scheme(scheme, hash_alg, kdf)


def _read_parameters(r: Reader, kind: int, at: int) -> tuple[Parameters, bytes | EccPoint]:
    if kind == TPM_ALG_RSA:
        rsa_params = RsaParameters(
            _read_symmetric(r),
            _read_scheme(r, "TPMT_RSA_SCHEME", _RSA_SCHEMES),
            r.u16("keyBits"),
            r.u32("exponent"),
        )
        return rsa_params, r.tpm2b("TPM2B_PUBLIC_KEY_RSA", MAX_RSA_KEY_BYTES)
    if kind == TPM_ALG_ECC:
        sym, scheme, curve = (
            _read_symmetric(r),
            _read_scheme(r, "TPMT_ECC_SCHEME", _ECC_SCHEMES),
            r.u16("curveID"),
        )
        kdf = _read_scheme(r, "TPMT_KDF_SCHEME", _KDF_SCHEMES)
        x = r.tpm2b("TPMS_ECC_POINT x", MAX_ECC_KEY_BYTES)
        y = r.tpm2b("TPMS_ECC_POINT y", MAX_ECC_KEY_BYTES)
        return EccParameters(sym, scheme, curve, kdf), EccPoint(x, y)
    if kind == TPM_ALG_KEYEDHASH:
        return KeyedHashParameters(_read_keyedhash_scheme(r)), r.tpm2b("unique", MAX_DIGEST)
    if kind == TPM_ALG_SYMCIPHER:
        return SymCipherParameters(_read_symmetric(r)), r.tpm2b("unique", MAX_DIGEST)
    raise r.fail(f"TPMT_PUBLIC type 0x{kind:04x} is not an object type", at)


def read_public(r: Reader) -> Public:
    """Decode a TPMT_PUBLIC from ``r``; raises :class:`ParseError`."""
    start = r.offset
    kind = r.u16("TPMT_PUBLIC type")
    name_alg = r.u16("TPMT_PUBLIC nameAlg")
    if name_alg != TPM_ALG_NULL and name_alg not in HASH_ALGORITHMS:
        raise r.fail(f"nameAlg 0x{name_alg:04x} is not a hash algorithm", start + 2)
    attributes = r.u32("TPMT_PUBLIC objectAttributes")
    auth_policy = r.tpm2b("TPMT_PUBLIC authPolicy", MAX_DIGEST)
    params, unique = _read_parameters(r, kind, start)
    raw = r.taken_since(start)
    return Public(kind, name_alg, attributes, auth_policy, params, unique, raw)


def parse_public(data: bytes) -> Public:
    """Decode a TPMT_PUBLIC that fills ``data`` exactly; raises :class:`ParseError`."""
    r = Reader(data)
    public = read_public(r)
    r.expect_end("TPMT_PUBLIC")
    return public


def parse_tpm2b_public(data: bytes) -> Public:
    """Decode a TPM2B_PUBLIC (size, then TPMT_PUBLIC) that fills ``data`` exactly.

    Raises :class:`ParseError` when the size does not match the public area's length.
    """
    r = Reader(data)
    size = r.u16("TPM2B_PUBLIC size")
    if size != r.remaining:
        raise r.fail(f"TPM2B_PUBLIC size {size} but {r.remaining} bytes follow", 0)
    public = read_public(r)
    r.expect_end("TPM2B_PUBLIC")
    return public


@dataclass(frozen=True, slots=True)
class NvPublic:
    """A decoded TPMS_NV_PUBLIC."""

    nv_index: int
    name_alg: int
    attributes: int
    auth_policy: bytes
    data_size: int
    raw: bytes

    def name(self) -> bytes:
        """The NV index's name; raises ``UnsupportedAlgorithm`` for an unknown nameAlg."""
        return compute_name(self.name_alg, self.raw)


def read_nv_public(r: Reader) -> NvPublic:
    """Decode a TPMS_NV_PUBLIC from ``r``; raises :class:`ParseError`."""
    start = r.offset
    index = r.u32("TPMS_NV_PUBLIC nvIndex")
    if index >> 24 != 0x01:
        raise r.fail(f"handle 0x{index:08x} is not an NV index", start)
    name_alg = r.u16("TPMS_NV_PUBLIC nameAlg")
    if name_alg not in HASH_ALGORITHMS:
        raise r.fail(f"nameAlg 0x{name_alg:04x} is not a hash algorithm", start + 4)
    attributes = r.u32("TPMS_NV_PUBLIC attributes")
    auth_policy = r.tpm2b("TPMS_NV_PUBLIC authPolicy", MAX_DIGEST)
    data_size = r.u16("TPMS_NV_PUBLIC dataSize")
    raw = r.taken_since(start)
    return NvPublic(index, name_alg, attributes, auth_policy, data_size, raw)


def parse_nv_public(data: bytes) -> NvPublic:
    """Decode a TPMS_NV_PUBLIC that fills ``data`` exactly; raises :class:`ParseError`."""
    r = Reader(data)
    public = read_nv_public(r)
    r.expect_end("TPMS_NV_PUBLIC")
    return public


def parse_tpm2b_nv_public(data: bytes) -> NvPublic:
    """Decode a TPM2B_NV_PUBLIC that fills ``data`` exactly; raises :class:`ParseError`."""
    r = Reader(data)
    size = r.u16("TPM2B_NV_PUBLIC size")
    if size != r.remaining:
        raise r.fail(f"TPM2B_NV_PUBLIC size {size} but {r.remaining} bytes follow", 0)
    public = read_nv_public(r)
    r.expect_end("TPM2B_NV_PUBLIC")
    return public
