"""The state directory: atomic 0600 writes, damaged files named, the report ledger and queue."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from nodeagent.attestation import Attestor
from nodeagent.config import AgentConfig, AttestationConfig
from nodeagent.state import (
    QueuedReport,
    ReportLedger,
    StateDir,
    StateError,
    StoredAk,
    write_atomic,
)
from nodeagent.tpm_worker import TpmWorker


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_write_atomic_replaces_with_0600_and_leaves_no_temporaries(tmp_path: Path) -> None:
    target = tmp_path / "client.key"
    target.write_text("old")
    target.chmod(0o644)
    write_atomic(target, b"new secret")
    assert target.read_bytes() == b"new secret"
    assert _mode(target) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["client.key"]


def test_write_atomic_into_missing_directory_is_state_error(tmp_path: Path) -> None:
    with pytest.raises(StateError) as info:
        write_atomic(tmp_path / "absent" / "x", b"1")
    assert info.value.reason == "state.unusable"
    assert info.value.message.startswith(f"cannot write {tmp_path / 'absent' / 'x'}: ")


def test_identity_and_ledger_round_trip(tmp_path: Path) -> None:
    state = StateDir(tmp_path / "state")
    state.ensure()
    assert _mode(state.root) == 0o700
    assert state.load_ak() is None
    assert state.load_ledger() == ReportLedger()
    ak = StoredAk("ecc", b"\x00\x02pub", b"\x00\x03priv")
    state.save_ak(ak)
    ledger = ReportLedger(
        next_sequence=7,
        last_acked=4,
        queue=[QueuedReport(5, 1700000000.5, "boot-a", "interval")],
        acked_logs={"ab" * 32},
    )
    state.save_ledger(ledger)
    again = StateDir(tmp_path / "state")
    assert again.load_ak() == ak
    assert again.load_ledger() == ledger
    assert _mode(state.root / "ak.json") == 0o600
    assert _mode(state.root / "reports.json") == 0o600


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("reports.json", "{not json", "is not valid JSON; move it away to start over"),
        ("reports.json", "[]", "does not hold a JSON object"),
        ("reports.json", '{"next_sequence": 1}', "is damaged"),
        ("ak.json", '{"algorithm": "ecc", "public": "!!", "private": ""}', "is damaged"),
    ],
)
def test_damaged_files_are_named(tmp_path: Path, name: str, text: str, message: str) -> None:
    state = StateDir(tmp_path)
    (tmp_path / name).write_text(text)
    with pytest.raises(StateError) as info:
        state.load_ledger() if name == "reports.json" else state.load_ak()
    assert info.value.message == f"{tmp_path / name} {message}"


def test_queue_is_bounded_and_persisted_before_sending(tmp_path: Path) -> None:
    cfg = AgentConfig(state_dir=tmp_path, attestation=AttestationConfig(queue_max=2))
    state = StateDir(tmp_path)
    clock = iter([100.0, 160.0, 220.0]).__next__

    def never_opened() -> object:
        raise AssertionError("enqueue must not touch the TPM")

    attestor = Attestor(cfg, state, TpmWorker(never_opened), "00" * 32, clock=clock)  # type: ignore[arg-type]
    for reason in ("start", "interval", "tpm_appeared"):
        attestor.enqueue(reason, "boot-a")
    assert attestor.dropped == 1
    on_disk = state.load_ledger()
    assert on_disk.queue == [
        QueuedReport(2, 160.0, "boot-a", "interval"),
        QueuedReport(3, 220.0, "boot-a", "tpm_appeared"),
    ]
    assert (on_disk.next_sequence, on_disk.last_acked) == (4, 0)
