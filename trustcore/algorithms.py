"""TPM hash algorithm identifiers, their TCG names and digest sizes.

Pure tables plus ``hashlib`` constructors; the names are the TCG algorithm registry names in
lower case (``sha1``, ``sha256``, ``sha384``, ``sha512``, ``sm3_256``), as used in every JSON
document trustplane emits.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Final

from trustcore.errors import TrustcoreError


@dataclass(frozen=True, slots=True)
class HashAlgorithm:
    alg_id: int
    name: str
    digest_size: int
    hashlib_name: str | None


TPM_ALG_SHA1: Final = 0x0004
TPM_ALG_SHA256: Final = 0x000B
TPM_ALG_SHA384: Final = 0x000C
TPM_ALG_SHA512: Final = 0x000D
TPM_ALG_SM3_256: Final = 0x0012
TPM_ALG_SHA3_256: Final = 0x0027
TPM_ALG_SHA3_384: Final = 0x0028
TPM_ALG_SHA3_512: Final = 0x0029

HASH_ALGORITHMS: Final[dict[int, HashAlgorithm]] = {
    a.alg_id: a
    for a in (
        HashAlgorithm(TPM_ALG_SHA1, "sha1", 20, "sha1"),
        HashAlgorithm(TPM_ALG_SHA256, "sha256", 32, "sha256"),
        HashAlgorithm(TPM_ALG_SHA384, "sha384", 48, "sha384"),
        HashAlgorithm(TPM_ALG_SHA512, "sha512", 64, "sha512"),
        HashAlgorithm(TPM_ALG_SM3_256, "sm3_256", 32, "sm3"),
        HashAlgorithm(TPM_ALG_SHA3_256, "sha3_256", 32, "sha3_256"),
        HashAlgorithm(TPM_ALG_SHA3_384, "sha3_384", 48, "sha3_384"),
        HashAlgorithm(TPM_ALG_SHA3_512, "sha3_512", 64, "sha3_512"),
    )
}
BY_NAME: Final[dict[str, HashAlgorithm]] = {a.name: a for a in HASH_ALGORITHMS.values()}


class UnsupportedAlgorithm(TrustcoreError):
    reason = "algorithm.unsupported"


def hash_algorithm(alg_id: int) -> HashAlgorithm:
    """The algorithm for a TPM_ALG_ID; raises :class:`UnsupportedAlgorithm` if unknown."""
    try:
        return HASH_ALGORITHMS[alg_id]
    except KeyError:
        raise UnsupportedAlgorithm(f"unknown hash algorithm 0x{alg_id:04x}") from None


def hash_algorithm_by_name(name: str) -> HashAlgorithm:
    """The algorithm for a TCG name such as ``sha256``; raises :class:`UnsupportedAlgorithm`."""
    try:
        return BY_NAME[name.lower()]
    except KeyError:
        raise UnsupportedAlgorithm(f"unknown hash algorithm {name!r}") from None


def digest(alg_id: int, data: bytes) -> bytes:
    """Hash ``data`` with the TPM algorithm ``alg_id``.

    Raises :class:`UnsupportedAlgorithm` when the algorithm is unknown or this Python's hashlib
    cannot compute it (SM3 is optional in OpenSSL builds).
    """
    alg = hash_algorithm(alg_id)
    if alg.hashlib_name is None:
        raise UnsupportedAlgorithm(f"no implementation for {alg.name}")
    try:
        return hashlib.new(alg.hashlib_name, data).digest()
    except ValueError:
        raise UnsupportedAlgorithm(f"this Python cannot compute {alg.name}") from None


def extend(alg_id: int, pcr: bytes, measurement: bytes) -> bytes:
    """The TPM extend operation: H(pcr || measurement)."""
    return digest(alg_id, pcr + measurement)
