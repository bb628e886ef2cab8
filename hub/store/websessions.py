"""Browser sessions of the status page (:mod:`hub.web.session`), shared by every hub process.

A row is one session under the SHA-256 of its id (the id itself is only in the browser's
cookie), with the login token sealed by the caller (never stored in clear), the token's name
and role, the session's CSRF token and its expiry. Keeping them here rather than in a process's
memory lets any worker of ``server.workers`` (or any replica) serve a logged-in browser. At
most :data:`MAX_SESSIONS` rows: expired ones are deleted when a session opens, then the ones
closest to expiry beyond the bound. Plain portable SQL.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from hub.store.backend import SqliteBackend

MAX_SESSIONS: Final = 10000


@dataclass(frozen=True, slots=True)
class StoredWebSession:
    sealed_token: bytes
    name: str
    role: str
    csrf: str
    expires: float


class WebSessionsStore(SqliteBackend):
    """The browser sessions' rows."""

    async def put_web_session(self, key: str, session: StoredWebSession, now: float) -> None:
        """Open a session (and forget expired ones, and the oldest beyond the bound)."""

        def run() -> None:
            with self.db.atomic():
                conn = self.db.conn
                conn.execute("DELETE FROM web_sessions WHERE expires <= ?", [now])
                conn.execute(
                    "INSERT INTO web_sessions (key, sealed_token, name, role, csrf, expires) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    [
                        key,
                        session.sealed_token,
                        session.name,
                        session.role,
                        session.csrf,
                        session.expires,
                    ],
                )
                # beyond the bound: those expiring before the MAX_SESSIONS-th latest
                conn.execute(
                    "DELETE FROM web_sessions WHERE expires < (SELECT expires FROM web_sessions "
                    "ORDER BY expires DESC LIMIT 1 OFFSET ?)",
                    [MAX_SESSIONS - 1],
                )

        await self._run(run)

    async def get_web_session(self, key: str, now: float) -> StoredWebSession | None:
        """The live session under ``key`` (``None``: none, or it expired)."""

        def run() -> StoredWebSession | None:
            row = self.db.conn.execute(
                "SELECT sealed_token, name, role, csrf, expires FROM web_sessions "
                "WHERE key = ? AND expires > ?",
                [key, now],
            ).fetchone()
            if row is None:
                return None
            return StoredWebSession(bytes(row[0]), str(row[1]), str(row[2]), str(row[3]), row[4])

        return await self._run(run)

    async def delete_web_session(self, key: str) -> None:
        def run() -> None:
            with self.db.atomic():
                self.db.conn.execute("DELETE FROM web_sessions WHERE key = ?", [key])

        await self._run(run)
