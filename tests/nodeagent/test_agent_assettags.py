"""The agent daemon against the real hub with real swtpm: the binding key it enrolls with, and
asset tags from ``tags set`` on the hub to a trusted report carrying the TPM's NV certify."""

from __future__ import annotations

import asyncio
import hashlib
import stat
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from hub.assettags import set_host_tags
from hub.jws import verify_jws
from hub.keys.routes import BROKER
from nodeagent.state import StateDir
from nodeagent.tpm import ObjectBlobs, TpmDevice
from tests.nodeagent.conftest import LoopbackHub, RunningDaemon, agent_config, wait_for
from trustcore.algorithms import TPM_ALG_SHA256
from trustcore.assettag import ASSET_TAG_NV_INDEX, ASSET_TAG_NV_SIZE
from trustcore.binding import check_binding_key
from trustcore.tpm import PcrSelection, parse_public
from trustcore.tpm.authorize import authorize_message, ecdsa_signature
from trustcore.tpm.policy import policy_pcr_digest
from trustplane.swtpm import Swtpm

TAGS = {"region": "EU", "rack": "7"}


def test_binding_key_enrolled_and_asset_tags_end_to_end(
    tmp_path: Path, booted_tpm: Swtpm, hub: LoopbackHub
) -> None:
    cfg = agent_config(tmp_path, booted_tpm, hub.url, hub.ca_file)

    async def run_until(sequence: int) -> None:
        async with RunningDaemon(cfg) as daemon:
            await wait_for(lambda: daemon.last is not None and daemon.last.sequence >= sequence)

    asyncio.run(run_until(1))
    host = hub.call(hub.state.store.list_hosts())[0]
    assert host.verdict == "trusted"

    # the binding key the hub stored is a decryption key this TPM can use, PolicyAuthorize by
    # the hub's policy key: with the hub's signed approval of the current PCR state
    keys = hub.call(hub.state.store.get_host_keys(host.id))
    assert keys is not None
    assert keys.binding_public is not None
    binding = parse_public(keys.binding_public)
    check_binding_key(binding)
    stored = StateDir(cfg.state_dir).load_binding()
    assert stored is not None
    assert stat.S_IMODE((cfg.state_dir / "binding.json").stat().st_mode) == 0o600
    public = binding.public_key()
    assert isinstance(public, rsa.RSAPublicKey)
    oaep = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
    wrapped = public.encrypt(b"image key wrapped by the hub", oaep)
    selection = PcrSelection.of({TPM_ALG_SHA256: range(8)})  # the agent's default selection
    signer = hub.app[BROKER].signer
    assert stored.algorithm == "rsa2048-authorized"
    assert binding.auth_policy == signer.authorize_policy
    with TpmDevice(booted_tpm.tcti) as device:
        approved = policy_pcr_digest(selection, device.pcr_read(selection), TPM_ALG_SHA256)
        der_signature = signer.key.sign(
            authorize_message(approved), ec.ECDSA(Prehashed(hashes.SHA256()))
        )
        key = device.load_object(ObjectBlobs(stored.private, stored.public))
        try:
            clear = device.rsa_decrypt_authorized(
                key,
                selection,
                wrapped,
                signing_key=signer.public,
                approved_policy=approved,
                signature=ecdsa_signature(der_signature),
            )
        finally:
            device.flush(key)
    assert clear == b"image key wrapped by the hub"

    # tags set on the hub: the next report lacks evidence, the answer hands the certificate
    # over, the agent writes it into the TPM and reports again at once
    der = hub.call(
        set_host_tags(
            hub.state.store, hub.state.keys.tag_ca, host.id, TAGS, now=hub.state.clock(), actor="t"
        )
    )
    assert der is not None
    asyncio.run(run_until(3))
    reports = hub.call(hub.state.store.list_reports(host.id))
    assert [(r.sequence, r.verdict, r.reasons) for r in reports] == [
        (1, "trusted", ()),
        (2, "untrusted", ("assettag.missing",)),
        (3, "trusted", ()),
    ]
    assert StateDir(cfg.state_dir).load_tag_certificate() == der
    with TpmDevice(booted_tpm.tcti) as device:
        assert device.nv_read(ASSET_TAG_NV_INDEX, ASSET_TAG_NV_SIZE) == hashlib.sha384(der).digest()

    # a restart keeps sending the evidence: trusted at once, the trust report names the tags
    async def one_more() -> None:
        async with RunningDaemon(cfg) as daemon:
            await wait_for(lambda: daemon.last is not None)
            assert daemon.last is not None
            assert (daemon.last.sequence, daemon.last.result.verdict) == (4, "trusted")
            assert daemon.last.result.tag_certificate is None
            payload = verify_jws(
                daemon.last.result.trust_report, hub.state.keys.jws_key.public_key()
            )
            assert payload["asset_tags"] == TAGS

    asyncio.run(one_more())
