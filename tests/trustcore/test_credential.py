"""trustcore.credential: KDFs against tpm2-pytss, MakeCredential opened by a software
ActivateCredential (cryptography's OAEP/ECDH + tpm2-pytss's KDFs), purity, and refusals.

The real TPM's ActivateCredential on swtpm is in tests/nodeagent/test_tpm_credential.py.
"""

from __future__ import annotations

import hashlib
import hmac
import struct

import pytest
from cryptography.hazmat.decrepit.ciphers.modes import CFB
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from tpm2_pytss import (
    TPM2_ALG,
    TPMA_OBJECT,
    TPMT_ASYM_SCHEME,
    TPMT_PUBLIC,
    TPMT_SYM_DEF_OBJECT,
    TPMU_SYM_KEY_BITS,
    TPMU_SYM_MODE,
)
from tpm2_pytss.internal.crypto import _kdfa
from tpm2_pytss.internal.crypto import kdfe as pytss_kdfe
from tpm2_pytss.internal.templates import ek_template

from tests.trustcore.test_tpm_oracle import EC_KEY, RSA_KEY, SHA256, software_ak
from trustcore.credential import CREDENTIAL_RANDOM_BYTES, kdfa, kdfe, make_credential
from trustcore.errors import CredentialError

EK_ATTRS = (
    TPMA_OBJECT.FIXEDTPM
    | TPMA_OBJECT.FIXEDPARENT
    | TPMA_OBJECT.SENSITIVEDATAORIGIN
    | TPMA_OBJECT.ADMINWITHPOLICY
    | TPMA_OBJECT.RESTRICTED
    | TPMA_OBJECT.DECRYPT
)
AES128CFB = TPMT_SYM_DEF_OBJECT(
    algorithm=TPM2_ALG.AES,
    keyBits=TPMU_SYM_KEY_BITS(aes=128),
    mode=TPMU_SYM_MODE(aes=TPM2_ALG.CFB),
)
AK_NAME = b"\x00\x0b" + hashlib.sha256(b"the AK's public area").digest()
SECRET = hashlib.sha256(b"credential").digest()
RANDOM = bytes(range(64))


def software_ek(
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey,
    *,
    symmetric: TPMT_SYM_DEF_OBJECT = AES128CFB,
    attrs: int = EK_ATTRS,
    name_alg: int = TPM2_ALG.SHA256,
) -> bytes:
    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    public = TPMT_PUBLIC.from_pem(
        pem,
        nameAlg=name_alg,
        objectAttributes=attrs,
        symmetric=symmetric,
        scheme=TPMT_ASYM_SCHEME(scheme=TPM2_ALG.NULL),
    )
    return bytes(public.marshal())


def software_activate(
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey,
    ak_name: bytes,
    credential_blob: bytes,
    secret: bytes,
) -> bytes:
    """TPM2_ActivateCredential's computation (Part 1 §24), done with the EK's private key."""
    (secret_size,) = struct.unpack_from(">H", secret)
    assert secret_size == len(secret) - 2
    encrypted_seed = secret[2:]
    if isinstance(key, rsa.RSAPrivateKey):
        oaep = padding.OAEP(padding.MGF1(hashes.SHA256()), hashes.SHA256(), b"IDENTITY\x00")
        seed = key.decrypt(encrypted_seed, oaep)
    else:
        x_size = struct.unpack_from(">H", encrypted_seed)[0]
        x = encrypted_seed[2 : 2 + x_size]
        y = encrypted_seed[4 + x_size :]
        peer = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b"\x04" + x + y)
        z = key.exchange(ec.ECDH(), peer)
        ek_x = key.public_key().public_numbers().x.to_bytes(32, "big")
        seed = pytss_kdfe(TPM2_ALG.SHA256, z, b"IDENTITY\x00", x, ek_x, 256)
    assert len(seed) == 32
    (blob_size,) = struct.unpack_from(">H", credential_blob)
    assert blob_size == len(credential_blob) - 2
    (hmac_size,) = struct.unpack_from(">H", credential_blob, 2)
    outer_hmac = credential_blob[4 : 4 + hmac_size]
    enc_identity = credential_blob[4 + hmac_size :]
    hmac_key = _kdfa(TPM2_ALG.SHA256, seed, b"INTEGRITY", b"", b"", 256)
    expected = hmac.new(hmac_key, enc_identity + ak_name, "sha256").digest()
    assert hmac.compare_digest(outer_hmac, expected), "integrity check failed"
    sym_key = _kdfa(TPM2_ALG.SHA256, seed, b"STORAGE", ak_name, b"", 128)
    decryptor = Cipher(algorithms.AES(sym_key), CFB(bytes(16))).decryptor()
    plain = decryptor.update(enc_identity) + decryptor.finalize()
    (size,) = struct.unpack_from(">H", plain)
    assert size == len(plain) - 2
    return plain[2:]


