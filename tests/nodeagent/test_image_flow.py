"""Encrypted images end to end: pipeline → registry → trusted host, and the hosts that are refused.

Everything is real: the hub on loopback TLS (its wrap and release APIs, a ``region-eu`` key
policy ``region in [EU]``), Debian's docker-registry on 127.0.0.1, the agent daemon on a swtpm
booted from a real event log (key socket, TPM-bound cache, KeyReleaser), ``trustplane-keyprovider``
processes run by ``trustplane image encrypt|decrypt`` exactly as ocicrypt runs them (one per
layer, six at once, the recorded request shapes). The layers that come out must equal the ones
that went in; a host whose tags do not satisfy the policy and a host that is no longer trusted
are refused with their reason ids, the provider's line ending the command's error.

Hub round trips: ocicrypt (and this driver) unwraps at most six layers at once and starts the
seventh only when a layer is done, so the daemon can batch at most six unwraps into one release:
a ten-layer image costs ceil(10 / 6) = 2 releases and a six-layer image exactly one.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from hub.assettags import set_host_tags
from hub.statedir import new_token
from nodeagent.config import AgentConfig, KeysConfig
from nodeagent.daemon import Daemon
from nodeagent.tpm import TpmDevice
from tests.imagekit import build_image, layout_manifest
from tests.nodeagent.conftest import LoopbackHub, RunningDaemon, agent_config, wait_for
from trustcore.algorithms import TPM_ALG_SHA256
from trustplane.imagestore import RegistryClient, RegistryOptions
from trustplane.registryserver import RegistryServer
from trustplane.swtpm import Swtpm

PROVIDER = Path(sys.executable).with_name("trustplane-keyprovider")
SKOPEO = os.environ.get("TRUSTPLANE_SKOPEO")
POLICY = "region-eu"


@pytest.fixture
def rundir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="tpif-"))  # short: a socket path has 107 bytes at most
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[RegistryServer]:
    with RegistryServer(tmp_path / "registry") as server:
        yield server


class Flow:
    """The agent config, the provider's files and the commands a pipeline and a host run."""

    def __init__(
        self, tmp_path: Path, rundir: Path, tpm: Swtpm, hub: LoopbackHub, batch_window: float = 0.05
    ) -> None:
        self.tmp = tmp_path
        self.tpm = tpm
        self.hub = hub
        hub.call(hub.state.store.put_key_policy(POLICY, "region in [EU]", 3600.0, time.time()))
        token, digest = new_token()
        hub.call(hub.state.store.add_token(digest, "pipeline", "ci", time.time()))
        token_file = tmp_path / "pipeline.token"
        token_file.write_text(token + "\n")
        token_file.chmod(0o600)
        self.cfg: AgentConfig = replace(
            agent_config(tmp_path, tpm, hub.url, hub.ca_file),
            keys=KeysConfig(socket=rundir / "keys.sock", batch_window=batch_window),
        )
        provider_cfg = tmp_path / "keyprovider.toml"
        provider_cfg.write_text(
            f'socket = "{self.cfg.keys.socket}"\ntimeout = 60\n[hub]\nurl = "{hub.url}"\n'
            f'ca_file = "{hub.ca_file}"\ntoken_file = "{token_file}"\n'
        )
        ocicrypt = tmp_path / "ocicrypt.conf"
        ocicrypt.write_text(
            json.dumps({"key-providers": {"trustplane": {"cmd": {"path": str(PROVIDER)}}}})
        )
        self.env = {
            "PATH": os.environ["PATH"],
            "OCICRYPT_KEYPROVIDER_CONFIG": str(ocicrypt),
            "TRUSTPLANE_KEYPROVIDER_CONFIG": str(provider_cfg),
        }

    async def image(self, *args: str) -> tuple[int, str, str]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "trustplane",
            "image",
            *args,
            "--plain-http",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=self.env,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 240)
        assert proc.returncode is not None
        return proc.returncode, out.decode(), err.decode()

    async def skopeo(self, *args: str) -> tuple[int, str, str]:
        """``skopeo copy`` as real-peers.md says: our policy file, caches in the temp dir,
        plain HTTP to the registry on 127.0.0.1."""
        assert SKOPEO is not None
        policy = self.tmp / "policy.json"
        policy.write_text('{"default":[{"type":"insecureAcceptAnything"}]}')
        env = {
            **self.env,
            "_CONTAINERS_ROOTLESS_UID": "65534",
            "XDG_DATA_HOME": str(self.tmp / "xdg"),
        }
        proc = await asyncio.create_subprocess_exec(
            SKOPEO,
            "copy",
            "--policy",
            str(policy),
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 240)
        assert proc.returncode is not None
        return proc.returncode, out.decode(), err.decode()

    async def socket_unwrap(self, annotation: bytes) -> dict[str, object]:
        """The daemon's key socket, asked directly (its reply carries the reason id)."""
        reader, writer = await asyncio.open_unix_connection(str(self.cfg.keys.socket))
        request = {"op": "unwrap", "annotation": base64.b64encode(annotation).decode()}
        writer.write(json.dumps(request).encode() + b"\n")
        await writer.drain()
        writer.write_eof()
        reply = json.loads(await reader.read())
        writer.close()
        assert isinstance(reply, dict)
        return reply

    def run_daemon_until(self, sequence: int) -> None:
        """Start the daemon (it reports at once), wait for report ``sequence``, stop it."""

        async def run() -> None:
            async with RunningDaemon(self.cfg) as daemon:
                await wait_for(lambda: daemon.last is not None and daemon.last.sequence >= sequence)

        asyncio.run(run())

    def tag(self, host_id: str, tags: dict[str, str]) -> None:
        st = self.hub.state
        self.hub.call(
            set_host_tags(st.store, st.keys.tag_ca, host_id, tags, now=st.clock(), actor="t")
        )


