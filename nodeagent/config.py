"""The agent's configuration: TOML files loaded once into a frozen dataclass.

:func:`load_config` reads ``agent.toml`` and then every ``agent.d/*.toml`` drop-in in name
order (a drop-in replaces single keys of a table, never whole tables), checks every key's type
and range, and returns an :class:`AgentConfig`. Anything wrong raises :class:`ConfigError`
naming the file, the key and the problem. Nothing else in the agent reads configuration files
or the environment for settings; the entry point loads this once and passes it down.
Every key is documented in ``docs/agent-config.md``.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from nodeagent.errors import NodeAgentError

DEFAULT_CONFIG: Final = Path("/etc/trustplane/agent.toml")

_PCR_BANKS: Final = frozenset({"sha1", "sha256", "sha384", "sha512"})


class ConfigError(NodeAgentError):
    """A configuration file that cannot be read or holds a bad value."""

    reason = "config.invalid"

    def __init__(self, path: Path | str, key: str, problem: str) -> None:
        where = f"{path}: {key}" if key else str(path)
        super().__init__(f"{where}: {problem}")
        self.path = str(path)
        self.key = key
        self.problem = problem


@dataclass(frozen=True, slots=True)
class HubConfig:
    """Where the hub is and how to reach it."""

    url: str = "https://127.0.0.1:8443"
    ca_file: Path | None = None
    registration_token: str | None = None
    node_name: str | None = None
    hostname: str | None = None  # the name this host reports; None: the system's hostname
    timeout: float = 15.0
    max_response_bytes: int = 1024 * 1024
    renew_fraction: float = 0.33


@dataclass(frozen=True, slots=True)
class TpmConfig:
    """Which TPM to open and what to quote."""

    tcti: str = "device:/dev/tpmrm0"
    ak_algorithm: str = "ecc"
    ek_algorithm: str = "rsa"
    pcr_bank: str = "sha256"
    pcrs: tuple[int, ...] = (0, 1, 2, 3, 4, 5, 6, 7)
    watch_devices: bool = True
    device: str | None = None

    @property
    def watched_device(self) -> str | None:
        """The device node whose udev events matter: ``device``, else the device: TCTI's path."""
        if self.device:
            return self.device
        kind, _, rest = self.tcti.partition(":")
        return rest.split(",")[0] if kind == "device" and rest else None


@dataclass(frozen=True, slots=True)
class EvidenceConfig:
    """Where the evidence sources are (paths and TXT register addresses)."""

    uefi_log: Path = Path("/sys/kernel/security/tpm0/binary_bios_measurements")
    txt: bool = True
    txt_memory: Path = Path("/dev/mem")
    txt_registers: int = 0xFED30000
    txt_heap_base_offset: int = 0x300
    txt_heap_size_offset: int = 0x308
    txt_heap_max_bytes: int = 64 * 1024 * 1024
    txt_log_pointer: str = "physical"
    dmi_uuid: Path = Path("/sys/class/dmi/id/product_uuid")
    boot_id: Path = Path("/proc/sys/kernel/random/boot_id")


@dataclass(frozen=True, slots=True)
class AttestationConfig:
    """When to attest and how to behave when the hub is away."""

    interval: float = 60.0
    jitter: float = 0.1
    backoff_initial: float = 1.0
    backoff_max: float = 300.0
    queue_max: int = 16
    step_timeout: float = 120.0


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    """``[metrics]``: Prometheus metrics, off unless one of the two is set."""

    listen: tuple[str, int] | None = None  # a loopback HOST:PORT serving /metrics
    textfile: Path | None = None  # node_exporter textfile collector file, rewritten each step


@dataclass(frozen=True, slots=True)
class KeysConfig:
    """``[keys]``: the key service for the ocicrypt key provider (docs/agent-config.md)."""

    socket: Path = Path("/run/trustplane-agent/keys.sock")
    batch_window: float = 0.02  # a release goes once no unwrap joined for this long (seconds)
    batch_max_wait: float = 0.25  # ... or this long after the first unwrap of the batch
    cache: bool = True  # keep released secrets sealed to the TPM (state_dir/keycache)
    max_connections: int = 64  # unwrap connections served at once; more wait in the backlog
    request_timeout: float = 60.0  # seconds one socket request may take, the release included


