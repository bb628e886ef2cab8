"""The binding key follows legitimate reboots and nothing else, on a real swtpm.

The host's binding key is PolicyAuthorize by the hub's policy key; the hub signs the PolicyPCR
digest of each trusted report it releases against. A new PCR state the operator approved in a
flavor releases again without re-enrollment; in a state the flavor does not approve the hub
refuses, and the TPM itself refuses to decrypt, also secrets the host received earlier. The
older PolicyPCR binding key (made at enrollment) works only in its enrollment state.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from nodeagent.errors import TpmError
from tests.hub.conftest import ca_bundle
from tests.hub.harness import POLICY_PCRS, Agent, Client, FakeClock, HubProcess, make_state
from tests.hub.keyharness import KeyHost, annotation, key_host
from trustcore.algorithms import TPM_ALG_SHA256
from trustcore.releasedsecret import open_content, split_sealed
from trustcore.tpm.authorize import authorize_message, ecc_signing_public, ecdsa_signature
from trustcore.tpm.pcrs import PcrSelection
from trustplane.swtpm import SwtpmFactory

PCRS = (*POLICY_PCRS, 8)  # PCR 8: what a (boot loader, kernel) update changes
SECRET = b'{"symkey":"bGF5ZXIta2V5LWZvci1hLXJlYm9vdC10ZXN0IQ=="}'
FLAVOR = "kernel.platform"


@pytest.fixture(scope="module")
def hub(
    tmp_path_factory: pytest.TempPathFactory, swtpm_factory: SwtpmFactory
) -> Iterator[HubProcess]:
    tmp = tmp_path_factory.mktemp("binding-hub")
    bundle = ca_bundle(swtpm_factory, tmp / "ek-ca.pem")
    process = HubProcess(make_state(tmp, enrollment={"ek_ca_bundle": str(bundle)}), FakeClock())
    try:
        process.call(process.state.store.put_key_policy("open", "", 300.0, 1.0))
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def pipeline(hub: HubProcess) -> Client:
    return hub.client(token=hub.token("pipeline", "ci"))


def kernel_flavor(pcr8: bytes) -> dict[str, Any]:
    return {
        "schema": "trustplane.flavor/v1",
        "id": FLAVOR,
        "name": "approved boot chain",
        "part": "platform",
        "bank": "sha256",
        "pcrs": [{"index": 8, "value": pcr8.hex()}],
        "rules": [{"rule": "pcr_matches", "pcr": 8}],
    }


def boot_kernel(host: KeyHost, name: bytes) -> bytes:
    """Extend PCR 8 (a kernel measured) and return its new value."""
    device = host.agent.device
    device.pcr_extend(8, {TPM_ALG_SHA256: hashlib.sha256(name).digest()})
    return device.pcr_read(PcrSelection.of({TPM_ALG_SHA256: (8,)}))[TPM_ALG_SHA256][8]


def approve(hub: HubProcess, host: KeyHost, pcr8: bytes) -> None:
    hub.call(hub.state.store.put_flavor(FLAVOR, kernel_flavor(pcr8), hub.clock()))
    hub.call(hub.state.store.set_host_flavors(host.host_id, [FLAVOR]))


def test_approved_reboot_releases_again_unapproved_state_the_tpm_refuses(
    hub: HubProcess,
    swtpm_factory: SwtpmFactory,
    tmp_path_factory: pytest.TempPathFactory,
    pipeline: Client,
) -> None:
    hosts = key_host(hub, swtpm_factory, tmp_path_factory.mktemp("rebooting"), tag="reboot-1")
    host = next(hosts)
    try:
        enrolled = [
            json.loads(r["details"])["binding"]
            for r in hub.call(hub.state.store.list_audit())
            if r["action"] == "enroll.request" and r["subject"] == host.host_id
        ]
        assert enrolled == ["authorized"]
        blob = annotation(pipeline, SECRET, "open")
        approve(hub, host, boot_kernel(host, b"vmlinuz-6.1.0-1"))
        first = host.release([blob], pcrs=PCRS)
        assert (first.report.verdict, first.report.reasons, first.results[0].message) == (
            "trusted",
            (),
            "",
        )
        assert first.authorization is not None
        secret1 = first.results[0].secret or b""
        assert host.decrypt(secret1, first.authorization, blob, pcrs=PCRS) == SECRET

        # a kernel update the operator has not approved yet: the hub refuses, and the TPM
        # refuses the secret the host already holds
        boot_kernel(host, b"vmlinuz-6.1.0-2")
        refused = host.release([blob], pcrs=PCRS)
        assert refused.report.verdict == "untrusted"
        assert [(r.reason, r.message) for r in refused.results] == [
            ("release.host_untrusted", "host untrusted (flavor.platform.pcr_mismatch: PCR 8)")
        ]
        assert refused.authorization is None
        with pytest.raises(TpmError) as tpm_refused:
            host.decrypt(secret1, first.authorization, blob, pcrs=PCRS)
        assert tpm_refused.value.operation == "rsa_decrypt_authorized"

        # the operator approves the new kernel: release works with the same binding key
        approved = host.agent.device.pcr_read(PcrSelection.of({TPM_ALG_SHA256: (8,)}))
        approve(hub, host, approved[TPM_ALG_SHA256][8])
        second = host.release([blob], pcrs=PCRS)
        assert (second.report.verdict, second.results[0].ok) == ("trusted", True)
        assert second.authorization is not None
        assert second.authorization.approved_policy != first.authorization.approved_policy
        secret2 = second.results[0].secret or b""
        assert host.decrypt(secret2, second.authorization, blob, pcrs=PCRS) == SECRET
        # the old approval does not open the key in the new state either
        with pytest.raises(TpmError):
            host.decrypt(secret2, first.authorization, blob, pcrs=PCRS)

        # booted into something nobody approved: nothing decrypts, old secrets included
        boot_kernel(host, b"evil-kernel")
        assert host.release([blob], pcrs=PCRS).results[0].reason == "release.host_untrusted"
        for secret, auth in ((secret1, first.authorization), (secret2, second.authorization)):
            with pytest.raises(TpmError):
                host.decrypt(secret, auth, blob, pcrs=PCRS)
    finally:
        with contextlib.suppress(StopIteration):
            next(hosts)


def test_a_forged_approval_is_refused_by_the_tpm(
    hub: HubProcess,
    swtpm_factory: SwtpmFactory,
    tmp_path_factory: pytest.TempPathFactory,
    pipeline: Client,
) -> None:
    """An approval signed by another key, or of another policy, opens nothing."""
    hosts = key_host(hub, swtpm_factory, tmp_path_factory.mktemp("forged"), tag="forged-1")
    host = next(hosts)
    try:
        blob = annotation(pipeline, SECRET, "open")
        result = host.release([blob])
        auth = result.authorization
        assert auth is not None
        secret = result.results[0].secret or b""
        other = ec.generate_private_key(ec.SECP256R1())
        forged = replace(
            auth,
            signing_key=ecc_signing_public(other.public_key()),
            signature=ecdsa_signature(
                other.sign(
                    authorize_message(auth.approved_policy), ec.ECDSA(Prehashed(hashes.SHA256()))
                )
            ),
        )
        with pytest.raises(TpmError):
            host.decrypt(secret, forged, blob)
        wrong_policy = replace(auth, approved_policy=bytes(32))
        with pytest.raises(TpmError):
            host.decrypt(secret, wrong_policy, blob)
        assert host.decrypt(secret, auth, blob) == SECRET
    finally:
        with contextlib.suppress(StopIteration):
            next(hosts)


def test_enrollment_time_pcr_key_works_only_in_its_state(
    hub: HubProcess,
    swtpm_factory: SwtpmFactory,
    tmp_path_factory: pytest.TempPathFactory,
    pipeline: Client,
) -> None:
    tpm = swtpm_factory.start(unique=True)
    agent = Agent(tpm, tmp_path_factory.mktemp("pcr-key"))
    agent.names = ("pcrkey.test", "pcrkey", "4c4c4544-0000-1000-8000-00000000beef")
    try:
        selection = PcrSelection.of({TPM_ALG_SHA256: POLICY_PCRS})
        key, blobs = agent.device.create_binding_key(agent.device.pcr_policy(selection))
        agent.enroll(hub, binding_key=key)
        enrolled = [
            json.loads(r["details"])["binding"]
            for r in hub.call(hub.state.store.list_audit())
            if r["action"] == "enroll.request" and r["subject"] == agent.host_id
        ]
        assert enrolled == ["pcr"]
        host = KeyHost.__new__(KeyHost)
        host.agent, host.hub, host.blobs = agent, hub, blobs
        blob = annotation(pipeline, SECRET, "open")
        result = host.release([blob])
        assert result.results[0].ok
        assert result.authorization is None  # a PolicyPCR key needs no approval
        rsa_part, iv, rest = split_sealed(result.results[0].secret or b"", 256)
        loaded = agent.device.load_object(blobs)
        try:
            content_key = agent.device.rsa_decrypt_with_binding_key(loaded, selection, rsa_part)
        finally:
            agent.device.flush(loaded)
        clear = open_content(content_key, iv, rest, blob)
        assert clear == SECRET
        agent.device.pcr_extend(7, {TPM_ALG_SHA256: hashlib.sha256(b"new shim").digest()})
        moved = host.release([blob])
        assert moved.report.verdict == "trusted"  # no flavor assigned: any state is trusted
        assert [(r.reason, r.message) for r in moved.results] == [
            (
                "release.not_bound",
                (
                    "no usable binding key: the binding key's PCR policy is not the attested "
                    "state (a PolicyPCR key from enrollment: enroll again)"
                ),
            )
        ]
    finally:
        agent.close()
        tpm.stop()
