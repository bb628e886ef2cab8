"""``trustplane-hub keys``: policies and keys from the CLI, exit codes 0/1/2, the audit rows, and
that keys made by the CLI wrap and unwrap in the hub (one master key)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from hub.cli import main
from hub.keys.broker import Broker
from hub.statedir import load_hub_keys
from trustcore.keyblob import parse_key_blob


def _setup(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[Path, list[str]]:
    state = tmp_path / "state"
    cfg = ["--config", str(tmp_path / "none.toml"), "--state-dir", str(state)]
    assert main(["init", *cfg]) == 0
    capsys.readouterr()
    return state, cfg


def test_create_set_show_rotate_retire(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state, cfg = _setup(tmp_path, capsys)
    assert main(["keys", "create", *cfg, "region-eu", "--tags", "region in [EU,CH]"]) == 0
    assert capsys.readouterr().out == "region-eu\tregion in [EU, CH]\tmax age 300s\n"
    assert main(["keys", "policy", "set", *cfg, "region-eu", "--max-age", "120"]) == 0
    assert capsys.readouterr().out == "region-eu\tregion in [EU, CH]\tmax age 120s\n"
    assert main(["keys", "rotate", *cfg, "region-eu"]) == 0
    first = capsys.readouterr().out.split("\t")[0]
    assert first.startswith("region-eu.")
    assert main(["keys", "rotate", *cfg, "region-eu"]) == 0
    second, version = capsys.readouterr().out.strip().split("\t")
    assert version == "version 2"
    assert main(["keys", "retire", *cfg, first]) == 0
    assert capsys.readouterr().out == f"{first}\tretired\n"
    assert main(["keys", "show", *cfg, "region-eu"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert (shown["name"], shown["predicate"], shown["max_age"]) == (
        "region-eu",
        "region in [EU, CH]",
        120.0,
    )
    assert [(k["id"], k["version"], k["retired"] is None) for k in shown["keys"]] == [
        (first, 1, False),
        (second, 2, True),
    ]
    assert main(["keys", "show", *cfg, second]) == 0
    assert json.loads(capsys.readouterr().out)["id"] == second
    assert main(["keys", "list", *cfg]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split("\t")[:3] == ["POLICY", "KEY", "VERSION"]
    assert [line.split("\t")[1] for line in lines[1:]] == [first, second]
    db = sqlite3.connect(state / "hub.db")
    actions = [r[0] for r in db.execute("SELECT action FROM audit_log WHERE action LIKE 'keys.%'")]
    assert actions == [
        "keys.policy_create",
        "keys.policy_set",
        "keys.rotate",
        "keys.rotate",
        "keys.retire",
    ]
    # no key material in clear anywhere in the database: the material opens only under the
    # master key
    material = db.execute("SELECT material FROM key_versions WHERE id = ?", [second]).fetchone()
    assert len(material[0]) == 12 + 32 + 16
    broker = Broker(load_hub_keys(state).master_key)
    blob = broker.wrap(second, material[0], "region-eu", "https://hub.test", b"optsdata")
    assert broker.unwrap(parse_key_blob(blob.encode()), material[0]) == b"optsdata"


def test_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, cfg = _setup(tmp_path, capsys)
    assert main(["keys", "create", *cfg, "Bad_Name"]) == 2
    assert "a policy name is a DNS label" in capsys.readouterr().err
    assert main(["keys", "create", *cfg, "eu", "--tags", "region = "]) == 2
    assert capsys.readouterr().err == (
        "trustplane-hub: asset-tag predicate: expected a tag value, found the end at column 10\n"
    )
    assert main(["keys", "create", *cfg, "eu", "--max-age", "0"]) == 2
    assert main(["keys", "create", *cfg, "eu", "--max-age", "nan"]) == 2
    capsys.readouterr()
    assert main(["keys", "create", *cfg, "eu"]) == 0
    assert main(["keys", "create", *cfg, "eu"]) == 1
    assert capsys.readouterr().err.endswith("policy eu exists (use policy set)\n")
    assert main(["keys", "policy", "set", *cfg, "nope", "--max-age", "5"]) == 1
    assert main(["keys", "rotate", *cfg, "nope"]) == 1
    assert main(["keys", "retire", *cfg, "nope.123"]) == 1
    assert main(["keys", "show", *cfg, "nope"]) == 1
    assert capsys.readouterr().err.splitlines()[-1] == (
        "trustplane-hub: no such policy or key: nope"
    )
