"""The ``trustplane-agent`` command line: sub-commands, output and exit codes."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nodeagent import __version__
from nodeagent.cli import main
from nodeagent.config import TpmConfig
from nodeagent.state import StateDir
from nodeagent.tpm import TpmDevice
from nodeagent.tpmsession import TpmSession
from tests.conftest import REPO
from tests.nodeagent.conftest import BOOT_LOG, LoopbackHub, expected_sha256_pcrs
from tests.nodeagent.test_tpm_properties import getcap_raw
from trustplane.swtpm import Swtpm, free_port


def _config(tmp_path: Path, tpm: Swtpm | None, extra: str = "", hub: str | None = None) -> Path:
    (tmp_path / "boot_id").write_text("0b3a7a5e-7b1e-4d0c-9d38-6d2c1f7e9a11\n")
    cfg = tmp_path / "agent.toml"
    tcti = tpm.tcti if tpm else f"swtpm:host=127.0.0.1,port={free_port()}"
    cfg.write_text(
        f'state_dir = "{tmp_path / "state"}"\n'
        f'[hub]\nurl = "{hub or f"https://127.0.0.1:{free_port()}"}"\ntimeout = 2\n'
        f'[tpm]\ntcti = "{tcti}"\n'
        f'[evidence]\nuefi_log = "{BOOT_LOG}"\ntxt = false\n'
        f'boot_id = "{tmp_path / "boot_id"}"\ndmi_uuid = "{tmp_path / "no-dmi"}"\n' + extra
    )
    return cfg


def test_version_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out == f"trustplane-agent {__version__}\n"
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    assert "exit codes: 0 ok, 1 error, 2 usage, 3 config, 4 hub, 5 TPM" in capsys.readouterr().out


def test_usage_error_is_2() -> None:
    with pytest.raises(SystemExit) as info:
        main(["frobnicate"])
    assert info.value.code == 2


def test_config_error_is_3_and_names_file_and_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "agent.toml"
    cfg.write_text("[attestation]\ninterval = -5\n")
    assert main(["--config", str(cfg), "status"]) == 3
    err = capsys.readouterr().err
    assert err == (
        f"trustplane-agent: configuration error: {cfg}: attestation.interval: "
        "must be between 1 and 86400 (got -5)\n"
    )


def test_status_without_daemon_is_6(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--config", str(_config(tmp_path, None)), "status"]) == 6
    assert "the daemon has not run" in capsys.readouterr().err


def test_tpm_unreachable_is_5(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--config", str(_config(tmp_path, None)), "tpm", "info"]) == 5
    assert capsys.readouterr().err.startswith("trustplane-agent: TPM error: tpm.error: TPM open")


def _tree(root: Path) -> dict[str, bytes] | None:
    """Every file under ``root`` with its bytes (None when ``root`` does not exist)."""
    if not root.exists():
        return None
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_tpm_info_json(tmp_path: Path, swtpm: Swtpm, capsys: pytest.CaptureFixture[str]) -> None:
    with TpmDevice(swtpm.tcti) as device:
        ek = device.create_ek("rsa2048")
        device.flush(ek.key)
    cfg = _config(tmp_path, swtpm)
    assert main(["--config", str(cfg), "tpm", "info", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["host_id"] == hashlib.sha256(ek.key.public).hexdigest()
    assert info["ek_certificate"] is True
    assert (info["tpm_manufacturer"], info["tpm_vendor"]) == ("IBM", "SW TPM")  # libtpms
    assert info["pcr_values"]["sha256"] == {str(i): "00" * 32 for i in range(8)}
    # read-only: no AK is made, the state directory is not even created
    assert info["ak_public_sha256"] is None
    assert _tree(tmp_path / "state") is None
    assert main(["--config", str(cfg), "tpm", "info"]) == 0
    assert "AK:             none yet (`run` or `enroll` creates and stores it)\n" in (
        capsys.readouterr().out
    )
    assert _tree(tmp_path / "state") is None

    state = StateDir(tmp_path / "state")
    state.ensure()
    TpmSession(TpmConfig(tcti=swtpm.tcti), state).close()  # as run/enroll do: AK stored
    before = _tree(tmp_path / "state")
    assert main(["--config", str(cfg), "tpm", "info", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert _tree(tmp_path / "state") == before
    stored = json.loads((tmp_path / "state" / "ak.json").read_text())
    assert stored["algorithm"] == "ecc"
    # the stored blob is a TPM2B_PUBLIC: a 2-byte size, then the TPMT_PUBLIC that is hashed
    tpm2b = base64.b64decode(stored["public"])
    assert int.from_bytes(tpm2b[:2], "big") == len(tpm2b) - 2
    assert info["ak_public_sha256"] == hashlib.sha256(tpm2b[2:]).hexdigest()


def test_evidence_dump(
    tmp_path: Path, booted_tpm: Swtpm, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = _config(tmp_path, booted_tpm)
    assert main(["--config", str(cfg), "evidence", "--dump", "--json"]) == 0
    dump = json.loads(capsys.readouterr().out)
    log = BOOT_LOG.read_bytes()
    assert dump["eventlogs"]["uefi"]["sha256"] == hashlib.sha256(log).hexdigest()
    assert dump["eventlogs"]["uefi"]["size"] == len(log)
    assert dump["boot_id"] == "0b3a7a5e-7b1e-4d0c-9d38-6d2c1f7e9a11"
    assert dump["missing_evidence"] == [
        {"source": "dmi_uuid", "reason": f"not_present: {tmp_path / 'no-dmi'} does not exist"},
        {"source": "txt", "reason": "disabled: evidence.txt is false in the config"},
    ]
    expected = expected_sha256_pcrs()
    assert dump["pcr_values"]["sha256"] == {str(p): expected[p] for p in range(8)}
    # the TPM facts every report carries, as tpm2-tools reads them
    raw = getcap_raw(booted_tpm.tcti)
    fw1, fw2 = raw["TPM2_PT_FIRMWARE_VERSION_1"], raw["TPM2_PT_FIRMWARE_VERSION_2"]
    rev = raw["TPM2_PT_REVISION"]
    tpm_facts = {
        "tpm_manufacturer": "IBM",
        "tpm_vendor": "SW TPM",
        "tpm_firmware": f"{fw1 >> 16}.{fw1 & 0xFFFF}.{fw2 >> 16}.{fw2 & 0xFFFF}",
        "tpm_spec_revision": f"{rev // 100}.{rev % 100:02d}",
    }
    assert {k: v for k, v in dump["facts"].items() if k.startswith("tpm_")} == tpm_facts
    assert main(["--config", str(cfg), "evidence", "--dump"]) == 0
    text = capsys.readouterr().out
    assert f"event log uefi: {len(log)} bytes, sha256 {hashlib.sha256(log).hexdigest()}" in text
    assert f"PCR sha256:7: {expected[7]}" in text
    assert "missing txt: disabled: evidence.txt is false in the config" in text
    for key, value in tpm_facts.items():
        assert f"fact {key}: {value}\n" in text
    # read-only: no AK made, no state directory created
    assert _tree(tmp_path / "state") is None


def test_enroll_then_status_after_a_daemon_run(
    tmp_path: Path, booted_tpm: Swtpm, hub: LoopbackHub, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = _config(tmp_path, booted_tpm, hub=hub.url, extra="[hub.x]\n" if False else "")
    cfg.write_text(
        cfg.read_text().replace("timeout = 2\n", f'timeout = 5\nca_file = "{hub.ca_file}"\n')
    )
    assert main(["--config", str(cfg), "enroll"]) == 0
    host_line = capsys.readouterr().out.strip()
    assert host_line.endswith(": enrolled")
    host_id = host_line.split()[1].rstrip(":")
    assert hub.call(hub.state.store.get_host(host_id)) is not None
    # a real daemon process: one attestation, then SIGTERM
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(REPO), "TSS2_LOG": "all+NONE"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "nodeagent.cli", "--config", str(cfg), "run"],
        env=env,
        stderr=subprocess.PIPE,
    )
    status_file = tmp_path / "state" / "status.json"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if status_file.exists() and json.loads(status_file.read_text()).get("last_report"):
                break
            time.sleep(0.05)
        assert main(["--config", str(cfg), "status"]) == 0
        text = capsys.readouterr().out
        assert f"host id:          {host_id}" in text
        assert "enrollment:       enrolled" in text
        assert "last verdict:     trusted (report 1, " in text
        assert "next attestation: in " in text
    finally:
        proc.terminate()
        assert proc.wait(timeout=30) == 0
    assert main(["--config", str(cfg), "status", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert (status["phase"], status["host_id"]) == ("stopped", host_id)
    assert status["last_report"]["verdict"] == "trusted"
