"""What the aggregates see of a database: plain SQL with ``?`` placeholders, on either backend.

:class:`Connection` is the small shared surface every aggregate's SQL goes through
(``self.db.execute(sql, params)``, ``self.db.atomic()``), implemented by
:class:`hub.store.sqlite.SqliteConnection` and :class:`hub.store.postgres.PostgresConnection`.
SQL written here is portable: ``?`` placeholders (translated for psycopg), standard types,
``INSERT ... ON CONFLICT``, ``RETURNING``. The few places where the engines differ are methods
or attributes of the connection (:attr:`Connection.for_update`, :meth:`Connection.lock`), not
``if`` branches in the aggregates. Every method runs on the store's worker thread only.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any, Final, Protocol

Params = Sequence[Any] | None

URL_SCHEMES: Final = ("postgresql://", "postgres://")
CONNECT_TIMEOUT: Final = 10  # seconds to reach a PostgreSQL server


def is_postgres_url(target: str) -> bool:
    """Whether the store target names a PostgreSQL database (else a SQLite file)."""
    return target.startswith(URL_SCHEMES)


class UnstorableText(ValueError):
    """A text parameter with a NUL character: PostgreSQL's text cannot hold one, so neither
    backend stores or looks one up (the same answer on both; the API answers 400)."""


def check_text(params: Params) -> None:
    """Raise :class:`UnstorableText` for a ``str`` parameter holding a NUL character."""
    if params and any(isinstance(p, str) and "\x00" in p for p in params):
        raise UnstorableText("text with a NUL character")


class Cursor(Protocol):
    """The DB-API cursor part both drivers share."""

    @property
    def rowcount(self) -> int: ...

    @property
    def description(self) -> Any: ...  # noqa: ANN401 - driver-specific column descriptions

    def fetchone(self) -> Any: ...  # noqa: ANN401 - a row tuple or None

    def fetchall(self) -> list[Any]: ...


class Connection:
    """One database connection, owned by the store's worker thread (see the module docstring).

    ``dialect`` is ``sqlite`` or ``postgresql``; ``error`` and ``integrity_error`` are the
    driver's base error and constraint-violation error; ``for_update`` is the suffix that
    locks the rows a ``SELECT`` read until the transaction ends (empty on SQLite, whose single
    writer already serialises transactions)."""

    dialect: str = ""
    for_update: str = ""
    backend_pid: int | None = None  # PostgreSQL: the server process serving this connection
    error: type[Exception] = Exception
    integrity_error: type[Exception] = Exception

    @property
    def conn(self) -> Connection:
        """This connection (``self.db.conn.execute`` reads as ``self.db.execute``)."""
        return self

    def execute(self, sql: str, params: Params = None) -> Cursor:
        raise NotImplementedError

    def locking(self, select: str) -> str:
        """``select`` locking the rows it reads until the transaction ends (a check-and-set
        across processes): with ``FOR UPDATE`` on PostgreSQL, unchanged on SQLite."""
        return select + self.for_update

    def transaction_open(self) -> bool:
        """A usable transaction is open (not: none, or one a failed statement broke)."""
        raise NotImplementedError

    def begin(self) -> None:
        self.execute("BEGIN")

    def commit(self) -> None:
        self.execute("COMMIT")

    def rollback(self) -> None:
        """End whatever transaction is open, usable or broken, without committing it."""
        raise NotImplementedError

    def lock(self, name: str) -> None:
        """Serialise the rest of the open transaction with every other connection taking
        ``name`` (held until commit or rollback)."""
        raise NotImplementedError

    def notify(self, channel: str, payload: str) -> None:
        """Announce ``payload`` on ``channel`` to every listening connection when the open
        transaction commits (PostgreSQL NOTIFY; nothing on SQLite, whose processes learn of
        changes otherwise)."""

    def close(self) -> None:
        raise NotImplementedError

    def columns(self, table: str) -> list[str]:
        """The table's column names, in order."""
        cur = self.execute(f"SELECT * FROM {table} WHERE 1 = 0")  # noqa: S608 - schema names
        names = [d[0] for d in cur.description]
        cur.fetchall()
        return names

    @contextlib.contextmanager
    def atomic(self) -> Iterator[Connection]:
        """A transaction, or a savepoint inside the open one: all of the block or nothing."""
        if self.transaction_open():
            self.execute("SAVEPOINT store_atomic")
            try:
                yield self
            except BaseException:
                if self.transaction_open() or self._savepoint_recoverable():
                    self.execute("ROLLBACK TO SAVEPOINT store_atomic")
                    self.execute("RELEASE SAVEPOINT store_atomic")
                raise
            self.execute("RELEASE SAVEPOINT store_atomic")
            return
        self.begin()
        try:
            yield self
        except BaseException:
            self.rollback()
            raise
        self.commit()

    def _savepoint_recoverable(self) -> bool:
        """A statement failed inside the savepoint but the outer transaction can go on after
        rolling back to it (PostgreSQL marks the transaction failed until then)."""
        return False

    def insert_id(self, sql: str, params: Params) -> int:
        """Run ``INSERT ... RETURNING id`` and give the id."""
        row = self.execute(sql, params).fetchone()
        if row is None or not isinstance(row[0], int):  # pragma: no cover - RETURNING id
            raise TypeError("expected an integer id")
        return row[0]
