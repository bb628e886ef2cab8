"""``trustplane-hub clusters add|list|remove`` on a real state directory and SQLite database:
exit codes and reason-bearing messages for bad input, and the kubeconfig sealed at rest (its
secret never in the database file, never printed). No API server is involved."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from hub import cli as hub_cli
from hub.clusters.sealing import unseal
from hub.statedir import DB_FILE, load_hub_keys
from tests.hub.harness import make_state

TOKEN = "s3cr3t-bearer-token-for-the-test-cluster"


def kubeconfig(path: Path, *, context: str = "ctx") -> Path:
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
        "users": [{"name": "u", "user": {"token": TOKEN}}],
        "contexts": [{"name": context, "context": {"cluster": "c", "user": "u"}}],
        "current-context": context,
    }
    path.write_text(json.dumps(doc))
    return path


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return make_state(tmp_path).state.dir


def hub(state: Path, *args: str) -> int:
    return hub_cli.main([*args, "--config", str(state / "absent.toml"), "--state-dir", str(state)])


def test_add_seals_the_kubeconfig_and_list_never_shows_it(
    state: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = kubeconfig(tmp_path / "kc")
    assert hub(state, "clusters", "add", "prod", "--kubeconfig", str(path)) == 0
    assert hub(state, "clusters", "add", "local", "--in-cluster") == 0
    assert hub(state, "clusters", "list") == 0
    out, err = capsys.readouterr()
    assert out.splitlines()[-2:] == [
        "local\tin-cluster\tnot connected\tnever synced\t",
        "prod\tcontext=ctx\tnot connected\tnever synced\t",
    ]
    assert TOKEN not in out + err
    for file in state.iterdir():
        if file.name.startswith(DB_FILE):
            assert TOKEN.encode() not in file.read_bytes()
    rows = (
        sqlite3.connect(state / DB_FILE)
        .execute("SELECT name, kubeconfig, context FROM clusters ORDER BY name")
        .fetchall()
    )
    assert [(r[0], r[2]) for r in rows] == [("local", None), ("prod", "ctx")]
    assert rows[0][1] is None
    master = load_hub_keys(state, None).master_key
    assert json.loads(unseal(master, "prod", rows[1][1])) == json.loads(path.read_text())

    actions = (
        sqlite3.connect(state / DB_FILE)
        .execute("SELECT action, subject FROM audit_log WHERE action LIKE 'cluster.%' ORDER BY id")
        .fetchall()
    )
    assert actions == [("cluster.add", "prod"), ("cluster.add", "local")]
    assert hub(state, "clusters", "remove", "prod") == 0
    assert hub(state, "clusters", "list") == 0
    assert capsys.readouterr().out.splitlines()[-1] == (
        "local\tin-cluster\tnot connected\tnever synced\t"
    )


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["add", "Prod", "--in-cluster"], 2, "is not a DNS label"),
        (["add", "a" * 64, "--in-cluster"], 2, "is not a DNS label"),
        (["add", "p", "--in-cluster", "--context", "c"], 2, "--context goes with --kubeconfig"),
        (["add", "p", "--kubeconfig", "/nonexistent/kc"], 1, "cannot read"),
        (["remove", "nope"], 1, "no such cluster: nope"),
    ],
)
def test_bad_input_is_refused_with_a_reason(
    state: Path, args: list[str], code: int, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert hub(state, "clusters", *args) == code
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\xff\xfe not utf-8", "not valid YAML"),
        (b"key: [unclosed", "not valid YAML"),
        (b"- a list", "not a YAML mapping"),
        (b"apiVersion: v1\nkind: Config\ncontexts: []\n", "no current-context"),
    ],
)
def test_a_kubeconfig_that_cannot_be_used_is_a_usage_error(
    state: Path, tmp_path: Path, content: bytes, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "kc"
    path.write_bytes(content)
    assert hub(state, "clusters", "add", "p", "--kubeconfig", str(path)) == 2
    assert message in capsys.readouterr().err


def test_unknown_context_and_duplicate_names_are_refused(
    state: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = kubeconfig(tmp_path / "kc")
    assert hub(state, "clusters", "add", "p", "--kubeconfig", str(path), "--context", "other") == 2
    assert "context 'other' is not in the kubeconfig" in capsys.readouterr().err
    assert hub(state, "clusters", "add", "p", "--kubeconfig", str(path)) == 0
    assert hub(state, "clusters", "add", "p", "--in-cluster") == 2
    assert "cluster p is already registered" in capsys.readouterr().err


def test_the_stored_kubeconfig_is_minified_and_carries_its_files(
    state: Path, tmp_path: Path
) -> None:
    files = tmp_path / "creds"
    files.mkdir()
    (files / "ca.pem").write_bytes(b"CA PEM")
    (files / "client.pem").write_bytes(b"CLIENT CERT")
    (files / "client.key").write_bytes(b"CLIENT KEY")
    (files / "token").write_text("tok-from-file\n")
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "c",
                "cluster": {"server": "https://k:6443", "certificate-authority": "creds/ca.pem"},
            },
            {"name": "other", "cluster": {"server": "https://o:6443"}},
        ],
        "users": [
            {
                "name": "u",
                "user": {
                    "client-certificate": "creds/client.pem",
                    "client-key": str(files / "client.key"),
                },
            },
            {"name": "t", "user": {"tokenFile": "creds/token"}},
            {"name": "secret-other", "user": {"token": "not-for-the-hub"}},
        ],
        "contexts": [
            {"name": "a", "context": {"cluster": "c", "user": "u"}},
            {"name": "b", "context": {"cluster": "c", "user": "t"}},
            {"name": "x", "context": {"cluster": "other", "user": "secret-other"}},
        ],
        "current-context": "x",
    }
    path = tmp_path / "kc"
    path.write_text(json.dumps(doc))
    assert hub(state, "clusters", "add", "a", "--kubeconfig", str(path), "--context", "a") == 0
    assert hub(state, "clusters", "add", "b", "--kubeconfig", str(path), "--context", "b") == 0
    master = load_hub_keys(state, None).master_key
    rows = dict(sqlite3.connect(state / DB_FILE).execute("SELECT name, kubeconfig FROM clusters"))
    stored_a = json.loads(unseal(master, "a", rows["a"]))
    assert stored_a == {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "c",
                "cluster": {"server": "https://k:6443", "certificate-authority-data": "Q0EgUEVN"},
            }
        ],
        "users": [
            {
                "name": "u",
                "user": {
                    "client-certificate-data": "Q0xJRU5UIENFUlQ=",
                    "client-key-data": "Q0xJRU5UIEtFWQ==",
                },
            }
        ],
        "contexts": [{"name": "a", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "a",
    }
    stored_b = json.loads(unseal(master, "b", rows["b"]))
    assert stored_b["users"] == [{"name": "t", "user": {"token": "tok-from-file"}}]
    assert b"not-for-the-hub" not in unseal(master, "b", rows["b"])
    (files / "client.key").unlink()
    assert hub(state, "clusters", "add", "c", "--kubeconfig", str(path), "--context", "a") == 2
