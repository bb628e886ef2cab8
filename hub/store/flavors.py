"""Flavor documents, cached decoded by content.

Other processes may change flavors: on SQLite ``PRAGMA data_version`` notices any commit by
another connection (the cache is then dropped); on PostgreSQL each read fetches the stored
texts' SHA-256 (computed by the server) and decodes only a document whose digest changed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from hub.store.backend import StoreBackend
from hub.store.hosts import Host
from hub.store.sqlite import SqliteConnection


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


class FlavorsStore(StoreBackend):
    """The flavors' methods."""

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
        db = self.db
        if isinstance(db, SqliteConnection):
            version = db.data_version()
            if version != self._data_version:  # another connection committed: trust nothing
                self._flavor_rows.clear()
                self._data_version = version
        elif names:
            digests = dict(
                db.execute(
                    "SELECT name, encode(sha256(convert_to(document, 'UTF8')), 'hex') "
                    "FROM flavors WHERE name = ANY(?)",
                    [names],
                ).fetchall()
            )
            for name in names:
                entry = self._flavor_rows.get(name)
                if entry is not None and entry[0] != digests.get(name, ""):
                    self._flavor_rows.discard(name)
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

    async def put_flavor(self, name: str, document: dict[str, Any], now: float) -> None:
        def run() -> None:
            self._flavor_rows.discard(name)
            with self.db.atomic():
                self.db.execute(
                    "INSERT INTO flavors (name, document, created) VALUES (?, ?, ?) "
                    "ON CONFLICT (name) DO UPDATE SET document = excluded.document, "
                    "created = excluded.created",
                    [name, json.dumps(document), now],
                )

        await self._run(run)

    async def get_flavors(self, names: list[str]) -> dict[str, dict[str, Any]]:
        return await self._run(self._get_flavors_sync, names)

    def _get_flavors_sync(self, names: list[str]) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for name in names:
            row = self.db.execute("SELECT document FROM flavors WHERE name = ?", [name]).fetchone()
            if row is not None:
                out[name] = json.loads(row[0])
        return out

    async def list_flavors(self) -> list[StoredFlavor]:
        """Every stored flavor, by name."""
        return await self._run(
            lambda: [
                StoredFlavor(r["name"], json.loads(r["document"]), r["created"])
                for r in self._rows("SELECT * FROM flavors ORDER BY name")
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
