"""PCR policies on a real swtpm: sealing (to current and to predicted values), the binding key,
the software PolicyPCR digest against the TPM's PolicyGetDigest, and the asset-tag NV index with
its NV_Certify verified by trustcore."""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from tpm2_pytss import TPMA_NV

from nodeagent.errors import TpmError
from nodeagent.tpm import LoadedKey, ObjectBlobs, TpmDevice
from tests.conftest import EVENTLOGS
from trustcore.assettag import (
    ASSET_TAG_NV_ATTRIBUTES,
    ASSET_TAG_NV_INDEX,
    ASSET_TAG_NV_SIZE,
    assettag_qualifying_data,
    expected_nv_public,
    verify_asset_tag,
)
from trustcore.binding import binding_policy_matches, check_binding_key
from trustcore.errors import VerificationError
from trustcore.eventlog import parse_eventlog, replay_eventlog
from trustcore.quote import AttestationKey, verify_certify, verify_nv_certify
from trustcore.tpm import PcrSelection, parse_public
from trustcore.tpm.constants import TPMA_OBJECT_DECRYPT, TPMA_OBJECT_USERWITHAUTH
from trustcore.tpm.policy import expected_pcr_values, policy_pcr_digest
from trustcore.wire import binding_qualifying_data
from trustplane.swtpm import Swtpm
from trustplane.tpmboot import boot_from_eventlog

SHA1, SHA256, SHA384 = 0x0004, 0x000B, 0x000C
SELECTION = PcrSelection.of({SHA256: (0, 1, 7)})
POLICY_FAIL = 0x99D  # TPM_RC_POLICY_FAIL for session 1
RHEL8 = EVENTLOGS / "go-tpm-tools" / "rhel8-uefi.bin"


@pytest.fixture
def device(swtpm: Swtpm) -> Iterator[TpmDevice]:
    with TpmDevice(swtpm.tcti) as dev:
        for pcr in (0, 1, 7):
            dev.pcr_extend(pcr, {SHA256: hashlib.sha256(b"boot %d" % pcr).digest()})
        yield dev


def extend_once_more(device: TpmDevice, pcr: int = 7) -> None:
    device.pcr_extend(pcr, {SHA256: hashlib.sha256(b"one more measurement").digest()})


# --- policy digest: software against the TPM -----------------------------------------------


@pytest.mark.parametrize(
    "banks",
    [{SHA256: (0, 1, 7)}, {SHA256: (7,)}, {SHA1: (0, 2), SHA256: (0, 1, 7, 16)}],
)
def test_software_policy_digest_equals_tpm_for_current_values(
    device: TpmDevice, banks: dict[int, tuple[int, ...]]
) -> None:
    selection = PcrSelection.of(banks)
    values = device.pcr_read(selection)
    assert device.trial_pcr_policy(selection) == policy_pcr_digest(selection, values, SHA256)


def test_software_policy_digest_equals_tpm_for_given_values(device: TpmDevice) -> None:
    # values the PCRs do not hold: a trial session takes the given digest as is
    values = {SHA256: {0: b"\x11" * 32, 1: b"\x22" * 32, 7: b"\x33" * 32}}
    software = policy_pcr_digest(SELECTION, values, SHA256)
    assert device.trial_pcr_policy(SELECTION, values) == software
    assert device.trial_pcr_policy(SELECTION) != software


def test_software_policy_digest_equals_tpm_for_random_selections(device: TpmDevice) -> None:
    rng = random.Random(20261126)  # fixed seed: the same 25 cases every run
    for _ in range(25):
        banks = {
            alg: tuple(sorted(rng.sample(range(24), rng.randint(1, 8))))
            for alg in rng.sample([SHA1, SHA256], rng.randint(1, 2))
        }
        selection = PcrSelection.of(banks)
        sizes = {SHA1: 20, SHA256: 32, SHA384: 48}
        values = {
            alg: {pcr: rng.randbytes(sizes[alg]) for pcr in pcrs} for alg, pcrs in banks.items()
        }
        assert device.trial_pcr_policy(selection, values) == policy_pcr_digest(
            selection, values, SHA256
        ), banks


def test_unallocated_bank_is_dropped_by_the_tpm_and_refused_by_pcr_policy(
    device: TpmDevice,
) -> None:
    assert device.allocated_pcrs().as_dict() == {SHA1: tuple(range(24)), SHA256: tuple(range(24))}
    selection = PcrSelection.of({SHA384: (1,)})  # swtpm: the SHA-384 bank has no PCRs
    values = {SHA384: {1: b"\x01" * 48}}
    # what the TPM hashes: the selection without the PCRs it does not have
    filtered = hashlib.sha256(
        bytes(32)
        + bytes.fromhex("0000017f")
        + PcrSelection.of({SHA384: ()}).marshal()
        + hashlib.sha256(b"\x01" * 48).digest()
    ).digest()
    assert device.trial_pcr_policy(selection, values) == filtered
    assert filtered != policy_pcr_digest(selection, values, SHA256)
    with pytest.raises(TpmError, match="not allocated"):
        device.pcr_policy(selection, values)


