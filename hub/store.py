"""The hub's persistent state: one SQLite database through sqlite-utils.

This is the only module that imports ``sqlite3``/``sqlite_utils``. One worker thread owns the
connection (WAL mode); every public method is ``async`` and runs on that thread, so writes are
serialised and a check-and-set such as consuming a nonce is atomic. The report path's jobs
(host reads, nonces, recording a report) are committed in groups: the worker takes the ones
queued together, runs each in its own savepoint inside one transaction, commits once, and only
then answers them all, so an answered write is a committed one (a failing job rolls back only
its savepoint). Schema changes are numbered
migration functions recorded in ``schema_migrations``; a new database runs them all.

The audit log is append-only and hash-chained: each row stores
``sha256(prev_hash || canonical JSON of the row)``, and :meth:`Store.verify_audit_chain` finds
the first row that no longer fits. The chain alone cannot show that its newest rows were
deleted, so the head (last row id and hash) is also kept outside the table, in
``<database>-audit-head.json`` next to the database file (written atomically after each append;
in memory for ``:memory:``), and verification compares the table's last row with it.
Policy (what a verdict means, who may do what) lives in the callers; this module stores and
fetches.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import queue
import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, ParamSpec, TypeVar

import sqlite_utils
from cryptography.hazmat.primitives.asymmetric import ec
from sqlite_utils.db import Table

from hub.auditseal import AuditSealer, read_exported, verify_seal
from hub.cache import LruCache

P = ParamSpec("P")
T = TypeVar("T")

GENESIS_HASH: Final = "0" * 64


@dataclass(frozen=True, slots=True)
class Host:
    id: str
    state: str  # pending | approved | enrolled | revoked
    hostname: str
    node_name: str | None
    dmi_uuid: str | None
    tags: dict[str, str]
    flavors: tuple[str, ...]
    created: float
    last_report: float | None
    verdict: str
    reasons: tuple[str, ...]
    valid_until: float | None
    rule_results: tuple[dict[str, Any], ...]
    group: str | None = None  # its host group (whose flavors it is verified against too)
    # hex serial of the one client certificate that authenticates it (None: enrolled before the
    # hub recorded serials, any certificate for it from the hub's CA is accepted)
    cert_serial: str | None = None


@dataclass(frozen=True, slots=True)
class HostGroup:
    """A named set of hosts sharing assigned flavors (a host is in at most one group)."""

    name: str
    flavors: tuple[str, ...]
    hosts: tuple[str, ...]  # member host ids, sorted


@dataclass(frozen=True, slots=True)
class HostKeys:
    host_id: str
    ek_public: bytes
    ak_public: bytes
    ek_certificate: bytes | None
    binding_public: bytes | None
    ek_verified: bool


@dataclass(frozen=True, slots=True)
class HostFacts:
    """What an agent says about itself; applied to an enrolled host only after activation."""

    hostname: str
    node_name: str | None = None
    dmi_uuid: str | None = None


@dataclass(frozen=True, slots=True)
class PendingEnrollment:
    """An issued MakeCredential challenge and the keys it will bind once answered."""

    host_id: str
    secret_hash: bytes
    expires: float
    csr: str
    keys: HostKeys
    facts: HostFacts
    handle: bytes = b""  # names the challenge; only the request that got it knows it


@dataclass(frozen=True, slots=True)
class Token:
    id: int
    hash: str
    role: str
    name: str
    created: float
    revoked: bool


@dataclass(frozen=True, slots=True)
class Alert:
    id: int
    host_id: str
    at: float
    kind: str
    reasons: tuple[str, ...]
    acked_at: float | None
    acked_by: str | None


@dataclass(frozen=True, slots=True)
class StoredReport:
    id: int
    host_id: str
    received: float
    verdict: str
    reasons: tuple[str, ...]
    sequence: int
    body_sha256: str


@dataclass(frozen=True, slots=True)
class HostEvidence:
    """A host's last report whose quote verified and whose event logs replayed to it.

    ``pcrs`` maps bank (TPM_ALG_ID) to PCR index to the quoted value; ``eventlogs`` maps the
    log's name (``uefi``, ``txt``) to its SHA-256 in ``eventlog_cache``. What flavors are made
    from with ``trustplane-hub flavor import --from-host``.
    """

    host_id: str
    received: float
    pcrs: dict[int, dict[int, bytes]]
    eventlogs: dict[str, str]


@dataclass(frozen=True, slots=True)
class StoredFlavor:
    name: str
    document: dict[str, Any]
    created: float


class FlavorDocuments(Mapping[str, Mapping[str, Any]]):
    """Flavor documents by name, in assignment order, read-only.

    ``revision`` names each document with the SHA-256 of its stored text, so two equal
    revisions are the same documents: a cache keyed by it never serves a changed flavor.
    """

    __slots__ = ("_documents", "revision")

    def __init__(self, documents: dict[str, Mapping[str, Any]], revision: tuple[str, ...]) -> None:
        self._documents = documents
        self.revision = revision

    def __getitem__(self, name: str) -> Mapping[str, Any]:
        return self._documents[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._documents)

    def __len__(self) -> int:
        return len(self._documents)


CACHE_KIB: Final = 65536  # SQLite page cache per connection (KiB)
FLAVOR_CACHE_SIZE: Final = 65536  # decoded flavor rows kept (each a parsed JSON document)


@dataclass(frozen=True, slots=True)
class AuditCheck:
    """Result of :meth:`Store.verify_audit_chain`: ``first_bad`` is the first broken row id."""

    ok: bool
    rows: int
    first_bad: int | None = None
    problem: str | None = None


def _canonical(obj: object) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def audit_row_hash(prev_hash: str, row: dict[str, Any]) -> str:
    """``sha256(prev_hash || canonical row)`` in hex; ``row`` excludes ``id`` and ``hash``."""
    return hashlib.sha256(bytes.fromhex(prev_hash) + _canonical(row)).hexdigest()


AUDIT_HEAD_SUFFIX: Final = "-audit-head.json"


def _write_audit_head(path: Path, head: dict[str, Any]) -> None:
    """Replace ``path`` atomically with ``{"id", "hash"[, "sig"]}`` (0600)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(_canonical(head))
    os.replace(tmp, path)


