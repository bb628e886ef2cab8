"""Differential tests: what swtpm signs through nodeagent.tpm (tpm2-pytss) verifies with
trustcore, trustcore decodes the same bytes as tpm2-pytss's unmarshal, and every single-bit
change of signature, attestation data, PCR values or nonce is refused with a precise reason,
for ECC P-256 and RSA-2048 AKs, in quotes, certifies and NV certifies alike.
"""

from __future__ import annotations

import hashlib
import struct
from collections import Counter
from collections.abc import Callable, Iterator

import pytest
from tpm2_pytss import TPM2B_PUBLIC, TPMS_ATTEST, TPMS_NV_PUBLIC, TPMT_PUBLIC, TPMT_SIGNATURE
from tpm2_pytss.internal.crypto import public_to_key

from nodeagent.tpm import KeyKind, LoadedKey, SignedAttestation, TpmDevice
from trustcore.errors import ParseError, VerificationError
from trustcore.quote import (
    AttestationKey,
    VerifiedQuote,
    verify_certify,
    verify_nv_certify,
    verify_quote,
)
from trustcore.tpm import (
    CertifyInfo,
    NvCertifyInfo,
    PcrSelection,
    QuoteInfo,
    parse_attest,
    parse_nv_public,
    parse_public,
    parse_signature,
)
from trustcore.tpm.signature import EccSignature, RsaSignature
from trustplane.swtpm import Swtpm

SHA1, SHA256 = 0x0004, 0x000B
SELECTION = PcrSelection.of({SHA256: range(8)})
NONCE = hashlib.sha256(b"challenge").digest()
EK_CERT_NV = 0x01C00002


@pytest.fixture
def device(swtpm: Swtpm) -> Iterator[TpmDevice]:
    with TpmDevice(swtpm.tcti) as dev:
        for pcr in range(8):
            dev.pcr_extend(pcr, {SHA256: hashlib.sha256(b"boot %d" % pcr).digest()})
        yield dev


def quote_and_values(
    device: TpmDevice, ak: LoadedKey, selection: PcrSelection = SELECTION
) -> tuple[SignedAttestation, dict[int, dict[int, bytes]]]:
    values = device.pcr_read(selection)
    return device.quote(ak, selection, NONCE), values


def check(
    ak: AttestationKey,
    quote: SignedAttestation,
    values: dict[int, dict[int, bytes]],
    *,
    selection: PcrSelection = SELECTION,
    nonce: bytes = NONCE,
) -> VerifiedQuote:
    return verify_quote(
        ak,
        quote.attest,
        quote.signature,
        qualifying_data=nonce,
        pcr_selection=selection,
        pcr_values=values,
    )


def reason(fn: object, *args: object, **kwargs: object) -> str:
    try:
        fn(*args, **kwargs)  # type: ignore[operator]
    except (VerificationError, ParseError) as exc:
        return exc.reason
    return "accepted"


# --- quotes verify, and decoders agree with tpm2-pytss ------------------------------------------