# --- sealing ---------------------------------------------------------------------------------


def test_seal_unseal_and_refused_after_one_more_extend(device: TpmDevice) -> None:
    blobs = device.seal(device.pcr_policy(SELECTION), b"layer key 0123456789abcdef")
    assert device.unseal(blobs, SELECTION) == b"layer key 0123456789abcdef"
    assert device.unseal(blobs, SELECTION) == b"layer key 0123456789abcdef"  # not consumed
    extend_once_more(device)
    with pytest.raises(TpmError) as info:
        device.unseal(blobs, SELECTION)
    assert info.value.rc == POLICY_FAIL
    assert info.value.operation == "unseal"


def test_unseal_of_damaged_blobs_is_a_tpm_error(device: TpmDevice) -> None:
    blobs = device.seal(device.pcr_policy(SELECTION), b"x")
    with pytest.raises(TpmError):
        device.unseal(ObjectBlobs(blobs.private[:-1], blobs.public), SELECTION)
    with pytest.raises(ValueError, match="1 to 128"):
        device.seal(device.pcr_policy(SELECTION), b"")


def test_seal_to_predicted_values_of_a_real_log_unseals_after_that_boot(swtpm: Swtpm) -> None:
    log = parse_eventlog(RHEL8.read_bytes())
    selection = PcrSelection.of({SHA256: range(8)})
    predicted = expected_pcr_values(selection, replay_eventlog(log))
    # the prediction is what tpm2-tools computed for this log (an independent replay)
    expected = json.loads(RHEL8.with_suffix("").with_suffix(".expected.json").read_text())
    oracle = {
        int(k): bytes.fromhex(v.lower().removeprefix("0x"))
        for k, v in expected["expected_pcrs"]["sha256"].items()
        if int(k) < 8
    }
    assert predicted[SHA256] == oracle
    with TpmDevice(swtpm.tcti) as device:  # PCRs at their reset values: not that boot yet
        blobs = device.seal(policy_pcr_digest(selection, predicted, SHA256), b"next boot")
        with pytest.raises(TpmError) as info:
            device.unseal(blobs, selection)
        assert info.value.rc == POLICY_FAIL
    assert boot_from_eventlog(swtpm, log) > 0
    with TpmDevice(swtpm.tcti) as device:
        assert device.unseal(blobs, selection) == b"next boot"
        extend_once_more(device, 4)
        with pytest.raises(TpmError) as info:
            device.unseal(blobs, selection)
        assert info.value.rc == POLICY_FAIL


# --- the binding key -------------------------------------------------------------------------


def oaep_encrypt(key: LoadedKey, message: bytes) -> bytes:
    public = parse_public(key.public).public_key()
    assert isinstance(public, rsa.RSAPublicKey)
    return public.encrypt(
        message,
        padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None),
    )


def test_binding_key_decrypts_while_pcrs_unchanged_and_is_certified(device: TpmDevice) -> None:
    ak, _ = device.create_ak("ecc256")
    binding, blobs = device.create_binding_key(device.pcr_policy(SELECTION))
    public = parse_public(binding.public)
    assert public.has(TPMA_OBJECT_DECRYPT)
    assert not public.has(TPMA_OBJECT_USERWITHAUTH)
    assert public.auth_policy == device.trial_pcr_policy(SELECTION)
    check_binding_key(public)
    assert binding_policy_matches(public, SELECTION, device.pcr_read(SELECTION))
    qd = binding_qualifying_data(b"ek public", ak.public)
    certify = device.certify(ak, binding, qd)
    verified = verify_certify(
        AttestationKey.from_tpmt_public(ak.public),
        certify.attest,
        certify.signature,
        qualifying_data=qd,
        certified=binding.public,
    )
    assert verified.name == public.name()
    secret = bytes(range(32))
    assert (
        device.rsa_decrypt_with_binding_key(binding, SELECTION, oaep_encrypt(binding, secret))
        == secret
    )
    # the same key loaded again from its blobs (as after an agent restart)
    device.flush(binding)
    again = device.load_object(blobs)
    assert again.public == binding.public
    extend_once_more(device, 1)
    assert not binding_policy_matches(public, SELECTION, device.pcr_read(SELECTION))
    with pytest.raises(TpmError) as info:
        device.rsa_decrypt_with_binding_key(again, SELECTION, oaep_encrypt(again, secret))
    assert info.value.rc == POLICY_FAIL
    assert info.value.operation == "rsa_decrypt"


