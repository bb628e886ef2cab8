"""Event logs kept by their SHA-256, so reports may carry only the digest."""

from __future__ import annotations

from hub.store.backend import StoreBackend


class EventlogsStore(StoreBackend):
    """The event-log cache's methods."""

    async def put_eventlog(self, sha256_hex: str, data: bytes, now: float) -> None:
        def run() -> None:
            with self.db.atomic():
                self.db.execute(
                    "INSERT INTO eventlog_cache (sha256, data, stored) VALUES (?, ?, ?) "
                    "ON CONFLICT (sha256) DO UPDATE SET data = excluded.data, "
                    "stored = excluded.stored",
                    [sha256_hex, data, now],
                )

        await self._run(run)

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
            row = self.db.execute(
                "SELECT data FROM eventlog_cache WHERE sha256 = ?", [sha256_hex]
            ).fetchone()
            return None if row is None else bytes(row[0])

        return await self._run(run)