# --- KDFs ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("bits", [128, 256, 264, 512, 1024])
@pytest.mark.parametrize("alg", [TPM2_ALG.SHA1, TPM2_ALG.SHA256, TPM2_ALG.SHA384])
def test_kdfa_matches_tpm2_pytss(alg: int, bits: int) -> None:
    key, u, v = b"key material", b"context u", b"v"
    ours = kdfa(alg, key, b"STORAGE", u, v, bits=bits)
    # cryptography's KBKDF (under tpm2-pytss) puts the 0x00 between label and context itself.
    assert ours == _kdfa(alg, key, b"STORAGE", u, v, bits)
    assert ours == kdfa(alg, key, b"STORAGE\x00", u, v, bits=bits)  # NUL added only once


@pytest.mark.parametrize("bits", [128, 256, 384, 520])
def test_kdfe_matches_tpm2_pytss(bits: int) -> None:
    z, u, v = b"\x01" * 32, b"\x02" * 32, b"\x03" * 32
    ours = kdfe(TPM2_ALG.SHA256, z, b"IDENTITY", u, v, bits=bits)
    assert ours == pytss_kdfe(TPM2_ALG.SHA256, z, b"IDENTITY\x00", u, v, bits)


def test_kdf_unknown_hash() -> None:
    with pytest.raises(CredentialError):
        kdfa(0x0099, b"k", b"L", b"", b"", bits=128)


# --- MakeCredential ------------------------------------------------------------------------------


@pytest.mark.parametrize("key", [RSA_KEY, EC_KEY], ids=["rsa", "ecc"])
def test_software_activation_recovers_the_secret(
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey,
) -> None:
    made = make_credential(software_ek(key), AK_NAME, SECRET, RANDOM)
    assert software_activate(key, AK_NAME, made.credential_blob, made.secret) == SECRET
    short = make_credential(software_ek(key), AK_NAME, b"x", RANDOM)
    assert software_activate(key, AK_NAME, short.credential_blob, short.secret) == b"x"


def test_shapes() -> None:
    rsa_made = make_credential(software_ek(RSA_KEY), AK_NAME, SECRET, RANDOM)
    assert len(rsa_made.secret) == 2 + 256
    assert len(rsa_made.credential_blob) == 2 + (2 + 32) + (2 + 32)
    ecc_made = make_credential(software_ek(EC_KEY), AK_NAME, SECRET, RANDOM)
    assert ecc_made.secret[:2] == struct.pack(">H", 68)
    assert ecc_made.secret[2:4] == ecc_made.secret[36:38] == b"\x00\x20"


