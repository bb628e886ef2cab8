"""The agent's key-release client against the real hub, with a real swtpm and the real daemon.

A pipeline token wraps layer secrets (``POST /v1/keys/wrap``); the daemon's
:class:`~nodeagent.keys.release.KeyReleaser` sends them with a fresh report in one release and
its TPM decrypts what the hub encrypted to its binding key.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import time
from pathlib import Path

import pytest

from hub.statedir import new_token
from nodeagent.daemon import Daemon
from nodeagent.hubclient import HubUnavailable
from nodeagent.keys.release import KeyReleaseRefused, ReleasedSecret
from tests.hub.harness import Client
from tests.nodeagent.conftest import LoopbackHub, RunningDaemon, agent_config, wait_for
from trustplane.swtpm import Swtpm

# ocicrypt's optsdata is 193 bytes from skopeo: more than RSA-OAEP-2048 carries in one block;
# the largest a key blob holds is 2048
SECRETS = [
    f'{{"symkey":"layer-{i}-{"k" * 20}","cipher":"AES_256_CTR_HMAC_SHA256"}}'.encode()
    for i in range(8)
] + [b"o" * 193, bytes(range(256)) * 8]


def _pipeline(hub: LoopbackHub) -> Client:
    token, digest = new_token()
    hub.call(hub.state.store.add_token(digest, "pipeline", "ci", time.time()))
    return Client(hub.port, hub.ca_file, token=token)


def _wrap(client: Client, policy: str, secret: bytes) -> bytes:
    resp = client.post(
        "/v1/keys/wrap", {"policy": policy, "optsdata": base64.b64encode(secret).decode()}
    )
    assert resp.status == 200, resp.body
    assert resp.body["policy"] == policy
    return base64.b64decode(resp.body["annotation"])


def test_ten_blobs_one_round_trip_secrets_equal_optsdata(
    tmp_path: Path, booted_tpm: Swtpm, hub: LoopbackHub
) -> None:
    hub.call(hub.state.store.put_key_policy("region-eu", "", 300.0, time.time()))
    pipeline = _pipeline(hub)
    blobs = [_wrap(pipeline, "region-eu", s) for s in SECRETS]
    cfg = agent_config(tmp_path, booted_tpm, hub.url, hub.ca_file)

    async def scenario() -> list[ReleasedSecret | KeyReleaseRefused]:
        async with RunningDaemon(cfg) as daemon:
            await wait_for(lambda: daemon.last is not None)
            assert daemon.last is not None
            assert daemon.last.result.verdict == "trusted"
            got = await daemon.key_releaser.release(blobs)
            assert daemon.key_releaser.round_trips == 1
            return got

    got = asyncio.run(scenario())
    assert [type(r) for r in got] == [ReleasedSecret] * 10
    assert [r.secret for r in got if isinstance(r, ReleasedSecret)] == SECRETS
    assert [r.annotation_sha256 for r in got if isinstance(r, ReleasedSecret)] == [
        hashlib.sha256(b).digest() for b in blobs
    ]
    binding = json.loads((cfg.state_dir / "binding.json").read_text())
    assert binding["algorithm"] == "rsa2048-authorized"


def test_refusals_come_back_in_place_and_secrets_stay_out_of_logs(
    tmp_path: Path, booted_tpm: Swtpm, hub: LoopbackHub, caplog: pytest.LogCaptureFixture
) -> None:
    now = time.time()
    hub.call(hub.state.store.put_key_policy("open", "", 300.0, now))
    hub.call(hub.state.store.put_key_policy("eu-only", "region = EU", 300.0, now))
    pipeline = _pipeline(hub)
    secret = b'{"symkey":"bmV2ZXItaW4tdGhlLWxvZ3MtMDEyMzQ1Njc4OWFiY2Q="}'
    good = _wrap(pipeline, "open", secret)
    tagged = _wrap(pipeline, "eu-only", secret)
    cfg = agent_config(tmp_path, booted_tpm, hub.url, hub.ca_file)
    caplog.set_level(logging.DEBUG)

    async def scenario() -> list[ReleasedSecret | KeyReleaseRefused]:
        async with RunningDaemon(cfg) as daemon:
            await wait_for(lambda: daemon.last is not None)
            return await daemon.key_releaser.release([tagged, b"garbage", good])

    got = asyncio.run(scenario())
    assert isinstance(got[0], KeyReleaseRefused)
    assert (got[0].reason, got[0].message) == (
        "release.assettag_mismatch",
        "asset tags (none) do not satisfy policy eu-only: region = EU",
    )
    assert isinstance(got[1], KeyReleaseRefused)
    assert got[1].reason == "release.blob_invalid"
    assert isinstance(got[2], ReleasedSecret)
    assert got[2].secret == secret
    assert secret.hex() not in repr(got[2])
    for needle in (secret.decode(), base64.b64encode(secret).decode()):
        assert needle not in caplog.text
    # the release's report went through the agent's ledger: the next report follows it
    ledger = json.loads((cfg.state_dir / "reports.json").read_text())
    assert ledger["last_acked"] == max(hub.sequences(hub.call(_only_host(hub))))


def test_hub_unreachable_and_not_enrolled_raise_hub_unavailable(
    tmp_path: Path, booted_tpm: Swtpm, hub: LoopbackHub
) -> None:
    hub.call(hub.state.store.put_key_policy("open", "", 300.0, time.time()))
    blob = _wrap(_pipeline(hub), "open", b"x" * 40)
    cfg = agent_config(tmp_path, booted_tpm, hub.url, hub.ca_file)

    async def never_enrolled() -> None:
        daemon = Daemon(cfg, environ={})
        with pytest.raises(HubUnavailable, match="not enrolled"):
            await daemon.key_releaser.release([blob])
        await daemon.tpm.close()

    asyncio.run(never_enrolled())

    async def hub_gone() -> None:
        async with RunningDaemon(cfg) as daemon:
            await wait_for(lambda: daemon.last is not None)
            hub.stop()
            with pytest.raises(HubUnavailable):
                await daemon.key_releaser.release([blob])

    asyncio.run(hub_gone())


async def _only_host(hub: LoopbackHub) -> str:
    hosts = await hub.state.store.list_hosts()
    assert len(hosts) == 1
    return hosts[0].id
