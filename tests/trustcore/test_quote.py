"""trustcore.quote: every check and its reason id, on attestations tpm2-pytss marshalled and a
software AK signed, so that each branch after the signature can be reached (a TPM only signs
well-formed quotes of its own). The swtpm differential tests are in tests/nodeagent."""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Mapping

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tpm2_pytss import TPM2_ALG, TPM2_ST, TPMA_OBJECT

from tests.trustcore.test_tpm_oracle import (
    AK_ATTRS,
    CLOCK,
    FIRMWARE,
    OTHER_EC_KEY,
    SHA1,
    SHA256,
    SHA384,
    SIGNER,
    SoftwareAk,
    certify_attest,
    nv_attest,
    pcr_digest,
    quote_attest,
    software_ak,
    tpm_selection,
)
from trustcore.errors import ParseError, VerificationError
from trustcore.quote import (
    AttestationKey,
    VerifiedQuote,
    verify_certify,
    verify_nv_certify,
    verify_quote,
)
from trustcore.tpm import PcrSelection, parse_nv_public, parse_public

NONCE = hashlib.sha256(b"nonce").digest()
VALUES = {SHA256: {pcr: hashlib.sha256(b"pcr %d" % pcr).digest() for pcr in range(8)}}
SELECTION = PcrSelection.of({SHA256: range(8)})
GOOD_DIGEST = pcr_digest([VALUES[SHA256][pcr] for pcr in range(8)])


def signed_quote(
    ak: SoftwareAk,
    *,
    selection: bytes | None = None,
    digest: bytes = GOOD_DIGEST,
    extra: bytes = NONCE,
    **header: int,
) -> tuple[bytes, bytes]:
    attest = quote_attest(
        selection=tpm_selection({SHA256: range(8)}) if selection is None else selection,
        pcr_digest=digest,
        extra=extra,
        **header,  # type: ignore[arg-type]
    )
    return attest, ak.sign(attest)


def verify(
    ak: SoftwareAk,
    attest: bytes,
    signature: bytes,
    *,
    qualifying_data: bytes = NONCE,
    selection: PcrSelection = SELECTION,
    values: Mapping[int, Mapping[int, bytes]] = VALUES,
) -> VerifiedQuote:
    return verify_quote(
        AttestationKey.from_tpmt_public(ak.public),
        attest,
        signature,
        qualifying_data=qualifying_data,
        pcr_selection=selection,
        pcr_values=values,
    )


def reason_of(ak: SoftwareAk, attest: bytes, signature: bytes, **kwargs: object) -> str:
    with pytest.raises((VerificationError, ParseError)) as info:
        verify(ak, attest, signature, **kwargs)  # type: ignore[arg-type]
    return info.value.reason


# --- the good path -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "scheme", "hash_alg"),
    [
        ("ecc", TPM2_ALG.ECDSA, SHA256),
        ("ecc", TPM2_ALG.ECDSA, SHA384),
        ("rsa", TPM2_ALG.RSASSA, SHA256),
        ("rsa", TPM2_ALG.RSAPSS, SHA256),
    ],
)
def test_good_quote_verifies(kind: str, scheme: int, hash_alg: int) -> None:
    ak = software_ak(kind, scheme=scheme, hash_alg=hash_alg)
    name = "sha384" if hash_alg == SHA384 else "sha256"
    digest = pcr_digest([VALUES[SHA256][pcr] for pcr in range(8)], name)
    attest, signature = signed_quote(ak, digest=digest)
    quote = verify(ak, attest, signature)
    assert quote.pcr_values == VALUES
    assert quote.hash_alg == hash_alg
    assert quote.pcr_digest == digest
    assert quote.extra_data == NONCE
    assert quote.qualified_signer == SIGNER
    assert (quote.clock_info.clock, quote.clock_info.reset_count) == (CLOCK[0], CLOCK[1])
    assert (quote.clock_info.restart_count, quote.clock_info.safe) == (CLOCK[2], True)
    assert quote.firmware_version == FIRMWARE
    assert quote.attest == attest


def test_only_quoted_values_are_returned_and_copied() -> None:
    ak = software_ak()
    selection = PcrSelection.of({SHA256: [0, 7]})
    digest = pcr_digest([VALUES[SHA256][0], VALUES[SHA256][7]])
    attest, signature = signed_quote(ak, selection=tpm_selection({SHA256: [0, 7]}), digest=digest)
    supplied = {SHA256: dict(VALUES[SHA256]), SHA1: {0: b"\x00" * 20}}
    quote = verify(ak, attest, signature, selection=selection, values=supplied)
    assert quote.pcr_values == {SHA256: {0: VALUES[SHA256][0], 7: VALUES[SHA256][7]}}
    supplied[SHA256][0] = b"\xff" * 32
    assert quote.pcr_values[SHA256][0] == VALUES[SHA256][0]


