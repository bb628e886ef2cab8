"""hub.config: defaults, drop-in order, and errors that name file, key and problem."""

from __future__ import annotations

from pathlib import Path

import pytest

import hub.config
from hub.config import ConfigError, HubConfig, config_keys, load_config


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_missing_file_gives_demo_defaults(tmp_path: Path) -> None:
    config = load_config(tmp_path / "hub.toml")
    assert config == HubConfig()
    assert config.server.listen == "127.0.0.1:8443"
    assert config.server.tls is True
    assert config.attestation.nonce_ttl == 120.0
    assert config.attestation.report_validity == 600.0
    assert config.attestation.interval == 60.0
    assert dict(config.attestation.pcr_selection) == {"sha256": (0, 1, 2, 3, 4, 5, 6, 7)}
    assert config.reports.history == 20


def test_dropins_override_in_sorted_order(tmp_path: Path) -> None:
    main = write(tmp_path / "hub.toml", '[server]\nlisten = "0.0.0.0:9000"\ntls = false\n')
    write(tmp_path / "hub.d" / "20-b.toml", "[reports]\nhistory = 7\n")
    write(tmp_path / "hub.d" / "10-a.toml", "[reports]\nhistory = 3\n[state]\ndir = '/x'\n")
    config = load_config(main)
    assert config.server.listen == "0.0.0.0:9000"
    assert config.server.port == 9000
    assert config.server.tls is False
    assert config.reports.history == 7
    assert config.state.dir == Path("/x")


def test_pcr_selection_is_parsed(tmp_path: Path) -> None:
    main = write(
        tmp_path / "hub.toml", "[attestation]\npcr_selection = {sha1 = [7, 0], sha256 = [17]}\n"
    )
    assert dict(load_config(main).attestation.pcr_selection) == {"sha1": (0, 7), "sha256": (17,)}


@pytest.mark.parametrize(
    ("text", "key", "problem"),
    [
        ("[server]\nlisen = 'x:1'\n", "server.lisen", "unknown key"),
        ("[sever]\nlisten = 'x:1'\n", "sever", "unknown table"),
        ("[server]\ntls = 'yes'\n", "server.tls", "expected true or false, got str"),
        ("[server]\nlisten = 'nohostport'\n", "server.listen", "expected HOST:PORT"),
        ("[reports]\nhistory = 0\n", "reports.history", "must be greater than 0"),
        ("[reports]\nhistory = 1.5\n", "reports.history", "expected an integer, got float"),
        ("[attestation]\nnonce_ttl = true\n", "attestation.nonce_ttl", "expected a number"),
        (
            "[attestation]\npcr_selection = {md5 = [0]}\n",
            "attestation.pcr_selection",
            "unknown PCR bank 'md5'",
        ),
        (
            "[attestation]\npcr_selection = {sha256 = [24]}\n",
            "attestation.pcr_selection",
            "PCR indices 0..23",
        ),
        ("[enrollment]\ntokens = 'abc'\n", "enrollment.tokens", "expected a list"),
        ("server = 3\n", "server", "expected a table"),
    ],
)
def test_errors_name_file_key_and_problem(
    tmp_path: Path, text: str, key: str, problem: str
) -> None:
    main = write(tmp_path / "hub.toml", text)
    with pytest.raises(ConfigError) as info:
        load_config(main)
    assert info.value.path == str(main)
    assert info.value.key == key
    assert problem in info.value.problem
    assert str(info.value).startswith(f"{main}: {key}: ")


def test_error_in_dropin_names_the_dropin(tmp_path: Path) -> None:
    main = write(tmp_path / "hub.toml", "[reports]\nhistory = 5\n")
    bad = write(tmp_path / "hub.d" / "50-bad.toml", "[reports]\nhistory = 'many'\n")
    with pytest.raises(ConfigError) as info:
        load_config(main)
    assert info.value.path == str(bad)
    assert info.value.key == "reports.history"


def test_invalid_toml_is_a_config_error(tmp_path: Path) -> None:
    main = write(tmp_path / "hub.toml", "[server\n")
    with pytest.raises(ConfigError) as info:
        load_config(main)
    assert info.value.path == str(main)
    assert "not valid TOML" in info.value.problem


def test_require_ek_certificate_needs_a_bundle(tmp_path: Path) -> None:
    main = write(tmp_path / "hub.toml", "[enrollment]\nrequire_ek_certificate = true\n")
    with pytest.raises(ConfigError) as info:
        load_config(main)
    assert info.value.key == "enrollment.require_ek_certificate"


def test_every_key_is_documented() -> None:
    doc = Path(__file__).resolve().parents[2] / "docs" / "hub-config.md"
    text = doc.read_text()
    for key in config_keys():
        assert f"`{key}`" in text, key
        assert key in (hub.config.__doc__ or ""), key


def test_state_database_is_sqlite_or_a_postgresql_url_never_echoed(tmp_path: Path) -> None:
    assert load_config(tmp_path / "absent.toml").state.database == "sqlite"
    url = "postgresql://hub:s3cret@db.example:5432/trustplane?sslmode=verify-full"
    config = load_config(write(tmp_path / "a" / "hub.toml", f"[state]\ndatabase = '{url}'\n"))
    assert config.state.database == url
    assert "s3cret" not in repr(config)  # a password in the URL stays out of logs
    empty = load_config(write(tmp_path / "b" / "hub.toml", "[state]\ndatabase = ''\n"))
    assert empty.state.database == "sqlite"
    for text, problem in (
        ("mysql://hub:s3cret@db/x", 'expected "sqlite" or a postgresql:// URL'),
        ("postgresql://hub:s3cret@db/x\\u0000", "contains control characters"),
        ("postgresql://s3cret@db/" + "x" * 2048, "longer than 2048 characters"),
    ):
        main = write(tmp_path / "c" / "hub.toml", f'[state]\ndatabase = "{text}"\n')
        with pytest.raises(ConfigError) as info:
            load_config(main)
        assert (info.value.key, info.value.problem) == ("state.database", problem)
        assert "s3cret" not in str(info.value)
