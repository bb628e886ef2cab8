"""nodeagent.tpm.TpmDevice on a real swtpm (one per test): EKs and their certificates, AKs that
survive a TPM restart, PCR read and extend, and TPM failures as TpmError with the response code.

Expected values come from the TPM specification and the TCG profiles (EK template attributes,
PC-client PCR reset values, response codes) or are computed here with hashlib/cryptography.
"""

from __future__ import annotations

import hashlib

import pytest
from cryptography import x509
from tpm2_pytss import TPM2B_PUBLIC

from nodeagent.errors import NodeAgentError, TpmError
from nodeagent.tpm import EK_CERT_INDEX, AkBlobs, TpmDevice
from trustcore.quote import AttestationKey, verify_quote
from trustcore.tpm import PcrSelection, parse_public
from trustcore.tpm.public import EccParameters, RsaParameters
from trustplane.swtpm import Swtpm

SHA1, SHA256, SHA384 = 0x0004, 0x000B, 0x000C
EK_POLICY = bytes.fromhex("837197674484b3f81a90cc8d46a5d724fd52d76e06520b64f2a1da1b331469aa")
EK_ATTRIBUTES = (
    0x000300B2  # fixedTPM fixedParent sensitiveDataOrigin adminWithPolicy restricted decrypt
)


def test_rsa_ek_follows_the_profile_and_matches_its_certificate(swtpm: Swtpm) -> None:
    with TpmDevice(swtpm.tcti) as device:
        ek = device.create_ek("rsa2048")
        public = parse_public(ek.key.public)
        assert (public.attributes, public.auth_policy) == (EK_ATTRIBUTES, EK_POLICY)
        assert isinstance(public.parameters, RsaParameters)
        assert public.parameters.key_bits == 2048
        assert ek.key.name == b"\x00\x0b" + hashlib.sha256(ek.key.public).digest()
        assert ek.certificate is not None
        certificate = x509.load_der_x509_certificate(ek.certificate)
        assert certificate.public_key().public_numbers() == public.public_key().public_numbers()
        assert device.read_ek_certificate("rsa2048") == ek.certificate
        tpm_public, tpm_name, _ = device.read_public(ek.key)
        assert (tpm_public, tpm_name) == (ek.key.public, ek.key.name)


def test_ecc_ek_is_p256_and_swtpm_has_no_low_range_ecc_certificate(swtpm: Swtpm) -> None:
    # swtpm_setup writes an RSA-2048 certificate (0x01c00002) and a P-384 one (0x01c00016),
    # not the P-256 index 0x01c0000a: the ECC L-2 EK has no certificate here.
    with TpmDevice(swtpm.tcti) as device:
        ek = device.create_ek("ecc256")
        public = parse_public(ek.key.public)
        assert isinstance(public.parameters, EccParameters)
        assert public.parameters.curve == 0x0003
        assert (public.attributes, public.auth_policy) == (EK_ATTRIBUTES, EK_POLICY)
        assert ek.certificate is None
        assert device.read_ek_certificate("ecc256") is None
    assert EK_CERT_INDEX == {"rsa2048": 0x01C00002, "ecc256": 0x01C0000A}


def test_ek_is_the_same_key_every_time(swtpm: Swtpm) -> None:
    with TpmDevice(swtpm.tcti) as device:
        first = device.create_ek("rsa2048")
        device.flush(first.key)
        assert device.create_ek("rsa2048").key.public == first.key.public


@pytest.mark.parametrize("kind", ["ecc256", "rsa2048"])
def test_ak_survives_a_tpm_restart(swtpm: Swtpm, kind: str) -> None:
    with TpmDevice(swtpm.tcti) as device:
        ak, blobs = device.create_ak(kind)  # type: ignore[arg-type]
    public, _ = TPM2B_PUBLIC.unmarshal(blobs.public)
    assert bytes(public.publicArea.marshal()) == ak.public
    swtpm.stop()
    swtpm.start()
    with TpmDevice(swtpm.tcti) as device:
        again = device.load_ak(AkBlobs(blobs.private, blobs.public))
        assert (again.public, again.name) == (ak.public, ak.name)
        selection = PcrSelection.of({SHA256: [0, 1]})
        quote = device.quote(again, selection, b"after restart")
        verified = verify_quote(
            AttestationKey.from_tpmt_public(ak.public),
            quote.attest,
            quote.signature,
            qualifying_data=b"after restart",
            pcr_selection=selection,
            pcr_values=device.pcr_read(selection),
        )
        assert verified.pcr_values == {SHA256: {0: bytes(32), 1: bytes(32)}}


