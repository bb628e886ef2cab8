"""trustcore.tpm decoders against tpm2-pytss (the oracle) on the same bytes, and on bad bytes.

Every structure is marshalled by tpm2-pytss (or written out from the spec by hand); trustcore
must decode the same fields, compute the same names and public keys, and on malformed input
raise only ParseError with the offset of the problem.
"""

from __future__ import annotations

import contextlib
import struct
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tpm2_pytss import (
    TPM2_ALG,
    TPM2B_DIGEST,
    TPM2B_NV_PUBLIC,
    TPM2B_PUBLIC,
    TPMA_OBJECT,
    TPML_PCR_SELECTION,
    TPMS_ATTEST,
    TPMS_NV_PUBLIC,
    TPMT_PUBLIC,
    TPMT_SIGNATURE,
)
from tpm2_pytss.internal.crypto import public_to_key
from tpm2_pytss.internal.templates import ek_template

from tests.trustcore.test_tpm_oracle import (
    AK_ATTRS,
    CLOCK,
    FIRMWARE,
    SHA1,
    SHA256,
    SIGNER,
    certify_attest,
    nv_attest,
    quote_attest,
    software_ak,
    tpm_selection,
)
from trustcore.errors import ParseError
from trustcore.tpm import (
    CertifyInfo,
    EccParameters,
    EccPoint,
    NvCertifyInfo,
    PcrBank,
    PcrSelection,
    QuoteInfo,
    RsaParameters,
    parse_attest,
    parse_nv_public,
    parse_pcr_selection,
    parse_public,
    parse_signature,
    parse_tpm2b_nv_public,
    parse_tpm2b_public,
)
from trustcore.tpm.public import KeyedHashParameters, SymCipherParameters
from trustcore.tpm.signature import EccSignature, RsaSignature

DECRYPT_ATTRS = (
    TPMA_OBJECT.FIXEDTPM
    | TPMA_OBJECT.FIXEDPARENT
    | TPMA_OBJECT.SENSITIVEDATAORIGIN
    | TPMA_OBJECT.USERWITHAUTH
    | TPMA_OBJECT.RESTRICTED
    | TPMA_OBJECT.DECRYPT
)
NONCE = bytes(range(100, 132))


def assert_every_prefix_fails(parse: Callable[[bytes], Any], data: bytes) -> None:
    """Every truncation of ``data`` raises ParseError (and nothing else), at an offset inside."""
    for cut in range(len(data)):
        with pytest.raises(ParseError) as info:
            parse(data[:cut])
        assert 0 <= info.value.offset <= cut


# --- TPML_PCR_SELECTION ------------------------------------------------------------------------


def test_selection_marshals_like_tpm2_pytss() -> None:
    ours = PcrSelection.of({SHA256: range(8), SHA1: [0, 17, 23]})
    theirs = TPML_PCR_SELECTION.parse("sha256:0,1,2,3,4,5,6,7+sha1:0,17,23")
    assert ours.marshal() == bytes(theirs.marshal())


def test_selection_parses_tpm2_pytss_bytes_in_wire_order() -> None:
    data = tpm_selection({SHA1: [0, 17], SHA256: [23, 2]}, size_of_select=4)
    selection, end = parse_pcr_selection(data + b"tail")
    assert end == len(data)
    assert selection.banks == (PcrBank(SHA1, (0, 17), 4), PcrBank(SHA256, (2, 23), 4))
    assert selection.as_dict() == {SHA1: (0, 17), SHA256: (2, 23)}
    assert selection.plan() == ((SHA1, (0, 17)), (SHA256, (2, 23)))
    assert selection.digest_plan() == ((SHA1, (0, 17), 20), (SHA256, (2, 23), 32))
    assert selection.marshal() == data
    assert len(selection) == 4


def test_selection_encodings_differ_but_select_the_same() -> None:
    three, _ = parse_pcr_selection(tpm_selection({SHA256: [1, 2]}, 3))
    four, _ = parse_pcr_selection(tpm_selection({SHA256: [1, 2]}, 4))
    with_empty, _ = parse_pcr_selection(tpm_selection({SHA256: [1, 2], SHA1: []}, 3))
    assert three != four
    assert three.same_pcrs(four)
    assert three.same_pcrs(with_empty)
    assert not three.same_pcrs(PcrSelection.of({SHA256: [1]}))
    assert not three.same_pcrs(PcrSelection.of({SHA1: [1, 2]}))


