"""Reports, verdicts and each host's latest verified evidence."""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, Final

from hub.store.hosts import Host, _host
from hub.store.nonces import NonceRefused, NoncesStore

VERDICTS_CHANNEL: Final = "trustplane_verdicts"  # PostgreSQL NOTIFY channel: verdict row ids


@dataclass(frozen=True, slots=True)
class StoredReport:
    id: int
    host_id: str
    received: float
    verdict: str
    reasons: tuple[str, ...]
    sequence: int
    body_sha256: str


@dataclass(frozen=True, slots=True)
class HostEvidence:
    """A host's last report whose quote verified and whose event logs replayed to it.

    ``pcrs`` maps bank (TPM_ALG_ID) to PCR index to the quoted value; ``eventlogs`` maps the
    log's name (``uefi``, ``txt``) to its SHA-256 in ``eventlog_cache``. What flavors are made
    from with ``trustplane-hub flavor import --from-host``.
    """

    host_id: str
    received: float
    pcrs: dict[int, dict[int, bytes]]
    eventlogs: dict[str, str]


@dataclass(frozen=True, slots=True)
class Transition:
    """A host's verdict change as written (``id``: its ``verdicts`` row; ``alert_id``: the
    alert written with it, if any)."""

    id: int
    host_id: str
    previous: str
    verdict: str
    reasons: tuple[str, ...]
    at: float
    alert_id: int | None = None


@dataclass(frozen=True, slots=True)
class Recorded:
    """What :meth:`ReportsStore.record_report` did: the host's previous verdict and, when the
    verdict changed, the transition."""

    previous: str
    transition: Transition | None = None


class SequenceRefused(Exception):
    """A report whose sequence number is not above the host's last recorded one."""

    def __init__(self, last: int) -> None:
        super().__init__(f"sequence not above the last recorded ({last})")
        self.last = last


