"""The hub's state directory: what ``trustplane-hub init`` creates and ``run`` loads.

Layout (directory 0700, every file 0600)::

    ca.pem, ca.key              the hub CA (EC P-256, self-signed): signs server and agent certs
    server.pem, server.key      the TLS server certificate (listed names, localhost, 127.0.0.1)
    jws.key                     ES256 key that signs trust reports
    tag-ca.pem, tag-ca.key      the asset-tag CA
    master.key                  32 random bytes: the key broker's key-encryption key (unless
                                systemd passes the credential trustplane-hub.master-key in
                                $CREDENTIALS_DIRECTORY, which is then read instead)
    hub.db                      the SQLite database (see :mod:`hub.store`)
    hub.db-audit-head.json      the audit log's last row id and hash (see :mod:`hub.store`)

Tokens are generated here too (:func:`new_token`) and stored only as their SHA-256.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from hub.pki import CertifiedKey, make_ca, make_server_certificate

FILES: Final = (
    "ca.pem",
    "ca.key",
    "server.pem",
    "server.key",
    "jws.key",
    "tag-ca.pem",
    "tag-ca.key",
    "master.key",
)
DB_FILE: Final = "hub.db"
BUS_DIR: Final = "bus"  # the verdict bus's wake-up sockets, one per hub process (hub.bus)


def store_target(state_dir: Path, database: str) -> str:
    """What :meth:`hub.store.Store.open` opens for ``state.database``: ``hub.db`` in the
    state directory for ``sqlite``, else the PostgreSQL URL."""
    return str(state_dir / DB_FILE) if database == "sqlite" else database


TOKEN_PREFIX: Final = "tph_"  # noqa: S105 - a prefix, not a secret
ROLES: Final = ("admin", "pipeline", "viewer")
MASTER_KEY_CREDENTIAL: Final = "trustplane-hub.master-key"


class StateDirError(Exception):
    """The state directory is missing, incomplete, or would be overwritten."""


@dataclass(frozen=True, slots=True)
class HubKeys:
    ca: CertifiedKey
    server: CertifiedKey
    jws_key: ec.EllipticCurvePrivateKey
    tag_ca: CertifiedKey
    master_key: bytes

    @property
    def ca_pem(self) -> str:
        return self.ca.certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")


def new_token() -> tuple[str, str]:
    """A fresh bearer token and its stored form (SHA-256 hex)."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    return token, token_hash(token)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _write(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, 0o600)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def create_state_dir(
    state_dir: Path, hostnames: Sequence[str], now: float, *, force: bool = False
) -> None:
    """Make the CA, server certificate, JWS key, tag CA and master key under ``state_dir``.

    Raises :class:`StateDirError` if any of those files exists and ``force`` is false.
    """
    existing = [f for f in (*FILES, DB_FILE) if (state_dir / f).exists()]
    if existing and not force:
        raise StateDirError(
            f"{state_dir} already holds {', '.join(existing)}; use --force to replace them"
        )
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(state_dir, 0o700)
    if force and (state_dir / DB_FILE).exists():
        for suffix in ("", "-wal", "-shm", "-audit-head.json"):
            (state_dir / f"{DB_FILE}{suffix}").unlink(missing_ok=True)
    ca = make_ca("trustplane hub CA", now)
    server = make_server_certificate(ca, hostnames, now)
    tag_ca = make_ca("trustplane asset-tag CA", now)
    jws_key = ec.generate_private_key(ec.SECP256R1())
    _write(state_dir / "ca.pem", _cert_pem(ca.certificate))
    _write(state_dir / "ca.key", _key_pem(ca.key))
    # the chain a client needs: server certificate then the CA
    _write(state_dir / "server.pem", _cert_pem(server.certificate) + _cert_pem(ca.certificate))
    _write(state_dir / "server.key", _key_pem(server.key))
    _write(state_dir / "jws.key", _key_pem(jws_key))
    _write(state_dir / "tag-ca.pem", _cert_pem(tag_ca.certificate))
    _write(state_dir / "tag-ca.key", _key_pem(tag_ca.key))
    _write(state_dir / "master.key", secrets.token_bytes(32))


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise StateDirError(
            f"{path}: cannot read ({e.strerror}); run trustplane-hub init"
        ) from None


def _load_key(path: Path) -> ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_pem_private_key(_read(path), password=None)
    except ValueError:
        raise StateDirError(f"{path}: not a PEM private key") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise StateDirError(f"{path}: expected an EC private key")
    return key


def _load_certified(state_dir: Path, stem: str) -> CertifiedKey:
    try:
        cert = x509.load_pem_x509_certificate(_read(state_dir / f"{stem}.pem"))
    except ValueError:
        raise StateDirError(f"{state_dir / stem}.pem: not a PEM certificate") from None
    return CertifiedKey(_load_key(state_dir / f"{stem}.key"), cert)


def credentials_directory(environ: Mapping[str, str]) -> Path | None:
    """systemd's ``$CREDENTIALS_DIRECTORY`` from ``environ`` (the entry point passes
    ``os.environ``), or None when the service was started without credentials."""
    value = environ.get("CREDENTIALS_DIRECTORY", "")
    return Path(value) if value else None


def master_key_path(state_dir: Path, credentials_dir: Path | None) -> Path:
    """Where the master key is read from: the systemd credential
    ``trustplane-hub.master-key`` when ``credentials_dir`` holds it, else ``state_dir/master.key``.
    """
    if credentials_dir is not None:
        credential = credentials_dir / MASTER_KEY_CREDENTIAL
        if credential.is_file():
            return credential
    return state_dir / "master.key"


def load_hub_keys(state_dir: Path, credentials_dir: Path | None = None) -> HubKeys:
    """Read every key and certificate; the master key from :func:`master_key_path`.

    Raises :class:`StateDirError` naming what is wrong."""
    master_path = master_key_path(state_dir, credentials_dir)
    master = _read(master_path)
    if len(master) != 32:
        raise StateDirError(f"{master_path}: expected 32 bytes, got {len(master)}")
    return HubKeys(
        ca=_load_certified(state_dir, "ca"),
        server=_load_certified(state_dir, "server"),
        jws_key=_load_key(state_dir / "jws.key"),
        tag_ca=_load_certified(state_dir, "tag-ca"),
        master_key=master,
    )
