"""The ``trustplane`` command, run as a process: exact JSON, exit codes, one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import EVENTLOGS, SHARED, expected_logs

TRUSTPLANE = Path(sys.executable).parent / "trustplane"
LOGS = expected_logs()
ACCEPTED = [(p, e) for p, e in LOGS if e["expected_pcrs"] is not None]
REJECTED = [(p, e) for p, e in LOGS if e["expected_pcrs"] is None]
TXT_IMAGE = EVENTLOGS / "intel-secl" / "txt_heap_info.bin"
TXT_LOG: dict[str, Any] = json.loads(
    (EVENTLOGS / "intel-secl" / "txt_heap_eventlog.expected.json").read_text()
)


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TRUSTPLANE_SHARED": str(SHARED)}
    return subprocess.run(
        [str(TRUSTPLANE), *args],
        capture_output=True,
        text=True,
        check=False,
        env=env,
        cwd=cwd,
        timeout=60,
    )


def ids(items: list[tuple[Path, dict[str, Any]]]) -> list[str]:
    return [str(p.relative_to(EVENTLOGS)) for p, _ in items]


@pytest.mark.parametrize(("path", "expected"), ACCEPTED, ids=ids(ACCEPTED))
def test_replay_json_is_exactly_format_events_pcrs(path: Path, expected: dict[str, Any]) -> None:
    result = run("eventlog", "replay", str(path), "--json")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert json.loads(result.stdout) == {
        "format": expected["format"].split()[0],
        "events": expected["events"],
        "pcrs": expected["expected_pcrs"],
    }
    assert result.stdout.count("\n") == 1


@pytest.mark.parametrize(("path", "expected"), REJECTED, ids=ids(REJECTED))
@pytest.mark.parametrize("command", [["replay", "--json"], ["show"], ["replay"]])
def test_rejected_file_exits_2_with_one_stderr_line(
    path: Path, expected: dict[str, Any], command: list[str]
) -> None:
    result = run("eventlog", command[0], str(path), *command[1:])
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1
    reason = {"empty": "eventlog.empty", "txt-heap-image": "eventlog.not_an_event_log"}
    assert lines[0].startswith(f"trustplane: {path}: {reason[expected['format']]}: ")
    assert "Traceback" not in result.stderr


def test_missing_file_exits_2_with_one_line(tmp_path: Path) -> None:
    result = run("eventlog", "replay", str(tmp_path / "nope.bin"), "--json")
    assert result.returncode == 2
    assert result.stderr == f"trustplane: {tmp_path / 'nope.bin'}: No such file or directory\n"


def test_txt_heap_replay_json_equals_the_carved_logs_expected_values() -> None:
    result = run("eventlog", "txt-heap", str(TXT_IMAGE), "--replay", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "format": "txt",
        "events": TXT_LOG["events"],
        "pcrs": TXT_LOG["expected_pcrs"],
    }


def test_txt_heap_location_json() -> None:
    result = run("eventlog", "txt-heap", str(TXT_IMAGE), "--json")
    assert result.returncode == 0, result.stderr
    where = json.loads(result.stdout)
    assert (where["offset"], where["size"], where["container_size"]) == (0x1114C, 1722, 0x2000)


def test_txt_heap_show_lists_the_drtm_events() -> None:
    result = run("eventlog", "txt-heap", str(TXT_IMAGE), "--show")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "format txt, 20 events, banks sha1, sha256, 0 trailing bytes"
    assert len(lines) == 2 + 20
    assert "EVTYPE_MLE_HASH" in result.stdout
    assert "TPM_EVT_TBOOT_HASH" in result.stdout


def test_txt_heap_on_a_plain_log_exits_2() -> None:
    result = run("eventlog", "txt-heap", str(EVENTLOGS / "tpm2-tools" / "event.bin"))
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1
    assert ": txtheap.bad_image: " in result.stderr


def test_show_prints_one_line_per_event() -> None:
    result = run("eventlog", "show", str(EVENTLOGS / "tpm2-tools" / "event-uefivar.bin"))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert (
        lines[0]
        == "format crypto-agile, 2 events, banks sha1, sha256, sha384, sha512, 0 trailing bytes"
    )
    assert len(lines) == 4
    assert lines[3].split()[:5] == [
        "1",
        "7",
        "EV_EFI_VARIABLE_DRIVER_CONFIG",
        "sha1:d4fdd1f1",
        "sha256:ccfc4bb3",
    ]
    assert lines[3].endswith("SecureBoot (EFI_GLOBAL_VARIABLE): 01")


def test_show_json_has_every_event() -> None:
    path = EVENTLOGS / "go-attestation" / "windows_gcp_shielded_vm.bin"
    result = run("eventlog", "show", str(path), "--json")
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["format"] == "sha1-legacy"
    assert shown["algorithms"] == ["sha1"]
    assert len(shown["events"]) == 21
    assert set(shown["events"][0]) == {
        "index",
        "pcr",
        "type",
        "type_name",
        "digests",
        "offset",
        "size",
        "description",
    }


def test_replay_text_lists_banks_and_pcrs() -> None:
    result = run("eventlog", "replay", str(EVENTLOGS / "tpm2-tools" / "event-uefivar.bin"))
    assert result.returncode == 0
    assert result.stdout == (
        "format crypto-agile, 2 events\n"
        "sha1     PCR  7: 3a1ea200b8fafe60c290e903c5e6443cfef67f04\n"
        "sha256   PCR  7: e58ada1ba75f2e4722b539824598ad5e10c55f2e4aeab2033f3b0a8ee3f3eca6\n"
    )


# The demo (`trustplane demo`) is tested end to end in tests/e2e/test_demo.py.


def test_version_and_help() -> None:
    version = run("--version")
    assert (version.returncode, version.stdout) == (0, "trustplane 0.1.0\n")
    helped = run("--help")
    assert helped.returncode == 0
    for word in ("eventlog", "demo", "Exit codes"):
        assert word in helped.stdout
    sub = run("eventlog", "--help")
    for word in ("show", "replay", "txt-heap"):
        assert word in sub.stdout


def test_usage_errors_exit_2() -> None:
    assert run().returncode == 2
    assert run("eventlog", "frobnicate").returncode == 2


def test_python_dash_m_runs_the_same_cli() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "trustplane", "--version"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert (result.returncode, result.stdout) == (0, "trustplane 0.1.0\n")
