"""The schema: numbered migrations recorded in ``schema_migrations``; a new database runs them all.

A new aggregate adds its tables with one more ``_migration_N`` here and an entry in
:data:`MIGRATIONS` (never change or reorder a released one), and its PostgreSQL twin in
:mod:`hub.store.pgschema`. A migration's number is the ``N`` of its name.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

import sqlite_utils


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


def _migration_6(db: sqlite_utils.Database) -> None:
    """The highest report sequence number recorded per host (reset when the host enrolls)."""
    db.execute("ALTER TABLE hosts ADD COLUMN last_sequence INTEGER NOT NULL DEFAULT 0")


def _migration_7(db: sqlite_utils.Database) -> None:
    """The serial of each host's current client certificate (older ones stop working)."""
    db.execute("ALTER TABLE hosts ADD COLUMN cert_serial TEXT")


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


def _migration_10(db: sqlite_utils.Database) -> None:
    """Leases for work that runs once across processes (hub.store.leases)."""
    db.table("leases").create(
        {"name": str, "holder": str, "expires": float}, pk="name", not_null={"holder", "expires"}
    )


def _migration_11(db: sqlite_utils.Database) -> None:
    """The key broker (hub.store.keys): transfer policies, key versions (material encrypted
    under the master key), per-host release outcomes, the issue times of release nonces."""
    db.execute(
        "CREATE TABLE key_policies (name TEXT PRIMARY KEY, predicate TEXT NOT NULL, "
        "max_age REAL NOT NULL, created REAL NOT NULL, updated REAL NOT NULL)"
    )
    db.execute(
        "CREATE TABLE key_versions (id TEXT PRIMARY KEY, "
        "policy TEXT NOT NULL REFERENCES key_policies(name), version INTEGER NOT NULL, "
        "created REAL NOT NULL, retired REAL, material BLOB NOT NULL, "
        "releases INTEGER NOT NULL DEFAULT 0, refusals INTEGER NOT NULL DEFAULT 0, "
        "last_use REAL, UNIQUE (policy, version))"
    )
    db.execute(
        "CREATE TABLE key_events (id INTEGER PRIMARY KEY, at REAL NOT NULL, "
        "host_id TEXT NOT NULL, key_id TEXT, ok INTEGER NOT NULL, reason TEXT NOT NULL, "
        "message TEXT NOT NULL)"
    )
    db.execute("CREATE INDEX key_events_host ON key_events(host_id, id)")
    db.execute(
        "CREATE TABLE key_nonces (nonce BLOB PRIMARY KEY, host_id TEXT NOT NULL, "
        "issued REAL NOT NULL)"
    )
    db.execute("CREATE INDEX key_nonces_issued ON key_nonces(issued)")


def _migration_12(db: sqlite_utils.Database) -> None:
    """Registered clusters, their sync state, what was announced per node (hub.store.clusters)."""
    db.execute(
        "CREATE TABLE clusters (name TEXT PRIMARY KEY, kubeconfig BLOB, context TEXT, "
        "added REAL NOT NULL)"
    )
    db.execute(
        "CREATE TABLE cluster_state (name TEXT PRIMARY KEY REFERENCES clusters(name), "
        "connected INTEGER NOT NULL, nodes INTEGER NOT NULL, nodes_matched INTEGER NOT NULL, "
        "last_sync REAL, last_error TEXT, updated REAL NOT NULL)"
    )
    db.execute(
        "CREATE TABLE cluster_nodes (cluster TEXT NOT NULL REFERENCES clusters(name), "
        "node TEXT NOT NULL, announced TEXT NOT NULL, mismatch TEXT NOT NULL, "
        "PRIMARY KEY (cluster, node))"
    )


def _migration_13(db: sqlite_utils.Database) -> None:
    """Hub replicas: the alert written with each verdict change (so another process reading the
    change announces the same alert), and the audit log's head for databases shared by
    several machines (PostgreSQL keeps it here; SQLite keeps it in a file beside the database,
    hub.store.audit)."""
    db.execute("ALTER TABLE verdicts ADD COLUMN alert_id INTEGER")
    db.execute(
        "CREATE TABLE audit_head (id INTEGER PRIMARY KEY CHECK (id = 1), "
        "row_id INTEGER NOT NULL, hash TEXT NOT NULL, document TEXT NOT NULL)"
    )


def _migration_14(db: sqlite_utils.Database) -> None:
    """The verdict-change log read by every hub process (hub.bus, hub.store.verdictchanges).

    Number 14 (wt/scale-proc; 11 keys, 12 clusters, 13 scale-db): its place in
    :data:`MIGRATIONS` is set when those branches are merged."""
    db.execute(
        "CREATE TABLE verdict_changes (id INTEGER PRIMARY KEY, host_id TEXT NOT NULL, "
        "previous TEXT NOT NULL, verdict TEXT NOT NULL, reasons TEXT NOT NULL, "
        "at REAL NOT NULL, alert_id INTEGER)"
    )


def _migration_15(db: sqlite_utils.Database) -> None:
    """Browser sessions shared by every hub process (hub.store.websessions)."""
    db.execute(
        "CREATE TABLE web_sessions (key TEXT PRIMARY KEY, sealed_token BLOB NOT NULL, "
        "name TEXT NOT NULL, role TEXT NOT NULL, csrf TEXT NOT NULL, expires REAL NOT NULL)"
    )


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
    _migration_10,
    _migration_11,
    _migration_12,
    _migration_13,
    _migration_14,
    _migration_15,
)


def numbered(migrations: tuple[Callable[..., None], ...]) -> list[tuple[int, Callable[..., None]]]:
    """Each migration with its number: the ``N`` of a function named ``_migration_N`` (numbers
    are assigned per branch, so the list may have gaps until they all land), else its
    position."""
    out = []
    for position, migration in enumerate(migrations, start=1):
        suffix = migration.__name__.removeprefix("_migration_")
        out.append((int(suffix) if suffix.isdigit() else position, migration))
    return out


def migrate(db: sqlite_utils.Database, migrations: tuple[Callable[..., None], ...]) -> int:
    db.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations "
        "(version INTEGER PRIMARY KEY, name TEXT NOT NULL)"
    )
    done = {row[0] for row in db.execute("SELECT version FROM schema_migrations").fetchall()}
    version = max(done, default=0)
    for number, migration in numbered(migrations):
        if number in done:
            continue
        with db.atomic():
            migration(db)
            db.execute(
                "INSERT INTO schema_migrations (version, name) VALUES (?, ?)",
                [number, migration.__name__],
            )
        version = max(version, number)
    return version