def test_digest_follows_the_quoted_bank_order() -> None:
    ak = software_ak()
    values = {SHA1: {3: b"\x01" * 20}, SHA256: {2: b"\x02" * 32}}
    wire = tpm_selection({SHA256: [2], SHA1: [3]})
    digest = pcr_digest([b"\x02" * 32, b"\x01" * 20])
    attest, signature = signed_quote(ak, selection=wire, digest=digest)
    requested = PcrSelection.of({SHA1: [3], SHA256: [2]})  # same PCRs, other order
    quote = verify(ak, attest, signature, selection=requested, values=values)
    assert quote.pcr_selection.as_dict() == {SHA256: (2,), SHA1: (3,)}


def test_same_pcrs_in_another_encoding_is_accepted() -> None:
    ak = software_ak()
    attest, signature = signed_quote(ak, selection=tpm_selection({SHA256: range(8)}, 4))
    assert verify(ak, attest, signature).pcr_values == VALUES


# --- every failure, by reason --------------------------------------------------------------------


def test_signature_by_another_key() -> None:
    ak = software_ak()
    attest, _ = signed_quote(ak)
    other = software_ak(key=OTHER_EC_KEY)
    assert reason_of(ak, attest, other.sign(attest)) == "quote.signature_invalid"


def test_signature_scheme_must_fit_the_key() -> None:
    ak = software_ak()
    attest, _ = signed_quote(ak)
    wrong_hash = ak.sign(attest, hash_alg=SHA384)
    assert reason_of(ak, attest, wrong_hash) == "quote.signature_invalid"
    rsa_ak = software_ak("rsa")
    pss = rsa_ak.sign(attest, sig_alg=TPM2_ALG.RSAPSS)  # key's scheme is RSASSA
    assert reason_of(rsa_ak, attest, pss) == "quote.signature_invalid"
    sha1 = rsa_ak.sign(attest, hash_alg=SHA1)
    assert reason_of(rsa_ak, attest, sha1) == "quote.signature_invalid"
    assert reason_of(rsa_ak, attest, ak.sign(attest)) == "quote.signature_invalid"


def test_malformed_signature() -> None:
    ak = software_ak()
    attest, signature = signed_quote(ak)
    assert reason_of(ak, attest, signature[:-1]) == "quote.malformed"
    assert reason_of(ak, attest, signature + b"\x00") == "quote.malformed"
    assert reason_of(ak, attest, b"") == "quote.malformed"
    assert reason_of(ak, attest, b"\x00\x05" + signature[2:]) == "quote.malformed"


def test_magic_type_and_qualifying_data() -> None:
    ak = software_ak()
    assert reason_of(ak, *signed_quote(ak, magic=0xFF544348)) == "quote.magic_invalid"
    certify_type = signed_quote(ak, kind=TPM2_ST.ATTEST_CERTIFY)
    assert reason_of(ak, *certify_type) == "quote.type_invalid"
    assert reason_of(ak, *signed_quote(ak, extra=NONCE[:-1])) == "quote.qualifying_data_mismatch"
    # One encoding only: the hex text of the nonce is not the nonce.
    hex_nonce = signed_quote(ak, extra=NONCE.hex().encode()[:64])
    assert reason_of(ak, *hex_nonce) == "quote.qualifying_data_mismatch"
    good = signed_quote(ak)
    assert reason_of(ak, *good, qualifying_data=b"") == "quote.qualifying_data_mismatch"


def test_checks_run_in_the_documented_order() -> None:
    ak = software_ak()
    bad_all = signed_quote(ak, magic=1, kind=TPM2_ST.ATTEST_CERTIFY, extra=b"x", digest=b"")
    assert reason_of(ak, bad_all[0], bad_all[1][:-1]) == "quote.malformed"  # signature first
    assert reason_of(ak, bad_all[0], software_ak(key=OTHER_EC_KEY).sign(bad_all[0])) == (
        "quote.signature_invalid"
    )
    assert reason_of(ak, *bad_all) == "quote.magic_invalid"
    bad_type = signed_quote(ak, kind=TPM2_ST.ATTEST_CERTIFY, extra=b"x")
    assert reason_of(ak, *bad_type) == "quote.type_invalid"
    bad_nonce_and_selection = signed_quote(ak, extra=b"x", selection=tpm_selection({SHA1: [0]}))
    assert reason_of(ak, *bad_nonce_and_selection) == "quote.qualifying_data_mismatch"
    bad_selection_and_digest = signed_quote(ak, selection=tpm_selection({SHA1: [0]}), digest=b"")
    assert reason_of(ak, *bad_selection_and_digest) == "quote.pcr_selection_mismatch"
    missing_and_digest = signed_quote(ak, digest=b"")
    values = {SHA256: {pcr: VALUES[SHA256][pcr] for pcr in range(7)}}
    assert reason_of(ak, *missing_and_digest, values=values) == "quote.pcr_values_missing"


