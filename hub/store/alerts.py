"""Alerts: raised, counted, acknowledged."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from hub.store.backend import StoreBackend


@dataclass(frozen=True, slots=True)
class Alert:
    id: int
    host_id: str
    at: float
    kind: str
    reasons: tuple[str, ...]
    acked_at: float | None
    acked_by: str | None


class AlertsStore(StoreBackend):
    """The alerts' methods."""

    async def add_alert(self, host_id: str, at: float, kind: str, reasons: tuple[str, ...]) -> int:
        def run() -> int:
            with self.db.atomic():
                return self.db.insert_id(
                    "INSERT INTO alerts (host_id, at, kind, reasons) VALUES (?, ?, ?, ?) "
                    "RETURNING id",
                    [host_id, at, kind, json.dumps(list(reasons))],
                )

        return await self._run(run)

    async def set_alert_reasons(self, alert_id: int, reasons: tuple[str, ...]) -> None:
        """Replace an alert's reasons (a summary alert counting its attempts)."""

        def run() -> None:
            with self.db.atomic():
                self.db.execute(
                    "UPDATE alerts SET reasons = ? WHERE id = ?",
                    [json.dumps(list(reasons)), alert_id],
                )

        await self._run(run)

    async def list_alerts(self, *, open_only: bool = False) -> list[Alert]:
        where = " WHERE acked_at IS NULL" if open_only else ""
        sql = f"SELECT * FROM alerts{where} ORDER BY id DESC"  # noqa: S608 - fixed text
        return await self._run(lambda: [_alert(r) for r in self._rows(sql)])

    async def ack_alert(self, alert_id: int, at: float, by: str) -> bool:
        def run() -> bool:
            with self.db.atomic():
                cur = self.db.execute(
                    "UPDATE alerts SET acked_at = ?, acked_by = ? "
                    "WHERE id = ? AND acked_at IS NULL",
                    [at, by, alert_id],
                )
                return cur.rowcount == 1

        return await self._run(run)


def _alert(r: dict[str, Any]) -> Alert:
    return Alert(
        id=r["id"],
        host_id=r["host_id"],
        at=r["at"],
        kind=r["kind"],
        reasons=tuple(json.loads(r["reasons"] or "[]")),
        acked_at=r["acked_at"],
        acked_by=r["acked_by"],
    )