def test_ak_attributes(swtpm: Swtpm) -> None:
    with TpmDevice(swtpm.tcti) as device:
        ak, _ = device.create_ak("ecc256")
    public = parse_public(ak.public)
    # fixedTPM fixedParent sensitiveDataOrigin userWithAuth noDA restricted sign
    assert public.attributes == 0x00050472
    assert isinstance(public.parameters, EccParameters)
    assert (public.parameters.scheme.scheme, public.parameters.scheme.hash_alg) == (0x0018, SHA256)


def test_tampered_ak_blob_is_refused_with_the_tpm_code(swtpm: Swtpm) -> None:
    with TpmDevice(swtpm.tcti) as device:
        _, blobs = device.create_ak("ecc256")
        tampered = bytearray(blobs.private)
        tampered[-1] ^= 1
        with pytest.raises(TpmError) as info:
            device.load_ak(AkBlobs(bytes(tampered), blobs.public))
    # TPM_RC_INTEGRITY (0x09f), format one, parameter 1: 0x09f | 0x040 | 0x100
    assert info.value.rc == 0x1DF
    assert info.value.operation == "load_ak"
    assert isinstance(info.value, NodeAgentError)
    assert info.value.describe().startswith("tpm.error: TPM load_ak failed")


def test_garbage_ak_blob_is_a_tpm_error(swtpm: Swtpm) -> None:
    with TpmDevice(swtpm.tcti) as device, pytest.raises(TpmError) as info:
        device.load_ak(AkBlobs(b"\x00\x05abc", b"\x00"))
    assert info.value.rc != 0


def test_pcr_read_reset_values_across_read_rounds(swtpm: Swtpm) -> None:
    with TpmDevice(swtpm.tcti) as device:
        values = device.pcr_read(PcrSelection.of({SHA1: range(24), SHA256: range(24)}))
    # PC client: PCRs 17-22 reset to all ones (no D-RTM yet), the others to zero.
    for alg, size in ((SHA1, 20), (SHA256, 32)):
        assert sorted(values[alg]) == list(range(24))
        for pcr, value in values[alg].items():
            assert value == (b"\xff" * size if 17 <= pcr <= 22 else bytes(size))


def test_pcr_extend_then_read(swtpm: Swtpm) -> None:
    d256, d1 = hashlib.sha256(b"event").digest(), hashlib.sha1(b"event").digest()
    with TpmDevice(swtpm.tcti) as device:
        device.pcr_extend(16, {SHA256: d256, SHA1: d1})
        device.pcr_extend(16, {SHA256: d256})
        values = device.pcr_read(PcrSelection.of({SHA1: [16], SHA256: [16]}))
    once = hashlib.sha256(bytes(32) + d256).digest()
    assert values[SHA256][16] == hashlib.sha256(once + d256).digest()
    assert values[SHA1][16] == hashlib.sha1(bytes(20) + d1).digest()


def test_pcr_refusals(swtpm: Swtpm) -> None:
    with TpmDevice(swtpm.tcti) as device:
        with pytest.raises(TpmError) as info:
            device.pcr_read(PcrSelection.of({SHA384: [0]}))  # bank not allocated
        assert info.value.operation == "pcr_read"
        with pytest.raises(TpmError) as info:
            device.pcr_read(PcrSelection.of({SHA256: [0, 30]}))  # swtpm has 24 PCRs
        assert info.value.rc == 0x1C4  # TPM_RC_VALUE, parameter 1
        with pytest.raises(ValueError, match="bad digest"):
            device.pcr_extend(0, {SHA256: b"short"})
        with pytest.raises(ValueError, match="out of range"):
            device.pcr_extend(32, {SHA256: bytes(32)})


def test_unreachable_tpm_is_a_tpm_error() -> None:
    with pytest.raises(TpmError) as info:
        TpmDevice("swtpm:host=127.0.0.1,port=1")
    assert info.value.operation == "open"
    assert info.value.rc != 0
