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
import time
from pathlib import Path

from hub.statedir import new_token
from nodeagent.keys.release import KeyReleaseRefused, ReleasedSecret
from tests.hub.harness import Client
from tests.nodeagent.conftest import LoopbackHub, RunningDaemon, agent_config, wait_for
from trustplane.swtpm import Swtpm

SECRETS = [
    f'{{"symkey":"layer-{i}-{"k" * 20}","cipher":"AES_256_CTR_HMAC_SHA256"}}'.encode()
    for i in range(10)
]


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
