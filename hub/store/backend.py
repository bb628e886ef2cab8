"""The SQLite backend: one connection on one worker thread, with group commit.

This is the only place that opens ``sqlite3``/``sqlite_utils`` connections. One worker thread
owns the connection (WAL mode); every public method of the store is ``async`` and runs on that
thread, so writes are serialised and a check-and-set such as consuming a nonce is atomic. The
report path's jobs (host reads, nonces, recording a report) are committed in groups: the worker
takes the ones queued together, runs each in its own savepoint inside one transaction, commits
once, and only then answers them all, so an answered write is a committed one (a failing job
rolls back only its savepoint).
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, ParamSpec, Self, TypeVar

import sqlite_utils
from sqlite_utils.db import Table

from hub.auditseal import AuditSealer
from hub.cache import LruCache
from hub.store.schema import MIGRATIONS, _migrate

P = ParamSpec("P")
T = TypeVar("T")

CACHE_KIB: Final = 65536  # SQLite page cache per connection (KiB)
FLAVOR_CACHE_SIZE: Final = 65536  # decoded flavor rows kept (each a parsed JSON document)

AUDIT_HEAD_SUFFIX: Final = "-audit-head.json"
MAX_GROUP: Final = 64  # jobs committed together at most


@dataclass(slots=True)
class _Job:
    """One call for the store's thread; ``group``: may share a transaction with its
    neighbours (see the module docstring)."""

    call: Callable[[], Any]
    future: asyncio.Future[Any]
    loop: asyncio.AbstractEventLoop
    group: bool


# Every transaction takes the write lock when it begins. Several processes share the database
# (server.workers, the CLI): a deferred transaction that read first and writes later fails at
# once with SQLITE_BUSY ("database is locked") when another process committed in between, its
# snapshot being stale; an immediate one waits for the lock (busy_timeout) and then reads the
# latest data. One process has one writer thread anyway, so this costs it nothing.
BEGIN: Final = "BEGIN IMMEDIATE"


class _Database(sqlite_utils.Database):
    """sqlite_utils' database whose :meth:`atomic` begins immediate transactions."""

    @contextlib.contextmanager
    def atomic(self) -> Iterator[sqlite_utils.Database]:
        if self.conn.in_transaction:  # nested: a savepoint, as sqlite_utils does
            with super().atomic() as db:
                yield db
            return
        self.conn.execute(BEGIN)
        try:
            yield self
        except BaseException:
            self.rollback()
            raise
        try:
            self.conn.execute("COMMIT")
        except BaseException:
            self.rollback()
            raise


def _in_transaction(conn: sqlite3.Connection) -> bool:
    """Read afresh each time (a statement may have opened or ended the transaction)."""
    return conn.in_transaction


def _answer_all(answers: list[tuple[asyncio.Future[Any], bool, Any]]) -> None:
    for future, ok, value in answers:
        _answer(future, ok, value)


def _answer(future: asyncio.Future[Any], ok: bool, value: Any) -> None:  # noqa: ANN401
    if future.done():  # the caller was cancelled meanwhile
        return
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)