@pytest.mark.parametrize("key", [RSA_KEY, EC_KEY], ids=["rsa", "ecc"])
def test_wrong_name_fails_integrity(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> None:
    made = make_credential(software_ek(key), AK_NAME, SECRET, RANDOM)
    other = AK_NAME[:-1] + bytes([AK_NAME[-1] ^ 1])
    with pytest.raises(AssertionError, match="integrity"):
        software_activate(key, other, made.credential_blob, made.secret)


@pytest.mark.parametrize("key", [RSA_KEY, EC_KEY], ids=["rsa", "ecc"])
def test_randomness_is_a_parameter(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> None:
    ek = software_ek(key)
    first = make_credential(ek, AK_NAME, SECRET, RANDOM)
    assert make_credential(ek, AK_NAME, SECRET, RANDOM) == first
    other = make_credential(ek, AK_NAME, SECRET, bytes(reversed(RANDOM)))
    assert other.secret != first.secret
    assert other.credential_blob != first.credential_blob
    assert software_activate(key, AK_NAME, other.credential_blob, other.secret) == SECRET


def test_rsa_seed_is_the_first_random_bytes() -> None:
    made = make_credential(software_ek(RSA_KEY), AK_NAME, SECRET, RANDOM)
    oaep = padding.OAEP(padding.MGF1(hashes.SHA256()), hashes.SHA256(), b"IDENTITY\x00")
    assert RSA_KEY.decrypt(made.secret[2:], oaep) == RANDOM[:32]


def test_the_tcg_default_ek_templates_are_accepted() -> None:
    for name, key in (("EK-RSA2048", RSA_KEY), ("EK-ECC256", EC_KEY)):
        template = ek_template.lookup(name).template.publicArea
        pem = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        with_key = TPMT_PUBLIC.from_pem(
            pem,
            objectAttributes=template.objectAttributes,
            symmetric=AES128CFB,
            scheme=TPMT_ASYM_SCHEME(scheme=TPM2_ALG.NULL),
        )
        with_key.authPolicy = template.authPolicy
        made = make_credential(bytes(with_key.marshal()), AK_NAME, SECRET, RANDOM)
        assert software_activate(key, AK_NAME, made.credential_blob, made.secret) == SECRET


AES256CFB = TPMT_SYM_DEF_OBJECT(
    algorithm=TPM2_ALG.AES,
    keyBits=TPMU_SYM_KEY_BITS(aes=256),
    mode=TPMU_SYM_MODE(aes=TPM2_ALG.CFB),
)


@pytest.mark.parametrize(
    ("ek", "name", "secret", "random", "reason"),
    [
        (lambda: software_ek(RSA_KEY, symmetric=AES256CFB), AK_NAME, SECRET, RANDOM, "ek"),
        (
            lambda: software_ek(EC_KEY, attrs=EK_ATTRS & ~TPMA_OBJECT.RESTRICTED),
            AK_NAME,
            SECRET,
            RANDOM,
            "ek",
        ),
        (lambda: software_ek(EC_KEY, name_alg=TPM2_ALG.SHA384), AK_NAME, SECRET, RANDOM, "ek"),
        (lambda: software_ak().public, AK_NAME, SECRET, RANDOM, "ek"),
        (
            lambda: software_ek(ec.derive_private_key(5, ec.SECP384R1())),
            AK_NAME,
            SECRET,
            RANDOM,
            "ek",
        ),
        (lambda: b"\x00\x01", AK_NAME, SECRET, RANDOM, "ek"),
        (lambda: software_ek(EC_KEY), AK_NAME[:-1], SECRET, RANDOM, "name"),
        (lambda: software_ek(EC_KEY), b"\x00\x99" + AK_NAME[2:], SECRET, RANDOM, "name"),
        (lambda: software_ek(EC_KEY), b"", SECRET, RANDOM, "name"),
        (lambda: software_ek(EC_KEY), AK_NAME, SECRET + b"x", RANDOM, "secret"),
        (lambda: software_ek(EC_KEY), AK_NAME, b"", RANDOM, "secret"),
        (lambda: software_ek(RSA_KEY), AK_NAME, SECRET, RANDOM[:63], "random"),
    ],
    ids=[
        "aes256",
        "unrestricted",
        "sha384-name",
        "signing-key",
        "p384",
        "garbage",
        "short-name",
        "unknown-name-alg",
        "empty-name",
        "long-secret",
        "empty-secret",
        "short-random",
    ],
)
def test_refusals(ek: object, name: bytes, secret: bytes, random: bytes, reason: str) -> None:
    expected = {
        "ek": "credential.ek_unsupported",
        "name": "credential.name_invalid",
        "secret": "credential.secret_invalid",
        "random": "credential.random_short",
    }[reason]
    with pytest.raises(CredentialError) as info:
        make_credential(ek(), name, secret, random)  # type: ignore[operator]
    assert info.value.reason == expected


def test_random_size_constant() -> None:
    assert CREDENTIAL_RANDOM_BYTES == 64
    assert SHA256 == TPM2_ALG.SHA256
