"""The hub's configuration: TOML files loaded once into a frozen dataclass.

The main file (default ``/etc/trustplane/hub.toml``) is read first, then every ``*.toml`` in the
drop-in directory beside it (``hub.d/``), in sorted order; a later file overrides single keys of
an earlier one. A missing main file is not an error: the defaults run a local demo as is.
Unknown tables or keys and values of the wrong type raise :class:`ConfigError` naming the file,
the key and the problem. Nothing here reads files at import time; :func:`load_config` is called
once by the CLI and the result is passed down.

Keys (the README copies this table; docs/hub-config.md explains each):

=================================  ===========================  ===================================
key                                default                      meaning
=================================  ===========================  ===================================
server.listen                      ``"127.0.0.1:8443"``         HOST:PORT to listen on
server.tls                         ``true``                     HTTPS with the state dir's cert
server.max_body_bytes              ``16777216``                 largest request body (413 above)
server.keepalive_timeout           ``75``                       seconds an idle connection stays
server.header_timeout              ``10``                       seconds for handshake + 1st headers
server.max_connections             ``20000``                    open connections (refused above)
server.max_connections_per_address ``512``                      per client address (0 = no cap)
server.tls_read_buffer             ``17408``                    bytes of TLS read buffer per conn.
server.workers                     ``0``                        worker processes (0 = one per CPU)
state.dir                          ``/var/lib/trustplane/hub``  keys, certificates, database
state.lease_ttl                    ``15``                       seconds a singleton lease lasts
state.database                     ``"sqlite"``                 or a postgresql:// URL (replicas)
attestation.nonce_ttl              ``120``                      seconds a nonce stays usable
attestation.report_validity        ``600``                      seconds a trust report is valid
attestation.interval               ``60``                       seconds between agent reports
attestation.pcr_selection          ``{sha256 = [0..7]}``        PCRs every quote must cover
attestation.require_flavor         ``false``                    no flavor -> flavor.none_assigned
attestation.stale_check_interval   ``5``                        seconds between stale sweeps
enrollment.ek_ca_bundle            ``""``                       PEM TPM vendor CAs ("" = none)
enrollment.require_ek_certificate  ``false``                    refuse hosts without an EK chain
enrollment.tokens                  ``[]``                       registration tokens (auto-approve)
enrollment.challenge_ttl           ``300``                      seconds to activate a credential
enrollment.max_pending             ``1000``                     open challenges + pending hosts
enrollment.rate_per_minute         ``60``                       anonymous requests/min per address
enrollment.rate_per_ek             ``10``                       requests/min per EK (and renewals)
enrollment.client_cert_days        ``30``                       agent certificate validity (days)
reports.history                    ``20``                       reports kept per host
alerts.webhooks                    ``[]``                       Alertmanager-format webhook URLs
alerts.webhook_timeout             ``5``                        seconds per webhook POST
alerts.webhook_retries             ``5``                        retries after a failed POST
alerts.webhook_backoff             ``1``                        first retry delay (doubles)
alerts.webhook_backoff_max         ``60``                       longest retry delay
alerts.webhook_queue               ``1000``                     notices queued per URL (drop above)
alerts.external_url                ``""``                       hub URL in links ("" = listen)
metrics.token                      ``""``                       extra bearer token for /metrics
web.session_ttl                    ``28800``                    seconds a browser login lasts
audit.checkpoint_every             ``100``                      rows between signed checkpoints
audit.export_file                  ``""``                       file the checkpoints go to too
keys.hub_url                       ``""``                       hub URL in key blobs ("" = external)
keys.secret_ttl                    ``3600``                     seconds a host may cache a secret
keys.release_rate_per_minute       ``120``                      key challenges+releases/min per host
clusters.sync                      ``true``                     run the cluster sync (hub.clusters)
clusters.taint_effect              ``"NoExecute"``              untrusted taint: NoSchedule, none
clusters.resync_interval           ``60``                       seconds between full reconciles
clusters.request_timeout           ``10``                       seconds per API server request
=================================  ===========================  ===================================
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Final

DEFAULT_CONFIG_FILE: Final = Path("/etc/trustplane/hub.toml")
PCR_BANKS: Final = ("sha1", "sha256", "sha384", "sha512")


class ConfigError(Exception):
    """A configuration file that cannot be used: names the file, the key and the problem."""

    def __init__(self, path: Path | str, key: str, problem: str) -> None:
        super().__init__(f"{path}: {key}: {problem}" if key else f"{path}: {problem}")
        self.path = str(path)
        self.key = key
        self.problem = problem


@dataclass(frozen=True, slots=True)
class ServerConfig:
    listen: str = "127.0.0.1:8443"
    tls: bool = True
    max_body_bytes: int = 16 * 1024 * 1024
    keepalive_timeout: float = 75.0
    header_timeout: float = 10.0
    max_connections: int = 20000
    max_connections_per_address: int = 512
    tls_read_buffer: int = 17408
    workers: int = 0  # 0: one per CPU (hub.supervisor); 1: one process, no parent

    @property
    def host(self) -> str:
        return self.listen.rsplit(":", 1)[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rsplit(":", 1)[1])


@dataclass(frozen=True, slots=True)
class StateConfig:
    dir: Path = Path("/var/lib/trustplane/hub")
    lease_ttl: float = 15.0
    # "sqlite" (hub.db in dir) or a postgresql:// URL; never shown (it may hold a password)
    database: str = field(default="sqlite", repr=False)


@dataclass(frozen=True, slots=True)
class AttestationConfig:
    nonce_ttl: float = 120.0
    report_validity: float = 600.0
    interval: float = 60.0
    pcr_selection: Mapping[str, tuple[int, ...]] = field(
        default_factory=lambda: {"sha256": tuple(range(8))}
    )
    require_flavor: bool = False
    stale_check_interval: float = 5.0


@dataclass(frozen=True, slots=True)
class EnrollmentConfig:
    ek_ca_bundle: str = ""
    require_ek_certificate: bool = False
    tokens: tuple[str, ...] = ()
    challenge_ttl: float = 300.0
    max_pending: int = 1000
    rate_per_minute: int = 60
    rate_per_ek: int = 10
    client_cert_days: int = 30


@dataclass(frozen=True, slots=True)
class ReportsConfig:
    history: int = 20


# --- alerts, metrics, status page (hub/alerts.py, hub/webhooks.py, hub/metrics.py, hub/web) ---


@dataclass(frozen=True, slots=True)
class AlertsConfig:
    webhooks: tuple[str, ...] = ()
    webhook_timeout: float = 5.0
    webhook_retries: int = 5
    webhook_backoff: float = 1.0
    webhook_backoff_max: float = 60.0
    webhook_queue: int = 1000
    external_url: str = ""


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    token: str = ""


@dataclass(frozen=True, slots=True)
class WebConfig:
    session_ttl: float = 8 * 3600.0


@dataclass(frozen=True, slots=True)
class AuditConfig:
    checkpoint_every: int = 100
    export_file: str = ""


@dataclass(frozen=True, slots=True)
class KeysConfig:
    hub_url: str = ""
    secret_ttl: float = 3600.0
    release_rate_per_minute: int = 120


@dataclass(frozen=True, slots=True)
class ClustersConfig:
    sync: bool = True
    taint_effect: str = "NoExecute"
    resync_interval: float = 60.0
    request_timeout: float = 10.0


@dataclass(frozen=True, slots=True)
class HubConfig:
    server: ServerConfig = field(default_factory=ServerConfig)
    state: StateConfig = field(default_factory=StateConfig)
    attestation: AttestationConfig = field(default_factory=AttestationConfig)
    enrollment: EnrollmentConfig = field(default_factory=EnrollmentConfig)
    reports: ReportsConfig = field(default_factory=ReportsConfig)
    alerts: AlertsConfig = field(default_factory=AlertsConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    web: WebConfig = field(default_factory=WebConfig)
    audit: AuditConfig = field(default_factory=AuditConfig)
    keys: KeysConfig = field(default_factory=KeysConfig)
    clusters: ClustersConfig = field(default_factory=ClustersConfig)


# --- value checkers: each returns the typed value or raises ValueError with the problem -------


def _check_str(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__}")
    return value


def _check_bool(value: object) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"expected true or false, got {type(value).__name__}")
    return value


def _check_positive_int(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"expected an integer, got {type(value).__name__}")
    if value <= 0:
        raise ValueError("must be greater than 0")
    return value


def _check_non_negative_int(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"expected an integer, got {type(value).__name__}")
    if value < 0:
        raise ValueError("must be 0 or more")
    return value


def _check_buffer_size(value: object) -> int:
    size = _check_positive_int(value)
    if not 17 * 1024 <= size <= 1024 * 1024:
        raise ValueError("must be between 17408 (one TLS record) and 1048576 bytes")
    return size


def _check_seconds(value: object) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise TypeError(f"expected a number of seconds, got {type(value).__name__}")
    if value <= 0:
        raise ValueError("must be greater than 0")
    return float(value)


MAX_DATABASE_URL: Final = 2048


def _check_database(value: object) -> str:
    """``sqlite`` (or empty) or a ``postgresql://`` URL; the problem never quotes the value
    (a URL may carry a password)."""
    text = _check_str(value)
    if text in {"", "sqlite"}:
        return "sqlite"
    if len(text) > MAX_DATABASE_URL:
        raise ValueError(f"longer than {MAX_DATABASE_URL} characters")
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise ValueError("contains control characters")
    if not text.startswith(("postgresql://", "postgres://")):
        raise ValueError('expected "sqlite" or a postgresql:// URL')
    return text


def _check_listen(value: object) -> str:
    text = _check_str(value)
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected HOST:PORT, got {text!r}")
    return text


def _check_path(value: object) -> Path:
    text = _check_str(value)
    if not text:
        raise ValueError("must not be empty")
    return Path(text)


def _check_str_list(value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ValueError("expected a list of non-empty strings")
    return tuple(value)


def _check_url_list(value: object) -> tuple[str, ...]:
    urls = _check_str_list(value)
    for url in urls:
        if not url.startswith(("http://", "https://")) or len(url) <= len("https://"):
            raise ValueError(f"expected http:// or https:// URLs, got {url!r}")
    return urls


TAINT_EFFECTS: Final = ("NoExecute", "NoSchedule", "none")


def _check_taint_effect(value: object) -> str:
    text = _check_str(value)
    if text not in TAINT_EFFECTS:
        raise ValueError(f"expected one of {', '.join(TAINT_EFFECTS)}, got {text[:40]!r}")
    return text


def _check_pcr_selection(value: object) -> dict[str, tuple[int, ...]]:
    if not isinstance(value, dict):
        raise TypeError("expected a table such as {sha256 = [0, 7]}")
    out: dict[str, tuple[int, ...]] = {}
    for bank, pcrs in value.items():
        if bank not in PCR_BANKS:
            raise ValueError(f"unknown PCR bank {bank!r} (one of {', '.join(PCR_BANKS)})")
        ok = isinstance(pcrs, list) and all(
            isinstance(p, int) and not isinstance(p, bool) and 0 <= p <= 23 for p in pcrs
        )
        if not ok:
            raise ValueError(f"{bank}: expected a list of PCR indices 0..23")
        out[bank] = tuple(sorted(set(pcrs)))
    return out


MAX_WORKERS: Final = 256


def _check_workers(value: object) -> int:
    n = _check_non_negative_int(value)
    if n > MAX_WORKERS:
        raise ValueError(f"at most {MAX_WORKERS} workers")
    return n


_CHECKS: Final[dict[str, dict[str, Callable[[object], Any]]]] = {
    "server": {
        "listen": _check_listen,
        "tls": _check_bool,
        "max_body_bytes": _check_positive_int,
        "keepalive_timeout": _check_seconds,
        "header_timeout": _check_seconds,
        "max_connections": _check_positive_int,
        "max_connections_per_address": _check_non_negative_int,
        "tls_read_buffer": _check_buffer_size,
        "workers": _check_workers,
    },
    "state": {"dir": _check_path, "lease_ttl": _check_seconds, "database": _check_database},
    "attestation": {
        "nonce_ttl": _check_seconds,
        "report_validity": _check_seconds,
        "interval": _check_seconds,
        "pcr_selection": _check_pcr_selection,
        "require_flavor": _check_bool,
        "stale_check_interval": _check_seconds,
    },
    "enrollment": {
        "ek_ca_bundle": _check_str,
        "require_ek_certificate": _check_bool,
        "tokens": _check_str_list,
        "challenge_ttl": _check_seconds,
        "max_pending": _check_positive_int,
        "rate_per_minute": _check_positive_int,
        "rate_per_ek": _check_positive_int,
        "client_cert_days": _check_positive_int,
    },
    "reports": {"history": _check_positive_int},
    "alerts": {
        "webhooks": _check_url_list,
        "webhook_timeout": _check_seconds,
        "webhook_retries": _check_positive_int,
        "webhook_backoff": _check_seconds,
        "webhook_backoff_max": _check_seconds,
        "webhook_queue": _check_positive_int,
        "external_url": _check_str,
    },
    "metrics": {"token": _check_str},
    "web": {"session_ttl": _check_seconds},
    "audit": {"checkpoint_every": _check_positive_int, "export_file": _check_str},
    "keys": {
        "hub_url": _check_str,
        "secret_ttl": _check_seconds,
        "release_rate_per_minute": _check_positive_int,
    },
    "clusters": {
        "sync": _check_bool,
        "taint_effect": _check_taint_effect,
        "resync_interval": _check_seconds,
        "request_timeout": _check_seconds,
    },
}


def config_files(main: Path) -> list[Path]:
    """The main file (when it exists) and its drop-ins ``<stem>.d/*.toml``, in load order."""
    files = [main] if main.exists() else []
    dropins = main.parent / f"{main.stem}.d"
    if dropins.is_dir():
        files.extend(sorted(dropins.glob("*.toml")))
    return files


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except OSError as e:
        raise ConfigError(path, "", f"cannot read: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(path, "", f"not valid TOML: {e}") from None


def _apply(config: HubConfig, path: Path, data: Mapping[str, Any]) -> HubConfig:
    for section, values in data.items():
        checks = _CHECKS.get(section)
        if checks is None:
            raise ConfigError(path, section, f"unknown table (known: {', '.join(_CHECKS)})")
        if not isinstance(values, dict):
            raise ConfigError(path, section, "expected a table")
        changes: dict[str, Any] = {}
        for key, value in values.items():
            check = checks.get(key)
            if check is None:
                raise ConfigError(
                    path, f"{section}.{key}", f"unknown key (known: {', '.join(checks)})"
                )
            try:
                changes[key] = check(value)
            except (TypeError, ValueError) as e:
                raise ConfigError(path, f"{section}.{key}", str(e)) from None
        part = getattr(config, section)
        config = replace(config, **{section: replace(part, **changes)})
    return config


def load_config(
    main: Path = DEFAULT_CONFIG_FILE, *, overrides: Mapping[str, Any] | None = None
) -> HubConfig:
    """Read ``main`` and its drop-ins into a :class:`HubConfig`; raises :class:`ConfigError`.

    ``overrides`` (``{"state": {"dir": "..."}}``) is applied last, as from the command line.
    """
    config = HubConfig()
    for path in config_files(main):
        config = _apply(config, path, _read_toml(path))
    if overrides:
        config = _apply(config, Path("<command line>"), overrides)
    _check_consistency(config, main)
    return config


def _check_consistency(config: HubConfig, main: Path) -> None:
    if not config.attestation.pcr_selection:
        raise ConfigError(main, "attestation.pcr_selection", "must name at least one bank")
    if config.enrollment.require_ek_certificate and not config.enrollment.ek_ca_bundle:
        raise ConfigError(
            main, "enrollment.require_ek_certificate", "needs enrollment.ek_ca_bundle to be set"
        )


def config_keys() -> list[str]:
    """Every known key as ``table.key`` (for documentation and tests)."""
    out: list[str] = []
    for section in fields(HubConfig):
        out.extend(f"{section.name}.{k}" for k in _CHECKS[section.name])
    return out