def test_selection_sizes_at_least_three_bytes_and_grows() -> None:
    assert PcrSelection.of({SHA256: [0]}).banks[0].size_of_select == 3
    assert PcrSelection.of({SHA256: [24]}).banks[0].size_of_select == 4
    assert PcrSelection.of({SHA256: []}).marshal() == bytes.fromhex("00000001000b03000000")


@pytest.mark.parametrize(
    ("data", "offset"),
    [
        (bytes.fromhex("00000011"), 0),  # 17 banks
        (bytes.fromhex("00000001000b21") + bytes(33), 6),  # sizeofSelect 33
        (bytes.fromhex("00000002000b03010000000b03020000"), 10),  # SHA-256 twice
    ],
    ids=["too-many-banks", "select-too-large", "bank-twice"],
)
def test_selection_rejects(data: bytes, offset: int) -> None:
    with pytest.raises(ParseError) as info:
        parse_pcr_selection(data)
    assert info.value.offset == offset


def test_selection_truncations() -> None:
    assert_every_prefix_fails(parse_pcr_selection, tpm_selection({SHA1: [1], SHA256: [2]}))


@pytest.mark.parametrize(
    "build",
    [
        lambda: PcrSelection.of({SHA256: [-1]}),
        lambda: PcrBank(SHA256, (3, 1), 3),
        lambda: PcrBank(SHA256, (24,), 3),
        lambda: PcrBank(SHA256, (), 33),
        lambda: PcrSelection((PcrBank(SHA256, (1,), 3), PcrBank(SHA256, (2,), 3))),
    ],
    ids=["negative", "unsorted", "beyond-select", "select-too-large", "bank-twice"],
)
def test_selection_construction_checks_invariants(build: Callable[[], object]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - each case has one cause
        build()


# --- TPMT_PUBLIC ---------------------------------------------------------------------------------


def oracle_publics() -> dict[str, Any]:
    ek_rsa = ek_template.lookup("EK-RSA2048").template.publicArea
    ek_ecc = ek_template.lookup("EK-ECC256").template.publicArea
    return {
        "ek-rsa2048": ek_rsa,
        "ek-ecc256": ek_ecc,
        "ak-rsa-rsassa": TPMT_PUBLIC.parse("rsa2048:rsassa-sha256:null", objectAttributes=AK_ATTRS),
        "ak-rsa3072-pss": TPMT_PUBLIC.parse(
            "rsa3072:rsapss-sha384:null", objectAttributes=AK_ATTRS
        ),
        "ak-ecc-ecdsa": TPMT_PUBLIC.parse("ecc256:ecdsa-sha256:null", objectAttributes=AK_ATTRS),
        "ecdaa": TPMT_PUBLIC.parse("ecc256:ecdaa4-sha256:null", objectAttributes=AK_ATTRS),
        "rsa-oaep": TPMT_PUBLIC.parse(
            "rsa2048:oaep-sha256:aes128cfb", objectAttributes=DECRYPT_ATTRS
        ),
        "rsa-rsaes": TPMT_PUBLIC.parse("rsa2048:rsaes:aes256cfb", objectAttributes=DECRYPT_ATTRS),
        "ecc384-ecdh": TPMT_PUBLIC.parse(
            "ecc384:ecdh-sha384:aes256cfb", objectAttributes=DECRYPT_ATTRS
        ),
        "hmac": TPMT_PUBLIC.parse("hmac:sha256"),
        "xor": TPMT_PUBLIC.parse("xor:sha256"),
        "keyedhash": TPMT_PUBLIC.parse("keyedhash"),
        "aes128cfb": TPMT_PUBLIC.parse("aes128cfb"),
    }


ORACLE_PUBLICS = oracle_publics()


def assert_same_public(ours: Any, theirs: Any) -> None:
    assert ours.type == theirs.type
    assert ours.name_alg == theirs.nameAlg
    assert ours.attributes == theirs.objectAttributes
    assert ours.auth_policy == bytes(theirs.authPolicy)
    params = ours.parameters
    if theirs.type == TPM2_ALG.RSA:
        detail = theirs.parameters.rsaDetail
        assert isinstance(params, RsaParameters)
        assert params.key_bits == detail.keyBits
        assert params.exponent == detail.exponent
        assert params.scheme.scheme == detail.scheme.scheme
        if detail.scheme.scheme not in (TPM2_ALG.NULL, TPM2_ALG.RSAES):
            assert params.scheme.hash_alg == detail.scheme.details.anySig.hashAlg
        assert params.symmetric.algorithm == detail.symmetric.algorithm
        assert ours.unique == bytes(theirs.unique.rsa)
    elif theirs.type == TPM2_ALG.ECC:
        detail = theirs.parameters.eccDetail
        assert isinstance(params, EccParameters)
        assert params.curve == detail.curveID
        assert params.scheme.scheme == detail.scheme.scheme
        if detail.scheme.scheme != TPM2_ALG.NULL:
            assert params.scheme.hash_alg == detail.scheme.details.anySig.hashAlg
        if detail.scheme.scheme == TPM2_ALG.ECDAA:
            assert params.scheme.extra == detail.scheme.details.ecdaa.count
        assert params.kdf.scheme == detail.kdf.scheme
        assert params.symmetric.algorithm == detail.symmetric.algorithm
        if detail.symmetric.algorithm != TPM2_ALG.NULL:
            assert params.symmetric.key_bits == detail.symmetric.keyBits.aes
            assert params.symmetric.mode == detail.symmetric.mode.aes
        assert ours.unique == EccPoint(bytes(theirs.unique.ecc.x), bytes(theirs.unique.ecc.y))
    elif theirs.type == TPM2_ALG.KEYEDHASH:
        detail = theirs.parameters.keyedHashDetail
        assert isinstance(params, KeyedHashParameters)
        assert params.scheme.scheme == detail.scheme.scheme
        if detail.scheme.scheme == TPM2_ALG.XOR:
            assert params.scheme.hash_alg == detail.scheme.details.exclusiveOr.hashAlg
            assert params.scheme.extra == detail.scheme.details.exclusiveOr.kdf
        elif detail.scheme.scheme == TPM2_ALG.HMAC:
            assert params.scheme.hash_alg == detail.scheme.details.hmac.hashAlg
        assert ours.unique == bytes(theirs.unique.keyedHash)
    else:
        detail = theirs.parameters.symDetail
        assert isinstance(params, SymCipherParameters)
        assert params.symmetric.algorithm == detail.sym.algorithm
        assert params.symmetric.key_bits == detail.sym.keyBits.aes
        assert params.symmetric.mode == detail.sym.mode.aes
        assert ours.unique == bytes(theirs.unique.sym)


@pytest.mark.parametrize("label", sorted(ORACLE_PUBLICS))
def test_public_fields_and_name_match_tpm2_pytss(label: str) -> None:
    theirs = ORACLE_PUBLICS[label]
    data = bytes(theirs.marshal())
    ours = parse_public(data)
    assert_same_public(ours, theirs)
    assert ours.raw == data
    assert ours.name() == bytes(TPM2B_PUBLIC(publicArea=theirs).get_name())
    assert parse_tpm2b_public(bytes(TPM2B_PUBLIC(publicArea=theirs).marshal())) == ours


@pytest.mark.parametrize("label", sorted(ORACLE_PUBLICS))
def test_public_truncations(label: str) -> None:
    assert_every_prefix_fails(parse_public, bytes(ORACLE_PUBLICS[label].marshal()))


def test_ek_template_values_from_the_profile() -> None:
    # TCG EK Credential Profile, template L-1: policy PolicySecret(TPM_RH_ENDORSEMENT)
    ours = parse_public(bytes(ORACLE_PUBLICS["ek-rsa2048"].marshal()))
    assert ours.auth_policy == bytes.fromhex(
        "837197674484b3f81a90cc8d46a5d724fd52d76e06520b64f2a1da1b331469aa"
    )
    assert ours.attributes == 0x000300B2
    assert isinstance(ours.parameters, RsaParameters)
    assert (ours.parameters.key_bits, ours.parameters.effective_exponent) == (2048, 65537)
    assert ours.unique == bytes(256)


@pytest.mark.parametrize("kind", ["ecc", "rsa"])
def test_public_key_numbers_match_tpm2_pytss(kind: str) -> None:
    data = software_ak(kind).public
    theirs, _ = TPMT_PUBLIC.unmarshal(data)
    ours = parse_public(data).public_key()
    expected = public_to_key(theirs)
    assert ours.public_numbers() == expected.public_numbers()


def test_public_rejects_trailing_and_size_mismatch() -> None:
    data = software_ak().public
    with pytest.raises(ParseError) as info:
        parse_public(data + b"\x00")
    assert info.value.offset == len(data)
    with pytest.raises(ParseError) as info:
        parse_tpm2b_public(struct.pack(">H", len(data) + 1) + data)
    assert info.value.offset == 0


def _with(data: bytes, offset: int, value: bytes) -> bytes:
    return data[:offset] + value + data[offset + len(value) :]


@pytest.mark.parametrize(
    ("patch", "offset"),
    [
        ((0, b"\x00\x99"), 0),  # no such object type
        ((2, b"\x00\x99"), 2),  # nameAlg not a hash
        ((10, b"\x00\x0a"), 10),  # XOR is no object symmetric algorithm
        ((12, b"\x00\x14"), 12),  # RSASSA is no ECC scheme
    ],
    ids=["type", "name-alg", "symmetric-xor", "scheme-of-other-family"],
)
def test_public_rejects_bad_selectors(patch: tuple[int, bytes], offset: int) -> None:
    data = software_ak("ecc").public
    assert data[10:12] == b"\x00\x10"  # symmetric NULL, then the ECC scheme at 12
    with pytest.raises(ParseError) as info:
        parse_public(_with(data, *patch))
    assert info.value.offset == offset


def test_public_rejects_oversized_unique() -> None:
    head = bytes(TPMT_PUBLIC.parse("hmac:sha256").marshal())[:-2]
    with pytest.raises(ParseError) as info:
        parse_public(head + struct.pack(">H", 65) + bytes(65))
    assert info.value.offset == len(head)


def _unsupported(data: bytes) -> None:
    with pytest.raises(ParseError) as info:
        parse_public(data).public_key()
    assert info.value.reason == "tpm.public_unsupported"


def test_public_key_refusals() -> None:
    _unsupported(bytes(TPMT_PUBLIC.parse("hmac:sha256").marshal()))
    ecc = software_ak("ecc").public
    x_at = len(ecc) - 68 + 2
    _unsupported(_with(ecc, x_at, bytes(32)))  # (0, y) is not on P-256
    _unsupported(_with(ecc, 16, b"\x00\x20"))  # curve SM2-P256: not supported
    rsa_public = software_ak("rsa").public
    _unsupported(_with(rsa_public, 16, b"\x0c\x00"))  # says 3072 bits, holds 2048


# --- TPMS_NV_PUBLIC ------------------------------------------------------------------------------


def test_nv_public_and_name_match_tpm2_pytss() -> None:
    theirs = TPMS_NV_PUBLIC(
        nvIndex=0x01C00002,
        nameAlg=TPM2_ALG.SHA256,
        attributes=0x62072001,
        authPolicy=TPM2B_DIGEST(b"\x42" * 32),
        dataSize=1016,
    )
    data = bytes(theirs.marshal())
    ours = parse_nv_public(data)
    assert (ours.nv_index, ours.name_alg, ours.attributes, ours.data_size) == (
        0x01C00002,
        SHA256,
        0x62072001,
        1016,
    )
    assert ours.auth_policy == b"\x42" * 32
    wrapped = TPM2B_NV_PUBLIC(nvPublic=theirs)
    assert ours.name() == bytes(wrapped.get_name())
    assert parse_tpm2b_nv_public(bytes(wrapped.marshal())) == ours
    assert_every_prefix_fails(parse_nv_public, data)


def test_nv_public_rejects_a_non_nv_handle() -> None:
    data = bytes.fromhex("81000001000b6207200100000064")
    with pytest.raises(ParseError) as info:
        parse_nv_public(data)
    assert info.value.offset == 0


# --- TPMS_ATTEST ---------------------------------------------------------------------------------


def test_quote_attest_fields() -> None:
    data = quote_attest(
        selection=tpm_selection({SHA256: [0, 7]}), pcr_digest=b"\x11" * 32, extra=NONCE
    )
    ours = parse_attest(data)
    theirs, used = TPMS_ATTEST.unmarshal(data)
    assert used == len(data)
    assert (ours.magic, ours.type) == (theirs.magic, theirs.type) == (0xFF544347, 0x8018)
    assert ours.qualified_signer == bytes(theirs.qualifiedSigner) == SIGNER
    assert ours.extra_data == bytes(theirs.extraData) == NONCE
    assert (
        ours.clock_info.clock,
        ours.clock_info.reset_count,
        ours.clock_info.restart_count,
        ours.clock_info.safe,
    ) == (CLOCK[0], CLOCK[1], CLOCK[2], True)
    assert ours.firmware_version == theirs.firmwareVersion == FIRMWARE
    assert isinstance(ours.attested, QuoteInfo)
    assert ours.attested.pcr_select.as_dict() == {SHA256: (0, 7)}
    assert ours.attested.pcr_digest == bytes(theirs.attested.quote.pcrDigest)


def test_certify_and_nv_attest_fields() -> None:
    name, qualified = b"\x00\x0b" + b"\x01" * 32, b"\x00\x0b" + b"\x02" * 32
    ours = parse_attest(certify_attest(name=name, qualified_name=qualified, extra=b""))
    assert ours.attested == CertifyInfo(name, qualified)
    assert ours.extra_data == b""
    nv = parse_attest(nv_attest(index_name=name, offset=5, contents=b"abc", extra=b"x"))
    assert nv.attested == NvCertifyInfo(name, 5, b"abc")


def test_attest_truncations() -> None:
    data = quote_attest(
        selection=tpm_selection({SHA256: [0, 7]}), pcr_digest=b"\x11" * 32, extra=NONCE
    )
    assert_every_prefix_fails(parse_attest, data)
    assert_every_prefix_fails(
        parse_attest, nv_attest(index_name=SIGNER, offset=0, contents=b"abc", extra=b"")
    )


def test_attest_rejections() -> None:
    data = quote_attest(selection=tpm_selection({SHA256: [0]}), pcr_digest=b"", extra=b"")
    safe_at = 4 + 2 + 2 + len(SIGNER) + 2 + 16
    with pytest.raises(ParseError) as info:
        parse_attest(_with(data, safe_at, b"\x02"))
    assert info.value.offset == safe_at
    with pytest.raises(ParseError) as info:
        parse_attest(_with(data, 4, b"\x80\x19"))  # ATTEST_TIME: not decoded
    assert info.value.offset == 4
    with pytest.raises(ParseError) as info:
        parse_attest(data + b"\x00")
    assert info.value.offset == len(data)
    big_signer = data[:6] + struct.pack(">H", 67) + bytes(67)
    with pytest.raises(ParseError) as info:
        parse_attest(big_signer)
    assert info.value.offset == 6


# --- TPMT_SIGNATURE ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "scheme"),
    [("ecc", TPM2_ALG.ECDSA), ("rsa", TPM2_ALG.RSASSA), ("rsa", TPM2_ALG.RSAPSS)],
)
def test_signature_fields_match_tpm2_pytss(kind: str, scheme: int) -> None:
    data = software_ak(kind, scheme=scheme).sign(b"payload")
    ours = parse_signature(data)
    theirs, used = TPMT_SIGNATURE.unmarshal(data)
    assert used == len(data)
    assert ours.sig_alg == theirs.sigAlg == scheme
    if isinstance(ours, EccSignature):
        assert ours.hash_alg == theirs.signature.ecdsa.hash
        assert ours.r == bytes(theirs.signature.ecdsa.signatureR)
        assert ours.s == bytes(theirs.signature.ecdsa.signatureS)
    else:
        assert isinstance(ours, RsaSignature)
        assert ours.hash_alg == theirs.signature.rsassa.hash
        assert ours.sig == bytes(theirs.signature.rsassa.sig)
    assert_every_prefix_fails(parse_signature, data)