MAX_GROUP: Final = 64  # jobs committed together at most


@dataclass(slots=True)
class _Job:
    """One call for the store's thread; ``group``: may share a transaction with its
    neighbours (see the module docstring)."""

    call: Callable[[], Any]
    future: asyncio.Future[Any]
    loop: asyncio.AbstractEventLoop
    group: bool


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


class NonceRefused(Exception):
    """:meth:`Store.record_report` was given a nonce that is not usable (``status``:
    ``unknown``, ``replayed`` or ``expired``); nothing was recorded."""

    def __init__(self, status: str) -> None:
        super().__init__(status)
        self.status = status


class SequenceRefused(Exception):
    """A report whose sequence number is not above the host's last recorded one."""

    def __init__(self, last: int) -> None:
        super().__init__(f"sequence not above the last recorded ({last})")
        self.last = last


class AuditHeadError(Exception):
    """The audit head file exists but cannot be read as one."""


def _read_audit_head(path: Path) -> tuple[int, str] | None:
    """The recorded head, None when the file is missing; raises :class:`AuditHeadError`."""
    data = _read_audit_head_document(path)
    return None if data is None else (data["id"], data["hash"])


def _read_audit_head_document(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise AuditHeadError(f"{path}: {e}") from None
    if not (
        isinstance(data, dict)
        and isinstance(data.get("id"), int)
        and isinstance(data.get("hash"), str)
    ):
        raise AuditHeadError(f"{path}: not an audit head")
    return data


def _check_audit_head(
    head: tuple[int, str] | None, last: tuple[int, str] | None, rows: int
) -> AuditCheck:
    """Compare the table's last row with the recorded head."""
    if head == last:
        return AuditCheck(ok=True, rows=rows)
    if head is None:
        return AuditCheck(False, rows, None if last is None else last[0], "audit head missing")
    if last is None or last[0] < head[0]:
        end = "the table is empty" if last is None else f"the table ends at row {last[0]}"
        return AuditCheck(False, rows, head[0], f"rows up to {head[0]} missing ({end})")
    return AuditCheck(False, rows, head[0], f"row {head[0]} is not the recorded head")


# --- migrations ------------------------------------------------------------------------------


def _migration_1(db: sqlite_utils.Database) -> None:
    db.table("hosts").create(
        {
            "id": str,
            "state": str,
            "hostname": str,
            "node_name": str,
            "dmi_uuid": str,
            "tags": str,
            "flavors": str,
            "created": float,
            "last_report": float,
            "verdict": str,
            "reasons": str,
            "valid_until": float,
            "rule_results": str,
        },
        pk="id",
        not_null={"state", "hostname", "created", "verdict"},
    )
    db.table("host_keys").create(
        {
            "host_id": str,
            "ek_public": bytes,
            "ek_certificate": bytes,
            "ak_public": bytes,
            "binding_public": bytes,
            "ek_verified": int,
        },
        pk="host_id",
        foreign_keys=[("host_id", "hosts", "id")],
    )
    db.table("enrollments").create(
        {
            "host_id": str,
            "secret_hash": bytes,
            "expires": float,
            "csr": str,
            "ek_public": bytes,
            "ek_certificate": bytes,
            "ak_public": bytes,
            "binding_public": bytes,
            "ek_verified": int,
            "hostname": str,
            "node_name": str,
            "dmi_uuid": str,
        },
        pk="host_id",
    )
    db.table("nonces").create(
        {"nonce": bytes, "host_id": str, "expires": float, "consumed": int}, pk="nonce"
    )
    db.table("nonces").create_index(["expires"])
    db.table("reports").create(
        {
            "id": int,
            "host_id": str,
            "received": float,
            "verdict": str,
            "reasons": str,
            "sequence": int,
            "body_sha256": str,
        },
        pk="id",
    )
    db.table("reports").create_index(["host_id", "id"])
    db.table("verdicts").create(
        {"id": int, "host_id": str, "at": float, "verdict": str, "previous": str, "reasons": str},
        pk="id",
    )
    db.table("verdicts").create_index(["host_id", "id"])
    db.table("flavors").create({"name": str, "document": str, "created": float}, pk="name")
    db.table("alerts").create(
        {
            "id": int,
            "host_id": str,
            "at": float,
            "kind": str,
            "reasons": str,
            "acked_at": float,
            "acked_by": str,
        },
        pk="id",
    )
    db.table("tokens").create(
        {"id": int, "hash": str, "role": str, "name": str, "created": float, "revoked": int},
        pk="id",
    )
    db.table("tokens").create_index(["hash"], unique=True)
    db.table("eventlog_cache").create({"sha256": str, "data": bytes, "stored": float}, pk="sha256")
    db.table("audit_log").create(
        {
            "id": int,
            "at": float,
            "actor": str,
            "action": str,
            "subject": str,
            "details": str,
            "prev_hash": str,
            "hash": str,
        },
        pk="id",
    )
    # Append-only: the database itself refuses updates and deletes of audit rows.
    db.execute(
        "CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log "
        "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END"
    )
    db.execute(
        "CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log "
        "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END"
    )


def _migration_2(db: sqlite_utils.Database) -> None:
    """The last verified evidence per host (for making flavors from a known-good host)."""
    db.table("host_evidence").create(
        {"host_id": str, "received": float, "pcrs": str, "eventlogs": str},
        pk="host_id",
        foreign_keys=[("host_id", "hosts", "id")],
    )


def _migration_3(db: sqlite_utils.Database) -> None:
    """Each host's current asset-tag certificate (DER), issued by the hub's tag CA."""
    db.table("tag_certificates").create(
        {"host_id": str, "der": bytes, "sha384": str, "issued": float},
        pk="host_id",
        foreign_keys=[("host_id", "hosts", "id")],
    )


def _migration_4(db: sqlite_utils.Database) -> None:
    """Host groups: a group's assigned flavors; each host names at most one group."""
    db.table("host_groups").create(
        {"name": str, "flavors": str, "created": float}, pk="name", not_null={"flavors"}
    )
    db.execute("ALTER TABLE hosts ADD COLUMN group_name TEXT REFERENCES host_groups(name)")
    db.execute("CREATE INDEX hosts_group_name ON hosts(group_name)")


def _migration_5(db: sqlite_utils.Database) -> None:
    """Indexes for the hub's own scans: pending-host counts at enrollment (state) and the
    stale sweep (valid_until)."""
    db.execute("CREATE INDEX hosts_state ON hosts(state)")
    db.execute("CREATE INDEX hosts_valid_until ON hosts(valid_until)")


MAX_OPEN_CHALLENGES_PER_HOST: Final = 8


def _migration_8(db: sqlite_utils.Database) -> None:
    """Enrollment challenges by handle: a host may have several open (one per request), and
    a stranger who knows its EK can neither replace nor take one. Open challenges of the old
    one-per-host table are dropped (they live minutes; their agents ask again)."""
    db.execute("DROP TABLE enrollments")
    db.table("enrollment_challenges").create(
        {
            "handle": bytes,
            "host_id": str,
            "secret_hash": bytes,
            "expires": float,
            "csr": str,
            "ek_public": bytes,
            "ek_certificate": bytes,
            "ak_public": bytes,
            "binding_public": bytes,
            "ek_verified": int,
            "hostname": str,
            "node_name": str,
            "dmi_uuid": str,
        },
        pk="handle",
    )
    db.execute("CREATE INDEX enrollment_challenges_host ON enrollment_challenges(host_id)")


def _migration_9(db: sqlite_utils.Database) -> None:
    """Signed audit checkpoints (hub.auditseal): row id, its chain hash, when, signature."""
    db.table("audit_checkpoints").create(
        {"id": int, "hash": str, "at": float, "sig": str}, pk="id", not_null={"hash", "sig"}
    )
    # rows written before the seals existed have no checkpoints (an upgraded hub)
    last = db.execute("SELECT COALESCE(MAX(id), 0) FROM audit_log").fetchone()[0]
    db.execute("CREATE TABLE audit_seal_start (after_row INTEGER NOT NULL)")
    db.execute("INSERT INTO audit_seal_start (after_row) VALUES (?)", [last])


def _migration_7(db: sqlite_utils.Database) -> None:
    """The serial of each host's current client certificate (older ones stop working)."""
    db.execute("ALTER TABLE hosts ADD COLUMN cert_serial TEXT")


def _migration_6(db: sqlite_utils.Database) -> None:
    """The highest report sequence number recorded per host (reset when the host enrolls)."""
    db.execute("ALTER TABLE hosts ADD COLUMN last_sequence INTEGER NOT NULL DEFAULT 0")


MIGRATIONS: Final[tuple[Callable[[sqlite_utils.Database], None], ...]] = (
    _migration_1,
    _migration_2,
    _migration_3,
    _migration_4,
    _migration_5,
    _migration_6,
    _migration_7,
    _migration_8,
    _migration_9,
)


def _migrate(db: sqlite_utils.Database, migrations: tuple[Callable[..., None], ...]) -> int:
    db.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations "
        "(version INTEGER PRIMARY KEY, name TEXT NOT NULL)"
    )
    done = {row[0] for row in db.execute("SELECT version FROM schema_migrations").fetchall()}
    version = max(done, default=0)
    for number, migration in enumerate(migrations, start=1):
        if number in done:
            continue
        with db.atomic():
            migration(db)
            db.execute(
                "INSERT INTO schema_migrations (version, name) VALUES (?, ?)",
                [number, migration.__name__],
            )
        version = number
    return version