class ReportsStore(NoncesStore):
    """Recording reports (their nonce spent in the same transaction) and reading them."""

    async def record_report(
        self,
        *,
        host_id: str,
        received: float,
        verdict: str,
        reasons: tuple[str, ...],
        sequence: int,
        body_sha256: str,
        valid_until: float,
        rule_results: list[dict[str, Any]] | str,
        history: int,
        evidence: HostEvidence | None = None,
        nonce: bytes | None = None,
        alert_on: Collection[str] = (),
    ) -> Recorded:
        """Store a report's outcome, update the host, keep the last ``history`` reports, and
        replace the host's verified evidence when ``evidence`` is given.

        With ``nonce``, the nonce is consumed first, in the same transaction (as
        :meth:`consume_nonce`, at ``received``): unless it is ``ok`` nothing is written and
        :class:`NonceRefused` is raised, so a report is recorded exactly when its nonce is spent.
        With ``nonce`` (a report whose quote verified), a ``sequence`` not above the host's last
        such one raises :class:`SequenceRefused` (with that last number) and writes nothing, the
        nonce included; otherwise it becomes the host's last.
        Returns the host's previous verdict; a change is also written to ``verdicts``, with an
        alert when the new verdict is in ``alert_on`` (in the same transaction, so exactly one
        alert per transition whichever process recorded it), and announced on
        :data:`VERDICTS_CHANNEL` when that commits.
        ``rule_results`` may be given already as JSON text.
        """
        reasons_json = json.dumps(list(reasons))
        rules_json = rule_results if isinstance(rule_results, str) else json.dumps(rule_results)
        evidence_row = None if evidence is None else _evidence_row(evidence)

        def run() -> Recorded:
            conn = self.db.conn
            with self.db.atomic():
                if nonce is not None:
                    status = self._consume_nonce_sync(nonce, host_id, received)
                    if status != "ok":
                        raise NonceRefused(status)
                # locked until commit: another process recording a report of this host at the
                # same time waits, then reads this one's verdict (one transition, one alert)
                row = conn.execute(
                    self.db.locking("SELECT verdict, last_sequence FROM hosts WHERE id = ?"),
                    [host_id],
                ).fetchone()
                # only reports whose quote verified (their nonce spent here) count: a forged
                # one must not move the host's sequence
                if nonce is not None and row is not None and sequence <= row[1]:
                    raise SequenceRefused(int(row[1]))
                conn.execute(
                    "INSERT INTO reports (host_id, received, verdict, reasons, sequence, "
                    "body_sha256) VALUES (?, ?, ?, ?, ?, ?)",
                    [host_id, received, verdict, reasons_json, sequence, body_sha256],
                )
                # ids only grow: everything at or below the host's history-th newest goes
                conn.execute(
                    "DELETE FROM reports WHERE host_id = ? AND id <= (SELECT id FROM reports "
                    "WHERE host_id = ? ORDER BY id DESC LIMIT 1 OFFSET ?)",
                    [host_id, host_id, history],
                )
                conn.execute(
                    "UPDATE hosts SET last_report = ?, verdict = ?, reasons = ?, "
                    "valid_until = ?, rule_results = ?, "
                    "last_sequence = CASE WHEN ? THEN ? ELSE last_sequence END WHERE id = ?",
                    [
                        received,
                        verdict,
                        reasons_json,
                        valid_until,
                        rules_json,
                        nonce is not None,
                        sequence,
                        host_id,
                    ],
                )
                previous = str(row[0]) if row is not None else "pending"
                change = None
                if previous != verdict:
                    change = self._insert_verdict(
                        host_id, received, verdict, previous, reasons, alert_on
                    )
                if evidence_row is not None:
                    conn.execute(
                        "INSERT INTO host_evidence (host_id, received, pcrs, eventlogs) "
                        "VALUES (?, ?, ?, ?) ON CONFLICT(host_id) "
                        "DO UPDATE SET received = excluded.received, pcrs = excluded.pcrs, "
                        "eventlogs = excluded.eventlogs",
                        evidence_row,
                    )
            return Recorded(previous, change)

        return await self._run_grouped(run)

    def _insert_verdict(  # noqa: PLR0917
        self,
        host_id: str,
        at: float,
        verdict: str,
        previous: str,
        reasons: tuple[str, ...],
        alert_on: Collection[str],
    ) -> Transition:
        """Write a verdict change and, when ``verdict`` is in ``alert_on``, its alert, in the
        caller's transaction; then tell every hub process sharing the database."""
        reasons_json = json.dumps(list(reasons))
        alert_id = None
        if verdict in alert_on:
            alert_id = self.db.insert_id(
                "INSERT INTO alerts (host_id, at, kind, reasons) VALUES (?, ?, ?, ?) RETURNING id",
                [host_id, at, verdict, reasons_json],
            )
        change_id = self.db.insert_id(
            "INSERT INTO verdicts (host_id, at, verdict, previous, reasons, alert_id) "
            "VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
            [host_id, at, verdict, previous, reasons_json, alert_id],
        )
        self.db.notify(VERDICTS_CHANNEL, str(change_id))
        return Transition(change_id, host_id, previous, verdict, reasons, at, alert_id)

    async def list_reports(self, host_id: str) -> list[StoredReport]:
        def run() -> list[StoredReport]:
            return [
                StoredReport(
                    id=r["id"],
                    host_id=r["host_id"],
                    received=r["received"],
                    verdict=r["verdict"],
                    reasons=tuple(json.loads(r["reasons"])),
                    sequence=r["sequence"],
                    body_sha256=r["body_sha256"],
                )
                for r in self._rows(
                    "SELECT * FROM reports WHERE host_id = ? ORDER BY id", [host_id]
                )
            ]

        return await self._run(run)

    async def mark_stale(
        self, now: float, *, alert_on: Collection[str] = ()
    ) -> list[tuple[Host, Transition]]:
        """Set ``stale`` on every trusted/untrusted host whose report validity has passed.

        Returns each host as it was before (its previous verdict) with its transition (an
        alert written with it when ``stale`` is in ``alert_on``).
        """
        reasons = ("report.expired",)

        def run() -> list[tuple[Host, Transition]]:
            changed = []
            with self.db.atomic():
                rows = self._rows(
                    self.db.locking(
                        "SELECT * FROM hosts WHERE verdict IN ('trusted', 'untrusted') "
                        "AND valid_until IS NOT NULL AND valid_until < ? ORDER BY id"
                    ),
                    [now],
                )
                for h in map(_host, rows):
                    self.db.execute(
                        "UPDATE hosts SET verdict = 'stale', reasons = ? WHERE id = ?",
                        [json.dumps(list(reasons)), h.id],
                    )
                    transition = self._insert_verdict(
                        h.id, now, "stale", h.verdict, reasons, alert_on
                    )
                    changed.append((h, transition))
            return changed

        return await self._run(run)

    async def list_verdicts(self, host_id: str) -> list[dict[str, Any]]:
        return await self._run(
            self._rows, "SELECT * FROM verdicts WHERE host_id = ? ORDER BY id", [host_id]
        )

    async def get_transition(self, change_id: int) -> Transition | None:
        """The verdict change ``change_id`` (as another process announced it), or ``None``."""

        def run() -> Transition | None:
            r = self._row("SELECT * FROM verdicts WHERE id = ?", [change_id])
            if r is None:
                return None
            return Transition(
                int(r["id"]),
                r["host_id"],
                r["previous"],
                r["verdict"],
                tuple(json.loads(r["reasons"] or "[]")),
                r["at"],
                r["alert_id"],
            )

        return await self._run_grouped(run)

    async def get_host_evidence(self, host_id: str) -> HostEvidence | None:
        """The host's last verified evidence (see :class:`HostEvidence`), if any."""

        def run() -> HostEvidence | None:
            row = self._row("SELECT * FROM host_evidence WHERE host_id = ?", [host_id])
            return None if row is None else _evidence(row)

        return await self._run(run)


def _evidence_row(e: HostEvidence) -> list[Any]:
    pcrs = {str(alg): {str(i): v.hex() for i, v in b.items()} for alg, b in e.pcrs.items()}
    return [
        e.host_id,
        e.received,
        json.dumps(pcrs, sort_keys=True),
        json.dumps(e.eventlogs, sort_keys=True),
    ]


def _evidence(r: dict[str, Any]) -> HostEvidence:
    pcrs = {
        int(alg): {int(i): bytes.fromhex(v) for i, v in b.items()}
        for alg, b in json.loads(r["pcrs"]).items()
    }
    return HostEvidence(r["host_id"], r["received"], pcrs, json.loads(r["eventlogs"]))