@pytest.mark.parametrize("kind", ["ecc256", "rsa2048"])
def test_swtpm_quote_verifies_and_decodes_like_tpm2_pytss(device: TpmDevice, kind: str) -> None:
    ak, _ = device.create_ak(kind)  # type: ignore[arg-type]
    quote, values = quote_and_values(device, ak)
    key = AttestationKey.from_tpmt_public(ak.public)
    verified = check(key, quote, values)
    assert verified.pcr_values == values
    for pcr in range(8):
        once = hashlib.sha256(bytes(32) + hashlib.sha256(b"boot %d" % pcr).digest()).digest()
        assert verified.pcr_values[SHA256][pcr] == once

    theirs, used = TPMS_ATTEST.unmarshal(quote.attest)
    assert used == len(quote.attest)
    ours = parse_attest(quote.attest)
    assert (ours.magic, ours.type) == (theirs.magic, theirs.type) == (0xFF544347, 0x8018)
    assert ours.qualified_signer == bytes(theirs.qualifiedSigner) == verified.qualified_signer
    assert ours.extra_data == bytes(theirs.extraData) == NONCE
    clock = verified.clock_info
    assert (clock.clock, clock.reset_count, clock.restart_count, clock.safe) == (
        theirs.clockInfo.clock,
        theirs.clockInfo.resetCount,
        theirs.clockInfo.restartCount,
        bool(theirs.clockInfo.safe),
    )
    assert ours.firmware_version == theirs.firmwareVersion == verified.firmware_version
    assert isinstance(ours.attested, QuoteInfo)
    assert ours.attested.pcr_select.marshal() == bytes(theirs.attested.quote.pcrSelect.marshal())
    assert ours.attested.pcr_digest == bytes(theirs.attested.quote.pcrDigest)
    assert (
        verified.pcr_digest
        == hashlib.sha256(b"".join(values[SHA256][pcr] for pcr in range(8))).digest()
    )

    sig, used = TPMT_SIGNATURE.unmarshal(quote.signature)
    assert used == len(quote.signature)
    parsed = parse_signature(quote.signature)
    assert parsed.sig_alg == sig.sigAlg
    if isinstance(parsed, EccSignature):
        assert (parsed.r, parsed.s) == (
            bytes(sig.signature.ecdsa.signatureR),
            bytes(sig.signature.ecdsa.signatureS),
        )
    else:
        assert isinstance(parsed, RsaSignature)
        assert parsed.sig == bytes(sig.signature.rsassa.sig)
    sig.verify_signature(public_to_key(TPMT_PUBLIC.unmarshal(ak.public)[0]), quote.attest)


@pytest.mark.parametrize("kind", ["ecc256", "rsa2048"])
def test_key_names_and_numbers_agree_with_the_tpm_and_tpm2_pytss(
    device: TpmDevice, kind: str
) -> None:
    ek = device.create_ek(kind)  # type: ignore[arg-type]
    ak, _ = device.create_ak(kind)  # type: ignore[arg-type]
    for key in (ek.key, ak):
        tpm_public, tpm_name, _ = device.read_public(key)
        theirs, _ = TPMT_PUBLIC.unmarshal(tpm_public)
        ours = parse_public(tpm_public)
        assert ours.name() == tpm_name == bytes(TPM2B_PUBLIC(publicArea=theirs).get_name())
        assert ours.public_key().public_numbers() == public_to_key(theirs).public_numbers()
    assert AttestationKey.from_tpmt_public(ak.public).name == ak.name


def test_two_bank_quote_hashes_in_the_quoted_order(device: TpmDevice) -> None:
    ak, _ = device.create_ak("ecc256")
    selection = PcrSelection.of({SHA256: [0, 5], SHA1: [2, 23]})
    quote, values = quote_and_values(device, ak, selection)
    verified = check(AttestationKey.from_tpmt_public(ak.public), quote, values, selection=selection)
    assert verified.pcr_selection.as_dict() == {SHA256: (0, 5), SHA1: (2, 23)}
    ordered = [values[SHA256][0], values[SHA256][5], values[SHA1][2], values[SHA1][23]]
    assert verified.pcr_digest == hashlib.sha256(b"".join(ordered)).digest()


def test_pcr_changed_after_reading_is_a_digest_mismatch(device: TpmDevice) -> None:
    ak, _ = device.create_ak("ecc256")
    values = device.pcr_read(SELECTION)
    device.pcr_extend(3, {SHA256: bytes(32)})
    quote = device.quote(ak, SELECTION, NONCE)
    key = AttestationKey.from_tpmt_public(ak.public)
    assert reason(check, key, quote, values) == "quote.pcr_digest_mismatch"


def test_quote_of_another_selection_is_refused(device: TpmDevice) -> None:
    ak, _ = device.create_ak("ecc256")
    key = AttestationKey.from_tpmt_public(ak.public)
    smaller = PcrSelection.of({SHA256: range(7)})
    quote, values = quote_and_values(device, ak, smaller)
    assert reason(check, key, quote, values) == "quote.pcr_selection_mismatch"
    assert check(key, quote, values, selection=smaller).pcr_values == values