def test_signature_rejections() -> None:
    data = software_ak().sign(b"payload")
    for bad, offset in [
        (b"\x00\x05" + data[2:], 0),  # HMAC signatures are not for attestation
        (data + b"\x00", len(data)),
        (data[:4] + b"\x00\x81" + bytes(129), 4),  # r longer than any ECC key
    ]:
        with pytest.raises(ParseError) as info:
            parse_signature(bad)
        assert info.value.offset == offset


# --- robustness: arbitrary and mutated bytes -----------------------------------------------------

PARSERS: list[Callable[[bytes], object]] = [
    parse_public,
    parse_tpm2b_public,
    parse_nv_public,
    parse_attest,
    parse_signature,
    parse_pcr_selection,
]
SEEDS = [
    quote_attest(
        selection=tpm_selection({SHA256: [0, 7], SHA1: [1]}), pcr_digest=b"\x11" * 32, extra=NONCE
    ),
    certify_attest(name=SIGNER, qualified_name=SIGNER, extra=b"q"),
    nv_attest(index_name=SIGNER, offset=3, contents=b"contents", extra=b""),
    *(bytes(p.marshal()) for p in ORACLE_PUBLICS.values()),
    software_ak().sign(b"x"),
    software_ak("rsa").sign(b"x"),
]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_parsers_raise_only_parse_error_on_random_bytes(data: bytes) -> None:
    for parse in PARSERS:
        with contextlib.suppress(ParseError):
            parse(data)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data) - 1))
        data[at] = draw(st.integers(0, 255))
    cut = draw(st.integers(0, len(data)))
    return bytes(data[:cut]) if draw(st.booleans()) else bytes(data)


