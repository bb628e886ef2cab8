"""The audit log's seals (hub.auditseal) through the CLI: a rewritten chain, deleted rows and
re-signed checkpoints are found by `trustplane-hub audit verify`, as docs/hub-config.md
("Audit log") says, and the one thing it says an attacker with the hub's key can do is shown."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from hub.auditseal import AuditSealer
from hub.cli import main
from hub.store import GENESIS_HASH, audit_row_hash


def setup(tmp_path: Path, *, export: bool) -> tuple[list[str], Path]:
    state = tmp_path / "state"
    config = tmp_path / "hub.toml"
    lines = ["[audit]", "checkpoint_every = 3"]
    if export:
        lines.append(f'export_file = "{tmp_path / "checkpoints.jsonl"}"')
    config.write_text("\n".join(lines) + "\n")
    cfg = ["--config", str(config), "--state-dir", str(state)]
    assert main(["init", *cfg]) == 0  # audit row 1
    for n in range(6):  # rows 2..7: checkpoints at 3 and 6
        assert main(["tokens", "create", "--role", "viewer", "--name", f"t{n}", *cfg]) == 0
    return cfg, state


def verify(cfg: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    capsys.readouterr()
    code = main(["audit", "verify", *cfg])
    out = capsys.readouterr()
    return code, out.out + out.err


def rewrite_chain(db: Path, row_id: int) -> None:
    """What an attacker with write access does: drop the guards, change a row, recompute every
    hash after it."""
    conn = sqlite3.connect(db)
    conn.execute("DROP TRIGGER audit_log_no_update")
    conn.execute("UPDATE audit_log SET actor = 'nobody' WHERE id = ?", [row_id])
    prev = GENESIS_HASH
    rows = conn.execute(
        "SELECT id, at, actor, action, subject, details FROM audit_log ORDER BY id"
    ).fetchall()
    for rid, at, actor, action, subject, details in rows:
        row = {"at": at, "actor": actor, "action": action, "subject": subject, "details": details}
        row["prev_hash"] = prev
        digest = audit_row_hash(prev, row)
        conn.execute(
            "UPDATE audit_log SET prev_hash = ?, hash = ? WHERE id = ?", [prev, digest, rid]
        )
        prev = digest
    conn.commit()
    conn.close()


def last_row(db: Path) -> tuple[int, str]:
    conn = sqlite3.connect(db)
    row = conn.execute("SELECT id, hash FROM audit_log ORDER BY id DESC LIMIT 1").fetchone()
    conn.close()
    return int(row[0]), str(row[1])


def test_an_intact_log_verifies_with_its_seals(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg, state = setup(tmp_path, export=True)
    assert verify(cfg, capsys) == (0, "audit log intact: 7 rows, head and checkpoints signed\n")
    exported = [
        json.loads(line) for line in (tmp_path / "checkpoints.jsonl").read_text().splitlines()
    ]
    assert [cp["id"] for cp in exported] == [3, 6]
    assert json.loads((state / "hub.db-audit-head.json").read_text())["id"] == 7


def test_a_rewritten_chain_with_a_rewritten_head_is_found_without_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # was: drop the trigger, edit a row, recompute the chain, rewrite the head file: "intact"
    cfg, state = setup(tmp_path, export=False)
    rewrite_chain(state / "hub.db", 5)
    head_id, head_hash = last_row(state / "hub.db")
    (state / "hub.db-audit-head.json").write_text(json.dumps({"id": head_id, "hash": head_hash}))
    code, text = verify(cfg, capsys)
    assert code == 1
    assert "audit head not signed by the hub's key" in text


def test_re_signing_with_the_hubs_key_is_found_by_the_export(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg, state = setup(tmp_path, export=True)
    key = serialization.load_pem_private_key((state / "jws.key").read_bytes(), password=None)
    sealer = AuditSealer(key, 3)  # type: ignore[arg-type]
    rewrite_chain(state / "hub.db", 2)
    conn = sqlite3.connect(state / "hub.db")
    for cid, at in conn.execute("SELECT id, at FROM audit_checkpoints").fetchall():
        digest = conn.execute("SELECT hash FROM audit_log WHERE id = ?", [cid]).fetchone()[0]
        sig = sealer.seal({"id": cid, "hash": digest, "at": at})["sig"]
        conn.execute(
            "UPDATE audit_checkpoints SET hash = ?, sig = ? WHERE id = ?", [digest, sig, cid]
        )
    conn.commit()
    conn.close()
    head_id, head_hash = last_row(state / "hub.db")
    (state / "hub.db-audit-head.json").write_text(
        json.dumps(sealer.seal({"id": head_id, "hash": head_hash}))
    )
    code, text = verify(cfg, capsys)
    assert code == 1
    assert "exported checkpoint does not match" in text
    # without the copy outside the database the re-signed log passes: the documented limit
    no_export = tmp_path / "no-export.toml"
    no_export.write_text("[audit]\ncheckpoint_every = 3\n")
    assert verify(["--config", str(no_export), *cfg[2:]], capsys)[0] == 0


def test_a_deleted_checkpoint_or_row_is_found(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg, state = setup(tmp_path, export=False)
    conn = sqlite3.connect(state / "hub.db")
    conn.execute("DELETE FROM audit_checkpoints WHERE id = 3")
    conn.commit()
    conn.close()
    code, text = verify(cfg, capsys)
    assert code == 1
    assert "row 3: audit checkpoint missing" in text
