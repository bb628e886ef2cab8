"""The store's backend: one connection on one worker thread, with group commit.

This is the only place that opens connections: a SQLite file (:mod:`hub.store.sqlite`, the
default) or a PostgreSQL database (:mod:`hub.store.postgres`, for a target that is a
``postgresql://`` URL). One worker thread owns the connection; every public method of the
store is ``async`` and runs on that thread, so this process's writes are serialised and a
check-and-set such as consuming a nonce is atomic (across processes the statements themselves
are: see the aggregates). The report path's jobs (host reads, nonces, recording a report) are
committed in groups: the worker takes the ones queued together, runs each in its own savepoint
inside one transaction, commits once, and only then answers them all, so an answered write is
a committed one (a failing job rolls back only its savepoint; when the group's transaction
cannot be committed, each job runs again alone).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, ParamSpec, Self, TypeVar

from hub.auditseal import AuditSealer
from hub.cache import LruCache
from hub.store.connection import Connection, Cursor, is_postgres_url
from hub.store.schema import MIGRATIONS
from hub.store.sqlite import SqliteConnection

log = logging.getLogger("trustplane.hub.store")

P = ParamSpec("P")
T = TypeVar("T")

FLAVOR_TEXT_CACHE_SIZE: Final = 4096  # decoded documents kept by content digest
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


class StoreBackend:
    """The connection, its thread and the state every aggregate shares; aggregates subclass it
    (the :class:`hub.store.Store` combines them). ``target``: a SQLite file path (or
    ``:memory:``) or a ``postgresql://`` URL."""

    def __init__(
        self, target: Path | str, *, migrations: tuple[Callable[..., None], ...] = MIGRATIONS
    ) -> None:
        self._path = str(target)
        self._migrations = migrations
        self.dialect = "postgresql" if is_postgres_url(self._path) else "sqlite"
        # SQLite keeps the audit head in a file beside the database (in memory for :memory:);
        # PostgreSQL in its audit_head table (hub.store.audit)
        self._audit_head_file = (
            None
            if self._path == ":memory:" or self.dialect == "postgresql"
            else Path(self._path + AUDIT_HEAD_SUFFIX)
        )
        self._memory_audit_head: tuple[int, str] | None = None
        # signs the audit head and checkpoints once the caller sets it (it holds the hub's key)
        self.audit_sealer: AuditSealer | None = None
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._work, name="hub-store", daemon=True)
        self._thread.start()
        self._closed = False
        self._db: Connection | None = None
        self.schema_version = 0
        self._host_light_sql = ""
        # flavor rows as (SHA-256 of the stored text, document), ("", None) for no such flavor;
        # cleared by this store's own flavor writes and when another connection commits
        # anything (SQLite's PRAGMA data_version; on PostgreSQL each read compares digests)
        self._flavor_rows: LruCache[str, tuple[str, Mapping[str, Any] | None]] = LruCache(
            FLAVOR_CACHE_SIZE
        )
        self._data_version: int | None = None
        # decoded flavor documents by the SHA-256 of their text: a pure function of the key, so
        # never stale; spares the JSON decoding when the rows above were cleared because
        # another process (a worker of server.workers) committed something else
        self._flavor_texts: LruCache[str, Mapping[str, Any]] = LruCache(FLAVOR_TEXT_CACHE_SIZE)

    @classmethod
    async def open(cls, target: Path | str, **kwargs: Any) -> Self:  # noqa: ANN401
        store = cls(target, **kwargs)
        try:
            await store._run(store._open_sync)
        except BaseException:
            await store.close()
            raise
        return store

    def _open_sync(self) -> None:
        db: Connection
        if self.dialect == "postgresql":
            # psycopg only when asked for: a hub on SQLite (the RPM's default) runs without it
            from hub.store.postgres import PostgresConnection  # noqa: PLC0415

            db = PostgresConnection(self._path)
        else:
            db = SqliteConnection(self._path)
        try:
            self.schema_version = db.migrate(self._migrations)
            # every hosts column but rule_results (the largest; overflow pages), as migrated
            names = ", ".join(f'"{c}"' for c in db.columns("hosts") if c != "rule_results")
            self._host_light_sql = f"SELECT {names} FROM hosts WHERE id = ?"  # noqa: S608
        except BaseException:
            db.close()
            raise
        self._db = db

    @property
    def backend_pid(self) -> int | None:
        """PostgreSQL: the server process of this store's connection (what its notifications
        carry); ``None`` on SQLite or before the store is open."""
        return None if self._db is None else self._db.backend_pid

    @property
    def integrity_error(self) -> type[Exception]:
        """The driver's constraint-violation error (what a refused write raises)."""
        return self.db.integrity_error

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
        conn = self.db
        if len(group) == 1 or conn.transaction_open():  # (one left open: run them alone)
            for job in group:
                self._reply(job, *self._call(job))
            return
        conn.begin()
        results = []
        for job in group:
            results.append(self._call(job))
            if not conn.transaction_open():  # a job's error ended or broke the transaction
                break
        error: Exception | None = None
        if not conn.transaction_open():
            error = GroupRolledBack("the group's transaction was rolled back")
        else:
            try:
                conn.commit()
            except conn.error as e:
                error = e
        if error is not None:
            # nothing of the group was committed (a job's failed statement broke the
            # transaction, as PostgreSQL does, or the commit failed: a deadlock with another
            # process, a lost connection): every job runs again alone, in its own transaction,
            # so one job's failure is its own and the others' answers are committed ones
            conn.rollback()
            log.warning(
                "a group of %d store jobs was not committed (%s); running them alone",
                len(group),
                type(error).__name__,
            )
            for job in group:
                self._reply(job, *self._call(job))
            return
        # one wake-up per event loop for the whole group
        answers: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], bool, Any]]] = {}
        for job, (ok, value) in zip(group, results, strict=True):
            answers.setdefault(job.loop, []).append((job.future, ok, value))
        for loop, batch in answers.items():
            with contextlib.suppress(RuntimeError):  # the caller's loop is closed
                loop.call_soon_threadsafe(_answer_all, batch)

    @property
    def db(self) -> Connection:
        if self._db is None:
            raise RuntimeError("store is closed")
        return self._db

    def _rows(self, sql: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
        """The rows of a query as dicts by column name."""
        cur = self.db.execute(sql, params)
        names = _columns(cur)
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def _row(self, sql: str, params: list[Any] | None = None) -> dict[str, Any] | None:
        rows = self._rows(sql, params)
        return rows[0] if rows else None

    async def execute_raw(self, sql: str, params: list[Any] | None = None) -> None:
        """Run one SQL statement (for tests that need to tamper with the database)."""

        def run() -> None:
            self._flavor_rows.clear()
            with self.db.atomic():
                self.db.execute(sql, params or [])

        await self._run(run)


class GroupRolledBack(Exception):
    """A grouped job's transaction was not committed (see the module docstring)."""


def _columns(cur: Cursor) -> list[str]:
    return [d[0] for d in cur.description]