@pytest.mark.parametrize(
    "quoted",
    [
        {SHA256: range(9)},  # one PCR more than asked
        {SHA256: range(7)},  # one fewer
        {SHA1: range(8)},  # another bank
        {SHA256: range(8), SHA1: [0]},  # an extra bank
        {SHA256: [*range(7), 8]},
    ],
    ids=["extra-pcr", "missing-pcr", "other-bank", "extra-bank", "other-pcr"],
)
def test_selection_must_match_both_ways(quoted: dict[int, range | list[int]]) -> None:
    ak = software_ak()
    attest, signature = signed_quote(ak, selection=tpm_selection(quoted))
    assert reason_of(ak, attest, signature) == "quote.pcr_selection_mismatch"


def test_requested_selection_larger_than_quoted() -> None:
    ak = software_ak()
    attest, signature = signed_quote(ak)
    bigger = PcrSelection.of({SHA256: range(10)})
    assert reason_of(ak, attest, signature, selection=bigger) == "quote.pcr_selection_mismatch"


def test_values_missing() -> None:
    ak = software_ak()
    attest, signature = signed_quote(ak)
    without_pcr = {SHA256: {pcr: VALUES[SHA256][pcr] for pcr in range(1, 8)}}
    assert reason_of(ak, attest, signature, values=without_pcr) == "quote.pcr_values_missing"
    other_bank = {SHA1: {pcr: bytes(20) for pcr in range(8)}}
    assert reason_of(ak, attest, signature, values=other_bank) == "quote.pcr_values_missing"
    assert reason_of(ak, attest, signature, values={}) == "quote.pcr_values_missing"


def test_values_that_do_not_hash_to_the_digest() -> None:
    ak = software_ak()
    attest, signature = signed_quote(ak)
    changed = {SHA256: dict(VALUES[SHA256])}
    changed[SHA256][5] = hashlib.sha256(b"other").digest()
    assert reason_of(ak, attest, signature, values=changed) == "quote.pcr_digest_mismatch"
    swapped = {SHA256: dict(VALUES[SHA256])}
    swapped[SHA256][0], swapped[SHA256][1] = VALUES[SHA256][1], VALUES[SHA256][0]
    assert reason_of(ak, attest, signature, values=swapped) == "quote.pcr_digest_mismatch"


def test_values_of_the_wrong_size_even_if_they_concatenate_right() -> None:
    ak = software_ak()
    attest, signature = signed_quote(ak)
    shifted = {SHA256: dict(VALUES[SHA256])}
    shifted[SHA256][0] = VALUES[SHA256][0] + VALUES[SHA256][1][:1]
    shifted[SHA256][1] = VALUES[SHA256][1][1:]
    assert reason_of(ak, attest, signature, values=shifted) == "quote.pcr_digest_mismatch"


def test_signed_but_malformed_attest() -> None:
    ak = software_ak()
    attest, _ = signed_quote(ak)
    for bad in (attest + b"\x00", attest[:-1], attest[:9]):
        assert reason_of(ak, bad, ak.sign(bad)) == "quote.malformed"
    safe_at = 4 + 2 + 2 + len(SIGNER) + 2 + len(NONCE) + 16
    bad_safe = attest[:safe_at] + b"\x07" + attest[safe_at + 1 :]
    assert reason_of(ak, bad_safe, ak.sign(bad_safe)) == "quote.malformed"
    sel_at = safe_at + 1 + 8
    bad_count = attest[:sel_at] + struct.pack(">I", 99) + attest[sel_at + 4 :]
    assert reason_of(ak, bad_count, ak.sign(bad_count)) == "quote.malformed"


def test_empty_request_is_a_caller_bug() -> None:
    ak = software_ak()
    attest, signature = signed_quote(ak)
    with pytest.raises(ValueError, match="no PCRs"):
        verify(ak, attest, signature, selection=PcrSelection.of({}))


