"""Registry credentials and the distribution API's authentication challenges.

Credentials come from the auth file skopeo, podman and docker use (``{"auths": {"HOST":
{"auth": base64("user:password")}}}``): ``--authfile FILE``, else ``$REGISTRY_AUTH_FILE``, else
``$XDG_RUNTIME_DIR/containers/auth.json``, else ``~/.docker/config.json`` (the first that
exists; none is fine for anonymous registries). :func:`parse_challenge` reads a 401's
``WWW-Authenticate`` (``Basic realm=...`` or ``Bearer realm=...,service=...,scope=...``);
:mod:`trustplane.imagestore` answers it with Basic credentials or a bearer token from the realm.
Passwords and tokens are never put into errors or logs.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from trustplane.errors import TrustplaneError

MAX_AUTH_FILE: Final = 1024 * 1024
_PARAM = re.compile(r'([A-Za-z_]+)\s*=\s*"([^"]*)"')


class RegistryAuthError(TrustplaneError):
    """Credentials that cannot be read, or a registry that refuses us (``image.registry_auth``)."""

    reason = "image.registry_auth"


@dataclass(frozen=True)
class Credentials:
    """A user name and password for one registry host; ``repr`` hides the password."""

    username: str
    password: str

    def __repr__(self) -> str:
        return f"Credentials(username={self.username!r}, password=<hidden>)"

    def basic(self) -> str:
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode("ascii")


def default_auth_file(environ: Mapping[str, str]) -> Path | None:
    """The auth file skopeo would read, if one exists."""
    candidates = []
    if environ.get("REGISTRY_AUTH_FILE"):
        candidates.append(Path(environ["REGISTRY_AUTH_FILE"]))
    if environ.get("XDG_RUNTIME_DIR"):
        candidates.append(Path(environ["XDG_RUNTIME_DIR"]) / "containers" / "auth.json")
    if environ.get("HOME"):
        candidates.append(Path(environ["HOME"]) / ".docker" / "config.json")
    return next((p for p in candidates if p.is_file()), None)


def load_auth_file(path: Path) -> dict[str, Credentials]:
    """Registry host → credentials. Raises :class:`RegistryAuthError` naming the file."""
    try:
        with path.open("rb") as f:
            data = f.read(MAX_AUTH_FILE + 1)
    except OSError as e:
        raise RegistryAuthError(f"{path}: {e.strerror or e}") from None
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        doc = None
    auths = doc.get("auths", {}) if isinstance(doc, dict) else None
    if len(data) > MAX_AUTH_FILE or not isinstance(auths, dict):
        raise RegistryAuthError(f'{path}: not an auth file ({{"auths": {{HOST: {{"auth"}}}}}})')
    found: dict[str, Credentials] = {}
    for host, entry in auths.items():
        token = entry.get("auth") if isinstance(entry, dict) else None
        if not isinstance(token, str):
            continue
        try:
            user, sep, password = base64.b64decode(token, validate=True).decode().partition(":")
        except (binascii.Error, ValueError):
            raise RegistryAuthError(f"{path}: the entry for {host[:80]} is not base64") from None
        if sep and user:
            found[_host_of(host)] = Credentials(user, password)
    return found


def _host_of(key: str) -> str:
    """``https://reg.example/v1/`` or ``reg.example`` → ``reg.example``."""
    return key.split("://", 1)[-1].split("/", 1)[0]


@dataclass(frozen=True)
class Challenge:
    scheme: str  # "basic" or "bearer"
    params: dict[str, str]


def parse_challenge(header: str | None) -> Challenge:
    """A ``WWW-Authenticate`` value. Raises :class:`RegistryAuthError` for other schemes."""
    text = (header or "").strip()[:2048]
    scheme, _, rest = text.partition(" ")
    if scheme.lower() not in ("basic", "bearer"):
        raise RegistryAuthError(
            f"the registry asks for authentication we do not speak ({scheme[:20] or 'none'})"
        )
    return Challenge(scheme.lower(), dict(_PARAM.findall(rest)))


def credentials_for(host: str, creds: Mapping[str, Credentials]) -> Credentials | None:
    return creds.get(host)


def environment_auth(environ: Mapping[str, str]) -> dict[str, Credentials]:
    """The credentials of the default auth file (none when there is none)."""
    path = default_auth_file(environ)
    return load_auth_file(path) if path is not None else {}


__all__ = [
    "Challenge",
    "Credentials",
    "RegistryAuthError",
    "credentials_for",
    "default_auth_file",
    "environment_auth",
    "load_auth_file",
    "parse_challenge",
]
