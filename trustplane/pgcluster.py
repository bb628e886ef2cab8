"""A throw-away PostgreSQL server for the tests and the benchmark (Debian's ``postgresql``).

:class:`PostgresCluster` runs ``initdb`` into a fresh temporary directory as an unprivileged
user (PostgreSQL refuses to run as root: when run by root, the directory is given to the
``postgres`` user, else ``nobody``, and the tools run through ``runuser``), starts the server
with ``pg_ctl`` listening only on a unix socket inside that directory, hands out fresh
databases (:meth:`PostgresCluster.create_database`, whose URL the hub takes as
``state.database``), and stops and removes it all. Nothing here is mocked: missing binaries
are an error (:class:`PostgresUnavailable`), never a skip.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Final, Self

import psycopg

__all__ = ["PostgresCluster", "PostgresUnavailable"]

BINDIRS: Final = tuple(Path(f"/usr/lib/postgresql/{v}/bin") for v in (17, 16, 15))
SUPERUSER: Final = "postgres"
# a test cluster trades durability for speed; the benchmark keeps the defaults
FAST: Final = ("fsync=off", "synchronous_commit=off", "full_page_writes=off")


class PostgresUnavailable(RuntimeError):
    """initdb/pg_ctl are not installed, or the server did not start."""


def _bindir() -> Path:
    for candidate in BINDIRS:
        if (candidate / "initdb").exists() and (candidate / "pg_ctl").exists():
            return candidate
    found = shutil.which("pg_ctl")
    if found is not None and shutil.which("initdb") is not None:
        return Path(found).parent
    raise PostgresUnavailable(
        "initdb/pg_ctl not found: install the Debian package postgresql (make setup does this)"
    )


def _run_as() -> tuple[str, ...]:
    """The command prefix that runs the server's tools as an unprivileged user."""
    if os.geteuid() != 0:
        return ()
    for name in (SUPERUSER, "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return ("runuser", "-u", name, "--")
    raise PostgresUnavailable("running as root and no postgres or nobody user to run as")


class PostgresCluster:
    """One throw-away server (see the module docstring); use as a context manager."""

    def __init__(self, *, settings: tuple[str, ...] = FAST) -> None:
        self._bin = _bindir()
        self._settings = settings
        self._prefix = _run_as()
        self.dir = Path(tempfile.mkdtemp(prefix="trustplane-pg-"))
        self.data = self.dir / "data"
        self._started = False
        self._databases = 0

    @property
    def socket_dir(self) -> Path:
        return self.dir

    def url(self, database: str) -> str:
        """A libpq URL for ``database`` on this server's socket (no password: local trust)."""
        return f"postgresql:///{database}?host={self.dir}&user={SUPERUSER}"

    def start(self) -> Self:
        if self._prefix:
            user = pwd.getpwnam(self._prefix[2])
            os.chown(self.dir, user.pw_uid, user.pw_gid)
        # others may reach the socket (the client is this process); the data stays 0700
        self.dir.chmod(0o711)
        self._tool(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            SUPERUSER,
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        )
        options = " ".join(
            [f"-k {self.dir}", "-c listen_addresses=''", *(f"-c {s}" for s in self._settings)]
        )
        self._tool(
            "pg_ctl", "start", "-w", "-t", "60", "-D", str(self.data), "-l", str(self.log), "-o",
            options,
        )  # fmt: skip
        self._started = True
        return self

    @property
    def log(self) -> Path:
        return self.dir / "server.log"

    def _tool(self, name: str, *args: str) -> None:
        try:
            subprocess.run(
                [*self._prefix, str(self._bin / name), *args],
                check=True,
                capture_output=True,
                text=True,
                timeout=120,
            )
        except subprocess.CalledProcessError as e:
            log = self.log.read_text() if self.log.exists() else ""
            raise PostgresUnavailable(f"{name} failed: {e.stderr.strip()} {log[-2000:]}") from None

    def create_database(self, name: str | None = None) -> str:
        """A new empty database; returns its URL."""
        if name is None:
            self._databases += 1
            name = f"hub{self._databases}"
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"'.encode())
        return self.url(name)

    def stop(self) -> None:
        if self._started:
            with contextlib.suppress(PostgresUnavailable):
                self._tool("pg_ctl", "stop", "-D", str(self.data), "-m", "immediate", "-w")
            self._started = False
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
