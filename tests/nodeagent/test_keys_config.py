"""``[keys]`` in agent.toml and the provider's keyprovider.toml: values, defaults, refusals."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from nodeagent.config import ConfigError, KeysConfig, load_config
from nodeagent.keys.providerconfig import (
    ProviderConfig,
    ProviderConfigError,
    load_provider_config,
    read_token,
)


def agent(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(text)
    return path


def test_keys_table_values_and_defaults(tmp_path: Path) -> None:
    assert load_config(agent(tmp_path, "")).keys == KeysConfig()
    cfg = load_config(
        agent(
            tmp_path,
            '[keys]\nsocket = "/run/x/k.sock"\nbatch_window = 0\nbatch_max_wait = 1.5\n'
            "cache = false\nmax_connections = 8\nrequest_timeout = 5\n",
        )
    )
    assert cfg.keys == KeysConfig(
        socket=Path("/run/x/k.sock"),
        batch_window=0.0,
        batch_max_wait=1.5,
        cache=False,
        max_connections=8,
        request_timeout=5.0,
    )


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ('socket = "keys.sock"', "keys.socket: must be an absolute path (got 'keys.sock')"),
        (f'socket = "/{"x" * 120}"', "keys.socket: a unix socket path has at most 107 bytes"),
        ("batch_window = 2", "keys.batch_window: must be between 0 and 1 (got 2)"),
        ("max_connections = 0", "keys.max_connections: must be between 1 and 1024 (got 0)"),
        ("cache = 1", "keys.cache: expected true or false (got 1)"),
        ("sockets = 1", "keys.sockets: unknown key"),
    ],
)
def test_keys_table_refusals(tmp_path: Path, line: str, problem: str) -> None:
    path = agent(tmp_path, f"[keys]\n{line}\n")
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert e.value.message.startswith(f"{path}: {problem}")


def provider_env(tmp_path: Path, text: str) -> dict[str, str]:
    path = tmp_path / "keyprovider.toml"
    path.write_text(text)
    return {"TRUSTPLANE_KEYPROVIDER_CONFIG": str(path)}


def test_provider_config_values_and_defaults(tmp_path: Path) -> None:
    assert load_provider_config({}) == ProviderConfig()  # no default file on this machine
    env = provider_env(
        tmp_path,
        'socket = "/run/a.sock"\ntimeout = 5\nname = "tp"\n'
        '[hub]\nurl = "https://hub:8443/"\nca_file = "/etc/ca.pem"\ntoken_file = "/etc/t"\n',
    )
    assert load_provider_config(env) == ProviderConfig(
        socket="/run/a.sock",
        timeout=5.0,
        name="tp",
        hub_url="https://hub:8443",
        hub_ca_file="/etc/ca.pem",
        hub_token_file="/etc/t",
    )


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("socket = 'rel.sock'", "socket: must be an absolute path"),
        ("timeout = 0", "timeout: must be between 1 and 600"),
        ("timeout = true", "timeout: expected a number"),
        ("name = 'a b'", "name: letters, digits, - and _ only"),
        ("[hub]\nurl = 'ftp://x'", "hub.url: must start with https:// (or http:// for tests)"),
        ("[hub]\ntoken = 'abc'", "hub.token: unknown key"),
        ("hub = 1", "hub: expected a table"),
        ("other = 1", "other: unknown key"),
        ("socket = ", "not valid TOML"),
    ],
)
def test_provider_config_refusals(tmp_path: Path, text: str, problem: str) -> None:
    env = provider_env(tmp_path, text + "\n")
    with pytest.raises(ProviderConfigError) as e:
        load_provider_config(env)
    assert e.value.message.startswith(f"{tmp_path / 'keyprovider.toml'}: {problem}")


def test_a_named_provider_config_must_exist(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(ProviderConfigError) as e:
        load_provider_config({"TRUSTPLANE_KEYPROVIDER_CONFIG": str(missing)})
    assert e.value.message == f"{missing}: no such file"


def test_token_file_must_be_private_and_hold_one_token(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("tp_secret_token\n")
    token.chmod(0o600)
    assert read_token(str(token)) == "tp_secret_token"
    token.chmod(0o640)
    with pytest.raises(ProviderConfigError) as e:
        read_token(str(token))
    assert e.value.message == (
        f"the token file {token} may be read by others (mode 0640): chmod 0600 it"
    )
    token.chmod(0o600)
    for bad in ("", "two tokens\n", "x" * 5000):
        token.write_text(bad)
        with pytest.raises(ProviderConfigError) as e:
            read_token(str(token))
        assert e.value.message == f"the token file {token} does not hold one token"
    link = tmp_path / "link"
    os.symlink(token, link)
    with pytest.raises(ProviderConfigError) as e:
        read_token(str(link))
    assert e.value.message.startswith(f"cannot read the token file {link}: ")
