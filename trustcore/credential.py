"""MakeCredential: the hub's half of binding an AK to an EK (TPM 2.0 Library, Part 1 §24 and
Part 3 TPM2_MakeCredential), without a TPM.

:func:`make_credential` encrypts a short secret so that only the TPM holding the EK can recover
it, and only while an object with the AK's name is loaded beside it (TPM2_ActivateCredential).
Steps: a seed is protected to the EK (RSA-OAEP with label ``IDENTITY\\0``, or ECDH with an
ephemeral key and KDFe); KDFa derives from the seed an AES-128 key (``STORAGE``, context: the AK
name) and an HMAC key (``INTEGRITY``); the TPM2B_DIGEST of the secret is encrypted with
AES-128-CFB (zero IV) and an HMAC over ``ciphertext || AK name`` protects it.

Purity: every random value comes from the ``random_bytes`` parameter (at least
:data:`CREDENTIAL_RANDOM_BYTES` bytes): for RSA the seed and the OAEP seed, for ECC the seed
material for the ephemeral scalar. RSA-OAEP is done here by hand with the raw public operation
so that the result is a function of the inputs. Choosing the secret, remembering it and
comparing the agent's answer are the hub's job.

Supported EKs: the TCG EK Credential Profile low-range defaults: RSA-2048 (template L-1) and
ECC NIST P-256 (template L-2), both with nameAlg SHA-256 and AES-128-CFB.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Final

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

from trustcore.algorithms import HASH_ALGORITHMS, TPM_ALG_SHA256
from trustcore.errors import CredentialError, ParseError
from trustcore.tpm.constants import (
    TPM_ALG_AES,
    TPM_ALG_CFB,
    TPM_ALG_NULL,
    TPM_ECC_NIST_P256,
    TPMA_OBJECT_DECRYPT,
    TPMA_OBJECT_RESTRICTED,
    TPMA_OBJECT_SIGN_ENCRYPT,
)
from trustcore.tpm.public import EccParameters, EccPoint, Public, RsaParameters, parse_public

try:
    from cryptography.hazmat.decrepit.ciphers.modes import CFB
except ImportError:  # cryptography < 47 keeps CFB with the other modes
    from cryptography.hazmat.primitives.ciphers.modes import CFB

__all__ = [
    "CREDENTIAL_RANDOM_BYTES",
    "MadeCredential",
    "kdfa",
    "kdfe",
    "make_credential",
]

CREDENTIAL_RANDOM_BYTES: Final = 64
_IDENTITY_LABEL: Final = b"IDENTITY\x00"
_AES_KEY_BITS: Final = 128
_RSA_BITS: Final = 2048
_P256_ORDER: Final = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


@dataclass(frozen=True, slots=True)
class MadeCredential:
    """The two inputs of TPM2_ActivateCredential, marshalled."""

    credential_blob: bytes  # TPM2B_ID_OBJECT
    secret: bytes  # TPM2B_ENCRYPTED_SECRET


def _hash_name(hash_alg: int) -> str:
    alg = HASH_ALGORITHMS.get(hash_alg)
    if alg is None or alg.hashlib_name is None:
        raise CredentialError(
            f"hash algorithm 0x{hash_alg:04x} is not supported", reason="credential.ek_unsupported"
        )
    return alg.hashlib_name


def _with_nul(label: bytes) -> bytes:
    return label if label.endswith(b"\x00") else label + b"\x00"


def kdfa(
    hash_alg: int, key: bytes, label: bytes, context_u: bytes, context_v: bytes, *, bits: int
) -> bytes:
    """KDFa (SP 800-108 counter mode with HMAC, Part 1 §11.4.10.2): ``bits`` (a multiple of 8)
    of key material; ``label`` gets its terminating NUL if it lacks one.

    Raises :class:`CredentialError` for an unknown hash.
    """
    name = _hash_name(hash_alg)
    fixed = _with_nul(label) + context_u + context_v + bits.to_bytes(4, "big")
    out = b""
    counter = 0
    while len(out) * 8 < bits:
        counter += 1
        out += hmac.new(key, counter.to_bytes(4, "big") + fixed, name).digest()
    return out[: bits // 8]


def kdfe(
    hash_alg: int, z: bytes, label: bytes, party_u: bytes, party_v: bytes, *, bits: int
) -> bytes:
    """KDFe (SP 800-56A concatenation KDF, Part 1 §11.4.10.3): ``bits`` of key material from
    the shared secret ``z``. Raises :class:`CredentialError` for an unknown hash."""
    name = _hash_name(hash_alg)
    other = _with_nul(label) + party_u + party_v
    out = b""
    counter = 0
    while len(out) * 8 < bits:
        counter += 1
        out += hashlib.new(name, counter.to_bytes(4, "big") + z + other).digest()
    return out[: bits // 8]


def _mgf1(name: str, seed: bytes, length: int) -> bytes:
    out = b""
    counter = 0
    while len(out) < length:
        out += hashlib.new(name, seed + counter.to_bytes(4, "big")).digest()
        counter += 1
    return out[:length]


def _xor(a: bytes, b: bytes) -> bytes:
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).to_bytes(len(a), "big")


def _rsa_oaep_encrypt(
    modulus: bytes, exponent: int, hash_alg: int, message: bytes, oaep_seed: bytes
) -> bytes:
    """RSAES-OAEP-ENCRYPT (RFC 8017 §7.1.1) with MGF1 and label ``IDENTITY\\0``."""
    name = _hash_name(hash_alg)
    h_len = hashlib.new(name).digest_size
    k = len(modulus)
    padding = b"\x00" * (k - len(message) - 2 * h_len - 2)
    block = hashlib.new(name, _IDENTITY_LABEL).digest() + padding + b"\x01" + message
    masked_block = _xor(block, _mgf1(name, oaep_seed, k - h_len - 1))
    masked_seed = _xor(oaep_seed, _mgf1(name, masked_block, h_len))
    encoded = int.from_bytes(b"\x00" + masked_seed + masked_block, "big")
    return pow(encoded, exponent, int.from_bytes(modulus, "big")).to_bytes(k, "big")


def _check_ek(ek: Public) -> None:
    def refuse(why: str) -> CredentialError:
        return CredentialError(f"unsupported EK: {why}", reason="credential.ek_unsupported")

    if not ek.has(TPMA_OBJECT_RESTRICTED | TPMA_OBJECT_DECRYPT) or ek.has(TPMA_OBJECT_SIGN_ENCRYPT):
        raise refuse("not a restricted decryption key")
    if ek.name_alg != TPM_ALG_SHA256:
        raise refuse(f"nameAlg 0x{ek.name_alg:04x} is not SHA-256")
    params = ek.parameters
    if not isinstance(params, RsaParameters | EccParameters):
        raise refuse(f"type 0x{ek.type:04x} is neither RSA nor ECC")
    sym = params.symmetric
    if (sym.algorithm, sym.key_bits, sym.mode) != (TPM_ALG_AES, _AES_KEY_BITS, TPM_ALG_CFB):
        raise refuse("its symmetric definition is not AES-128-CFB")
    if params.scheme.scheme != TPM_ALG_NULL:
        raise refuse("it has an asymmetric scheme (an EK's is NULL)")
    if isinstance(params, RsaParameters):
        if params.key_bits != _RSA_BITS:
            raise refuse(f"RSA key of {params.key_bits} bits, not 2048")
    elif params.curve != TPM_ECC_NIST_P256 or params.kdf.scheme != TPM_ALG_NULL:
        raise refuse("ECC key that is not NIST P-256 without a KDF")


def _protect_seed(ek: Public, random_bytes: bytes, h_len: int) -> tuple[bytes, bytes]:
    """(seed, TPMU_ENCRYPTED_SECRET contents) for ``ek``."""
    unique = ek.unique
    if isinstance(unique, bytes):
        assert isinstance(ek.parameters, RsaParameters)  # checked by _check_ek
        seed = random_bytes[:h_len]
        exponent = ek.parameters.effective_exponent
        return seed, _rsa_oaep_encrypt(
            unique, exponent, ek.name_alg, seed, random_bytes[h_len : 2 * h_len]
        )
    ek_key = _ek_point(unique)
    scalar = int.from_bytes(random_bytes[:CREDENTIAL_RANDOM_BYTES], "big") % (_P256_ORDER - 1) + 1
    ephemeral = ec.derive_private_key(scalar, ec.SECP256R1())
    z = ephemeral.exchange(ec.ECDH(), ek_key)
    numbers = ephemeral.public_key().public_numbers()
    x, y = numbers.x.to_bytes(32, "big"), numbers.y.to_bytes(32, "big")
    seed = kdfe(ek.name_alg, z, _IDENTITY_LABEL, x, unique.x, bits=h_len * 8)
    point = len(x).to_bytes(2, "big") + x + len(y).to_bytes(2, "big") + y
    return seed, point


def _ek_point(unique: EccPoint) -> ec.EllipticCurvePublicKey:
    if len(unique.x) != 32 or len(unique.y) != 32:
        raise CredentialError(
            "EK point coordinates are not 32 bytes", reason="credential.ek_unsupported"
        )
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(
            ec.SECP256R1(), b"\x04" + unique.x + unique.y
        )
    except ValueError:
        raise CredentialError(
            "EK point is not on P-256", reason="credential.ek_unsupported"
        ) from None


def make_credential(
    ek_public: Public | bytes, ak_name: bytes, secret: bytes, random_bytes: bytes
) -> MadeCredential:
    """TPM2_MakeCredential for the EK ``ek_public`` (a :class:`Public` or TPMT_PUBLIC bytes),
    the object named ``ak_name`` (nameAlg || digest) and ``secret`` (1 to 32 bytes).

    ``random_bytes`` must hold at least :data:`CREDENTIAL_RANDOM_BYTES` fresh random bytes.
    Raises :class:`CredentialError` (``credential.ek_unsupported``, ``credential.name_invalid``,
    ``credential.secret_invalid``, ``credential.random_short``).
    """
    if isinstance(ek_public, bytes):
        try:
            ek_public = parse_public(ek_public)
        except ParseError as exc:
            raise CredentialError(
                f"EK public area: {exc.message}", reason="credential.ek_unsupported"
            ) from exc
    _check_ek(ek_public)
    name_alg = HASH_ALGORITHMS.get(int.from_bytes(ak_name[:2], "big"))
    if len(ak_name) < 2 or name_alg is None or len(ak_name) != 2 + name_alg.digest_size:
        raise CredentialError(
            "the AK name is not a hash algorithm id and digest", reason="credential.name_invalid"
        )
    h_len = HASH_ALGORITHMS[ek_public.name_alg].digest_size
    if not 1 <= len(secret) <= h_len:
        raise CredentialError(
            f"the secret must be 1 to {h_len} bytes", reason="credential.secret_invalid"
        )
    if len(random_bytes) < CREDENTIAL_RANDOM_BYTES:
        raise CredentialError(
            f"need {CREDENTIAL_RANDOM_BYTES} random bytes", reason="credential.random_short"
        )
    seed, encrypted_seed = _protect_seed(ek_public, random_bytes, h_len)
    sym_key = kdfa(ek_public.name_alg, seed, b"STORAGE", ak_name, b"", bits=_AES_KEY_BITS)
    encryptor = Cipher(algorithms.AES(sym_key), CFB(b"\x00" * 16)).encryptor()
    enc_identity = encryptor.update(len(secret).to_bytes(2, "big") + secret) + encryptor.finalize()
    hmac_key = kdfa(ek_public.name_alg, seed, b"INTEGRITY", b"", b"", bits=h_len * 8)
    hash_name = _hash_name(ek_public.name_alg)
    outer_hmac = hmac.new(hmac_key, enc_identity + ak_name, hash_name).digest()
    id_object = len(outer_hmac).to_bytes(2, "big") + outer_hmac + enc_identity
    return MadeCredential(
        len(id_object).to_bytes(2, "big") + id_object,
        len(encrypted_seed).to_bytes(2, "big") + encrypted_seed,
    )
