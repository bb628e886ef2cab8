"""trustplane-hub's CLI: init, tokens, hosts, audit; exit codes 0/1/2."""

from __future__ import annotations

import http.client
import signal
import socket
import sqlite3
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography import x509

from hub.cli import main

REPO = Path(__file__).resolve().parents[2]


def init(state: Path, *extra: str) -> int:
    return main(
        ["init", "--config", str(state.parent / "none.toml"), "--state-dir", str(state), *extra]
    )


def test_init_creates_private_state_and_prints_admin_token_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "state"
    assert init(state, "--hostname", "hub.example") == 0
    out = capsys.readouterr().out
    token = out.strip().rsplit(" ", 1)[-1]
    assert token.startswith("tph_")
    assert state.stat().st_mode & 0o777 == 0o700
    for name in (
        "ca.pem",
        "ca.key",
        "server.pem",
        "server.key",
        "jws.key",
        "tag-ca.pem",
        "tag-ca.key",
        "master.key",
        "hub.db",
    ):
        assert (state / name).stat().st_mode & 0o777 == 0o600, name
    # the token is stored only as a hash
    db = sqlite3.connect(state / "hub.db")
    rows = db.execute("SELECT hash, role, name FROM tokens").fetchall()
    assert len(rows) == 1
    assert rows[0][1:] == ("admin", "initial-admin")
    assert token not in str(rows)
    assert token.encode() not in (state / "hub.db").read_bytes()
    cert = x509.load_pem_x509_certificates((state / "server.pem").read_bytes())[0]
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["hub.example", "localhost"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]


def test_init_refuses_to_overwrite_without_force(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "state"
    assert init(state) == 0
    before = (state / "ca.pem").read_bytes()
    assert init(state) == 2
    assert "--force" in capsys.readouterr().err
    assert (state / "ca.pem").read_bytes() == before
    assert init(state, "--force") == 0
    assert (state / "ca.pem").read_bytes() != before


def test_tokens_create_list_revoke(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "state"
    cfg = ["--config", str(tmp_path / "none.toml"), "--state-dir", str(state)]
    assert init(state) == 0
    capsys.readouterr()
    assert main(["tokens", "create", "--role", "viewer", "--name", "dash", *cfg]) == 0
    assert capsys.readouterr().out.strip().startswith("tph_")
    assert main(["tokens", "list", *cfg]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines == ["1\tadmin\tinitial-admin\tactive", "2\tviewer\tdash\tactive"]
    assert main(["tokens", "revoke", "2", *cfg]) == 0
    assert main(["tokens", "revoke", "2", *cfg]) == 1
    assert main(["tokens", "list", *cfg]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == "2\tviewer\tdash\trevoked"
    assert main(["audit", "verify", *cfg]) == 0
    assert "audit log intact: 3 rows" in capsys.readouterr().out


def test_hosts_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "state"
    cfg = ["--config", str(tmp_path / "none.toml"), "--state-dir", str(state)]
    assert init(state) == 0
    assert main(["hosts", "list", *cfg]) == 0
    assert main(["hosts", "approve", "ab" * 32, *cfg]) == 1
    assert "no such host" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["", "   ", "tab\there", "x" * 101])
def test_tokens_create_refuses_a_bad_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    state = tmp_path / "state"
    cfg = ["--config", str(tmp_path / "none.toml"), "--state-dir", str(state)]
    assert init(state) == 0
    capsys.readouterr()
    assert main(["tokens", "create", "--role", "viewer", "--name", name, *cfg]) == 2
    assert capsys.readouterr().err.startswith("trustplane-hub: token name ")
    rows = sqlite3.connect(state / "hub.db").execute("SELECT name FROM tokens").fetchall()
    assert rows == [("initial-admin",)]


def test_bad_tags_are_exit_2_before_the_host_is_looked_up(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "state"
    cfg = ["--config", str(tmp_path / "none.toml"), "--state-dir", str(state)]
    assert init(state) == 0
    capsys.readouterr()
    assert main(["tags", "set", *cfg, "nosuch", "bad key=1"]) == 2
    assert capsys.readouterr().err.startswith("trustplane-hub: tag key 'bad key'")
    assert main(["tags", "set", *cfg, "nosuch", "region=EU"]) == 1
    assert capsys.readouterr().err == "trustplane-hub: no such host: nosuch\n"


def test_hosts_show_unknown_host_has_the_prefix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "state"
    cfg = ["--config", str(tmp_path / "none.toml"), "--state-dir", str(state)]
    assert init(state) == 0
    capsys.readouterr()
    assert main(["hosts", "show", "nosuch", *cfg]) == 1
    assert capsys.readouterr().err == "trustplane-hub: no such host: nosuch\n"


def test_bad_config_is_exit_2_naming_file_and_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    conf = tmp_path / "hub.toml"
    conf.write_text("[server]\nport = 1\n")
    assert main(["hosts", "list", "--config", str(conf)]) == 2
    assert f"{conf}: server.port: unknown key" in capsys.readouterr().err


def test_missing_state_is_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(
            [
                "hosts",
                "list",
                "--config",
                str(tmp_path / "x.toml"),
                "--state-dir",
                str(tmp_path / "s"),
            ]
        )
        == 1
    )
    assert "trustplane-hub init" in capsys.readouterr().err


def test_usage_and_version_from_the_entry_point() -> None:
    script = [sys.executable, "-c", "import sys; from hub.cli import main; sys.exit(main())"]
    bad = subprocess.run(
        [*script, "frobnicate"], capture_output=True, text=True, cwd=REPO, check=False
    )
    assert bad.returncode == 2
    version = subprocess.run(
        [*script, "--version"], capture_output=True, text=True, cwd=REPO, check=False
    )
    assert version.returncode == 0
    assert version.stdout.startswith("trustplane-hub ")
    helptext = subprocess.run(
        [*script, "--help"], capture_output=True, text=True, cwd=REPO, check=False
    )
    assert "Exit codes: 0 ok, 1 runtime error, 2 usage or configuration error" in helptext.stdout


def test_run_serves_until_terminated(tmp_path: Path) -> None:
    state = tmp_path / "state"
    assert init(state) == 0
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from hub.cli import main; sys.exit(main())",
            "run",
            "--config",
            str(tmp_path / "none.toml"),
            "--state-dir",
            str(state),
            "--listen",
            f"127.0.0.1:{port}",
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        ctx = ssl.create_default_context(cafile=str(state / "ca.pem"))
        deadline = time.monotonic() + 20
        while True:
            try:
                conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=2)
                conn.request("GET", "/health")
                resp = conn.getresponse()
                assert (resp.status, resp.read()) == (200, b'{"status": "ok"}')
                assert resp.getheader("Content-Type", "").startswith("application/json")
                conn.close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
