"""Verdict changes as a log: the cross-process verdict bus's table (:mod:`hub.bus`).

Every verdict change any hub process writes is one row with an increasing integer ``id``;
readers in every process ask for the rows after the last id they saw. The log is bounded:
:data:`KEEP_ROWS` newest rows are kept, older ones are deleted as new ones arrive (a reader
that falls that far behind sees a gap, :mod:`hub.bus` logs it). Plain portable SQL.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Final

from hub.store.backend import StoreBackend

KEEP_ROWS: Final = 10000
PRUNE_EVERY: Final = 256  # inserts between two prunes
MAX_REASONS_TEXT: Final = 65536


@dataclass(frozen=True, slots=True)
class StoredVerdictChange:
    """One row: a host's verdict went from ``previous`` to ``verdict`` at ``at``."""

    id: int
    host_id: str
    previous: str
    verdict: str
    reasons: tuple[str, ...]
    at: float
    alert_id: int | None


class VerdictChangesStore(StoreBackend):
    """The verdict-change log."""

    async def add_verdict_change(  # noqa: PLR0917
        self,
        host_id: str,
        previous: str,
        verdict: str,
        reasons: tuple[str, ...],
        at: float,
        alert_id: int | None,
    ) -> int:
        """Append one change; returns its id (larger than every id committed before)."""
        text = json.dumps(list(reasons))[:MAX_REASONS_TEXT]

        def run() -> int:
            with self.db.atomic():
                new_id = self.db.insert_id(
                    "INSERT INTO verdict_changes (host_id, previous, verdict, reasons, at, "
                    "alert_id) VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
                    [host_id, previous, verdict, text, at, alert_id],
                )
                if new_id % PRUNE_EVERY == 0:
                    self.db.execute(
                        "DELETE FROM verdict_changes WHERE id <= ?", [new_id - KEEP_ROWS]
                    )
            return new_id

        return await self._run_grouped(run)

    async def verdict_changes_after(
        self, after: int, limit: int = 256
    ) -> list[StoredVerdictChange]:
        """The changes with an id above ``after``, oldest first, at most ``limit``."""

        def run() -> list[StoredVerdictChange]:
            rows = self.db.execute(
                "SELECT id, host_id, previous, verdict, reasons, at, alert_id "
                "FROM verdict_changes WHERE id > ? ORDER BY id LIMIT ?",
                [after, limit],
            ).fetchall()
            return [_change(r) for r in rows]

        return await self._run(run)

    async def last_verdict_change_id(self) -> int:
        """The newest change's id (0 for none)."""

        def run() -> int:
            row = self.db.execute("SELECT MAX(id) FROM verdict_changes").fetchone()
            return int(row[0] or 0)

        return await self._run(run)


def _change(row: tuple[object, ...]) -> StoredVerdictChange:
    ident, host_id, previous, verdict, reasons, at, alert_id = row
    try:
        parsed = json.loads(str(reasons))
    except ValueError:
        parsed = []
    return StoredVerdictChange(
        id=int(ident),  # type: ignore[call-overload]
        host_id=str(host_id),
        previous=str(previous),
        verdict=str(verdict),
        reasons=tuple(str(r) for r in parsed) if isinstance(parsed, list) else (),
        at=float(at),  # type: ignore[arg-type]
        alert_id=None if alert_id is None else int(alert_id),  # type: ignore[call-overload]
    )
