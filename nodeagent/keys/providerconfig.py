"""The key provider's configuration: ``/etc/trustplane/keyprovider.toml``.

Read once by ``trustplane-keyprovider`` at start (``TRUSTPLANE_KEYPROVIDER_CONFIG`` names
another file); an absent default file means the defaults, which are what a host needs (the
agent's socket). A pipeline that wraps keys names the hub and a token file::

    socket = "/run/trustplane-agent/keys.sock"   # keyunwrap: the agent daemon's key socket
    timeout = 60                                  # seconds for one wrap or unwrap
    [hub]                                         # keywrap only
    url = "https://hub.example.com:8443"
    ca_file = "/etc/trustplane/hub-ca.pem"
    token_file = "/etc/trustplane/keyprovider.token"   # a pipeline-role token, mode 0600

Every key is documented in docs/agent-config.md ("The key provider's configuration"). Problems
raise :class:`ProviderConfigError` naming the file and key. The token itself is read only when a
wrap needs it (:func:`read_token`), and a token file that others may read is refused.

The config is an immutable ``NamedTuple`` with ``str`` paths rather than a frozen dataclass with
``Path``s: ocicrypt starts the provider once per layer, and ``dataclasses`` and ``pathlib`` are
the slowest imports it would otherwise pay for.
"""

from __future__ import annotations

import os
import stat
import tomllib
from typing import Any, Final, NamedTuple

from nodeagent.errors import NodeAgentError

DEFAULT_PROVIDER_CONFIG: Final = "/etc/trustplane/keyprovider.toml"
CONFIG_ENV: Final = "TRUSTPLANE_KEYPROVIDER_CONFIG"
MAX_TOKEN_BYTES: Final = 4096


class ProviderConfigError(NodeAgentError):
    reason = "config.invalid"


class ProviderConfig(NamedTuple):
    socket: str = "/run/trustplane-agent/keys.sock"
    timeout: float = 60.0
    name: str = "trustplane"  # the provider's name in ocicrypt's config and its parameters
    hub_url: str | None = None
    hub_ca_file: str | None = None
    hub_token_file: str | None = None


def _fail(path: str, key: str, problem: str) -> ProviderConfigError:
    return ProviderConfigError(f"{path}: {key}: {problem}" if key else f"{path}: {problem}")


def _text(path: str, key: str, value: object) -> str:
    if not isinstance(value, str) or not value or len(value) > 4096:
        raise _fail(path, key, "expected a non-empty string")
    return value


def _abs_path(path: str, key: str, value: object) -> str:
    p = _text(path, key, value)
    if not os.path.isabs(p):
        raise _fail(path, key, "must be an absolute path")
    return p


def _top(path: str, cfg: dict[str, Any], doc: dict[str, Any]) -> None:
    for key, value in doc.items():
        if key == "socket":
            cfg["socket"] = _abs_path(path, key, value)
        elif key == "timeout":
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise _fail(path, key, "expected a number")
            if not 1 <= value <= 600:
                raise _fail(path, key, "must be between 1 and 600")
            cfg["timeout"] = float(value)
        elif key == "name":
            name = _text(path, key, value)
            if not name.replace("-", "").replace("_", "").isalnum() or len(name) > 64:
                raise _fail(path, key, "letters, digits, - and _ only")
            cfg["name"] = name
        elif key == "hub":
            if not isinstance(value, dict):
                raise _fail(path, key, "expected a table")
            _hub(path, cfg, value)
        else:
            raise _fail(path, key, "unknown key")


def _hub(path: str, cfg: dict[str, Any], doc: dict[str, Any]) -> None:
    for key, value in doc.items():
        if key == "url":
            url = _text(path, f"hub.{key}", value)
            if not url.startswith(("https://", "http://")):
                raise _fail(path, "hub.url", "must start with https:// (or http:// for tests)")
            cfg["hub_url"] = url.rstrip("/")
        elif key == "ca_file":
            cfg["hub_ca_file"] = _abs_path(path, "hub.ca_file", value)
        elif key == "token_file":
            cfg["hub_token_file"] = _abs_path(path, "hub.token_file", value)
        else:
            raise _fail(path, f"hub.{key}", "unknown key")


def load_provider_config(environ: dict[str, str] | os._Environ[str]) -> ProviderConfig:
    """The file named by ``TRUSTPLANE_KEYPROVIDER_CONFIG`` (which must exist), else the
    default file when it exists, else the defaults. Raises :class:`ProviderConfigError`."""
    named = environ.get(CONFIG_ENV)
    path = named or DEFAULT_PROVIDER_CONFIG
    try:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
    except FileNotFoundError:
        if named:
            raise _fail(path, "", "no such file") from None
        return ProviderConfig()
    except OSError as e:
        raise _fail(path, "", f"cannot read: {e.strerror or e}") from None
    except tomllib.TOMLDecodeError as e:
        raise _fail(path, "", f"not valid TOML: {e}") from None
    values: dict[str, Any] = {}
    _top(path, values, doc)
    return ProviderConfig(**values)


def read_token(path: str) -> str:
    """The bearer token in ``path`` (one line). Raises :class:`ProviderConfigError` when the
    file is missing, readable by group or others, empty or too long."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as e:
        raise ProviderConfigError(f"cannot read the token file {path}: {e.strerror}") from None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_IMODE(mode) & 0o077:
            raise ProviderConfigError(
                f"the token file {path} may be read by others "
                f"(mode {stat.S_IMODE(mode):04o}): chmod 0600 it"
            )
        data = os.read(fd, MAX_TOKEN_BYTES + 1)
    finally:
        os.close(fd)
    token = data.decode("utf-8", "replace").strip()
    if not token or len(data) > MAX_TOKEN_BYTES or not token.isprintable() or " " in token:
        raise ProviderConfigError(f"the token file {path} does not hold one token")
    return token