def first_annotation(registry: RegistryServer, repository: str) -> bytes:
    client = RegistryClient(registry.host, repository, "enc", RegistryOptions(plain_http=True))
    layer = json.loads(client.get_manifest()[0])["layers"][0]
    value = layer["annotations"]["org.opencontainers.image.enc.keys.provider.trustplane"]
    return base64.b64decode(value)


async def started(daemon: Daemon) -> None:
    await wait_for(lambda: daemon.last is not None and daemon.keys is not None)


@pytest.fixture
def flow(tmp_path: Path, rundir: Path, booted_tpm: Swtpm, hub: LoopbackHub) -> Flow:
    return Flow(tmp_path, rundir, booted_tpm, hub)


def tagged(flow: Flow, tags: dict[str, str]) -> None:
    """Enroll and report, tag the host on the hub, report until its TPM carries the tags."""
    flow.run_daemon_until(1)
    (host,) = flow.hub.call(flow.hub.state.store.list_hosts())
    flow.tag(host.id, tags)
    flow.run_daemon_until(3)  # 2: the old evidence lacks the tags; 3: trusted with them
    (host,) = flow.hub.call(flow.hub.state.store.list_hosts())
    assert host.verdict == "trusted"


async def encrypt(flow: Flow, src: Path, dst: str) -> None:
    code, _, err = await flow.image(
        "encrypt", f"oci:{src}:v1", dst, "--encryption-key", f"provider:trustplane:policy={POLICY}"
    )
    assert code == 0, err


def test_the_pipeline_encrypts_through_the_provider_and_hub_and_the_gate_passes(
    flow: Flow, tmp_path: Path, registry: RegistryServer
) -> None:
    build_image(tmp_path / "ten", "v1", 10)
    remote = f"docker://{registry.host}/flow/ten:enc"

    async def run() -> None:
        await encrypt(flow, tmp_path / "ten", remote)
        code, out, _ = await flow.image("check", remote, "--json")
        assert code == 0
        (key,) = flow.hub.call(flow.hub.state.store.list_keys(POLICY))
        layers = json.loads(out)["layers"]
        assert [(v["key_id"], v["policy"]) for v in layers] == [(key.id, POLICY)] * 10

    asyncio.run(run())


def test_a_trusted_host_decrypts_layers_equal_to_the_originals(
    tmp_path: Path, rundir: Path, booted_tpm: Swtpm, hub: LoopbackHub, registry: RegistryServer
) -> None:
    # a batch window of a second: the six provider processes ocicrypt starts at once reach the
    # socket within it even on a loaded machine, so each wave of six is one release
    flow = Flow(tmp_path, rundir, booted_tpm, hub, batch_window=1.0)
    tagged(flow, {"region": "EU"})
    ten = build_image(tmp_path / "ten", "v1", 10, layer_bytes=50_000)
    six = build_image(tmp_path / "six", "v1", 6)
    reg = f"docker://{registry.host}/flow"

    async def run() -> None:
        await encrypt(flow, tmp_path / "ten", f"{reg}/ten:enc")
        await encrypt(flow, tmp_path / "six", f"{reg}/six:enc")
        async with RunningDaemon(flow.cfg) as daemon:
            await started(daemon)
            for name, round_trips in (("ten", 2), ("six", 3)):
                code, _, err = await flow.image(
                    "decrypt",
                    f"{reg}/{name}:enc",
                    f"oci:{tmp_path / (name + '-out')}:v1",
                    "--decryption-key",
                    "provider:trustplane",
                )
                assert code == 0, err
                assert daemon.key_releaser.round_trips == round_trips

    asyncio.run(run())
    for name, originals in (("ten", ten), ("six", six)):
        assert [d["digest"] for d in layout_manifest(tmp_path / f"{name}-out", "v1")["layers"]] == (
            originals
        )
        for digest in originals:
            blob = f"blobs/sha256/{digest[7:]}"
            assert (tmp_path / f"{name}-out" / blob).read_bytes() == (
                tmp_path / name / blob
            ).read_bytes()


