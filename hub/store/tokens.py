"""Bearer tokens, stored only as their hashes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hub.store.backend import StoreBackend


@dataclass(frozen=True, slots=True)
class Token:
    id: int
    hash: str
    role: str
    name: str
    created: float
    revoked: bool


class TokensStore(StoreBackend):
    """The tokens' methods."""

    async def add_token(self, token_hash: str, role: str, name: str, now: float) -> int:
        def run() -> int:
            with self.db.atomic():
                return self.db.insert_id(
                    "INSERT INTO tokens (hash, role, name, created, revoked) "
                    "VALUES (?, ?, ?, ?, 0) RETURNING id",
                    [token_hash, role, name, now],
                )

        return await self._run(run)

    async def find_token(self, token_hash: str) -> Token | None:
        """The live token with this hash (the lookup is by hash; callers hash in constant time)."""

        def run() -> Token | None:
            row = self._row("SELECT * FROM tokens WHERE hash = ? AND revoked = 0", [token_hash])
            return None if row is None else _token(row)

        return await self._run(run)

    async def list_tokens(self) -> list[Token]:
        return await self._run(
            lambda: [_token(r) for r in self._rows("SELECT * FROM tokens ORDER BY id")]
        )

    async def revoke_token(self, token_id: int) -> bool:
        def run() -> bool:
            with self.db.atomic():
                cur = self.db.execute(
                    "UPDATE tokens SET revoked = 1 WHERE id = ? AND revoked = 0", [token_id]
                )
                return cur.rowcount == 1

        return await self._run(run)


def _token(r: dict[str, Any]) -> Token:
    return Token(
        id=r["id"],
        hash=r["hash"],
        role=r["role"],
        name=r["name"],
        created=r["created"],
        revoked=bool(r["revoked"]),
    )
