"""The hub's state directory: where the master key is read from (systemd credential or
``master.key``) and the errors that name the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub.statedir import (
    StateDirError,
    create_state_dir,
    credentials_directory,
    load_hub_keys,
    master_key_path,
)

NOW = 1_800_000_000.0


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("hub") / "state"
    create_state_dir(path, ["hub.test"], NOW)
    return path


def test_without_credentials_the_state_dirs_master_key_is_read(state: Path) -> None:
    assert load_hub_keys(state).master_key == (state / "master.key").read_bytes()
    assert load_hub_keys(state, None).master_key == (state / "master.key").read_bytes()


def test_the_systemd_credential_wins_over_master_key(state: Path, tmp_path: Path) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "trustplane-hub.master-key").write_bytes(bytes(range(32)))
    assert master_key_path(state, creds) == creds / "trustplane-hub.master-key"
    assert load_hub_keys(state, creds).master_key == bytes(range(32))
    assert load_hub_keys(state, creds).master_key != (state / "master.key").read_bytes()


def test_a_credentials_dir_without_the_credential_falls_back(state: Path, tmp_path: Path) -> None:
    (tmp_path / "other.cred").write_bytes(bytes(32))
    assert master_key_path(state, tmp_path) == state / "master.key"
    assert load_hub_keys(state, tmp_path).master_key == (state / "master.key").read_bytes()


def test_a_short_credential_is_refused_by_name(state: Path, tmp_path: Path) -> None:
    (tmp_path / "trustplane-hub.master-key").write_bytes(b"short\n")
    with pytest.raises(StateDirError) as info:
        load_hub_keys(state, tmp_path)
    assert str(info.value) == (
        f"{tmp_path / 'trustplane-hub.master-key'}: expected 32 bytes, got 6"
    )


def test_credential_only_hub_needs_no_master_key_file(tmp_path: Path) -> None:
    state = tmp_path / "state"
    create_state_dir(state, [], NOW)
    (state / "master.key").unlink()
    with pytest.raises(StateDirError, match=r"master\.key: cannot read"):
        load_hub_keys(state)
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "trustplane-hub.master-key").write_bytes(b"\x07" * 32)
    assert load_hub_keys(state, creds).master_key == b"\x07" * 32


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, None),
        ({"CREDENTIALS_DIRECTORY": ""}, None),
        ({"CREDENTIALS_DIRECTORY": "/run/credentials/x"}, Path("/run/credentials/x")),
    ],
)
def test_credentials_directory_from_the_environment(
    environ: dict[str, str], expected: Path | None
) -> None:
    assert credentials_directory(environ) == expected