def test_a_host_tagged_elsewhere_and_an_untrusted_host_are_refused_with_their_reasons(
    flow: Flow, tmp_path: Path, registry: RegistryServer, booted_tpm: Swtpm
) -> None:
    tagged(flow, {"region": "US"})
    build_image(tmp_path / "two", "v1", 2)
    remote = f"docker://{registry.host}/flow/two:enc"
    asyncio.run(encrypt(flow, tmp_path / "two", remote))

    async def refused(expect_reason: str, expect_line: str) -> None:
        async with RunningDaemon(flow.cfg) as daemon:
            await started(daemon)
            code, out, err = await flow.image(
                "decrypt",
                remote,
                f"oci:{tmp_path / 'two-out'}:v1",
                "--decryption-key",
                "provider:trustplane",
            )
            assert (code, out) == (1, "")
            assert err.endswith(f": {expect_line}\n"), err
            assert err.count("\n") == 1
            reply = await flow.socket_unwrap(first_annotation(registry, "flow/two"))
            assert reply["ok"] is False
            assert reply["reason"] == expect_reason

    asyncio.run(
        refused(
            "release.assettag_mismatch",
            "trustplane: key release denied: asset tags (region=US) do not satisfy policy "
            "region-eu: region in [EU]",
        )
    )
    # and then booted into something nobody approved: the event log no longer replays to PCR 7
    with TpmDevice(booted_tpm.tcti) as device:
        device.pcr_extend(7, {TPM_ALG_SHA256: b"\x42" * 32})
    asyncio.run(
        refused(
            "release.host_untrusted",
            "trustplane: key release denied: host untrusted (eventlog.replay_mismatch)",
        )
    )
    index = tmp_path / "two-out" / "index.json"
    assert not index.exists() or json.loads(index.read_text())["manifests"] == []


@pytest.mark.skipif(
    not SKOPEO,
    reason="TRUSTPLANE_SKOPEO is not set: no skopeo >= 1.11 with ocicrypt key providers on this "
    "machine (Debian 12 ships 1.9.3, which cannot call them)",
)
def test_the_same_flow_with_an_upstream_skopeo(
    flow: Flow, tmp_path: Path, registry: RegistryServer, booted_tpm: Swtpm
) -> None:
    """skopeo encrypts through the same provider and hub, our gate passes it, the trusted host
    decrypts with skopeo (layers equal), and once untrusted skopeo's error ends with the
    provider's line."""
    tagged(flow, {"region": "EU"})
    originals = build_image(tmp_path / "img", "v1", 3)
    remote = f"docker://{registry.host}/skopeo/app:enc"

    async def trusted() -> None:
        code, _, err = await flow.skopeo(
            "--encryption-key",
            f"provider:trustplane:policy={POLICY}",
            f"oci:{tmp_path / 'img'}:v1",
            remote,
        )
        assert code == 0, err
        code, out, _ = await flow.image("check", remote)
        assert code == 0, out
        async with RunningDaemon(flow.cfg) as daemon:
            await started(daemon)
            code, _, err = await flow.skopeo(
                "--decryption-key", "provider:trustplane", remote, f"oci:{tmp_path / 'out'}:v1"
            )
            assert code == 0, err

    asyncio.run(trusted())
    assert [d["digest"] for d in layout_manifest(tmp_path / "out", "v1")["layers"]] == originals
    with TpmDevice(booted_tpm.tcti) as device:
        device.pcr_extend(7, {TPM_ALG_SHA256: b"\x42" * 32})
    # the key cache was sealed to the old PCRs: the hub is asked again and refuses

    async def untrusted() -> None:
        async with RunningDaemon(flow.cfg) as daemon:
            await started(daemon)
            code, _, err = await flow.skopeo(
                "--decryption-key", "provider:trustplane", remote, f"oci:{tmp_path / 'no'}:v1"
            )
            assert code != 0
            assert err.rstrip().endswith(
                "trustplane: key release denied: host untrusted (eventlog.replay_mismatch)"
            ), err

    asyncio.run(untrusted())
