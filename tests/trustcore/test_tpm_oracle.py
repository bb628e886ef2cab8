"""Builders of TPM structures made by tpm2-pytss (the oracle) and signed by software keys.

trustcore's decoders and verifiers are checked against bytes that tpm2-pytss marshals, never
against bytes trustcore itself produced. The quote, certify and NV-certify attestations here are
what a TPM would sign; a software "AK" (a key whose private half the test holds) signs them so
that every verification branch after the signature can be reached. The tests at the bottom
check the builders themselves against the TPM 2.0 encoding written out by hand.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from tpm2_pytss import (
    TPM2_ALG,
    TPM2_ST,
    TPM2B_DATA,
    TPM2B_DIGEST,
    TPM2B_ECC_PARAMETER,
    TPM2B_MAX_NV_BUFFER,
    TPM2B_NAME,
    TPM2B_PUBLIC_KEY_RSA,
    TPMA_OBJECT,
    TPML_PCR_SELECTION,
    TPMS_ATTEST,
    TPMS_CERTIFY_INFO,
    TPMS_CLOCK_INFO,
    TPMS_NV_CERTIFY_INFO,
    TPMS_PCR_SELECTION,
    TPMS_QUOTE_INFO,
    TPMS_SCHEME_HASH,
    TPMS_SIGNATURE_ECC,
    TPMS_SIGNATURE_RSA,
    TPMT_ASYM_SCHEME,
    TPMT_PUBLIC,
    TPMT_SIGNATURE,
    TPMU_ASYM_SCHEME,
    TPMU_ATTEST,
    TPMU_SIGNATURE,
)

TPM_GENERATED = 0xFF544347
SHA256 = 0x000B
SHA1 = 0x0004
SHA384 = 0x000C

AK_ATTRS = (
    TPMA_OBJECT.FIXEDTPM
    | TPMA_OBJECT.FIXEDPARENT
    | TPMA_OBJECT.SENSITIVEDATAORIGIN
    | TPMA_OBJECT.USERWITHAUTH
    | TPMA_OBJECT.RESTRICTED
    | TPMA_OBJECT.SIGN_ENCRYPT
)

# Fixed software keys: generating RSA keys per test would be slow and nondeterministic.
EC_KEY = ec.derive_private_key(0x1234_5678_9ABC_DEF0_1122_3344_5566_7788, ec.SECP256R1())
OTHER_EC_KEY = ec.derive_private_key(0x0FED_CBA9_8765_4321, ec.SECP256R1())
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


@dataclass(frozen=True)
class SoftwareAk:
    """A signing key whose TPMT_PUBLIC tpm2-pytss marshalled and whose private half we hold."""

    private: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
    public: bytes  # TPMT_PUBLIC
    sig_alg: int
    hash_alg: int

    def sign(
        self, data: bytes, *, sig_alg: int | None = None, hash_alg: int | None = None
    ) -> bytes:
        """A TPMT_SIGNATURE (marshalled by tpm2-pytss) over ``data``."""
        sig_alg = self.sig_alg if sig_alg is None else sig_alg
        hash_alg = self.hash_alg if hash_alg is None else hash_alg
        chosen = {SHA256: hashes.SHA256(), SHA384: hashes.SHA384(), SHA1: hashes.SHA1()}[hash_alg]
        if isinstance(self.private, ec.EllipticCurvePrivateKey):
            r, s = decode_dss_signature(self.private.sign(data, ec.ECDSA(chosen)))
            union = TPMU_SIGNATURE(
                ecdsa=TPMS_SIGNATURE_ECC(
                    hash=hash_alg,
                    signatureR=TPM2B_ECC_PARAMETER(r.to_bytes(32, "big")),
                    signatureS=TPM2B_ECC_PARAMETER(s.to_bytes(32, "big")),
                )
            )
        else:
            pad: padding.AsymmetricPadding = (
                padding.PKCS1v15()
                if sig_alg == TPM2_ALG.RSASSA
                else padding.PSS(mgf=padding.MGF1(chosen), salt_length=chosen.digest_size)
            )
            raw = self.private.sign(data, pad, chosen)
            union = TPMU_SIGNATURE(
                rsassa=TPMS_SIGNATURE_RSA(hash=hash_alg, sig=TPM2B_PUBLIC_KEY_RSA(raw))
            )
        return bytes(TPMT_SIGNATURE(sigAlg=sig_alg, signature=union).marshal())


def software_ak(
    kind: str = "ecc",
    *,
    scheme: int | None = None,
    hash_alg: int = SHA256,
    attrs: int = AK_ATTRS,
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | None = None,
) -> SoftwareAk:
    """A software AK: ``kind`` "ecc" (ECDSA) or "rsa" (RSASSA unless ``scheme`` says RSAPSS)."""
    private = key or (EC_KEY if kind == "ecc" else RSA_KEY)
    if scheme is None:
        scheme = TPM2_ALG.ECDSA if kind == "ecc" else TPM2_ALG.RSASSA
    asym = TPMT_ASYM_SCHEME(
        scheme=scheme, details=TPMU_ASYM_SCHEME(anySig=TPMS_SCHEME_HASH(hashAlg=hash_alg))
    )
    pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    public = TPMT_PUBLIC.from_pem(pem, objectAttributes=attrs, scheme=asym)
    return SoftwareAk(private, bytes(public.marshal()), scheme, hash_alg)


def tpm_selection(banks: Mapping[int, Sequence[int]], size_of_select: int = 3) -> bytes:
    """TPML_PCR_SELECTION bytes marshalled by tpm2-pytss."""
    selections = []
    for alg, pcrs in banks.items():
        bitmap = bytearray(size_of_select)
        for pcr in pcrs:
            bitmap[pcr // 8] |= 1 << (pcr % 8)
        selections.append(
            TPMS_PCR_SELECTION(hash=alg, sizeofSelect=size_of_select, pcrSelect=bytes(bitmap))
        )
    return bytes(TPML_PCR_SELECTION(selections).marshal())


def _header(
    kind: int, extra: bytes, magic: int, signer: bytes, clock: tuple[int, int, int, int], fw: int
) -> dict[str, object]:
    return {
        "magic": magic,
        "type": kind,
        "qualifiedSigner": TPM2B_NAME(signer),
        "extraData": TPM2B_DATA(extra),
        "clockInfo": TPMS_CLOCK_INFO(
            clock=clock[0], resetCount=clock[1], restartCount=clock[2], safe=clock[3]
        ),
        "firmwareVersion": fw,
    }


SIGNER = b"\x00\x0b" + bytes(range(32))
CLOCK = (123456789, 7, 3, 1)
FIRMWARE = 0x0001_0002_0003_0004


def quote_attest(
    *,
    selection: bytes,
    pcr_digest: bytes,
    extra: bytes,
    magic: int = TPM_GENERATED,
    kind: int = TPM2_ST.ATTEST_QUOTE,
    signer: bytes = SIGNER,
    clock: tuple[int, int, int, int] = CLOCK,
    firmware: int = FIRMWARE,
) -> bytes:
    """A TPMS_ATTEST (QUOTE) marshalled by tpm2-pytss; ``selection`` is TPML_PCR_SELECTION bytes."""
    pcr_select, _ = TPML_PCR_SELECTION.unmarshal(selection)
    info = TPMS_QUOTE_INFO(pcrSelect=pcr_select, pcrDigest=TPM2B_DIGEST(pcr_digest))
    attest = TPMS_ATTEST(
        attested=TPMU_ATTEST(quote=info), **_header(kind, extra, magic, signer, clock, firmware)
    )
    return bytes(attest.marshal())


def certify_attest(
    *, name: bytes, qualified_name: bytes, extra: bytes, kind: int = TPM2_ST.ATTEST_CERTIFY
) -> bytes:
    info = TPMS_CERTIFY_INFO(name=TPM2B_NAME(name), qualifiedName=TPM2B_NAME(qualified_name))
    attest = TPMS_ATTEST(
        attested=TPMU_ATTEST(certify=info),
        **_header(kind, extra, TPM_GENERATED, SIGNER, CLOCK, FIRMWARE),
    )
    return bytes(attest.marshal())


def nv_attest(*, index_name: bytes, offset: int, contents: bytes, extra: bytes) -> bytes:
    info = TPMS_NV_CERTIFY_INFO(
        indexName=TPM2B_NAME(index_name), offset=offset, nvContents=TPM2B_MAX_NV_BUFFER(contents)
    )
    attest = TPMS_ATTEST(
        attested=TPMU_ATTEST(nv=info),
        **_header(TPM2_ST.ATTEST_NV, extra, TPM_GENERATED, SIGNER, CLOCK, FIRMWARE),
    )
    return bytes(attest.marshal())


def pcr_digest(values: Sequence[bytes], hash_name: str = "sha256") -> bytes:
    return hashlib.new(hash_name, b"".join(values)).digest()


# --- the builders against the encoding written out by hand ---------------------------------------


def test_selection_builder_matches_the_spec_encoding() -> None:
    # count=1, hash=SHA-256, sizeofSelect=3, PCRs 0..7 -> 0xff 0x00 0x00
    assert tpm_selection({SHA256: range(8)}) == bytes.fromhex("00000001000b03ff0000")
    assert tpm_selection({SHA1: [0, 17], SHA256: [23]}) == bytes.fromhex(
        "00000002000403010002000b03000080"
    )


def test_quote_builder_matches_the_spec_encoding() -> None:
    attest = quote_attest(
        selection=tpm_selection({SHA256: [0]}), pcr_digest=b"\xaa" * 32, extra=b"\x01\x02"
    )
    expected = (
        struct.pack(">IH", TPM_GENERATED, 0x8018)
        + struct.pack(">H", len(SIGNER))
        + SIGNER
        + b"\x00\x02\x01\x02"
        + struct.pack(">QIIB", *CLOCK)
        + struct.pack(">Q", FIRMWARE)
        + bytes.fromhex("00000001000b03010000")
        + b"\x00\x20"
        + b"\xaa" * 32
    )
    assert attest == expected


def test_software_ak_signature_layout() -> None:
    ak = software_ak()
    sig = ak.sign(b"data")
    assert sig[:4] == bytes.fromhex("0018000b")  # ECDSA, SHA-256
    assert sig[4:6] == b"\x00\x20"
    assert sig[38:40] == b"\x00\x20"
    assert len(sig) == 72