def _agree_attest(data: bytes) -> None:
    try:
        ours = parse_attest(data)
    except ParseError:
        return
    theirs, used = TPMS_ATTEST.unmarshal(data)  # what trustcore accepts, the TSS accepts
    assert used == len(data)
    assert (ours.magic, ours.type, ours.firmware_version) == (
        theirs.magic,
        theirs.type,
        theirs.firmwareVersion,
    )
    assert ours.extra_data == bytes(theirs.extraData)
    assert ours.qualified_signer == bytes(theirs.qualifiedSigner)
    assert ours.clock_info.clock == theirs.clockInfo.clock
    if isinstance(ours.attested, QuoteInfo):
        assert ours.attested.pcr_select.marshal() == bytes(
            theirs.attested.quote.pcrSelect.marshal()
        )
        assert ours.attested.pcr_digest == bytes(theirs.attested.quote.pcrDigest)
    elif isinstance(ours.attested, CertifyInfo):
        assert ours.attested.name == bytes(theirs.attested.certify.name)
    else:
        assert ours.attested.nv_contents == bytes(theirs.attested.nv.nvContents)


def _agree_public(data: bytes) -> None:
    try:
        ours = parse_public(data)
    except ParseError:
        return
    theirs, used = TPMT_PUBLIC.unmarshal(data)
    assert used == len(data)
    assert_same_public(ours, theirs)
    if ours.name_alg in (SHA1, SHA256):
        assert ours.name() == bytes(TPM2B_PUBLIC(publicArea=theirs).get_name())


def _sizeof_select_beyond_tss(data: bytes) -> bool:
    """tss2 keeps at most 4 bytes of pcrSelect (32 PCRs); trustcore accepts up to 32 bytes."""
    try:
        attested = parse_attest(data).attested
    except ParseError:
        return False
    return isinstance(attested, QuoteInfo) and any(
        b.size_of_select > 4 for b in attested.pcr_select.banks
    )


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutations_only_parse_error_and_agree_with_tpm2_pytss(data: bytes) -> None:
    for parse in PARSERS:
        with contextlib.suppress(ParseError):
            parse(data)
    if not _sizeof_select_beyond_tss(data):
        _agree_attest(data)
    _agree_public(data)


def test_keys_from_public_are_cryptography_keys() -> None:
    assert isinstance(
        parse_public(software_ak("ecc").public).public_key(), ec.EllipticCurvePublicKey
    )
    assert isinstance(parse_public(software_ak("rsa").public).public_key(), rsa.RSAPublicKey)
