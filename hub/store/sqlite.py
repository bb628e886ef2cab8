"""The SQLite connection: one file (WAL) or ``:memory:``, through ``sqlite3``.

Only this module and the SQLite migrations (:mod:`hub.store.schema`) use ``sqlite3`` and
``sqlite_utils``. The pragmas trade as the hub always did: WAL with ``synchronous = NORMAL``
(commits survive a crash of the process; a power loss may lose the last ones), a 64 MiB page
cache for the hot rows.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Final

import sqlite_utils

from hub.store.connection import Connection, Cursor, Params
from hub.store.schema import migrate

CACHE_KIB: Final = 65536  # SQLite page cache per connection (KiB)


class SqliteConnection(Connection):
    """A SQLite database file (see the module docstring)."""

    dialect = "sqlite"
    for_update = ""
    error = sqlite3.Error
    integrity_error = sqlite3.IntegrityError

    def __init__(self, path: str) -> None:
        db = sqlite_utils.Database(path, execute_plugins=False)
        if path != ":memory:":
            db.enable_wal()
        db.conn.execute("PRAGMA foreign_keys = ON")
        db.conn.execute("PRAGMA busy_timeout = 5000")
        db.conn.execute("PRAGMA synchronous = NORMAL")
        db.conn.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
        self._db = db
        self._conn = db.conn

    def execute(self, sql: str, params: Params = None) -> Cursor:
        return self._conn.execute(sql, params or ())

    def transaction_open(self) -> bool:
        return self._conn.in_transaction  # read afresh: a statement may have ended it

    def rollback(self) -> None:
        if self._conn.in_transaction:
            self._conn.execute("ROLLBACK")

    def begin(self) -> None:
        """``BEGIN IMMEDIATE``: take the database's one write lock at the start (waiting up to
        ``busy_timeout`` for another process's transaction), so a transaction that reads and
        then writes never meets SQLITE_BUSY half-way, which a deferred one does whenever another
        hub process (``server.workers``) committed since its read."""
        self._conn.execute("BEGIN IMMEDIATE")

    def lock(self, name: str) -> None:
        """Nothing more to take: :meth:`begin` already holds SQLite's one write lock."""

    def close(self) -> None:
        self._db.close()

    def data_version(self) -> int:
        """Changes when another connection commits (``PRAGMA data_version``)."""
        return int(self._conn.execute("PRAGMA data_version").fetchone()[0])

    def migrate(self, migrations: tuple[Callable[..., None], ...]) -> int:
        return migrate(self._db, migrations)
