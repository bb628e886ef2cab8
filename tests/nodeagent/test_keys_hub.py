"""The key path end to end: ``trustplane-keyprovider`` processes fed ocicrypt's recorded requests,
the real daemon (key socket, sealed cache, KeyReleaser) on a real swtpm, the real hub on loopback.

Wrap goes provider -> hub wrap API (pipeline token from the provider's config); unwrap goes
provider -> daemon socket -> cache or hub release -> TPM. Checked: the layer secrets come back
equal to what was wrapped, concurrent unwraps cost one hub round trip, a cached key works with
the hub down, a key not cached then fails with one clear line, a PCR change empties the cache and
the hub refuses the now-untrusted host, and no secret reaches a log or stderr.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from hub.statedir import new_token
from nodeagent.config import AgentConfig, KeysConfig
from nodeagent.daemon import Daemon
from nodeagent.tpm import TpmDevice
from tests.conftest import SHARED
from tests.nodeagent.conftest import LoopbackHub, RunningDaemon, agent_config, wait_for
from trustcore.algorithms import TPM_ALG_SHA256
from trustplane.swtpm import Swtpm

FIXTURES = SHARED / "fixtures" / "ocicrypt"
PROVIDER = Path(sys.executable).with_name("trustplane-keyprovider")
WRAPS = [FIXTURES / f"keywrap-request-layer{i}.json" for i in (1, 2)]
UNWRAP = FIXTURES / "keyunwrap-request-layer1.json"
# The hub encrypts a released secret with RSA-OAEP-SHA256 straight to the 2048-bit binding key,
# which holds at most 190 bytes; ocicrypt's optsdata in the recordings has 193 (wt/keys-hub's
# release must wrap it in a hybrid scheme). Until then the tests below that check the rest of the
# path use the recorded requests with the digest left out of optsdata (what remains has the
# recorded symkey and nonce); test_recorded_optsdata_round_trips keeps the exact recording.
HUB_FITS_RECORDED_OPTSDATA = False


def compact(path: Path) -> bytes:
    """The recorded keywrap request with ``digest`` dropped from its optsdata."""
    request = json.loads(path.read_bytes())
    opts = json.loads(base64.b64decode(request["keywrapparams"]["optsdata"]))
    del opts["digest"]
    request["keywrapparams"]["optsdata"] = base64.b64encode(
        json.dumps(opts, separators=(",", ":")).encode()
    ).decode()
    return json.dumps(request).encode()


@pytest.fixture
def rundir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="tpkh-"))  # short: the socket path has 107 bytes at most
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def setup(tmp_path: Path, rundir: Path, tpm: Swtpm, hub: LoopbackHub) -> tuple[AgentConfig, Path]:
    """The agent's config with its key socket in ``rundir``, and the provider's config file
    (socket, hub URL and CA, a pipeline token in a 0600 file)."""
    hub.call(hub.state.store.put_key_policy("region-eu", "", 3600.0, time.time()))
    token, digest = new_token()
    hub.call(hub.state.store.add_token(digest, "pipeline", "ci", time.time()))
    token_file = tmp_path / "pipeline.token"
    token_file.write_text(token + "\n")
    token_file.chmod(0o600)
    cfg = replace(
        agent_config(tmp_path, tpm, hub.url, hub.ca_file),
        keys=KeysConfig(socket=rundir / "keys.sock", batch_window=0.05),
    )
    provider_cfg = tmp_path / "keyprovider.toml"
    provider_cfg.write_text(
        f'socket = "{cfg.keys.socket}"\ntimeout = 30\n'
        f'[hub]\nurl = "{hub.url}"\nca_file = "{hub.ca_file}"\ntoken_file = "{token_file}"\n'
    )
    return cfg, provider_cfg


async def provider(request: bytes, config: Path) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        str(PROVIDER),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={"TRUSTPLANE_KEYPROVIDER_CONFIG": str(config), "PATH": os.environ["PATH"]},
    )
    out, err = await proc.communicate(request)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def unwrap_request(annotation: str) -> bytes:
    """ocicrypt's recorded keyunwrap request (its nulls included) carrying ``annotation``."""
    request = json.loads(UNWRAP.read_bytes())
    request["keyunwrapparams"]["annotation"] = annotation
    return json.dumps(request).encode()


async def wrap_all(config: Path, requests: list[bytes]) -> list[str]:
    results = await asyncio.gather(*(provider(r, config) for r in requests))
    assert [(code, err) for code, _, err in results] == [(0, "")] * len(requests)
    return [json.loads(out)["keywrapresults"]["annotation"] for _, out, _ in results]


def optsdata(request: bytes) -> str:
    value = json.loads(request)["keywrapparams"]["optsdata"]
    assert isinstance(value, str)
    return value


def unwrapped(out: str) -> str:
    value = json.loads(out)["keyunwrapresults"]["optsdata"]
    assert isinstance(value, str)
    return value


