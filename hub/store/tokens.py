"""Bearer tokens, stored only as their hashes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hub.store.backend import SqliteBackend, _last_id


@dataclass(frozen=True, slots=True)
class Token:
    id: int
    hash: str
    role: str
    name: str
    created: float
    revoked: bool


class TokensStore(SqliteBackend):
    """The tokens' methods."""

    async def add_token(self, token_hash: str, role: str, name: str, now: float) -> int:
        def run() -> int:
            with self.db.atomic():
                table = self._t("tokens").insert(
                    {"hash": token_hash, "role": role, "name": name, "created": now, "revoked": 0}
                )
                return _last_id(table)

        return await self._run(run)

    async def find_token(self, token_hash: str) -> Token | None:
        """The live token with this hash (the lookup is by hash; callers hash in constant time)."""

        def run() -> Token | None:
            rows = list(self._t("tokens").rows_where("hash = ? AND revoked = 0", [token_hash]))
            return _token(rows[0]) if rows else None

        return await self._run(run)

    async def list_tokens(self) -> list[Token]:
        return await self._run(
            lambda: [_token(r) for r in self._t("tokens").rows_where(order_by="id")]
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
