"""Event logs kept by their SHA-256, so reports may carry only the digest."""

from __future__ import annotations

from hub.store.backend import SqliteBackend


class EventlogsStore(SqliteBackend):
    """The event-log cache's methods."""

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