def extend_pcr(tpm: Swtpm, pcr: int) -> None:
    with TpmDevice(tpm.tcti) as device:
        device.pcr_extend(pcr, {TPM_ALG_SHA256: b"\x42" * 32})


def assert_no_secret(text: str, secrets: list[str]) -> None:
    for b64 in secrets:
        assert b64 not in text
        assert base64.b64decode(b64).decode() not in text


async def started(daemon: Daemon) -> None:
    await wait_for(lambda: daemon.last is not None and daemon.keys is not None)


def test_wrap_and_unwrap_through_hub_and_daemon_one_round_trip_then_cache_with_hub_down(
    tmp_path: Path,
    rundir: Path,
    booted_tpm: Swtpm,
    hub: LoopbackHub,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    cfg, pcfg = setup(tmp_path, rundir, booted_tpm, hub)
    requests = [compact(w) for w in WRAPS]
    secrets = [optsdata(r) for r in requests]
    stderr: list[str] = []

    async def scenario() -> None:
        annotations = await wrap_all(pcfg, requests)
        spare = (await wrap_all(pcfg, [requests[0]]))[0]  # never unwrapped
        async with RunningDaemon(cfg) as daemon:
            await started(daemon)
            # ocicrypt runs one provider per layer, at once: one hub round trip for both
            first = await asyncio.gather(*(provider(unwrap_request(a), pcfg) for a in annotations))
            assert [(c, e) for c, _, e in first] == [(0, "")] * 2
            assert [unwrapped(o) for _, o, _ in first] == secrets
            assert daemon.key_releaser.round_trips == 1
            assert daemon.keys is not None
            assert daemon.keys.stats.releases == 1

            hub.stop()  # the hub goes away: cached keys still unwrap, locally
            cached = await provider(unwrap_request(annotations[1]), pcfg)
            assert (cached[0], unwrapped(cached[1]), cached[2]) == (0, secrets[1], "")
            assert daemon.keys.stats.cache_hits == 1
            assert daemon.key_releaser.round_trips == 1

            code, out, err = await provider(unwrap_request(spare), pcfg)  # not cached
            assert (code, out) == (1, "")
            assert err.startswith(
                "trustplane: cannot get the layer key: the hub cannot be reached and no key "
                "is cached (POST "
            )
            assert err.endswith(" (keys.hub_unreachable)\n")
            assert err.count("\n") == 1
            stderr.extend([e for _, _, e in first] + [cached[2], err])

    asyncio.run(scenario())
    assert_no_secret(caplog.text + "".join(stderr), secrets)
    for path in (cfg.state_dir / "keycache").iterdir():
        assert path.stat().st_mode & 0o777 == 0o600
        assert_no_secret(path.read_text(), secrets)


def test_pcr_change_empties_the_cache_and_the_hub_refuses_the_untrusted_host(
    tmp_path: Path,
    rundir: Path,
    booted_tpm: Swtpm,
    hub: LoopbackHub,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    cfg, pcfg = setup(tmp_path, rundir, booted_tpm, hub)
    request = compact(WRAPS[0])
    secret = optsdata(request)

    async def scenario() -> tuple[int, str, str]:
        (annotation,) = await wrap_all(pcfg, [request])
        async with RunningDaemon(cfg) as daemon:
            await started(daemon)
            code, out, _ = await provider(unwrap_request(annotation), pcfg)
            assert (code, unwrapped(out)) == (0, secret)
            assert daemon.keys is not None
            assert daemon.keys.cache is not None
            extend_pcr(booted_tpm, 7)  # the host now runs something the hub did not see
            result = await provider(unwrap_request(annotation), pcfg)
            assert daemon.keys.cache.invalidations == 1  # the sealed key no longer opens
            assert daemon.key_releaser.round_trips == 2  # so the hub was asked again
            assert daemon.keys.stats.refused == 1
            return result

    code, out, err = asyncio.run(scenario())
    assert (code, out) == (1, "")
    # PCR 7 no longer matches the event log's replay: the hub's verdict on the release's report
    assert err == "trustplane: key release denied: host untrusted (eventlog.replay_mismatch)\n"
    assert_no_secret(caplog.text + err, [secret])


@pytest.mark.xfail(
    not HUB_FITS_RECORDED_OPTSDATA,
    reason="the hub's release RSA-OAEP-encrypts the secret directly (190 bytes at most) and "
    "ocicrypt's recorded optsdata has 193: POST /v1/keys/release answers 500 (wt/keys-hub)",
    strict=True,
)
def test_recorded_optsdata_round_trips(
    tmp_path: Path, rundir: Path, booted_tpm: Swtpm, hub: LoopbackHub
) -> None:
    cfg, pcfg = setup(tmp_path, rundir, booted_tpm, hub)
    requests = [w.read_bytes() for w in WRAPS]

    async def scenario() -> list[tuple[int, str, str]]:
        annotations = await wrap_all(pcfg, requests)
        async with RunningDaemon(cfg) as daemon:
            await started(daemon)
            return list(
                await asyncio.gather(*(provider(unwrap_request(a), pcfg) for a in annotations))
            )

    results = asyncio.run(scenario())
    assert [(c, e) for c, _, e in results] == [(0, "")] * 2
    assert [unwrapped(o) for _, o, _ in results] == [optsdata(r) for r in requests]


def wrap_request(param: str) -> bytes:
    """The recorded keywrap request with ``param`` as the trustplane parameter (and another
    provider's parameters beside it, which are ignored)."""
    request = json.loads(compact(WRAPS[0]))
    request["keywrapparams"]["ec"]["Parameters"] = {
        "trustplane": [base64.b64encode(param.encode()).decode()],
        "other-provider": ["b3RoZXI="],
    }
    return json.dumps(request).encode()


def test_provider_keywrap_by_key_id_and_its_refusals(
    tmp_path: Path, rundir: Path, booted_tpm: Swtpm, hub: LoopbackHub
) -> None:
    _, pcfg = setup(tmp_path, rundir, booted_tpm, hub)

    async def scenario() -> dict[str, tuple[int, str, str]]:
        (first,) = await wrap_all(pcfg, [wrap_request("policy=region-eu")])
        blob = json.loads(base64.b64decode(first))
        by_key = await provider(wrap_request(f"key={blob['kid']}"), pcfg)
        out = {
            "by_key": by_key,
            "unknown_policy": await provider(wrap_request("policy=nowhere"), pcfg),
            "unknown_key": await provider(wrap_request("key=nokey"), pcfg),
        }
        token_file = tmp_path / "pipeline.token"
        token_file.chmod(0o644)
        out["open_token"] = await provider(wrap_request("policy=region-eu"), pcfg)
        token_file.write_text("tp_not_a_real_token\n")
        token_file.chmod(0o600)
        out["bad_token"] = await provider(wrap_request("policy=region-eu"), pcfg)
        hub.stop()
        out["hub_down"] = await provider(wrap_request("policy=region-eu"), pcfg)
        return out

    got = asyncio.run(scenario())
    code, out, err = got["by_key"]
    assert (code, err) == (0, "")
    assert json.loads(base64.b64decode(json.loads(out)["keywrapresults"]["annotation"]))[
        "policy"
    ] == ("region-eu")
    line = "trustplane: key wrap refused by the hub: "
    assert got["unknown_policy"] == (1, "", f"{line}no such key policy (keys.unknown_policy)\n")
    assert got["unknown_key"] == (1, "", f"{line}no such key (keys.unknown_key)\n")
    token = tmp_path / "pipeline.token"
    assert got["open_token"] == (
        1,
        "",
        f"trustplane: the token file {token} may be read by others (mode 0644): chmod 0600 it\n",
    )
    code, out, err = got["bad_token"]
    assert (code, out) == (1, "")
    assert err.startswith(line)
    assert err.endswith(")\n")
    assert err.count("\n") == 1
    assert "tp_not_a_real_token" not in err
    assert got["hub_down"] == (
        1,
        "",
        f"trustplane: cannot reach the hub at {hub.url}: Connection refused\n",
    )


def test_ten_layers_unwrapped_at_once_cost_one_release(
    tmp_path: Path, rundir: Path, booted_tpm: Swtpm, hub: LoopbackHub
) -> None:
    cfg, pcfg = setup(tmp_path, rundir, booted_tpm, hub)
    requests = []
    for i in range(10):  # ten layers: the recorded request shape, a secret per layer
        request = json.loads(compact(WRAPS[i % 2]))
        opts = json.loads(base64.b64decode(request["keywrapparams"]["optsdata"]))
        opts["symkey"] = base64.b64encode(bytes([i]) * 32).decode()
        request["keywrapparams"]["optsdata"] = base64.b64encode(json.dumps(opts).encode()).decode()
        requests.append(json.dumps(request).encode())

    async def scenario() -> tuple[list[tuple[int, str, str]], int, int]:
        annotations = await wrap_all(pcfg, requests)
        async with RunningDaemon(cfg) as daemon:
            await started(daemon)
            assert daemon.last is not None
            before = daemon.last.sequence  # reports the hub recorded so far
            results = await asyncio.gather(
                *(provider(unwrap_request(a), pcfg) for a in annotations)
            )
            reports = hub.sequences(daemon.enrollment.host_id if daemon.enrollment else "")
            return list(results), daemon.key_releaser.round_trips, len(reports) - before

    results, round_trips, recorded = asyncio.run(scenario())
    assert [(c, e) for c, _, e in results] == [(0, "")] * 10
    assert [unwrapped(o) for _, o, _ in results] == [optsdata(r) for r in requests]
    assert round_trips == 1
    assert recorded == 1  # counted at the hub: the release's report, once
