"""Config loading: defaults, drop-ins, and errors that name the file, key and problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from nodeagent.config import AgentConfig, ConfigError, load_config


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_defaults_when_no_file_and_no_dropins(tmp_path: Path) -> None:
    cfg = load_config(None, dropins=tmp_path / "none.d")
    assert cfg == AgentConfig()
    assert cfg.tpm.tcti == "device:/dev/tpmrm0"
    assert cfg.attestation.interval == 60.0
    assert cfg.evidence.txt_registers == 0xFED30000
    assert cfg.evidence.txt_heap_base_offset == 0x300
    assert cfg.evidence.txt_heap_size_offset == 0x308


def test_file_and_dropins_in_name_order(tmp_path: Path) -> None:
    main = _write(
        tmp_path / "agent.toml",
        'state_dir = "/srv/agent"\n[hub]\nurl = "https://hub.example:9443/"\n'
        "[attestation]\ninterval = 30\nqueue_max = 4\n",
    )
    _write(tmp_path / "agent.d" / "20-b.toml", "[attestation]\ninterval = 10\n")
    _write(
        tmp_path / "agent.d" / "10-a.toml", "[attestation]\ninterval = 20\n[tpm]\npcrs = [7, 0]\n"
    )
    _write(tmp_path / "agent.d" / "ignored.txt", "not = toml = at all")
    cfg = load_config(main)
    assert cfg.state_dir == Path("/srv/agent")
    assert cfg.hub.url == "https://hub.example:9443"
    assert cfg.attestation.interval == 10.0
    assert cfg.attestation.queue_max == 4
    assert cfg.tpm.pcrs == (0, 7)
    assert cfg.tpm.tcti == "device:/dev/tpmrm0"


@pytest.mark.parametrize(
    ("text", "key", "problem"),
    [
        ("[hub]\nurl = 5\n", "hub.url", "expected a non-empty string (got 5)"),
        ('[hub]\nurl = "ftp://x"\n', "hub.url", "must start with https://"),
        ("[hub]\nbogus = 1\n", "hub.bogus", "unknown key"),
        ("bogus = 1\n", "bogus", "unknown key"),
        ("hub = 1\n", "hub", "expected a table"),
        ("[tpm]\npcrs = [1, 1]\n", "tpm.pcrs", "PCR indices must be unique"),
        ("[tpm]\npcrs = [24]\n", "tpm.pcrs", "must be between 0 and 23"),
        ('[tpm]\nak_algorithm = "dsa"\n', "tpm.ak_algorithm", "must be one of ecc, rsa"),
        ('[tpm]\ntcti = "usb:x"\n', "tpm.tcti", "must be device:PATH"),
        ("[attestation]\ninterval = 0\n", "attestation.interval", "must be between 1 and 86400"),
        ("[attestation]\ninterval = true\n", "attestation.interval", "expected a number"),
        ('[evidence]\ntxt = "yes"\n', "evidence.txt", "expected true or false"),
        ('log_level = "loud"\n', "log_level", "must be one of debug, info, warning, error"),
        (
            "[attestation]\nbackoff_initial = 10\nbackoff_max = 5\n",
            "attestation.backoff_initial",
            "must not exceed attestation.backoff_max",
        ),
    ],
)
def test_bad_values_name_file_key_and_problem(
    tmp_path: Path, text: str, key: str, problem: str
) -> None:
    path = _write(tmp_path / "agent.toml", text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.key == key
    assert info.value.path == str(path)
    assert problem in info.value.problem
    assert str(info.value).startswith(f"{path}: {key}: ")


def test_error_in_dropin_names_the_dropin(tmp_path: Path) -> None:
    main = _write(tmp_path / "agent.toml", "[hub]\ntimeout = 5\n")
    bad = _write(tmp_path / "agent.d" / "50-bad.toml", "[hub]\ntimeout = -1\n")
    with pytest.raises(ConfigError) as info:
        load_config(main)
    assert info.value.path == str(bad)
    assert info.value.key == "hub.timeout"


def test_invalid_toml_and_missing_explicit_file(tmp_path: Path) -> None:
    path = _write(tmp_path / "agent.toml", "[hub\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.key == ""
    assert info.value.problem.startswith("not valid TOML")
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "absent.toml")
    assert info.value.problem == "cannot read: No such file or directory"


def test_config_is_frozen() -> None:
    cfg = AgentConfig()
    with pytest.raises(AttributeError):
        cfg.log_level = "debug"  # type: ignore[misc]
