"""Leases: work that must run once across hub processes (and, with a shared database, replicas).

A lease is a row ``(name, holder, expires)``. :meth:`LeasesStore.take_lease` gives it to
``holder`` when nobody holds it, when its holder let it expire, or when ``holder`` already holds
it (a renewal), all in one statement, so two processes never both hold it. Expiry is wall-clock
time: processes sharing a database must share a clock (NTP). :mod:`hub.singleton` runs work
under a lease.
"""

from __future__ import annotations

from hub.store.backend import StoreBackend


class LeasesStore(StoreBackend):
    """The leases' methods."""

    async def take_lease(self, name: str, holder: str, ttl: float, now: float) -> bool:
        """Take or renew lease ``name`` for ``holder`` until ``now + ttl``; whether it is now
        ``holder``'s."""

        def run() -> bool:
            with self.db.atomic():
                self.db.execute(
                    "INSERT INTO leases (name, holder, expires) VALUES (?, ?, ?) "
                    "ON CONFLICT(name) DO UPDATE SET holder = excluded.holder, "
                    "expires = excluded.expires "
                    "WHERE leases.holder = excluded.holder OR leases.expires < ?",
                    [name, holder, now + ttl, now],
                )
                row = self.db.execute("SELECT holder FROM leases WHERE name = ?", [name]).fetchone()
            return row is not None and row[0] == holder

        return await self._run(run)

    async def release_lease(self, name: str, holder: str) -> None:
        """Give lease ``name`` up if ``holder`` holds it (another process may take it at once)."""

        def run() -> None:
            with self.db.atomic():
                self.db.execute("DELETE FROM leases WHERE name = ? AND holder = ?", [name, holder])

        await self._run(run)

    async def lease_holder(self, name: str, now: float) -> str | None:
        """Who holds lease ``name`` at ``now`` (``None``: nobody, or it expired)."""

        def run() -> str | None:
            row = self.db.execute(
                "SELECT holder FROM leases WHERE name = ? AND expires >= ?", [name, now]
            ).fetchone()
            return None if row is None else str(row[0])

        return await self._run(run)