@dataclass(frozen=True, slots=True)
class AgentConfig:
    """The whole agent configuration (defaults run the local demo as is)."""

    state_dir: Path = Path("/var/lib/trustplane-agent")
    log_level: str = "info"
    hub: HubConfig = field(default_factory=HubConfig)
    tpm: TpmConfig = field(default_factory=TpmConfig)
    evidence: EvidenceConfig = field(default_factory=EvidenceConfig)
    attestation: AttestationConfig = field(default_factory=AttestationConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    keys: KeysConfig = field(default_factory=KeysConfig)


# --- value checkers: value -> typed value, raising _Invalid with the problem ------------------


class _Invalid(Exception):
    """A value's problem, before the file and key are known (becomes a ConfigError)."""


Checker = Callable[[object], Any]


def _string(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise _Invalid("expected a non-empty string")
    return value


def _opt_string(value: object) -> str | None:
    return None if value == "" else _string(value)


def _path(value: object) -> Path:
    return Path(_string(value))


def _opt_path(value: object) -> Path | None:
    return None if value == "" else _path(value)


def _bool(value: object) -> bool:
    if not isinstance(value, bool):
        raise _Invalid("expected true or false")
    return value


def _number(lo: float, hi: float) -> Checker:
    def check(value: object) -> float:
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise _Invalid("expected a number")
        if not lo <= value <= hi:
            raise _Invalid(f"must be between {lo:g} and {hi:g}")
        return float(value)

    return check


def _integer(lo: int, hi: int) -> Checker:
    def check(value: object) -> int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise _Invalid("expected an integer")
        if not lo <= value <= hi:
            raise _Invalid(f"must be between {lo} and {hi}")
        return value

    return check


def _choice(*options: str) -> Checker:
    def check(value: object) -> str:
        if value not in options:
            raise _Invalid(f"must be one of {', '.join(options)}")
        return str(value)

    return check


def _url(value: object) -> str:
    text = _string(value)
    if not text.startswith(("https://", "http://")):
        raise _Invalid("must start with https:// (or http:// for tests)")
    return text.rstrip("/")


def _tcti(value: object) -> str:
    text = _string(value)
    if text.split(":", 1)[0] not in ("device", "swtpm", "mssim", "tabrmd"):
        raise _Invalid("must be device:PATH, swtpm:host=H,port=P, mssim:... or tabrmd")
    return text


def _pcrs(value: object) -> tuple[int, ...]:
    if not isinstance(value, list) or not value:
        raise _Invalid("expected a non-empty list of PCR indices")
    idx = [_integer(0, 23)(v) for v in value]
    if len(set(idx)) != len(idx):
        raise _Invalid("PCR indices must be unique")
    return tuple(sorted(idx))


_LOOPBACK_NAMES: Final = ("localhost", "::1", "[::1]")


def _loopback_listen(value: object) -> tuple[str, int] | None:
    text = _string(value) if value != "" else ""
    if not text:
        return None
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise _Invalid("expected HOST:PORT (port 1-65535)")
    if host not in _LOOPBACK_NAMES and not _is_ipv4_loopback(host):
        raise _Invalid("must be a loopback address (127.0.0.0/8, ::1 or localhost)")
    return host.strip("[]"), int(port)


def _is_ipv4_loopback(host: str) -> bool:
    parts = host.split(".")
    return (
        len(parts) == 4
        and parts[0] == "127"
        and all(p.isdigit() and len(p) <= 3 and int(p) < 256 for p in parts)
    )


def _socket_path(value: object) -> Path:
    path = _path(value)
    if not path.is_absolute():
        raise _Invalid("must be an absolute path")
    if len(str(path).encode()) > 107:  # sun_path holds 108 bytes with the terminating NUL
        raise _Invalid("a unix socket path has at most 107 bytes")
    return path


_TABLES: Final[Mapping[str, tuple[type[Any], Mapping[str, Checker]]]] = {
    "hub": (
        HubConfig,
        {
            "url": _url,
            "ca_file": _opt_path,
            "registration_token": _opt_string,
            "node_name": _opt_string,
            "hostname": _opt_string,
            "timeout": _number(0.1, 600),
            "max_response_bytes": _integer(1024, 64 * 1024 * 1024),
            "renew_fraction": _number(0, 1),
        },
    ),
    "tpm": (
        TpmConfig,
        {
            "tcti": _tcti,
            "ak_algorithm": _choice("ecc", "rsa"),
            "ek_algorithm": _choice("rsa", "ecc"),
            "pcr_bank": _choice(*sorted(_PCR_BANKS)),
            "pcrs": _pcrs,
            "watch_devices": _bool,
            "device": _opt_string,
        },
    ),
    "evidence": (
        EvidenceConfig,
        {
            "uefi_log": _path,
            "txt": _bool,
            "txt_memory": _path,
            "txt_registers": _integer(0, 2**64 - 1),
            "txt_heap_base_offset": _integer(0, 0xFFFF),
            "txt_heap_size_offset": _integer(0, 0xFFFF),
            "txt_heap_max_bytes": _integer(4096, 1024 * 1024 * 1024),
            "txt_log_pointer": _choice("physical", "heap-relative"),
            "dmi_uuid": _path,
            "boot_id": _path,
        },
    ),
    "attestation": (
        AttestationConfig,
        {
            "interval": _number(1, 86400),
            "jitter": _number(0, 0.5),
            "backoff_initial": _number(0.01, 3600),
            "backoff_max": _number(0.01, 86400),
            "queue_max": _integer(1, 1024),
            "step_timeout": _number(0.1, 3600),
        },
    ),
    "metrics": (
        MetricsConfig,
        {
            "listen": _loopback_listen,
            "textfile": _opt_path,
        },
    ),
    "keys": (
        KeysConfig,
        {
            "socket": _socket_path,
            "batch_window": _number(0, 1),
            "batch_max_wait": _number(0, 5),
            "cache": _bool,
            "max_connections": _integer(1, 1024),
            "request_timeout": _number(1, 600),
        },
    ),
}

_TOP: Final[Mapping[str, Checker]] = {
    "state_dir": _path,
    "log_level": _choice("debug", "info", "warning", "error"),
}


def _read(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except OSError as e:
        raise ConfigError(path, "", f"cannot read: {e.strerror or e}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(path, "", f"not valid TOML: {e}") from None


def _merge(path: Path, doc: Mapping[str, Any], into: dict[str, dict[str, Any]]) -> None:
    """Check every key of one file and merge it into ``into`` (table -> key -> typed value)."""
    for key, value in doc.items():
        if key in _TOP:
            into.setdefault("", {})[key] = _check(path, key, _TOP[key], value)
            continue
        if key not in _TABLES:
            raise ConfigError(path, key, "unknown key")
        if not isinstance(value, dict):
            raise ConfigError(path, key, "expected a table")
        checkers = _TABLES[key][1]
        for sub, subvalue in value.items():
            if sub not in checkers:
                raise ConfigError(path, f"{key}.{sub}", "unknown key")
            into.setdefault(key, {})[sub] = _check(path, f"{key}.{sub}", checkers[sub], subvalue)


def _check(path: Path, key: str, checker: Checker, value: object) -> Any:  # noqa: ANN401
    try:
        return checker(value)
    except _Invalid as e:
        raise ConfigError(path, key, f"{e} (got {value!r})") from None


def load_config(path: Path | None = DEFAULT_CONFIG, *, dropins: Path | None = None) -> AgentConfig:
    """Load ``path`` (absent -> defaults when it is the default path) and its drop-ins.

    ``dropins`` defaults to ``<path without .toml>.d`` (``/etc/trustplane/agent.d``).
    Raises :class:`ConfigError` naming the file, key and problem.
    """
    merged: dict[str, dict[str, Any]] = {}
    if path is not None:
        if path.exists() or path != DEFAULT_CONFIG:
            _merge(path, _read(path), merged)
        if dropins is None:
            dropins = path.with_suffix(".d")
    if dropins is not None and dropins.is_dir():
        for dropin in sorted(dropins.glob("*.toml")):
            _merge(dropin, _read(dropin), merged)
    return _build(merged, path)


def _build(merged: Mapping[str, Mapping[str, Any]], path: Path | None) -> AgentConfig:
    parts = {name: cls(**merged.get(name, {})) for name, (cls, _) in _TABLES.items()}
    top = merged.get("", {})
    config = AgentConfig(**top, **parts)
    att = config.attestation
    if att.backoff_initial > att.backoff_max:
        raise ConfigError(
            path or "<defaults>",
            "attestation.backoff_initial",
            "must not exceed attestation.backoff_max",
        )
    return config
