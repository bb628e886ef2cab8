"""Alerts: raised, counted, acknowledged."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from hub.store.backend import SqliteBackend, _last_id


@dataclass(frozen=True, slots=True)
class Alert:
    id: int
    host_id: str
    at: float
    kind: str
    reasons: tuple[str, ...]
    acked_at: float | None
    acked_by: str | None


class AlertsStore(SqliteBackend):
    """The alerts' methods."""

    async def add_alert(self, host_id: str, at: float, kind: str, reasons: tuple[str, ...]) -> int:
        def run() -> int:
            with self.db.atomic():
                table = self._t("alerts").insert(
                    {
                        "host_id": host_id,
                        "at": at,
                        "kind": kind,
                        "reasons": json.dumps(list(reasons)),
                    }
                )
                return _last_id(table)

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
        where = "acked_at IS NULL" if open_only else None
        return await self._run(
            lambda: [_alert(r) for r in self._t("alerts").rows_where(where, order_by="id DESC")]
        )

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
