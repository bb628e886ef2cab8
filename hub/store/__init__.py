"""The hub's persistent state: SQLite (default) or PostgreSQL, one module per aggregate.

:class:`Store` is the whole store: it combines the aggregates (each a class of its own module:
hosts, enrollments, nonces, reports, alerts, flavors, tokens, event logs, audit, asset tags,
leases, verdict changes, browser sessions, clusters) on the backend (:mod:`hub.store.backend`: one
connection on one worker thread, group commit), which opens a SQLite file
(:mod:`hub.store.sqlite`) or, for a ``postgresql://`` URL, a PostgreSQL database
(:mod:`hub.store.postgres`). The aggregates' SQL is the same on both
(:mod:`hub.store.connection`); the schema's numbered migrations are in :mod:`hub.store.schema`
(SQLite) and :mod:`hub.store.pgschema` (PostgreSQL). Policy (what a verdict means, who may do
what) lives in the callers; this package stores and fetches. Only this package imports
``sqlite3``/``sqlite_utils``/``psycopg``.

How to add an aggregate (for example keys, clusters):

1. ``hub/store/<aggregate>.py``: its record dataclasses and
   ``class <Aggregate>Store(StoreBackend)`` with ``async`` methods that run SQL through
   ``self._run`` (or ``self._run_grouped`` on the report path), as the other modules do; the
   module docstring says what it holds. SQL: ``self.db.execute(sql, params)`` with ``?``
   placeholders, writes inside ``with self.db.atomic():``, ``self._rows``/``self._row`` for
   rows as dicts, ``self.db.insert_id("INSERT ... RETURNING id", params)`` for a new id; no
   engine-specific syntax (``INSERT OR ...``, ``PRAGMA``); ``self.db.for_update`` after a
   ``SELECT`` whose rows the transaction then changes (a check-and-set across processes).
2. ``hub/store/schema.py``: one more ``_migration_N`` creating its tables, appended to
   ``MIGRATIONS`` (never change a released one); ``hub/store/pgschema.py``: its twin in
   PostgreSQL types under the same number (``BLOB`` -> ``BYTEA``, ``REAL``/``FLOAT`` ->
   ``DOUBLE PRECISION``, ``INTEGER`` -> ``BIGINT``, an assigned integer key -> identity).
3. Here: add the class to :class:`Store`'s bases and its public names to ``__all__``.
4. Tests: ``tests/hub/test_store.py`` pins the schema version and the migration list; the
   ``store_target`` fixture (tests/hub/conftest.py) runs a test on both backends.
"""

from __future__ import annotations

from hub.store.alerts import Alert, AlertsStore
from hub.store.assettags import AssetTagsStore
from hub.store.audit import GENESIS_HASH, AuditCheck, AuditHeadError, AuditStore, audit_row_hash
from hub.store.backend import AUDIT_HEAD_SUFFIX, StoreBackend
from hub.store.clusters import Cluster, ClusterHost, ClustersStore, ClusterState, NodeRecord
from hub.store.connection import UnstorableText, is_postgres_url
from hub.store.enrollments import MAX_OPEN_CHALLENGES_PER_HOST, EnrollmentStore, PendingEnrollment
from hub.store.eventlogs import EventlogsStore
from hub.store.flavors import FlavorDocuments, FlavorsStore, StoredFlavor
from hub.store.hosts import Host, HostFacts, HostGroup, HostKeys, HostsStore
from hub.store.keys import KeyEvent, KeyPolicy, KeysStore, KeyVersion
from hub.store.leases import LeasesStore
from hub.store.nonces import NonceRefused
from hub.store.notifications import NotificationListener
from hub.store.reports import (
    HostEvidence,
    Recorded,
    ReportsStore,
    SequenceRefused,
    StoredReport,
    Transition,
)
from hub.store.schema import MIGRATIONS
from hub.store.tokens import Token, TokensStore
from hub.store.verdictchanges import (
    VERDICT_CHANGES_CHANNEL,
    StoredVerdictChange,
    VerdictChangesStore,
)
from hub.store.websessions import StoredWebSession, WebSessionsStore


class Store(
    HostsStore,
    EnrollmentStore,
    ReportsStore,
    AlertsStore,
    FlavorsStore,
    TokensStore,
    EventlogsStore,
    AuditStore,
    AssetTagsStore,
    LeasesStore,
    VerdictChangesStore,
    WebSessionsStore,
    KeysStore,
    ClustersStore,
    StoreBackend,
):
    """Async access to the hub database; create with :meth:`open`, end with :meth:`close`."""


__all__ = [
    "AUDIT_HEAD_SUFFIX",
    "GENESIS_HASH",
    "MAX_OPEN_CHALLENGES_PER_HOST",
    "MIGRATIONS",
    "VERDICT_CHANGES_CHANNEL",
    "Alert",
    "AuditCheck",
    "AuditHeadError",
    "Cluster",
    "ClusterHost",
    "ClusterState",
    "FlavorDocuments",
    "Host",
    "HostEvidence",
    "HostFacts",
    "HostGroup",
    "HostKeys",
    "KeyEvent",
    "KeyPolicy",
    "KeyVersion",
    "NodeRecord",
    "NonceRefused",
    "NotificationListener",
    "PendingEnrollment",
    "Recorded",
    "SequenceRefused",
    "Store",
    "StoredFlavor",
    "StoredReport",
    "StoredVerdictChange",
    "StoredWebSession",
    "Token",
    "Transition",
    "UnstorableText",
    "audit_row_hash",
    "is_postgres_url",
]