# --- the AK ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "ak",
    [
        lambda: software_ak(attrs=AK_ATTRS & ~TPMA_OBJECT.RESTRICTED),
        lambda: software_ak(attrs=AK_ATTRS & ~TPMA_OBJECT.FIXEDTPM),
        lambda: software_ak(attrs=(AK_ATTRS & ~TPMA_OBJECT.SIGN_ENCRYPT) | TPMA_OBJECT.DECRYPT),
        lambda: software_ak(hash_alg=SHA1),
        lambda: software_ak(scheme=TPM2_ALG.ECDAA),
        lambda: software_ak("rsa", scheme=TPM2_ALG.OAEP),
    ],
    ids=["unrestricted", "not-fixed-tpm", "decrypt-key", "sha1-scheme", "ecdaa", "rsa-oaep"],
)
def test_attestation_key_refusals(ak: object) -> None:
    with pytest.raises(VerificationError) as info:
        AttestationKey.from_tpmt_public(ak().public)  # type: ignore[operator]
    assert info.value.reason == "ak.invalid"


def test_attestation_key_holds_name_and_key() -> None:
    ak = software_ak()
    key = AttestationKey.from_tpmt_public(ak.public)
    assert key.name == b"\x00\x0b" + hashlib.sha256(ak.public).digest()
    assert key.key.public_numbers() == ak.private.public_key().public_numbers()
    wrapped = struct.pack(">H", len(ak.public)) + ak.public
    assert AttestationKey.from_tpm2b_public(wrapped).name == key.name
    with pytest.raises(ParseError):
        AttestationKey.from_tpmt_public(ak.public[:-1])
    with pytest.raises(ParseError):  # ECDSA is no RSA scheme: not even a valid public area
        AttestationKey.from_tpmt_public(software_ak("rsa", scheme=TPM2_ALG.ECDSA).public)


# --- certify and NV certify ----------------------------------------------------------------------


CERTIFIED = software_ak("rsa").public


def certify_name() -> bytes:
    return b"\x00\x0b" + hashlib.sha256(CERTIFIED).digest()


def test_certify() -> None:
    ak = software_ak()
    attest = certify_attest(name=certify_name(), qualified_name=b"\x00\x0b" + bytes(32), extra=b"q")
    key = AttestationKey.from_tpmt_public(ak.public)
    result = verify_certify(key, attest, ak.sign(attest), qualifying_data=b"q", certified=CERTIFIED)
    assert result.name == certify_name()
    assert result.public == parse_public(CERTIFIED)
    assert result.qualified_name == b"\x00\x0b" + bytes(32)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"name": b"\x00\x0b" + bytes(32)}, "certify.name_mismatch"),
        ({"extra": b"other"}, "certify.qualifying_data_mismatch"),
        ({"type": b"\x80\x18"}, "certify.type_invalid"),
    ],
)
def test_certify_refusals(change: dict[str, bytes], reason: str) -> None:
    ak = software_ak()
    fields = {"name": certify_name(), "qualified_name": b"", "extra": b"q"}
    fields.update(change)
    kind = fields.pop("type", b"\x80\x17")
    attest = certify_attest(
        name=fields["name"], qualified_name=fields["qualified_name"], extra=fields["extra"]
    )
    attest = attest[:4] + kind + attest[6:]
    key = AttestationKey.from_tpmt_public(ak.public)
    with pytest.raises(VerificationError) as info:
        verify_certify(key, attest, ak.sign(attest), qualifying_data=b"q", certified=CERTIFIED)
    assert info.value.reason == reason


def test_certify_signature_and_malformed() -> None:
    ak = software_ak()
    key = AttestationKey.from_tpmt_public(ak.public)
    attest = certify_attest(name=certify_name(), qualified_name=b"", extra=b"q")
    other = software_ak(key=OTHER_EC_KEY).sign(attest)
    with pytest.raises(VerificationError) as info:
        verify_certify(key, attest, other, qualifying_data=b"q", certified=CERTIFIED)
    assert info.value.reason == "certify.signature_invalid"
    with pytest.raises(ParseError) as perr:
        verify_certify(key, attest, ak.sign(attest), qualifying_data=b"q", certified=b"\x00")
    assert perr.value.reason == "certify.malformed"
    short = attest[:-1]
    with pytest.raises(ParseError) as perr:
        verify_certify(key, short, ak.sign(short), qualifying_data=b"q", certified=CERTIFIED)
    assert perr.value.reason == "certify.malformed"


NV_PUBLIC = bytes.fromhex("01500000000b6207200100000030")


def nv_name() -> bytes:
    return b"\x00\x0b" + hashlib.sha256(NV_PUBLIC).digest()


