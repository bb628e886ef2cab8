"""trustcore's MakeCredential against swtpm's ActivateCredential (through nodeagent.tpm):
the TPM recovers the secret for the right EK and AK, and refuses for any other."""

from __future__ import annotations

import hashlib

import pytest

from nodeagent.errors import TpmError
from nodeagent.tpm import TpmDevice
from trustcore.credential import make_credential
from trustplane.swtpm import Swtpm

SECRET = hashlib.sha256(b"enrollment secret").digest()
RANDOM = hashlib.sha512(b"hub randomness").digest()
OTHER_RANDOM = hashlib.sha512(b"other randomness").digest()
TPM_RC_INTEGRITY = 0x09F


@pytest.mark.parametrize("kind", ["rsa2048", "ecc256"])
def test_activation_yields_the_secret(swtpm: Swtpm, kind: str) -> None:
    with TpmDevice(swtpm.tcti) as device:
        ek = device.create_ek(kind)  # type: ignore[arg-type]
        ak, _ = device.create_ak("ecc256")
        made = make_credential(ek.key.public, ak.name, SECRET, RANDOM)
        assert device.activate_credential(ak, ek, made.credential_blob, made.secret) == SECRET
        short = make_credential(ek.key.public, ak.name, b"\x01", OTHER_RANDOM)
        assert device.activate_credential(ak, ek, short.credential_blob, short.secret) == b"\x01"


def test_rsa_ak_can_be_activated_too(swtpm: Swtpm) -> None:
    with TpmDevice(swtpm.tcti) as device:
        ek = device.create_ek("ecc256")
        ak, _ = device.create_ak("rsa2048")
        made = make_credential(ek.key.public, ak.name, SECRET, RANDOM)
        assert device.activate_credential(ak, ek, made.credential_blob, made.secret) == SECRET


@pytest.mark.parametrize("kind", ["rsa2048", "ecc256"])
def test_credential_for_another_ak_name_fails(swtpm: Swtpm, kind: str) -> None:
    with TpmDevice(swtpm.tcti) as device:
        ak, _ = device.create_ak("ecc256")
        other, _ = device.create_ak("ecc256")
        device.flush(other)  # swtpm has three object slots; the name is all we need
        ek = device.create_ek(kind)  # type: ignore[arg-type]
        assert other.name != ak.name
        made = make_credential(ek.key.public, other.name, SECRET, RANDOM)
        with pytest.raises(TpmError) as info:
            device.activate_credential(ak, ek, made.credential_blob, made.secret)
    assert info.value.operation == "activate_credential"
    assert info.value.rc & 0xBF == TPM_RC_INTEGRITY  # parameter or handle bits aside


def test_credential_for_another_ek_fails(swtpm: Swtpm) -> None:
    with TpmDevice(swtpm.tcti) as device:
        rsa_ek = device.create_ek("rsa2048")
        ecc_ek = device.create_ek("ecc256")
        device.flush(ecc_ek.key)
        ak, _ = device.create_ak("ecc256")
        # Made for the ECC EK, presented to the RSA EK: the seed cannot be recovered.
        made = make_credential(ecc_ek.key.public, ak.name, SECRET, RANDOM)
        with pytest.raises(TpmError) as info:
            device.activate_credential(ak, rsa_ek, made.credential_blob, made.secret)
        assert info.value.rc != 0
        # Made for another RSA key of the same template shape (the EK with a changed modulus).
        public = bytearray(rsa_ek.key.public)
        public[-1] ^= 0x02
        made = make_credential(bytes(public), ak.name, SECRET, RANDOM)
        with pytest.raises(TpmError):
            device.activate_credential(ak, rsa_ek, made.credential_blob, made.secret)


def test_malformed_blobs_are_tpm_errors(swtpm: Swtpm) -> None:
    with TpmDevice(swtpm.tcti) as device:
        ek = device.create_ek("ecc256")
        ak, _ = device.create_ak("ecc256")
        made = make_credential(ek.key.public, ak.name, SECRET, RANDOM)
        with pytest.raises(TpmError) as info:
            device.activate_credential(ak, ek, made.credential_blob + b"\x00", made.secret)
        assert info.value.description == "trailing bytes after the blobs"
        with pytest.raises(TpmError):
            device.activate_credential(ak, ek, made.credential_blob[:10], made.secret)
        # The session was flushed each time: a good activation still works afterwards.
        assert device.activate_credential(ak, ek, made.credential_blob, made.secret) == SECRET
