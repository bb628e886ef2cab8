"""The PostgreSQL connection: psycopg 3's synchronous API on the store's worker thread.

Why the synchronous API: the store's model is one owner thread per connection whose jobs are
plain functions (group commit runs many of them in one transaction, see
:mod:`hub.store.backend`); the same aggregate code then runs on SQLite and PostgreSQL, and the
event loop never waits on the database. psycopg's async API would need every aggregate written
twice (or ``await`` on SQLite too) and would gain nothing with one connection per process.

The aggregates' SQL uses ``?`` placeholders; :func:`translate` turns them into psycopg's
``%s`` (and a literal ``%`` into ``%%``), once per statement text. The connection runs in
autocommit mode and the store issues ``BEGIN``/``COMMIT`` itself, as on SQLite. A connection
lost (the server restarted) is opened again by the next job. The password, if the URL carries
one, is never logged (psycopg's errors do not include it; the URL is not logged here).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg.pq import TransactionStatus

from hub.store.connection import (
    CONNECT_TIMEOUT,
    Connection,
    Cursor,
    Params,
    check_text,
)
from hub.store.pgschema import migrate

_translated: dict[str, str] = {}


def translate(sql: str) -> str:
    """``?`` placeholders outside quoted text -> ``%s``; ``%`` -> ``%%`` (cached)."""
    done = _translated.get(sql)
    if done is not None:
        return done
    out: list[str] = []
    quote = ""
    for ch in sql:
        if quote:
            if ch == quote:
                quote = ""
        elif ch in ("'", '"'):
            quote = ch
        elif ch == "?":
            out.append("%s")
            continue
        if ch == "%":
            out.append("%%")
            continue
        out.append(ch)
    done = "".join(out)
    if len(_translated) < 4096:  # the hub's statements are a fixed set; bound it anyway
        _translated[sql] = done
    return done


def lock_key(name: str) -> int:
    """A signed 64-bit advisory-lock key for ``name`` (stable across processes)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


class PostgresConnection(Connection):
    """A PostgreSQL database (see the module docstring)."""

    dialect = "postgresql"
    for_update = " FOR UPDATE"
    error = psycopg.Error
    integrity_error = psycopg.IntegrityError

    def __init__(self, url: str) -> None:
        self._url = url
        self.backend_pid: int | None = None
        self._conn: psycopg.Connection[Any] = self._connect()

    def _connect(self) -> psycopg.Connection[Any]:
        conn = psycopg.connect(
            self._url, autocommit=True, connect_timeout=CONNECT_TIMEOUT, prepare_threshold=5
        )
        conn.execute(b"SET TIME ZONE 'UTC'")
        self.backend_pid = conn.info.backend_pid  # the server's pid for this session (NOTIFY)
        return conn

    def execute(self, sql: str, params: Params = None) -> Cursor:
        if self._conn.closed:  # lost (server restart): open again, outside any transaction
            self._conn = self._connect()
        check_text(params)
        if not params:
            return self._conn.execute(sql.encode())
        return self._conn.execute(translate(sql).encode(), params)

    def transaction_open(self) -> bool:
        return self._conn.info.transaction_status == TransactionStatus.INTRANS

    def _savepoint_recoverable(self) -> bool:
        return self._conn.info.transaction_status == TransactionStatus.INERROR

    def rollback(self) -> None:
        if not self._conn.closed and self._conn.info.transaction_status in (
            TransactionStatus.INTRANS,
            TransactionStatus.INERROR,
        ):
            self._conn.execute(b"ROLLBACK")

    def lock(self, name: str) -> None:
        self.execute("SELECT pg_advisory_xact_lock(?)", [lock_key(name)]).fetchall()

    def notify(self, channel: str, payload: str) -> None:
        self.execute("SELECT pg_notify(?, ?)", [channel, payload]).fetchall()

    def close(self) -> None:
        self._conn.close()

    def migrate(self, migrations: tuple[Callable[..., None], ...]) -> int:
        return migrate(self, migrations)