def test_nv_certify() -> None:
    ak = software_ak()
    key = AttestationKey.from_tpmt_public(ak.public)
    contents = hashlib.sha384(b"tag certificate").digest()
    attest = nv_attest(index_name=nv_name(), offset=0, contents=contents, extra=NONCE)
    nv_public = parse_nv_public(NV_PUBLIC)
    result = verify_nv_certify(
        key, attest, ak.sign(attest), qualifying_data=NONCE, nv_public=nv_public, contents=contents
    )
    assert (result.offset, result.contents, result.nv_public) == (0, contents, nv_public)
    wrong = {"qualifying_data": NONCE, "nv_public": nv_public, "contents": contents[:-1] + b"\x00"}
    with pytest.raises(VerificationError) as info:
        verify_nv_certify(key, attest, ak.sign(attest), **wrong)  # type: ignore[arg-type]
    assert info.value.reason == "nvcertify.contents_mismatch"


def test_nv_certify_refusals() -> None:
    ak = software_ak()
    key = AttestationKey.from_tpmt_public(ak.public)
    nv_public = parse_nv_public(NV_PUBLIC)
    at_offset = nv_attest(index_name=nv_name(), offset=4, contents=b"abcd", extra=b"")
    with pytest.raises(VerificationError) as info:
        verify_nv_certify(
            key,
            at_offset,
            ak.sign(at_offset),
            qualifying_data=b"",
            nv_public=nv_public,
            contents=b"abcd",
        )
    assert info.value.reason == "nvcertify.contents_mismatch"
    other_index = nv_attest(index_name=SIGNER, offset=0, contents=b"abcd", extra=b"")
    with pytest.raises(VerificationError) as info:
        verify_nv_certify(
            key, other_index, ak.sign(other_index), qualifying_data=b"", nv_public=nv_public
        )
    assert info.value.reason == "nvcertify.name_mismatch"
    certify = certify_attest(name=nv_name(), qualified_name=b"", extra=b"")
    with pytest.raises(VerificationError) as info:
        verify_nv_certify(key, certify, ak.sign(certify), qualifying_data=b"", nv_public=nv_public)
    assert info.value.reason == "nvcertify.type_invalid"
    with pytest.raises(VerificationError) as info:
        verify_nv_certify(
            key, other_index, ak.sign(other_index), qualifying_data=b"x", nv_public=nv_public
        )
    assert info.value.reason == "nvcertify.qualifying_data_mismatch"


# --- robustness: anything signed, however malformed, ends in a reason -----------------------------

REASONS = {
    "quote.malformed",
    "quote.magic_invalid",
    "quote.type_invalid",
    "quote.qualifying_data_mismatch",
    "quote.pcr_selection_mismatch",
    "quote.pcr_values_missing",
    "quote.pcr_digest_mismatch",
}


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_signed_mutations_end_in_a_quote_reason(data: st.DataObject) -> None:
    ak = software_ak()
    attest = bytearray(signed_quote(ak)[0])
    for _ in range(data.draw(st.integers(1, 3))):
        attest[data.draw(st.integers(0, len(attest) - 1))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(attest)))
    mutated = bytes(attest[:cut])
    # Changes to the clock, firmware version or signer name still make a valid quote.
    assert outcome(ak, mutated, ak.sign(mutated)) in {*REASONS, "accepted"}


def outcome(ak: SoftwareAk, attest: bytes, signature: bytes) -> str:
    try:
        verify(ak, attest, signature)
    except (VerificationError, ParseError) as exc:
        return exc.reason
    return "accepted"


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200), st.binary(max_size=120))
def test_random_bytes_end_in_a_reason(attest: bytes, signature: bytes) -> None:
    ak = software_ak()
    with pytest.raises((VerificationError, ParseError)) as info:
        verify(ak, attest, signature)
    assert info.value.reason in {"quote.signature_invalid", "quote.malformed"}


def test_nv_certify_takes_public_bytes() -> None:
    ak = software_ak()
    key = AttestationKey.from_tpmt_public(ak.public)
    attest = nv_attest(index_name=nv_name(), offset=0, contents=b"abc", extra=b"")
    result = verify_nv_certify(
        key, attest, ak.sign(attest), qualifying_data=b"", nv_public=NV_PUBLIC, contents=b"abc"
    )
    assert result.nv_public.raw == NV_PUBLIC
    with pytest.raises(ParseError) as info:
        verify_nv_certify(
            key, attest, ak.sign(attest), qualifying_data=b"", nv_public=NV_PUBLIC[:-1]
        )
    assert info.value.reason == "nvcertify.malformed"
