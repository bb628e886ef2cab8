"""The key broker's records: transfer policies, key versions, release outcomes, release nonces.

A *policy* (``key_policies``) names an asset-tag predicate (:mod:`trustcore.keypolicy`, as text)
and the maximum age of the evidence a release rests on. Its *keys* (``key_versions``) are
numbered versions; each row holds the AES-256 key only as ``material``, sealed by the caller
under the hub's master key (:mod:`hub.keys.broker`): this module never sees a key in clear.
The newest unretired version wraps; every unretired one unwraps. ``key_events`` keeps the last
:data:`EVENTS_PER_HOST` release outcomes of each host (the host page shows refusals);
``key_nonces`` the issue time of each release challenge's nonce (the nonce itself lives in the
ordinary ``nonces`` table, single use as for reports).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from hub.store.backend import StoreBackend

EVENTS_PER_HOST: Final = 50
NONCE_ROWS_KEPT_FOR: Final = 3600.0  # seconds a release nonce's issue time is kept


@dataclass(frozen=True, slots=True)
class KeyPolicy:
    name: str
    predicate: str
    max_age: float
    created: float
    updated: float


@dataclass(frozen=True, slots=True)
class KeyVersion:
    """One key: ``material`` is the sealed key (never the key itself)."""

    id: str
    policy: str
    version: int
    created: float
    retired: float | None
    material: bytes
    releases: int
    refusals: int
    last_use: float | None


@dataclass(frozen=True, slots=True)
class KeyEvent:
    at: float
    host_id: str
    key_id: str | None
    ok: bool
    reason: str
    message: str


_KEY_COLUMNS: Final = (
    "id, policy, version, created, retired, material, releases, refusals, last_use"
)


def _key(r: Sequence[Any]) -> KeyVersion:
    return KeyVersion(
        id=r[0],
        policy=r[1],
        version=int(r[2]),
        created=float(r[3]),
        retired=None if r[4] is None else float(r[4]),
        material=bytes(r[5]),
        releases=int(r[6]),
        refusals=int(r[7]),
        last_use=None if r[8] is None else float(r[8]),
    )


def _policy(r: Sequence[Any]) -> KeyPolicy:
    return KeyPolicy(r[0], r[1], float(r[2]), float(r[3]), float(r[4]))


class KeysStore(StoreBackend):
    """The key broker's methods (plain SQL)."""

    async def put_key_policy(
        self, name: str, predicate: str, max_age: float, now: float
    ) -> tuple[KeyPolicy, bool]:
        """Create or update a policy; returns it and whether it was created."""

        def run() -> tuple[KeyPolicy, bool]:
            conn = self.db.conn
            with self.db.atomic():
                cur = conn.execute(
                    "UPDATE key_policies SET predicate = ?, max_age = ?, updated = ? "
                    "WHERE name = ?",
                    [predicate, max_age, now, name],
                )
                created = cur.rowcount == 0
                if created:
                    conn.execute(
                        "INSERT INTO key_policies (name, predicate, max_age, created, updated) "
                        "VALUES (?, ?, ?, ?, ?)",
                        [name, predicate, max_age, now, now],
                    )
                row = conn.execute(
                    "SELECT name, predicate, max_age, created, updated FROM key_policies "
                    "WHERE name = ?",
                    [name],
                ).fetchone()
            return _policy(row), created

        return await self._run(run)

    async def get_key_policy(self, name: str) -> KeyPolicy | None:
        def run() -> KeyPolicy | None:
            row = self.db.conn.execute(
                "SELECT name, predicate, max_age, created, updated FROM key_policies "
                "WHERE name = ?",
                [name],
            ).fetchone()
            return None if row is None else _policy(row)

        return await self._run(run)

    async def list_key_policies(self) -> list[KeyPolicy]:
        def run() -> list[KeyPolicy]:
            rows = self.db.conn.execute(
                "SELECT name, predicate, max_age, created, updated FROM key_policies ORDER BY name"
            ).fetchall()
            return [_policy(r) for r in rows]

        return await self._run(run)

    async def current_key(
        self, policy: str, candidate: tuple[str, bytes] | None, now: float
    ) -> KeyVersion | None:
        """The policy's newest unretired key. When it has none and ``candidate`` (id, sealed
        material) is given, that becomes its next version, in the same transaction (two
        concurrent first wraps get the same key)."""

        def run() -> KeyVersion | None:
            conn = self.db.conn
            with self.db.atomic():
                row = conn.execute(
                    f"SELECT {_KEY_COLUMNS} FROM key_versions "  # noqa: S608 - constant
                    "WHERE policy = ? AND retired IS NULL ORDER BY version DESC LIMIT 1",
                    [policy],
                ).fetchone()
                if row is not None or candidate is None:
                    return None if row is None else _key(row)
                self._insert_key_sync(policy, candidate, now)
                row = conn.execute(
                    f"SELECT {_KEY_COLUMNS} FROM key_versions WHERE id = ?",  # noqa: S608
                    [candidate[0]],
                ).fetchone()
                return _key(row)

        return await self._run(run)

    def _insert_key_sync(self, policy: str, candidate: tuple[str, bytes], now: float) -> int:
        conn = self.db.conn
        last = conn.execute(
            "SELECT COALESCE(MAX(version), 0) FROM key_versions WHERE policy = ?", [policy]
        ).fetchone()[0]
        version = int(last) + 1
        conn.execute(
            "INSERT INTO key_versions (id, policy, version, created, material) "
            "VALUES (?, ?, ?, ?, ?)",
            [candidate[0], policy, version, now, candidate[1]],
        )
        return version

    async def add_key_version(
        self, policy: str, candidate: tuple[str, bytes], now: float
    ) -> KeyVersion:
        """A new version of the policy's key (rotation): it wraps from now on; older unretired
        versions still unwrap."""

        def run() -> KeyVersion:
            with self.db.atomic():
                self._insert_key_sync(policy, candidate, now)
                row = self.db.conn.execute(
                    f"SELECT {_KEY_COLUMNS} FROM key_versions WHERE id = ?",  # noqa: S608
                    [candidate[0]],
                ).fetchone()
            return _key(row)

        return await self._run(run)

    async def get_key(self, key_id: str) -> KeyVersion | None:
        def run() -> KeyVersion | None:
            row = self.db.conn.execute(
                f"SELECT {_KEY_COLUMNS} FROM key_versions WHERE id = ?",  # noqa: S608
                [key_id],
            ).fetchone()
            return None if row is None else _key(row)

        return await self._run(run)

    async def get_keys(self, key_ids: Sequence[str]) -> dict[str, KeyVersion]:
        """The keys among ``key_ids`` that exist (one query)."""
        wanted = sorted(set(key_ids))
        if not wanted:
            return {}

        def run() -> dict[str, KeyVersion]:
            marks = ", ".join("?" for _ in wanted)
            rows = self.db.conn.execute(
                f"SELECT {_KEY_COLUMNS} FROM key_versions WHERE id IN ({marks})",  # noqa: S608
                wanted,
            ).fetchall()
            return {r[0]: _key(r) for r in rows}

        return await self._run(run)

    async def list_keys(self, policy: str | None = None) -> list[KeyVersion]:
        def run() -> list[KeyVersion]:
            sql = f"SELECT {_KEY_COLUMNS} FROM key_versions"  # noqa: S608 - constant
            params: list[Any] = []
            if policy is not None:
                sql += " WHERE policy = ?"
                params.append(policy)
            rows = self.db.conn.execute(sql + " ORDER BY policy, version", params).fetchall()
            return [_key(r) for r in rows]

        return await self._run(run)

    async def retire_key(self, key_id: str, now: float) -> bool:
        """Retire a key: it neither wraps nor unwraps any more. False if unknown or retired."""

        def run() -> bool:
            with self.db.atomic():
                cur = self.db.conn.execute(
                    "UPDATE key_versions SET retired = ? WHERE id = ? AND retired IS NULL",
                    [now, key_id],
                )
                return cur.rowcount == 1

        return await self._run(run)

    async def record_key_events(self, events: Sequence[KeyEvent]) -> None:
        """Count each outcome on its key, keep it for its host (bounded), in one transaction."""
        if not events:
            return

        def run() -> None:
            conn = self.db.conn
            with self.db.atomic():
                for e in events:
                    conn.execute(
                        "INSERT INTO key_events (at, host_id, key_id, ok, reason, message) "
                        "VALUES (?, ?, ?, ?, ?, ?)",
                        [e.at, e.host_id, e.key_id, int(e.ok), e.reason, e.message],
                    )
                    if e.key_id is not None:
                        column = "releases" if e.ok else "refusals"
                        conn.execute(
                            f"UPDATE key_versions SET {column} = {column} + 1, "  # noqa: S608
                            "last_use = ? WHERE id = ?",
                            [e.at, e.key_id],
                        )
                for host_id in {e.host_id for e in events}:
                    conn.execute(
                        "DELETE FROM key_events WHERE host_id = ? AND id NOT IN "
                        "(SELECT id FROM key_events WHERE host_id = ? ORDER BY id DESC LIMIT ?)",
                        [host_id, host_id, EVENTS_PER_HOST],
                    )

        await self._run(run)

    async def list_key_events(self, host_id: str, *, refusals_only: bool = False) -> list[KeyEvent]:
        """The host's kept release outcomes, newest first."""

        def run() -> list[KeyEvent]:
            sql = (
                "SELECT at, host_id, key_id, ok, reason, message FROM key_events WHERE host_id = ?"
            )
            if refusals_only:
                sql += " AND ok = 0"
            rows = self.db.conn.execute(sql + " ORDER BY id DESC", [host_id]).fetchall()
            return [KeyEvent(float(r[0]), r[1], r[2], bool(r[3]), r[4], r[5]) for r in rows]

        return await self._run(run)

    async def put_key_nonce(self, nonce: bytes, host_id: str, issued: float) -> None:
        """Remember when a release challenge's nonce was issued (old rows are pruned here)."""

        def run() -> None:
            conn = self.db.conn
            with self.db.atomic():
                conn.execute(
                    "DELETE FROM key_nonces WHERE issued < ?", [issued - NONCE_ROWS_KEPT_FOR]
                )
                conn.execute(
                    "INSERT INTO key_nonces (nonce, host_id, issued) VALUES (?, ?, ?)",
                    [nonce, host_id, issued],
                )

        await self._run(run)

    async def key_nonce_issued(self, nonce: bytes, host_id: str) -> float | None:
        """When this host's release nonce was issued, or ``None`` (not a release nonce)."""

        def run() -> float | None:
            row = self.db.conn.execute(
                "SELECT issued FROM key_nonces WHERE nonce = ? AND host_id = ?", [nonce, host_id]
            ).fetchone()
            return None if row is None else float(row[0])

        return await self._run(run)
