"""``trustplane-agent hook`` against trust reports the real hub signed for a real swtpm host.

The daemon reports to the hub on loopback, stores the signed trust report and learns the hub's
key (``GET /v1/trust-report-key``); the hook, run as a process like an OCI runtime runs it,
lets the container start only while that report verifies, is this host's, says trusted and is
current. A real container engine runs it in test_hook_podman.py.
"""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from nodeagent.config import AgentConfig
from nodeagent.hook import check_host
from nodeagent.state import StateDir
from nodeagent.tpm import TpmDevice
from nodeagent.trustreport import TrustReportRefused, key_id
from tests.nodeagent.conftest import LoopbackHub, RunningDaemon, agent_config, wait_for
from trustcore.algorithms import TPM_ALG_SHA256
from trustplane.swtpm import Swtpm

AGENT = Path(sys.executable).with_name("trustplane-agent")
OCI_STATE = json.dumps(
    {
        "ociVersion": "1.0.2",
        "id": "c0ffee",
        "status": "created",
        "pid": 4242,
        "bundle": "/run/containers/c0ffee",
        "annotations": {"trustplane.io/require-trusted": "true"},
    }
).encode()


def hook(cfg: AgentConfig, tmp_path: Path, stdin: bytes = OCI_STATE) -> tuple[int, str, str]:
    config = tmp_path / "agent-hook.toml"
    config.write_text(f'state_dir = "{cfg.state_dir}"\n')
    done = subprocess.run(
        [str(AGENT), "--config", str(config), "hook"],
        input=stdin,
        capture_output=True,
        timeout=30,
        check=False,
    )
    return done.returncode, done.stdout.decode(), done.stderr.decode()


def refused(cfg: AgentConfig, now: float | None = None) -> tuple[str, str]:
    with pytest.raises(TrustReportRefused) as e:
        check_host(StateDir(cfg.state_dir), now)
    return e.value.reason, e.value.message


def attest_until(daemon_cfg: AgentConfig, tpm: Swtpm, *, untrusted_after: bool) -> None:
    async def scenario() -> None:
        async with RunningDaemon(daemon_cfg) as daemon:
            await wait_for(lambda: daemon.last is not None)
            if untrusted_after:
                assert daemon.last is not None
                before = daemon.last.sequence
                with TpmDevice(tpm.tcti) as device:
                    device.pcr_extend(7, {TPM_ALG_SHA256: b"\x07" * 32})
                daemon.attest_now("requested")
                await wait_for(lambda: daemon.last is not None and daemon.last.sequence > before)
                assert daemon.last.result.verdict == "untrusted"

    asyncio.run(scenario())


def test_hook_admits_on_a_trusted_host_and_refuses_once_untrusted(
    tmp_path: Path, booted_tpm: Swtpm, hub: LoopbackHub
) -> None:
    cfg = agent_config(tmp_path, booted_tpm, hub.url, hub.ca_file)
    assert refused(cfg) == ("hook.not_enrolled", "this host is not enrolled with a trustplane hub")
    attest_until(cfg, booted_tpm, untrusted_after=False)

    # the daemon kept the signed report and the hub's key (0600 like all its state)
    state = cfg.state_dir
    for name in ("trust-report.json", "hub-jws.pem"):
        assert (state / name).stat().st_mode & 0o777 == 0o600, name
    hub_key = hub.state.keys.jws_key.public_key()
    assert (state / "hub-jws.pem").read_bytes() == hub_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert hook(cfg, tmp_path) == (0, "", "")
    report = check_host(StateDir(state))
    assert (report.verdict, report.reasons) == ("trusted", ())

    # expired: the report is not current past its valid_until
    reason, message = refused(cfg, now=report.valid_until + 5)
    assert reason == "hook.report_expired"
    assert message == "the trust report expired 5s ago (the agent has not attested since)"

    attest_until(cfg, booted_tpm, untrusted_after=True)
    assert hook(cfg, tmp_path) == (
        1,
        "",
        (
            "trustplane: container refused: host untrusted (eventlog.replay_mismatch) "
            "[hook.host_untrusted]\n"
        ),
    )


def test_hook_refuses_tampered_or_foreign_reports_and_missing_files(
    tmp_path: Path, booted_tpm: Swtpm, hub: LoopbackHub
) -> None:
    cfg = agent_config(tmp_path, booted_tpm, hub.url, hub.ca_file)
    attest_until(cfg, booted_tpm, untrusted_after=False)
    state = cfg.state_dir
    report_file = state / "trust-report.json"
    original = json.loads(report_file.read_text())
    token = original["trust_report"]

    def with_token(new: str) -> None:
        report_file.write_text(json.dumps({**original, "trust_report": new}))

    head, payload, sig = token.split(".")
    with_token(f"{head}.{payload}.{'A' if sig[0] != 'A' else 'B'}{sig[1:]}")  # one char
    assert refused(cfg) == (
        "hook.report_invalid",
        "the trust report's signature does not verify (bad signature)",
    )
    # a payload saying something else under the old signature
    forged = payload[:-2] + ("AA" if payload[-2:] != "AA" else "BB")
    with_token(f"{head}.{forged}.{sig}")
    assert refused(cfg)[0] == "hook.report_invalid"
    with_token("not.a.jws")
    assert refused(cfg)[0] == "hook.report_invalid"
    with_token(token)
    assert check_host(StateDir(state)).verdict == "trusted"

    # signed by another key than the hub's
    other = ec.generate_private_key(ec.SECP256R1()).public_key()
    pem = other.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    hub_pem = (state / "hub-jws.pem").read_bytes()
    (state / "hub-jws.pem").write_bytes(pem)
    assert refused(cfg) == (
        "hook.report_invalid",
        "the trust report's signature does not verify (signed by another hub key)",
    )
    assert key_id(other) != json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4))).get(
        "kid"
    )
    (state / "hub-jws.pem").unlink()
    assert refused(cfg) == (
        "hook.key_missing",
        "the hub's trust-report key is not known yet (the agent fetches it after a report)",
    )
    (state / "hub-jws.pem").write_bytes(hub_pem)
    report_file.unlink()
    assert refused(cfg) == (
        "hook.report_missing",
        "no signed trust report yet (the agent has not reported)",
    )
    with_token(token)
    assert hook(cfg, tmp_path, stdin=b"\xff not the OCI state") == (
        1,
        "",
        (
            "trustplane: container refused: stdin does not hold the container's OCI state JSON "
            "[hook.state_invalid]\n"
        ),
    )
    assert hook(cfg, tmp_path, stdin=b" " * 70000)[2] == (
        "trustplane: container refused: the OCI state on stdin is too long [hook.state_invalid]\n"
    )
    assert hook(cfg, tmp_path) == (0, "", "")
    assert time.time() < check_host(StateDir(state)).valid_until
