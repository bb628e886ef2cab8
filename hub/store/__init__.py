"""The hub's persistent state: one SQLite database through sqlite-utils, one module per aggregate.

:class:`Store` is the whole store: it combines the aggregates (each a class of its own module:
hosts, enrollments, nonces, reports, alerts, flavors, tokens, event logs, audit, asset tags,
leases, verdict changes, web sessions) on
the SQLite backend (:mod:`hub.store.backend`: one connection on one worker thread, group commit),
with the schema's numbered migrations in :mod:`hub.store.schema`. Policy (what a verdict means,
who may do what) lives in the callers; this package stores and fetches. Only this package
imports ``sqlite3``/``sqlite_utils``.

How to add an aggregate (for example keys, clusters):

1. ``hub/store/<aggregate>.py``: its record dataclasses and
   ``class <Aggregate>Store(SqliteBackend)`` with ``async`` methods that run SQL through
   ``self._run`` (or ``self._run_grouped`` on the report path), as the other modules do; the
   module docstring says what it holds.
2. ``hub/store/schema.py``: one more ``_migration_N`` creating its tables, appended to
   ``MIGRATIONS`` (never change a released one).
3. Here: add the class to :class:`Store`'s bases and its public names to ``__all__``.
4. Tests: ``tests/hub/test_store.py`` pins the schema version and the migration list.
"""

from __future__ import annotations

from hub.store.alerts import Alert, AlertsStore
from hub.store.assettags import AssetTagsStore
from hub.store.audit import GENESIS_HASH, AuditCheck, AuditHeadError, AuditStore, audit_row_hash
from hub.store.backend import AUDIT_HEAD_SUFFIX, SqliteBackend
from hub.store.enrollments import MAX_OPEN_CHALLENGES_PER_HOST, EnrollmentStore, PendingEnrollment
from hub.store.eventlogs import EventlogsStore
from hub.store.flavors import FlavorDocuments, FlavorsStore, StoredFlavor
from hub.store.hosts import Host, HostFacts, HostGroup, HostKeys, HostsStore
from hub.store.leases import LeasesStore
from hub.store.nonces import NonceRefused
from hub.store.reports import HostEvidence, ReportsStore, SequenceRefused, StoredReport
from hub.store.schema import MIGRATIONS
from hub.store.tokens import Token, TokensStore
from hub.store.verdictchanges import StoredVerdictChange, VerdictChangesStore
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
    SqliteBackend,
):
    """Async access to the hub database; create with :meth:`open`, end with :meth:`close`."""


__all__ = [
    "AUDIT_HEAD_SUFFIX",
    "GENESIS_HASH",
    "MAX_OPEN_CHALLENGES_PER_HOST",
    "MIGRATIONS",
    "Alert",
    "AuditCheck",
    "AuditHeadError",
    "FlavorDocuments",
    "Host",
    "HostEvidence",
    "HostFacts",
    "HostGroup",
    "HostKeys",
    "NonceRefused",
    "PendingEnrollment",
    "SequenceRefused",
    "Store",
    "StoredFlavor",
    "StoredReport",
    "StoredVerdictChange",
    "StoredWebSession",
    "Token",
    "audit_row_hash",
]