# --- every bit ----------------------------------------------------------------------------------


ECC_SIG_ALGS = (0x0018, 0x001A, 0x001B, 0x001C)  # ECDSA, ECDAA, SM2, ECSCHNORR
RSA_SIG_ALGS = (0x0014, 0x0016)  # RSASSA, RSAPSS


def expected_for_signature_flip(flipped: bytes, prefix: str = "quote") -> str:
    """What a flip in a TPMT_SIGNATURE must yield, by its layout: ECC sigAlg(2) hash(2)
    rSize(2) r sSize(2) s, RSA sigAlg(2) hash(2) size(2) sig. A flip that keeps the structure
    (another scheme or hash, other signature bytes) breaks the signature; one that changes a
    size or makes the algorithm unknown makes it malformed."""
    sig_alg, _hash, size = struct.unpack_from(">HHH", flipped)
    if sig_alg in RSA_SIG_ALGS:
        fits = size <= 512 and 6 + size == len(flipped)
        return f"{prefix}.signature_invalid" if fits else f"{prefix}.malformed"
    if sig_alg not in ECC_SIG_ALGS:
        return f"{prefix}.malformed"
    end_r = 6 + size
    if size > 128 or end_r + 2 > len(flipped):
        return f"{prefix}.malformed"
    (s_size,) = struct.unpack_from(">H", flipped, end_r)
    if s_size > 128 or end_r + 2 + s_size != len(flipped):
        return f"{prefix}.malformed"
    return f"{prefix}.signature_invalid"