class SqliteBackend:
    """The connection, its thread and the state every aggregate shares; aggregates subclass it
    (the :class:`hub.store.Store` combines them)."""

    def __init__(
        self, path: Path | str, *, migrations: tuple[Callable[..., None], ...] = MIGRATIONS
    ) -> None:
        self._path = str(path)
        self._migrations = migrations
        self._audit_head_file = (
            None if self._path == ":memory:" else Path(self._path + AUDIT_HEAD_SUFFIX)
        )
        self._memory_audit_head: tuple[int, str] | None = None
        # signs the audit head and checkpoints once the caller sets it (it holds the hub's key)
        self.audit_sealer: AuditSealer | None = None
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._work, name="hub-store", daemon=True)
        self._thread.start()
        self._closed = False
        self._db: sqlite_utils.Database | None = None
        self.schema_version = 0
        self._host_light_sql = ""
        # flavor rows as (SHA-256 of the stored text, document), ("", None) for no such flavor;
        # cleared by this store's own flavor writes and when another connection (the CLI)
        # commits anything (PRAGMA data_version)
        self._flavor_rows: LruCache[str, tuple[str, Mapping[str, Any] | None]] = LruCache(
            FLAVOR_CACHE_SIZE
        )
        self._data_version: int | None = None

    @classmethod
    async def open(cls, path: Path | str, **kwargs: Any) -> Self:  # noqa: ANN401
        store = cls(path, **kwargs)
        await store._run(store._open_sync)
        return store

    def _open_sync(self) -> None:
        db = _Database(self._path, execute_plugins=False)
        if self._path != ":memory:":
            db.enable_wal()
        db.conn.execute("PRAGMA foreign_keys = ON")
        db.conn.execute("PRAGMA busy_timeout = 5000")
        # WAL + NORMAL: commits are atomic and survive a crash of the process; only a power
        # loss can lose the last commits (at worst re-opening a nonce within its short TTL).
        db.conn.execute("PRAGMA synchronous = NORMAL")
        # the hot rows (hosts, nonces) stay in memory instead of SQLite's 2 MiB default
        db.conn.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
        self.schema_version = _migrate(db, self._migrations)
        # every hosts column but rule_results (the largest; overflow pages), as migrated
        columns = [r[1] for r in db.conn.execute("PRAGMA table_info(hosts)").fetchall()]
        names = ", ".join(f'"{c}"' for c in columns if c != "rule_results")
        self._host_light_sql = f"SELECT {names} FROM hosts WHERE id = ?"  # noqa: S608 - schema names
        self._db = db

    async def close(self) -> None:
        if self._closed:
            return
        if self._db is not None:
            await self._run(self._db.close)
            self._db = None
        self._closed = True
        self._jobs.put(None)
        await asyncio.get_running_loop().run_in_executor(None, self._thread.join)

    async def _run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        return await self._submit(lambda: fn(*args, **kwargs), group=False)

    async def _run_grouped(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Like :meth:`_run` for a job that may share a transaction (its writes must be in
        ``db.atomic()`` blocks, and it must have no effects outside the database)."""
        return await self._submit(lambda: fn(*args, **kwargs), group=True)

    async def _submit(self, call: Callable[[], T], *, group: bool) -> T:
        if self._closed:
            raise RuntimeError("store is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._jobs.put(_Job(call, future, loop, group))
        return await future

    def _work(self) -> None:
        taken: _Job | None = None  # a job already taken off the queue, not yet run
        while True:
            job = taken if taken is not None else self._jobs.get()
            taken = None
            if job is None:
                return
            if not job.group or self._db is None:
                self._reply(job, *self._call(job))
                continue
            group = [job]
            stop = False
            while len(group) < MAX_GROUP:
                try:
                    queued = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if queued is not None and queued.group:
                    group.append(queued)
                    continue
                taken, stop = queued, queued is None
                break
            try:
                self._run_group(group)
            except BaseException as e:  # the thread must outlive any failure; answer them all
                for job in group:
                    self._reply(job, False, e)  # a job answered already keeps its answer
            if stop:
                return

    @staticmethod
    def _call(job: _Job) -> tuple[bool, Any]:
        try:
            return True, job.call()
        except BaseException as e:
            return False, e

    @staticmethod
    def _reply(job: _Job, ok: bool, value: Any) -> None:  # noqa: ANN401
        with contextlib.suppress(RuntimeError):  # the caller's loop is closed: nobody waits
            job.loop.call_soon_threadsafe(_answer, job.future, ok, value)

    def _run_group(self, group: list[_Job]) -> None:
        """Run ``group`` in one transaction, commit, then answer every job."""
        conn = self.db.conn
        if len(group) == 1 or _in_transaction(conn):  # (one left open: run them alone)
            for job in group:
                self._reply(job, *self._call(job))
            return
        conn.execute(BEGIN)
        results = []
        for job in group:
            results.append(self._call(job))
            if not _in_transaction(conn):  # a job's error ended the whole transaction
                break
        try:
            if not _in_transaction(conn):
                raise sqlite3.OperationalError("the group's transaction was rolled back")
            conn.execute("COMMIT")
        except sqlite3.Error as e:
            if _in_transaction(conn):
                conn.execute("ROLLBACK")
            # nothing of the group was committed: every job fails, queued ones run again alone
            done = len(results)
            for job in group[:done]:
                self._reply(job, False, sqlite3.OperationalError(f"not committed: {e}"))
            for job in group[done:]:
                self._reply(job, *self._call(job))
            return
        # one wake-up per event loop for the whole group
        answers: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], bool, Any]]] = {}
        for job, (ok, value) in zip(group, results, strict=True):
            answers.setdefault(job.loop, []).append((job.future, ok, value))
        for loop, batch in answers.items():
            with contextlib.suppress(RuntimeError):  # the caller's loop is closed
                loop.call_soon_threadsafe(_answer_all, batch)

    def _t(self, name: str) -> Table:
        return self.db.table(name)

    @property
    def db(self) -> sqlite_utils.Database:
        if self._db is None:
            raise RuntimeError("store is closed")
        return self._db

    async def execute_raw(self, sql: str, params: list[Any] | None = None) -> None:
        """Run one SQL statement (for tests that need to tamper with the database)."""

        def run() -> None:
            self._flavor_rows.clear()
            with self.db.atomic():
                self.db.execute(sql, params or [])

        await self._run(run)


def _columns(cur: sqlite3.Cursor) -> list[str]:
    return [d[0] for d in cur.description]


def _last_id(table: Table) -> int:
    pk = table.last_pk
    if not isinstance(pk, int):  # pragma: no cover - integer primary keys only
        raise TypeError("expected an integer primary key")
    return pk
