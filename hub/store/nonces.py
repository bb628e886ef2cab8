"""Single-use challenge nonces."""

from __future__ import annotations

from hub.store.backend import StoreBackend


class NonceRefused(Exception):
    """:meth:`Store.record_report` was given a nonce that is not usable (``status``:
    ``unknown``, ``replayed`` or ``expired``); nothing was recorded."""

    def __init__(self, status: str) -> None:
        super().__init__(status)
        self.status = status


class NoncesStore(StoreBackend):
    """Nonces: issued, consumed once, pruned."""

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
