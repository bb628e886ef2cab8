"""A software TPM for load benchmarks: real TPM structures made and signed without a TPM.

Each :class:`SimTpm` holds an ECC P-256 EK (TCG EK Credential Profile template L-2: restricted
decryption key, AES-128-CFB, the standard EK policy) and an ECC P-256 AK (restricted signing
key, ECDSA SHA-256), both as ``cryptography`` private keys, and marshals their TPMT_PUBLIC
areas. :meth:`SimTpm.quote` builds a TPMS_ATTEST of type TPM_ST_ATTEST_QUOTE (magic, the AK's
qualified name as qualifiedSigner, extraData, clockInfo, firmwareVersion, TPML_PCR_SELECTION and
the PCR digest over the given values) and signs it as a TPMT_SIGNATURE (ECDSA, SHA-256, r, s).
:meth:`SimTpm.activate_credential` is TPM2_ActivateCredential in software: the inverse of
:func:`trustcore.credential.make_credential` for an ECC EK.

Nothing here is a TPM: the keys live in this process's memory. The point is that the hub gets
byte-for-byte the structures a TPM produces, so that it does all of its real work on them.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from collections.abc import Mapping
from typing import Final

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

from trustcore.algorithms import TPM_ALG_SHA256
from trustcore.credential import kdfa, kdfe
from trustcore.errors import CredentialError
from trustcore.tpm.constants import (
    TPM_ALG_AES,
    TPM_ALG_CFB,
    TPM_ALG_ECC,
    TPM_ALG_ECDSA,
    TPM_ALG_NULL,
    TPM_ECC_NIST_P256,
    TPM_GENERATED_VALUE,
    TPM_ST_ATTEST_QUOTE,
    TPMA_OBJECT_ADMINWITHPOLICY,
    TPMA_OBJECT_DECRYPT,
    TPMA_OBJECT_FIXEDPARENT,
    TPMA_OBJECT_FIXEDTPM,
    TPMA_OBJECT_RESTRICTED,
    TPMA_OBJECT_SENSITIVEDATAORIGIN,
    TPMA_OBJECT_SIGN_ENCRYPT,
    TPMA_OBJECT_USERWITHAUTH,
)
from trustcore.tpm.pcrs import PcrSelection

try:
    from cryptography.hazmat.decrepit.ciphers.modes import CFB
except ImportError:  # cryptography < 47 keeps CFB with the other modes
    from cryptography.hazmat.primitives.ciphers.modes import CFB

__all__ = ["SimTpm", "marshal_ecc_public", "marshal_ecdsa_signature", "marshal_quote"]

# TPM2_PolicySecret(TPM_RH_ENDORSEMENT): the authPolicy of the TCG default EK templates.
EK_POLICY: Final = bytes.fromhex("837197674484b3f81a90cc8d46a5d724fd52d76e06520b64f2a1da1b331469aa")
EK_ATTRIBUTES: Final = (
    TPMA_OBJECT_FIXEDTPM
    | TPMA_OBJECT_FIXEDPARENT
    | TPMA_OBJECT_SENSITIVEDATAORIGIN
    | TPMA_OBJECT_ADMINWITHPOLICY
    | TPMA_OBJECT_RESTRICTED
    | TPMA_OBJECT_DECRYPT
)
AK_ATTRIBUTES: Final = (
    TPMA_OBJECT_FIXEDTPM
    | TPMA_OBJECT_FIXEDPARENT
    | TPMA_OBJECT_SENSITIVEDATAORIGIN
    | TPMA_OBJECT_USERWITHAUTH
    | TPMA_OBJECT_RESTRICTED
    | TPMA_OBJECT_SIGN_ENCRYPT
)
TPM_RH_ENDORSEMENT: Final = 0x4000000B
_IDENTITY_LABEL: Final = b"IDENTITY\x00"
_ECDSA_SHA256: Final = ec.ECDSA(hashes.SHA256())


def _tpm2b(data: bytes) -> bytes:
    return len(data).to_bytes(2, "big") + data


def _point(key: ec.EllipticCurvePublicKey) -> tuple[bytes, bytes]:
    numbers = key.public_numbers()
    return numbers.x.to_bytes(32, "big"), numbers.y.to_bytes(32, "big")


def marshal_ecc_public(  # noqa: PLR0917 - the fields of TPMT_PUBLIC in order
    attributes: int, auth_policy: bytes, symmetric: bytes, scheme: bytes, x: bytes, y: bytes
) -> bytes:
    """A P-256 TPMT_PUBLIC with nameAlg SHA-256 and no KDF; ``symmetric`` and ``scheme`` are
    the marshalled TPMT_SYM_DEF_OBJECT and TPMT_ECC_SCHEME."""
    return (
        struct.pack(">HHI", TPM_ALG_ECC, TPM_ALG_SHA256, attributes)
        + _tpm2b(auth_policy)
        + symmetric
        + scheme
        + struct.pack(">HH", TPM_ECC_NIST_P256, TPM_ALG_NULL)
        + _tpm2b(x)
        + _tpm2b(y)
    )


def marshal_quote(  # noqa: PLR0917 - the fields of TPMS_ATTEST in order
    qualified_signer: bytes,
    extra_data: bytes,
    clock: int,
    reset_count: int,
    restart_count: int,
    firmware_version: int,
    selection: PcrSelection,
    pcr_digest: bytes,
) -> bytes:
    """A TPMS_ATTEST of type TPM_ST_ATTEST_QUOTE (clockInfo.safe = YES)."""
    return (
        struct.pack(">IH", TPM_GENERATED_VALUE, TPM_ST_ATTEST_QUOTE)
        + _tpm2b(qualified_signer)
        + _tpm2b(extra_data)
        + struct.pack(">QIIBQ", clock, reset_count, restart_count, 1, firmware_version)
        + selection.marshal()
        + _tpm2b(pcr_digest)
    )


def marshal_ecdsa_signature(der: bytes) -> bytes:
    """The TPMT_SIGNATURE (ECDSA, SHA-256) of a DER ECDSA P-256 signature."""
    r, s = decode_dss_signature(der)
    return (
        struct.pack(">HH", TPM_ALG_ECDSA, TPM_ALG_SHA256)
        + _tpm2b(r.to_bytes(32, "big"))
        + _tpm2b(s.to_bytes(32, "big"))
    )


def _name(public: bytes) -> bytes:
    return TPM_ALG_SHA256.to_bytes(2, "big") + hashlib.sha256(public).digest()


class SimTpm:
    """One host's software TPM: EK, AK, a running clock; quotes and activates credentials."""

    def __init__(self) -> None:
        self.ek_key = ec.generate_private_key(ec.SECP256R1())
        self._ek_x, ek_y = _point(self.ek_key.public_key())
        self.ek_public = marshal_ecc_public(
            EK_ATTRIBUTES,
            EK_POLICY,
            struct.pack(">HHH", TPM_ALG_AES, 128, TPM_ALG_CFB),
            struct.pack(">H", TPM_ALG_NULL),
            self._ek_x,
            ek_y,
        )
        self.new_ak()
        self.clock = 1_000_000
        self.reset_count = 3
        self.restart_count = 0
        self.firmware_version = 0x2020_0310_0000_0001

    def new_ak(self) -> None:
        """Make a new AK under the EK (as an agent does when it enrolls again)."""
        self.ak_key = ec.generate_private_key(ec.SECP256R1())
        self.ak_public = marshal_ecc_public(
            AK_ATTRIBUTES,
            b"",
            struct.pack(">H", TPM_ALG_NULL),
            struct.pack(">HH", TPM_ALG_ECDSA, TPM_ALG_SHA256),
            *_point(self.ak_key.public_key()),
        )
        self.ak_name = _name(self.ak_public)
        # qualified names as the TPM makes them: QN(child) = nameAlg || H(QN(parent) || name)
        ek_qn = _name(TPM_RH_ENDORSEMENT.to_bytes(4, "big") + _name(self.ek_public))
        self.ak_qualified_name = _name(ek_qn + self.ak_name)

    def quote(
        self,
        selection: PcrSelection,
        values: Mapping[int, Mapping[int, bytes]],
        qualifying_data: bytes,
    ) -> tuple[bytes, bytes]:
        """TPM2_Quote: (TPMS_ATTEST, TPMT_SIGNATURE) over ``values`` in selection order."""
        digest = hashlib.sha256(
            b"".join(values[alg][pcr] for alg, pcrs in selection.plan() for pcr in pcrs)
        ).digest()
        self.clock += 1000
        attest = marshal_quote(
            self.ak_qualified_name,
            qualifying_data,
            self.clock,
            self.reset_count,
            self.restart_count,
            self.firmware_version,
            selection,
            digest,
        )
        return attest, marshal_ecdsa_signature(self.ak_key.sign(attest, _ECDSA_SHA256))

    def activate_credential(self, credential_blob: bytes, encrypted_secret: bytes) -> bytes:
        """TPM2_ActivateCredential with this EK for the object named ``ak_name``.

        Raises :class:`CredentialError` (``credential.invalid``) when the blob is not for
        this EK and AK (integrity HMAC mismatch) or is malformed.
        """
        try:
            seed = self._seed(encrypted_secret)
            outer = credential_blob[2:]
            hmac_size = int.from_bytes(outer[:2], "big")
            integrity, enc_identity = outer[2 : 2 + hmac_size], outer[2 + hmac_size :]
        except (ValueError, IndexError) as exc:
            raise CredentialError(f"malformed credential: {exc}") from None
        hmac_key = kdfa(TPM_ALG_SHA256, seed, b"INTEGRITY", b"", b"", bits=256)
        expected = hmac.new(hmac_key, enc_identity + self.ak_name, "sha256").digest()
        if not hmac.compare_digest(expected, integrity):
            raise CredentialError("the credential's integrity HMAC does not verify")
        sym_key = kdfa(TPM_ALG_SHA256, seed, b"STORAGE", self.ak_name, b"", bits=128)
        decryptor = Cipher(algorithms.AES(sym_key), CFB(b"\x00" * 16)).decryptor()
        plain = decryptor.update(enc_identity) + decryptor.finalize()
        size = int.from_bytes(plain[:2], "big")
        if size != len(plain) - 2:
            raise CredentialError("the decrypted credential is not a TPM2B_DIGEST")
        return plain[2:]

    def _seed(self, encrypted_secret: bytes) -> bytes:
        point = encrypted_secret[2:]
        x_size = int.from_bytes(point[:2], "big")
        x = point[2 : 2 + x_size]
        y = point[4 + x_size :]
        ephemeral = ec.EllipticCurvePublicKey.from_encoded_point(
            ec.SECP256R1(), b"\x04" + x.rjust(32, b"\0") + y.rjust(32, b"\0")
        )
        z = self.ek_key.exchange(ec.ECDH(), ephemeral)
        return kdfe(TPM_ALG_SHA256, z, _IDENTITY_LABEL, x, self._ek_x, bits=256)
