"""Browser sessions of the status page, shared by every hub process and replica.

A row per open session, keyed by the SHA-256 of the session id (the cookie's value never
reaches the database). The bearer token the session stands for is stored sealed by the caller
(:mod:`hub.web.session`: AES-256-GCM under a key derived from the hub's master key), never in
clear. Expired rows are deleted when met and when new sessions open; at most
:data:`MAX_WEB_SESSIONS` are kept (the oldest go first). Plain portable SQL.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from hub.store.backend import StoreBackend

MAX_WEB_SESSIONS: Final = 10000


@dataclass(frozen=True, slots=True)
class StoredWebSession:
    """One session: ``sealed_token`` is the caller's sealed bearer token."""

    key: str
    sealed_token: bytes
    name: str
    role: str
    csrf: str
    expires: float


class WebSessionsStore(StoreBackend):
    """The browser sessions' methods."""

    async def add_web_session(self, session: StoredWebSession, now: float) -> None:
        """Store ``session``; drop expired sessions and the oldest beyond the bound."""

        def run() -> None:
            with self.db.atomic():
                self.db.execute("DELETE FROM web_sessions WHERE expires <= ?", [now])
                self.db.execute(
                    "INSERT INTO web_sessions (key, sealed_token, name, role, csrf, expires) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    [
                        session.key,
                        session.sealed_token,
                        session.name,
                        session.role,
                        session.csrf,
                        session.expires,
                    ],
                )
                row = self.db.execute("SELECT COUNT(*) FROM web_sessions").fetchone()
                excess = int(row[0]) - MAX_WEB_SESSIONS
                if excess > 0:
                    self.db.execute(
                        "DELETE FROM web_sessions WHERE key IN (SELECT key FROM web_sessions "
                        "ORDER BY expires LIMIT ?)",
                        [excess],
                    )

        await self._run(run)

    async def web_session(self, key: str, now: float) -> StoredWebSession | None:
        """The live session ``key``, or ``None`` (an expired one is deleted)."""

        def run() -> StoredWebSession | None:
            row = self.db.execute(
                "SELECT key, sealed_token, name, role, csrf, expires FROM web_sessions "
                "WHERE key = ?",
                [key],
            ).fetchone()
            if row is None:
                return None
            if float(row[5]) <= now:
                with self.db.atomic():
                    self.db.execute("DELETE FROM web_sessions WHERE key = ?", [key])
                return None
            return StoredWebSession(
                key=str(row[0]),
                sealed_token=bytes(row[1]),
                name=str(row[2]),
                role=str(row[3]),
                csrf=str(row[4]),
                expires=float(row[5]),
            )

        return await self._run(run)

    async def delete_web_session(self, key: str) -> None:
        """End session ``key`` (nothing if it is not there)."""

        def run() -> None:
            with self.db.atomic():
                self.db.execute("DELETE FROM web_sessions WHERE key = ?", [key])

        await self._run(run)