def flips(data: bytes) -> Iterator[tuple[int, bytes]]:
    for bit in range(len(data) * 8):
        changed = bytearray(data)
        changed[bit // 8] ^= 1 << (bit % 8)
        yield bit, bytes(changed)


SIGNATURE_SIZES = {"ecc256": 72, "rsa2048": 262}  # P-256 r and s; RSA-2048 RSASSA


@pytest.mark.parametrize("kind", ["ecc256", "rsa2048"])
def test_every_bit_flip_is_refused_with_its_reason(device: TpmDevice, kind: KeyKind) -> None:
    ak, _ = device.create_ak(kind)
    quote, values = quote_and_values(device, ak)
    key = AttestationKey.from_tpmt_public(ak.public)
    assert check(key, quote, values).pcr_values == values
    assert len(quote.signature) == SIGNATURE_SIZES[kind]

    def run(
        attest: bytes, signature: bytes, pcrs: dict[int, dict[int, bytes]], nonce: bytes
    ) -> str:
        return reason(
            verify_quote,
            key,
            attest,
            signature,
            qualifying_data=nonce,
            pcr_selection=SELECTION,
            pcr_values=pcrs,
        )

    seen: Counter[str] = Counter()
    for bit, flipped in flips(quote.signature):
        got = run(quote.attest, flipped, values, NONCE)
        assert got == expected_for_signature_flip(flipped), f"signature bit {bit}"
        seen["signature:" + got] += 1
    for bit, flipped in flips(quote.attest):
        got = run(flipped, quote.signature, values, NONCE)
        assert got == "quote.signature_invalid", f"attest bit {bit}"
        seen["attest:" + got] += 1
    for pcr in range(8):
        for bit, flipped in flips(values[SHA256][pcr]):
            changed = {SHA256: {**values[SHA256], pcr: flipped}}
            got = run(quote.attest, quote.signature, changed, NONCE)
            assert got == "quote.pcr_digest_mismatch", f"PCR {pcr} bit {bit}"
            seen["pcr:" + got] += 1
    for bit, flipped in flips(NONCE):
        got = run(quote.attest, quote.signature, values, flipped)
        assert got == "quote.qualifying_data_mismatch", f"nonce bit {bit}"
        seen["nonce:" + got] += 1
    assert seen["attest:quote.signature_invalid"] == 8 * len(quote.attest)
    assert seen["pcr:quote.pcr_digest_mismatch"] == 8 * 8 * 32
    assert seen["nonce:quote.qualifying_data_mismatch"] == 8 * 32
    assert_signature_flip_counts(seen, "signature:quote", kind, len(quote.signature))


def assert_signature_flip_counts(seen: Counter[str], key: str, kind: str, size: int) -> None:
    """The signature bytes (r and s, or the RSA signature) and the hash field can only break
    the signature; sigAlg and the sizes mostly make the structure malformed."""
    body = 64 if kind == "ecc256" else 256
    assert seen[key + ".signature_invalid"] >= 8 * (body + 2)
    assert seen[key + ".malformed"] >= 8 * (4 if kind == "ecc256" else 2)
    assert seen[key + ".signature_invalid"] + seen[key + ".malformed"] == 8 * size


# --- certify and NV certify ----------------------------------------------------------------------


def test_certify_of_another_key(device: TpmDevice) -> None:
    ak, _ = device.create_ak("ecc256")
    other, _ = device.create_ak("rsa2048")
    result = device.certify(ak, other, b"binding nonce")
    key = AttestationKey.from_tpmt_public(ak.public)
    verified = verify_certify(
        key,
        result.attest,
        result.signature,
        qualifying_data=b"binding nonce",
        certified=other.public,
    )
    assert verified.name == other.name
    theirs, _ = TPMS_ATTEST.unmarshal(result.attest)
    assert verified.name == bytes(theirs.attested.certify.name)
    assert verified.qualified_name == bytes(theirs.attested.certify.qualifiedName)
    assert isinstance(parse_attest(result.attest).attested, CertifyInfo)
    assert (
        reason(
            verify_certify,
            key,
            result.attest,
            result.signature,
            qualifying_data=b"binding nonce",
            certified=ak.public,
        )
        == "certify.name_mismatch"
    )
    assert (
        reason(
            verify_certify,
            key,
            result.attest,
            result.signature,
            qualifying_data=b"other nonce",
            certified=other.public,
        )
        == "certify.qualifying_data_mismatch"
    )
    quote, values = quote_and_values(device, ak)
    assert (
        reason(
            verify_certify,
            key,
            quote.attest,
            quote.signature,
            qualifying_data=NONCE,
            certified=other.public,
        )
        == "certify.type_invalid"
    )
    assert reason(check, key, result, values, nonce=b"binding nonce") == "quote.type_invalid"


def test_nv_certify_of_the_ek_certificate(device: TpmDevice) -> None:
    ek = device.create_ek("rsa2048")
    device.flush(ek.key)
    assert ek.certificate is not None
    ak, _ = device.create_ak("ecc256")
    info = device.nv_read_public(EK_CERT_NV)
    nv_public = parse_nv_public(info.public)
    theirs, _ = TPMS_NV_PUBLIC.unmarshal(info.public)
    assert (nv_public.nv_index, nv_public.data_size) == (EK_CERT_NV, len(ek.certificate))
    assert nv_public.attributes == theirs.attributes
    assert nv_public.name() == info.name

    key = AttestationKey.from_tpmt_public(ak.public)
    head = device.nv_certify(ak, EK_CERT_NV, NONCE, size=64)
    verified = verify_nv_certify(
        key,
        head.attest,
        head.signature,
        qualifying_data=NONCE,
        nv_public=nv_public,
        contents=ek.certificate[:64],
    )
    assert verified.contents == ek.certificate[:64]
    middle = device.nv_certify(ak, EK_CERT_NV, b"", size=100, offset=10, auth="owner")
    result = verify_nv_certify(
        key, middle.attest, middle.signature, qualifying_data=b"", nv_public=nv_public
    )
    assert (result.offset, result.contents) == (10, ek.certificate[10:110])
    attested = parse_attest(middle.attest).attested
    assert isinstance(attested, NvCertifyInfo)
    assert attested.index_name == info.name
    assert (
        reason(
            verify_nv_certify,
            key,
            middle.attest,
            middle.signature,
            qualifying_data=b"",
            nv_public=nv_public,
            contents=ek.certificate[10:110],
        )
        == "nvcertify.contents_mismatch"
    )
    other_public = parse_nv_public(info.public[:-2] + struct.pack(">H", 1))  # another size
    assert (
        reason(
            verify_nv_certify,
            key,
            head.attest,
            head.signature,
            qualifying_data=NONCE,
            nv_public=other_public,
        )
        == "nvcertify.name_mismatch"
    )


def assert_every_flip_refused(
    prefix: str,
    kind: str,
    verify: Callable[[bytes, bytes, bytes], object],
    attested: SignedAttestation,
    qualifying_data: bytes,
) -> None:
    """Every single-bit flip of ``attested``'s attest bytes, its signature, and the expected
    qualifying data is refused by ``verify(attest, signature, qualifying_data)`` with its
    exact reason."""

    def run(attest: bytes, signature: bytes, nonce: bytes) -> str:
        return reason(verify, attest, signature, nonce)

    assert run(attested.attest, attested.signature, qualifying_data) == "accepted"
    seen: Counter[str] = Counter()
    for bit, flipped in flips(attested.signature):
        got = run(attested.attest, flipped, qualifying_data)
        assert got == expected_for_signature_flip(flipped, prefix), f"signature bit {bit}"
        seen[f"signature:{got}"] += 1
    for bit, flipped in flips(attested.attest):
        got = run(flipped, attested.signature, qualifying_data)
        assert got == f"{prefix}.signature_invalid", f"attest bit {bit}"
        seen[f"attest:{got}"] += 1
    for bit, flipped in flips(qualifying_data):
        got = run(attested.attest, attested.signature, flipped)
        assert got == f"{prefix}.qualifying_data_mismatch", f"qualifying data bit {bit}"
        seen[f"nonce:{got}"] += 1
    assert seen[f"attest:{prefix}.signature_invalid"] == 8 * len(attested.attest)
    assert seen[f"nonce:{prefix}.qualifying_data_mismatch"] == 8 * len(qualifying_data)
    assert_signature_flip_counts(seen, f"signature:{prefix}", kind, len(attested.signature))


@pytest.mark.parametrize("kind", ["ecc256", "rsa2048"])
def test_every_bit_flip_of_a_certify_is_refused(device: TpmDevice, kind: KeyKind) -> None:
    ak, _ = device.create_ak(kind)
    other, _ = device.create_ak("ecc256")
    result = device.certify(ak, other, NONCE)
    key = AttestationKey.from_tpmt_public(ak.public)

    def verify(attest: bytes, signature: bytes, nonce: bytes) -> object:
        return verify_certify(key, attest, signature, qualifying_data=nonce, certified=other.public)

    assert_every_flip_refused("certify", kind, verify, result, NONCE)


@pytest.mark.parametrize("kind", ["ecc256", "rsa2048"])
def test_every_bit_flip_of_an_nv_certify_is_refused(device: TpmDevice, kind: KeyKind) -> None:
    ek = device.create_ek("rsa2048")
    device.flush(ek.key)
    assert ek.certificate is not None
    ak, _ = device.create_ak(kind)
    nv_public = parse_nv_public(device.nv_read_public(EK_CERT_NV).public)
    result = device.nv_certify(ak, EK_CERT_NV, NONCE, size=32)
    key = AttestationKey.from_tpmt_public(ak.public)

    def verify(attest: bytes, signature: bytes, nonce: bytes) -> object:
        return verify_nv_certify(
            key,
            attest,
            signature,
            qualifying_data=nonce,
            nv_public=nv_public,
            contents=ek.certificate[:32] if ek.certificate else None,
        )

    assert_every_flip_refused("nvcertify", kind, verify, result, NONCE)