# --- the store -------------------------------------------------------------------------------


class Store:
    """Async access to the hub database; create with :meth:`open`, end with :meth:`close`."""

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
    async def open(cls, path: Path | str, **kwargs: Any) -> Store:  # noqa: ANN401
        store = cls(path, **kwargs)
        await store._run(store._open_sync)
        return store

    def _open_sync(self) -> None:
        db = sqlite_utils.Database(self._path, execute_plugins=False)
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

    # --- the store's thread ----------------------------------------------------------------

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
        conn.execute("BEGIN")
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

    # --- hosts ---------------------------------------------------------------------------

    async def get_host(self, host_id: str, *, with_rules: bool = True) -> Host | None:
        """The host, or ``None``. ``with_rules=False`` leaves ``rule_results`` empty (the
        largest column: the per-request agent check does not need it decoded)."""
        return await self._run_grouped(self._get_host_sync, host_id, with_rules=with_rules)

    def _get_host_sync(self, host_id: str, *, with_rules: bool = True) -> Host | None:
        sql = "SELECT * FROM hosts WHERE id = ?" if with_rules else self._host_light_sql
        cur = self.db.conn.execute(sql, [host_id])
        row = cur.fetchone()
        if row is None:
            return None
        fields = dict(zip(_columns(cur), row, strict=True))
        if not with_rules:
            fields["rule_results"] = None  # decoded as ()
        return _host(fields)

    async def list_hosts(self) -> list[Host]:
        return await self._run(
            lambda: [_host(r) for r in self._t("hosts").rows_where(order_by="id")]
        )

    async def count_hosts(self, state: str) -> int:
        return await self._run(lambda: self._t("hosts").count_where("state = ?", [state]))

    async def register_host(
        self,
        *,
        host_id: str,
        state: str,
        hostname: str,
        node_name: str | None,
        dmi_uuid: str | None,
        now: float,
    ) -> Host:
        """Create the host; a host that is still ``pending`` may update what it says about
        itself and be raised to ``approved``. Approved and enrolled hosts are left alone here:
        their facts change only with a completed activation (:meth:`complete_enrollment`),
        since anyone can send a host's (public) EK.
        """

        def run() -> Host:
            with self.db.atomic():
                existing = self._get_host_sync(host_id)
                facts = {"hostname": hostname, "node_name": node_name, "dmi_uuid": dmi_uuid}
                if existing is None:
                    self._t("hosts").insert(
                        {
                            "id": host_id,
                            "state": state,
                            **facts,
                            "tags": "{}",
                            "flavors": "[]",
                            "created": now,
                            "verdict": "pending",
                            "reasons": "[]",
                            "rule_results": "[]",
                        }
                    )
                elif existing.state == "pending":
                    self._t("hosts").update(host_id, {**facts, "state": state})
                host = self._get_host_sync(host_id)
            if host is None:  # pragma: no cover - written above in the same transaction
                raise RuntimeError("host vanished")
            return host

        return await self._run(run)

    async def identity_conflicts(
        self, host_id: str, hostname: str, node_name: str | None, dmi_uuid: str | None
    ) -> list[tuple[str, str]]:
        """Active hosts (approved or enrolled) other than ``host_id`` that already use one of
        these names: ``[(host id, "hostname" | "node_name" | "dmi_uuid"), ...]``."""

        def run() -> list[tuple[str, str]]:
            found: list[tuple[str, str]] = []
            checks = (
                ("hostname", hostname or None),
                ("node_name", node_name),
                ("dmi_uuid", dmi_uuid.lower() if dmi_uuid else None),
            )
            for column, value in checks:
                if value is None:
                    continue
                expr = "lower(dmi_uuid)" if column == "dmi_uuid" else column
                rows = self.db.execute(
                    f"SELECT id FROM hosts WHERE {expr} = ? AND id != ? "  # noqa: S608 - fixed names
                    "AND state IN ('approved', 'enrolled') ORDER BY id",
                    [value, host_id],
                ).fetchall()
                found.extend((row[0], column) for row in rows)
            return found

        return await self._run(run)

    async def set_host_state(self, host_id: str, state: str) -> bool:
        def run() -> bool:
            with self.db.atomic():
                cur = self.db.execute("UPDATE hosts SET state = ? WHERE id = ?", [state, host_id])
                return cur.rowcount == 1

        return await self._run(run)

    async def set_host_tags(self, host_id: str, tags: dict[str, str]) -> None:
        await self._run(lambda: self._t("hosts").update(host_id, {"tags": json.dumps(tags)}))

    async def set_host_flavors(self, host_id: str, flavors: list[str]) -> None:
        await self._run(lambda: self._t("hosts").update(host_id, {"flavors": json.dumps(flavors)}))

    # --- host groups -----------------------------------------------------------------------

    async def set_host_group(self, host_id: str, group: str | None, now: float) -> None:
        """Put the host in ``group`` (made, without flavors, if new) or in none."""

        def run() -> None:
            with self.db.atomic():
                if group is not None:
                    self.db.execute(
                        "INSERT OR IGNORE INTO host_groups (name, flavors, created) "
                        "VALUES (?, '[]', ?)",
                        [group, now],
                    )
                self.db.execute("UPDATE hosts SET group_name = ? WHERE id = ?", [group, host_id])

        await self._run(run)

    async def set_group_flavors(self, group: str, flavors: list[str], now: float) -> None:
        """Set ``group``'s assigned flavors (the group is made if new)."""

        def run() -> None:
            with self.db.atomic():
                self.db.execute(
                    "INSERT INTO host_groups (name, flavors, created) VALUES (?, ?, ?) "
                    "ON CONFLICT(name) DO UPDATE SET flavors = excluded.flavors",
                    [group, json.dumps(flavors), now],
                )

        await self._run(run)

    async def list_groups(self) -> list[HostGroup]:
        """Every host group with its flavors and members, by name."""

        def run() -> list[HostGroup]:
            members: dict[str, list[str]] = {}
            for host_id, name in self.db.execute(
                "SELECT id, group_name FROM hosts WHERE group_name IS NOT NULL ORDER BY id"
            ).fetchall():
                members.setdefault(name, []).append(host_id)
            return [
                HostGroup(name, tuple(json.loads(flavors)), tuple(members.get(name, ())))
                for name, flavors in self.db.execute(
                    "SELECT name, flavors FROM host_groups ORDER BY name"
                ).fetchall()
            ]

        return await self._run(run)

    async def flavors_for_host(self, host: Host) -> FlavorDocuments:
        """The documents of the flavors ``host`` is verified against: its own assigned flavors,
        then its group's (each once; names without a stored flavor are left out). Served from
        memory while no flavor changed; the documents must not be modified."""

        def run() -> FlavorDocuments:
            names = list(host.flavors)
            if host.group is not None:
                row = self.db.execute(
                    "SELECT flavors FROM host_groups WHERE name = ?", [host.group]
                ).fetchone()
                names += json.loads(row[0]) if row else []
            return self._cached_flavors_sync(list(dict.fromkeys(names)))

        return await self._run_grouped(run)

    def _cached_flavors_sync(self, names: list[str]) -> FlavorDocuments:
        version = self.db.conn.execute("PRAGMA data_version").fetchone()[0]
        if version != self._data_version:  # another connection committed: trust nothing
            self._flavor_rows.clear()
            self._data_version = version
        documents: dict[str, Mapping[str, Any]] = {}
        revision: list[str] = []
        for name in names:
            entry = self._flavor_rows.get(name)
            if entry is None:
                row = self.db.conn.execute(
                    "SELECT document FROM flavors WHERE name = ?", [name]
                ).fetchone()
                text = None if row is None else str(row[0])
                entry = (
                    ("", None)
                    if text is None
                    else (hashlib.sha256(text.encode()).hexdigest(), json.loads(text))
                )
                self._flavor_rows.put(name, entry)
            sha, document = entry
            if document is not None:
                documents[name] = document
                revision.append(f"{name}:{sha}")
        return FlavorDocuments(documents, tuple(revision))

    async def get_host_keys(self, host_id: str) -> HostKeys | None:
        def run() -> HostKeys | None:
            rows = list(self._t("host_keys").rows_where("host_id = ?", [host_id]))
            return _keys(rows[0]) if rows else None

        return await self._run(run)

    # --- enrollment challenges -----------------------------------------------------------

    async def put_enrollment(self, pending: PendingEnrollment) -> None:
        """Store an open challenge under its handle; a host keeps at most
        :data:`MAX_OPEN_CHALLENGES_PER_HOST` (the oldest goes)."""
        k = pending.keys
        row = {
            "handle": pending.handle,
            "host_id": pending.host_id,
            "secret_hash": pending.secret_hash,
            "expires": pending.expires,
            "csr": pending.csr,
            "ek_public": k.ek_public,
            "ek_certificate": k.ek_certificate,
            "ak_public": k.ak_public,
            "binding_public": k.binding_public,
            "ek_verified": int(k.ek_verified),
            "hostname": pending.facts.hostname,
            "node_name": pending.facts.node_name,
            "dmi_uuid": pending.facts.dmi_uuid,
        }

        def run() -> None:
            with self.db.atomic():
                self._t("enrollment_challenges").insert(row)
                self.db.execute(
                    "DELETE FROM enrollment_challenges WHERE host_id = ? AND handle NOT IN "
                    "(SELECT handle FROM enrollment_challenges WHERE host_id = ? "
                    "ORDER BY expires DESC LIMIT ?)",
                    [pending.host_id, pending.host_id, MAX_OPEN_CHALLENGES_PER_HOST],
                )

        await self._run(run)

    async def take_enrollment(self, host_id: str, handle: bytes) -> PendingEnrollment | None:
        """Remove and return the host's open challenge named ``handle`` (single use), or
        ``None``."""

        def run() -> PendingEnrollment | None:
            with self.db.atomic():
                rows = list(
                    self._t("enrollment_challenges").rows_where(
                        "handle = ? AND host_id = ?", [handle, host_id]
                    )
                )
                if not rows:
                    return None
                self.db.execute("DELETE FROM enrollment_challenges WHERE handle = ?", [handle])
            r = rows[0]
            return PendingEnrollment(
                host_id=r["host_id"],
                secret_hash=r["secret_hash"],
                expires=r["expires"],
                csr=r["csr"],
                keys=_keys(r),
                facts=HostFacts(r["hostname"], r["node_name"], r["dmi_uuid"]),
                handle=r["handle"],
            )

        return await self._run(run)

    async def complete_enrollment(
        self, keys: HostKeys, facts: HostFacts, *, cert_serial: str | None = None
    ) -> None:
        """Bind the activated keys and the facts to the host and mark it ``enrolled``; with
        ``cert_serial``, that certificate becomes the only one that authenticates the host."""

        def run() -> None:
            with self.db.atomic():
                self._t("host_keys").upsert(
                    {
                        "host_id": keys.host_id,
                        "ek_public": keys.ek_public,
                        "ek_certificate": keys.ek_certificate,
                        "ak_public": keys.ak_public,
                        "binding_public": keys.binding_public,
                        "ek_verified": int(keys.ek_verified),
                    },
                    pk="host_id",
                )
                self._t("hosts").update(
                    keys.host_id,
                    {
                        "state": "enrolled",
                        "hostname": facts.hostname,
                        "node_name": facts.node_name,
                        "dmi_uuid": facts.dmi_uuid,
                        # an agent that enrolls again may have lost its ledger: count anew
                        "last_sequence": 0,
                        "cert_serial": cert_serial,
                    },
                )

        await self._run(run)

    async def count_open_enrollments(self, now: float) -> int:
        def run() -> int:
            with self.db.atomic():
                self.db.execute("DELETE FROM enrollment_challenges WHERE expires < ?", [now])
            return self._t("enrollment_challenges").count

        return await self._run(run)

    # --- nonces --------------------------------------------------------------------------

    async def put_nonce(self, nonce: bytes, host_id: str, expires: float) -> None:
        def run() -> None:
            with self.db.atomic():
                self.db.conn.execute(
                    "INSERT INTO nonces (nonce, host_id, expires, consumed) VALUES (?, ?, ?, 0)",
                    [nonce, host_id, expires],
                )

        await self._run_grouped(run)

    async def consume_nonce(self, nonce: bytes, host_id: str, now: float) -> str:
        """Use a nonce once. Returns ``ok``, ``unknown``, ``replayed`` or ``expired``.

        A nonce issued to another host counts as ``unknown``. The check and the mark happen in
        one statement on the writer thread, so two concurrent reports cannot both get ``ok``.
        """

        def run() -> str:
            with self.db.atomic():
                return self._consume_nonce_sync(nonce, host_id, now)

        return await self._run_grouped(run)

    def _consume_nonce_sync(self, nonce: bytes, host_id: str, now: float) -> str:
        """The check-and-set of :meth:`consume_nonce`; the caller holds the transaction."""
        conn = self.db.conn
        cur = conn.execute(
            "UPDATE nonces SET consumed = 1 WHERE nonce = ? AND host_id = ? "
            "AND consumed = 0 AND expires >= ?",
            [nonce, host_id, now],
        )
        if cur.rowcount == 1:
            return "ok"
        row = conn.execute(
            "SELECT consumed FROM nonces WHERE nonce = ? AND host_id = ?", [nonce, host_id]
        ).fetchone()
        if row is None:
            return "unknown"
        return "replayed" if row[0] else "expired"

    async def prune_nonces(self, now: float, *, keep_for: float = 600.0) -> int:
        """Delete nonces expired more than ``keep_for`` seconds ago; returns how many."""

        def run() -> int:
            with self.db.atomic():
                return self.db.execute(
                    "DELETE FROM nonces WHERE expires < ?", [now - keep_for]
                ).rowcount

        return await self._run(run)

    # --- reports and verdicts ------------------------------------------------------------

    async def record_report(
        self,
        *,
        host_id: str,
        received: float,
        verdict: str,
        reasons: tuple[str, ...],
        sequence: int,
        body_sha256: str,
        valid_until: float,
        rule_results: list[dict[str, Any]] | str,
        history: int,
        evidence: HostEvidence | None = None,
        nonce: bytes | None = None,
    ) -> str:
        """Store a report's outcome, update the host, keep the last ``history`` reports, and
        replace the host's verified evidence when ``evidence`` is given.

        With ``nonce``, the nonce is consumed first, in the same transaction (as
        :meth:`consume_nonce`, at ``received``): unless it is ``ok`` nothing is written and
        :class:`NonceRefused` is raised, so a report is recorded exactly when its nonce is spent.
        With ``nonce`` (a report whose quote verified), a ``sequence`` not above the host's last
        such one raises :class:`SequenceRefused` (with that last number) and writes nothing, the
        nonce included; otherwise it becomes the host's last.
        Returns the host's previous verdict; a change is also written to ``verdicts``.
        ``rule_results`` may be given already as JSON text.
        """
        reasons_json = json.dumps(list(reasons))
        rules_json = rule_results if isinstance(rule_results, str) else json.dumps(rule_results)
        evidence_row = None if evidence is None else _evidence_row(evidence)

        def run() -> str:
            conn = self.db.conn
            with self.db.atomic():
                if nonce is not None:
                    status = self._consume_nonce_sync(nonce, host_id, received)
                    if status != "ok":
                        raise NonceRefused(status)
                row = conn.execute(
                    "SELECT verdict, last_sequence FROM hosts WHERE id = ?", [host_id]
                ).fetchone()
                # only reports whose quote verified (their nonce spent here) count: a forged
                # one must not move the host's sequence
                if nonce is not None and row is not None and sequence <= row[1]:
                    raise SequenceRefused(int(row[1]))
                conn.execute(
                    "INSERT INTO reports (host_id, received, verdict, reasons, sequence, "
                    "body_sha256) VALUES (?, ?, ?, ?, ?, ?)",
                    [host_id, received, verdict, reasons_json, sequence, body_sha256],
                )
                # ids only grow: everything at or below the host's history-th newest goes
                conn.execute(
                    "DELETE FROM reports WHERE host_id = ? AND id <= (SELECT id FROM reports "
                    "WHERE host_id = ? ORDER BY id DESC LIMIT 1 OFFSET ?)",
                    [host_id, host_id, history],
                )
                conn.execute(
                    "UPDATE hosts SET last_report = ?, verdict = ?, reasons = ?, "
                    "valid_until = ?, rule_results = ?, "
                    "last_sequence = CASE WHEN ? THEN ? ELSE last_sequence END WHERE id = ?",
                    [
                        received,
                        verdict,
                        reasons_json,
                        valid_until,
                        rules_json,
                        nonce is not None,
                        sequence,
                        host_id,
                    ],
                )
                previous = str(row[0]) if row is not None else "pending"
                if previous != verdict:
                    self._insert_verdict(host_id, received, verdict, previous, reasons)
                if evidence_row is not None:
                    conn.execute(
                        "INSERT INTO host_evidence (host_id, received, pcrs, eventlogs) "
                        "VALUES (:host_id, :received, :pcrs, :eventlogs) ON CONFLICT(host_id) "
                        "DO UPDATE SET received = excluded.received, pcrs = excluded.pcrs, "
                        "eventlogs = excluded.eventlogs",
                        evidence_row,
                    )
            return previous

        return await self._run_grouped(run)

    def _insert_verdict(
        self, host_id: str, at: float, verdict: str, previous: str, reasons: tuple[str, ...]
    ) -> None:
        self._t("verdicts").insert(
            {
                "host_id": host_id,
                "at": at,
                "verdict": verdict,
                "previous": previous,
                "reasons": json.dumps(list(reasons)),
            }
        )

    async def list_reports(self, host_id: str) -> list[StoredReport]:
        def run() -> list[StoredReport]:
            return [
                StoredReport(
                    id=r["id"],
                    host_id=r["host_id"],
                    received=r["received"],
                    verdict=r["verdict"],
                    reasons=tuple(json.loads(r["reasons"])),
                    sequence=r["sequence"],
                    body_sha256=r["body_sha256"],
                )
                for r in self._t("reports").rows_where("host_id = ?", [host_id], order_by="id")
            ]

        return await self._run(run)

    async def mark_stale(self, now: float) -> list[Host]:
        """Set ``stale`` on every trusted/untrusted host whose report validity has passed.

        Returns the hosts as they were before (their previous verdict), one per transition.
        """

        def run() -> list[Host]:
            with self.db.atomic():
                rows = [
                    _host(r)
                    for r in self._t("hosts").rows_where(
                        "verdict IN ('trusted', 'untrusted') AND valid_until IS NOT NULL "
                        "AND valid_until < ?",
                        [now],
                    )
                ]
                for h in rows:
                    reasons = ("report.expired",)
                    self._t("hosts").update(
                        h.id, {"verdict": "stale", "reasons": json.dumps(list(reasons))}
                    )
                    self._insert_verdict(h.id, now, "stale", h.verdict, reasons)
            return rows

        return await self._run(run)

    async def list_verdicts(self, host_id: str) -> list[dict[str, Any]]:
        return await self._run(
            lambda: list(self._t("verdicts").rows_where("host_id = ?", [host_id], order_by="id"))
        )

    # --- alerts --------------------------------------------------------------------------

    async def add_alert(self, host_id: str, at: float, kind: str, reasons: tuple[str, ...]) -> int:
        def run() -> int:
            with self.db.atomic():
                table = self._t("alerts").insert(
                    {
                        "host_id": host_id,
                        "at": at,
                        "kind": kind,
                        "reasons": json.dumps(list(reasons)),
                    }
                )
                return _last_id(table)

        return await self._run(run)

    async def set_alert_reasons(self, alert_id: int, reasons: tuple[str, ...]) -> None:
        """Replace an alert's reasons (a summary alert counting its attempts)."""

        def run() -> None:
            with self.db.atomic():
                self.db.execute(
                    "UPDATE alerts SET reasons = ? WHERE id = ?",
                    [json.dumps(list(reasons)), alert_id],
                )

        await self._run(run)

    async def list_alerts(self, *, open_only: bool = False) -> list[Alert]:
        where = "acked_at IS NULL" if open_only else None
        return await self._run(
            lambda: [_alert(r) for r in self._t("alerts").rows_where(where, order_by="id DESC")]
        )

    async def ack_alert(self, alert_id: int, at: float, by: str) -> bool:
        def run() -> bool:
            with self.db.atomic():
                cur = self.db.execute(
                    "UPDATE alerts SET acked_at = ?, acked_by = ? "
                    "WHERE id = ? AND acked_at IS NULL",
                    [at, by, alert_id],
                )
                return cur.rowcount == 1

        return await self._run(run)

    # --- flavors -------------------------------------------------------------------------

    async def put_flavor(self, name: str, document: dict[str, Any], now: float) -> None:
        def run() -> None:
            self._flavor_rows.discard(name)
            self._t("flavors").upsert(
                {"name": name, "document": json.dumps(document), "created": now}, pk="name"
            )

        await self._run(run)

    async def get_flavors(self, names: list[str]) -> dict[str, dict[str, Any]]:
        return await self._run(self._get_flavors_sync, names)

    def _get_flavors_sync(self, names: list[str]) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for name in names:
            rows = list(self._t("flavors").rows_where("name = ?", [name]))
            if rows:
                out[name] = json.loads(rows[0]["document"])
        return out

    async def list_flavors(self) -> list[StoredFlavor]:
        """Every stored flavor, by name."""
        return await self._run(
            lambda: [
                StoredFlavor(r["name"], json.loads(r["document"]), r["created"])
                for r in self._t("flavors").rows_where(order_by="name")
            ]
        )

    async def delete_flavor(self, name: str) -> bool:
        """Delete a flavor; False when there is none of that name. Assignments are the
        caller's to check (a host keeps naming a deleted flavor until reassigned)."""

        def run() -> bool:
            self._flavor_rows.discard(name)
            with self.db.atomic():
                cur = self.db.execute("DELETE FROM flavors WHERE name = ?", [name])
                return cur.rowcount == 1

        return await self._run(run)

    async def get_host_evidence(self, host_id: str) -> HostEvidence | None:
        """The host's last verified evidence (see :class:`HostEvidence`), if any."""

        def run() -> HostEvidence | None:
            rows = list(self._t("host_evidence").rows_where("host_id = ?", [host_id]))
            return _evidence(rows[0]) if rows else None

        return await self._run(run)

    # --- tokens --------------------------------------------------------------------------

    async def add_token(self, token_hash: str, role: str, name: str, now: float) -> int:
        def run() -> int:
            with self.db.atomic():
                table = self._t("tokens").insert(
                    {"hash": token_hash, "role": role, "name": name, "created": now, "revoked": 0}
                )
                return _last_id(table)

        return await self._run(run)

    async def find_token(self, token_hash: str) -> Token | None:
        """The live token with this hash (the lookup is by hash; callers hash in constant time)."""

        def run() -> Token | None:
            rows = list(self._t("tokens").rows_where("hash = ? AND revoked = 0", [token_hash]))
            return _token(rows[0]) if rows else None

        return await self._run(run)

    async def list_tokens(self) -> list[Token]:
        return await self._run(
            lambda: [_token(r) for r in self._t("tokens").rows_where(order_by="id")]
        )

    async def revoke_token(self, token_id: int) -> bool:
        def run() -> bool:
            with self.db.atomic():
                cur = self.db.execute(
                    "UPDATE tokens SET revoked = 1 WHERE id = ? AND revoked = 0", [token_id]
                )
                return cur.rowcount == 1

        return await self._run(run)

    # --- event log cache -----------------------------------------------------------------

    async def put_eventlog(self, sha256_hex: str, data: bytes, now: float) -> None:
        await self._run(
            lambda: self._t("eventlog_cache").upsert(
                {"sha256": sha256_hex, "data": data, "stored": now}, pk="sha256"
            )
        )

    async def prune_eventlogs(self, older_than: float) -> int:
        """Forget cached logs stored before ``older_than`` (an agent resends a log the hub
        asks for through ``missing_eventlogs``); returns how many."""

        def run() -> int:
            with self.db.atomic():
                cur = self.db.execute("DELETE FROM eventlog_cache WHERE stored < ?", [older_than])
                return cur.rowcount

        return await self._run(run)

    async def get_eventlog(self, sha256_hex: str) -> bytes | None:
        def run() -> bytes | None:
            rows = list(self._t("eventlog_cache").rows_where("sha256 = ?", [sha256_hex]))
            return bytes(rows[0]["data"]) if rows else None

        return await self._run(run)

    # --- audit log -----------------------------------------------------------------------

    async def audit(
        self, *, at: float, actor: str, action: str, subject: str, details: dict[str, Any]
    ) -> int:
        """Append one hash-chained audit row; returns its id."""

        def run() -> int:
            with self.db.atomic():
                last = self.db.execute(
                    "SELECT hash FROM audit_log ORDER BY id DESC LIMIT 1"
                ).fetchone()
                prev = last[0] if last else GENESIS_HASH
                row = {
                    "at": at,
                    "actor": actor,
                    "action": action,
                    "subject": subject,
                    "details": json.dumps(details, sort_keys=True),
                    "prev_hash": prev,
                }
                digest = audit_row_hash(prev, row)
                row_id = _last_id(self._t("audit_log").insert({**row, "hash": digest}))
                checkpoint = None
                sealer = self.audit_sealer
                if sealer is not None and row_id % sealer.checkpoint_every == 0:
                    checkpoint = sealer.seal({"id": row_id, "hash": digest, "at": at})
                    self._t("audit_checkpoints").insert(checkpoint)
            self._record_audit_head((row_id, digest))
            if checkpoint is not None and sealer is not None:
                sealer.export(checkpoint)
            return row_id

        return await self._run(run)

    def _record_audit_head(self, head: tuple[int, str]) -> None:
        self._memory_audit_head = head
        if self._audit_head_file is not None:
            document: dict[str, Any] = {"id": head[0], "hash": head[1]}
            if self.audit_sealer is not None:
                document = self.audit_sealer.seal(document)
            _write_audit_head(self._audit_head_file, document)

    async def verify_audit_seals(
        self,
        public_key: ec.EllipticCurvePublicKey,
        *,
        checkpoint_every: int,
        export_file: Path | None = None,
    ) -> AuditCheck:
        """The seals (hub.auditseal) against the chain: the head file's signature, a signed
        checkpoint with the chain's hash for every ``checkpoint_every``-th row, and every
        exported checkpoint. Run after :meth:`verify_audit_chain` passed."""

        def run() -> AuditCheck:
            hashes = dict(self.db.execute("SELECT id, hash FROM audit_log").fetchall())
            rows = len(hashes)
            if self._audit_head_file is not None and hashes:
                try:
                    head = _read_audit_head_document(self._audit_head_file)
                except AuditHeadError as e:
                    return AuditCheck(False, rows, None, str(e))
                if head is None or not verify_seal(public_key, head):
                    return AuditCheck(False, rows, None, "audit head not signed by the hub's key")
            stored = {
                int(r["id"]): r for r in self._t("audit_checkpoints").rows_where(order_by="id")
            }
            start = self.db.execute("SELECT after_row FROM audit_seal_start").fetchone()[0]
            first = (start // checkpoint_every + 1) * checkpoint_every
            for row_id in range(first, max(hashes, default=0) + 1, checkpoint_every):
                cp = stored.get(row_id)
                if cp is None:
                    return AuditCheck(False, rows, row_id, "audit checkpoint missing")
                if not verify_seal(public_key, cp) or cp["hash"] != hashes.get(row_id):
                    return AuditCheck(False, rows, row_id, "audit checkpoint does not match")
            if export_file is not None:
                try:
                    exported = read_exported(export_file)
                except (OSError, ValueError, TypeError) as e:
                    return AuditCheck(False, rows, None, f"export file unreadable: {e}")
                for cp in exported:
                    cp_id = cp.get("id")
                    if not verify_seal(public_key, cp) or hashes.get(cp_id) != cp.get("hash"):
                        bad = cp_id if isinstance(cp_id, int) else None
                        return AuditCheck(False, rows, bad, "exported checkpoint does not match")
            return AuditCheck(True, rows)

        return await self._run(run)

    def _recorded_audit_head(self) -> tuple[int, str] | None:
        if self._audit_head_file is None:
            return self._memory_audit_head
        return _read_audit_head(self._audit_head_file)

    async def list_audit(self) -> list[dict[str, Any]]:
        return await self._run(lambda: list(self._t("audit_log").rows_where(order_by="id")))

    async def verify_audit_chain(self) -> AuditCheck:
        """Recompute every row's hash and link, then compare the last row with the recorded
        head (so deleted newest rows show); report the first row that does not fit."""

        def run() -> AuditCheck:
            prev = GENESIS_HASH
            count = 0
            last: tuple[int, str] | None = None
            for r in self._t("audit_log").rows_where(order_by="id"):
                count += 1
                row = {k: r[k] for k in ("at", "actor", "action", "subject", "details")}
                row["prev_hash"] = r["prev_hash"]
                if r["prev_hash"] != prev or audit_row_hash(prev, row) != r["hash"]:
                    return AuditCheck(False, count, int(r["id"]), "hash chain broken")
                prev = r["hash"]
                last = (int(r["id"]), str(r["hash"]))
            try:
                head = self._recorded_audit_head()
            except AuditHeadError as e:
                return AuditCheck(False, count, None, f"audit head unreadable: {e}")
            return _check_audit_head(head, last, count)

        return await self._run(run)

    # --- asset tags ------------------------------------------------------------------------

    async def set_tag_certificate(
        self, host_id: str, tags: dict[str, str], der: bytes | None, now: float
    ) -> None:
        """Set the host's tags and its current tag certificate together (``der`` None: no
        tags, no certificate)."""

        def run() -> None:
            with self.db.atomic():
                self._t("hosts").update(host_id, {"tags": json.dumps(tags, sort_keys=True)})
                self.db.execute("DELETE FROM tag_certificates WHERE host_id = ?", [host_id])
                if der is not None:
                    self._t("tag_certificates").insert(
                        {
                            "host_id": host_id,
                            "der": der,
                            "sha384": hashlib.sha384(der).hexdigest(),
                            "issued": now,
                        }
                    )

        await self._run(run)

    async def get_tag_certificate(self, host_id: str) -> bytes | None:
        """The host's current tag certificate (DER), or ``None``."""

        def run() -> bytes | None:
            rows = list(self._t("tag_certificates").rows_where("host_id = ?", [host_id]))
            return bytes(rows[0]["der"]) if rows else None

        return await self._run(run)

    async def execute_raw(self, sql: str, params: list[Any] | None = None) -> None:
        """Run one SQL statement (for tests that need to tamper with the database)."""

        def run() -> None:
            self._flavor_rows.clear()
            with self.db.atomic():
                self.db.execute(sql, params or [])

        await self._run(run)


def _host(r: dict[str, Any]) -> Host:
    return Host(
        id=r["id"],
        state=r["state"],
        hostname=r["hostname"],
        node_name=r["node_name"],
        dmi_uuid=r["dmi_uuid"],
        tags=json.loads(r["tags"] or "{}"),
        flavors=tuple(json.loads(r["flavors"] or "[]")),
        created=r["created"],
        last_report=r["last_report"],
        verdict=r["verdict"],
        reasons=tuple(json.loads(r["reasons"] or "[]")),
        valid_until=r["valid_until"],
        rule_results=tuple(json.loads(r["rule_results"] or "[]")),
        group=r.get("group_name"),
        cert_serial=r.get("cert_serial"),
    )


def _columns(cur: sqlite3.Cursor) -> list[str]:
    return [d[0] for d in cur.description]


def _evidence_row(e: HostEvidence) -> dict[str, Any]:
    pcrs = {str(alg): {str(i): v.hex() for i, v in b.items()} for alg, b in e.pcrs.items()}
    return {
        "host_id": e.host_id,
        "received": e.received,
        "pcrs": json.dumps(pcrs, sort_keys=True),
        "eventlogs": json.dumps(e.eventlogs, sort_keys=True),
    }


def _evidence(r: dict[str, Any]) -> HostEvidence:
    pcrs = {
        int(alg): {int(i): bytes.fromhex(v) for i, v in b.items()}
        for alg, b in json.loads(r["pcrs"]).items()
    }
    return HostEvidence(r["host_id"], r["received"], pcrs, json.loads(r["eventlogs"]))


def _keys(r: dict[str, Any]) -> HostKeys:
    return HostKeys(
        host_id=r["host_id"],
        ek_public=r["ek_public"],
        ak_public=r["ak_public"],
        ek_certificate=r["ek_certificate"],
        binding_public=r["binding_public"],
        ek_verified=bool(r["ek_verified"]),
    )


def _last_id(table: Table) -> int:
    pk = table.last_pk
    if not isinstance(pk, int):  # pragma: no cover - integer primary keys only
        raise TypeError("expected an integer primary key")
    return pk


def _token(r: dict[str, Any]) -> Token:
    return Token(
        id=r["id"],
        hash=r["hash"],
        role=r["role"],
        name=r["name"],
        created=r["created"],
        revoked=bool(r["revoked"]),
    )


def _alert(r: dict[str, Any]) -> Alert:
    return Alert(
        id=r["id"],
        host_id=r["host_id"],
        at=r["at"],
        kind=r["kind"],
        reasons=tuple(json.loads(r["reasons"] or "[]")),
        acked_at=r["acked_at"],
        acked_by=r["acked_by"],
    )