# --- asset-tag NV index ----------------------------------------------------------------------


def test_nv_index_attributes_are_the_tss_values() -> None:
    assert ASSET_TAG_NV_ATTRIBUTES == (
        TPMA_NV.OWNERWRITE | TPMA_NV.OWNERREAD | TPMA_NV.AUTHREAD | TPMA_NV.NO_DA
    )


def test_nv_write_and_nv_certify_verify_with_trustcore(device: TpmDevice) -> None:
    ak, _ = device.create_ak("ecc256")
    device.nv_define(ASSET_TAG_NV_INDEX, ASSET_TAG_NV_SIZE, ASSET_TAG_NV_ATTRIBUTES)
    with pytest.raises(TpmError) as info:  # defined once only
        device.nv_define(ASSET_TAG_NV_INDEX, ASSET_TAG_NV_SIZE, ASSET_TAG_NV_ATTRIBUTES)
    assert info.value.rc & 0xFFF == 0x14C  # TPM_RC_NV_DEFINED
    digest = hashlib.sha384(b"a tag certificate").digest()
    device.nv_write(ASSET_TAG_NV_INDEX, digest)
    assert device.nv_read(ASSET_TAG_NV_INDEX, ASSET_TAG_NV_SIZE) == digest
    # what the TPM reports for the written index is what the hub expects
    assert device.nv_read_public(ASSET_TAG_NV_INDEX).public == expected_nv_public()
    nonce = b"\x42" * 32
    signed = device.nv_certify(
        ak, ASSET_TAG_NV_INDEX, assettag_qualifying_data(nonce), size=ASSET_TAG_NV_SIZE
    )
    verified = verify_nv_certify(
        AttestationKey.from_tpmt_public(ak.public),
        signed.attest,
        signed.signature,
        qualifying_data=assettag_qualifying_data(nonce),
        nv_public=expected_nv_public(),
        contents=digest,
    )
    assert verified.contents == digest
    # the same certify under another nonce's qualifying data is refused
    with pytest.raises(VerificationError) as refused:
        verify_nv_certify(
            AttestationKey.from_tpmt_public(ak.public),
            signed.attest,
            signed.signature,
            qualifying_data=assettag_qualifying_data(b"\x43" * 32),
            nv_public=expected_nv_public(),
        )
    assert refused.value.reason == "nvcertify.qualifying_data_mismatch"
    device.nv_undefine(ASSET_TAG_NV_INDEX)
    with pytest.raises(TpmError):
        device.nv_read(ASSET_TAG_NV_INDEX, ASSET_TAG_NV_SIZE)


def test_verify_asset_tag_refuses_an_index_with_other_attributes(device: TpmDevice) -> None:
    """An index the agent could write without the owner (AUTHWRITE) has another name."""
    ak, _ = device.create_ak("ecc256")
    device.nv_define(
        ASSET_TAG_NV_INDEX, ASSET_TAG_NV_SIZE, ASSET_TAG_NV_ATTRIBUTES | TPMA_NV.AUTHWRITE
    )
    device.nv_write(ASSET_TAG_NV_INDEX, bytes(48))
    nonce = b"\x07" * 32
    signed = device.nv_certify(
        ak, ASSET_TAG_NV_INDEX, assettag_qualifying_data(nonce), size=ASSET_TAG_NV_SIZE
    )
    from hub.pki import make_ca  # noqa: PLC0415 - only for a CA certificate

    with pytest.raises(VerificationError) as info:
        verify_asset_tag(
            AttestationKey.from_tpmt_public(ak.public),
            certificate=b"",
            nv_attest=signed.attest,
            nv_signature=signed.signature,
            nonce=nonce,
            host_id="00" * 32,
            tag_ca=make_ca("x", 0.0).certificate,
            now=0.0,
        )
    assert info.value.reason == "assettag.nvcertify_invalid"


def test_owner_password_makes_nv_define_a_tpm_error(swtpm: Swtpm) -> None:
    """A host whose owner hierarchy has a password: the agent cannot define the index."""
    from tpm2_pytss import ESAPI, ESYS_TR  # noqa: PLC0415 - only to set the owner password

    ectx = ESAPI(swtpm.tcti)
    try:
        ectx.hierarchy_change_auth(ESYS_TR.OWNER, b"owner secret")
    finally:
        ectx.close()
    with TpmDevice(swtpm.tcti) as device:
        with pytest.raises(TpmError) as info:
            device.nv_define(ASSET_TAG_NV_INDEX, ASSET_TAG_NV_SIZE, ASSET_TAG_NV_ATTRIBUTES)
        assert info.value.operation == "nv_define"
        assert info.value.rc == 0x9A2  # TPM_RC_BAD_AUTH for session 1
