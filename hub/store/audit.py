"""The audit log: append-only and hash-chained, with its head kept outside the table.

Each row stores ``sha256(prev_hash || canonical JSON of the row)``, and
:meth:`AuditStore.verify_audit_chain` finds the first row that no longer fits. The chain alone
cannot show that its newest rows were deleted, so the head (last row id and hash) is also kept
in ``<database>-audit-head.json`` next to the database file (written atomically after each
append; in memory for ``:memory:``), signed by :mod:`hub.auditseal` when a sealer is set, with
signed checkpoints in ``audit_checkpoints``.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric import ec

from hub.auditseal import read_exported, verify_seal
from hub.store.backend import StoreBackend

GENESIS_HASH: Final = "0" * 64
AUDIT_LOCK: Final = "trustplane-hub audit_log"  # serialises appends across processes


@dataclass(frozen=True, slots=True)
class AuditCheck:
    """Result of :meth:`Store.verify_audit_chain`: ``first_bad`` is the first broken row id."""

    ok: bool
    rows: int
    first_bad: int | None = None
    problem: str | None = None


def _canonical(obj: object) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def audit_row_hash(prev_hash: str, row: dict[str, Any]) -> str:
    """``sha256(prev_hash || canonical row)`` in hex; ``row`` excludes ``id`` and ``hash``."""
    return hashlib.sha256(bytes.fromhex(prev_hash) + _canonical(row)).hexdigest()


def _write_audit_head(path: Path, head: dict[str, Any]) -> None:
    """Replace ``path`` atomically with ``{"id", "hash"[, "sig"]}`` (0600), unless it already
    names a later row: several hub processes (``server.workers``) share one SQLite file and
    write the head after their commits, in any order. A lock file beside it serialises the
    read-compare-replace between them; each process writes its own temporary file."""
    lock_fd = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX)
        try:
            current = json.loads(path.read_bytes())
        except (OSError, ValueError):
            current = None
        if (
            isinstance(current, dict)
            and isinstance(current.get("id"), int)
            and current["id"] > head["id"]
        ):
            return
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(_canonical(head))
        os.replace(tmp, path)
    finally:
        os.close(lock_fd)  # releases the lock


class AuditHeadError(Exception):
    """The audit head file exists but cannot be read as one."""


def _read_audit_head_document(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise AuditHeadError(f"{path}: {e}") from None
    return _checked_head(data, str(path))


def _checked_head(data: object, where: str) -> dict[str, Any]:
    if not (
        isinstance(data, dict)
        and isinstance(data.get("id"), int)
        and isinstance(data.get("hash"), str)
    ):
        raise AuditHeadError(f"{where}: not an audit head")
    return data


def _check_audit_head(
    head: tuple[int, str] | None, last: tuple[int, str] | None, rows: int
) -> AuditCheck:
    """Compare the table's last row with the recorded head."""
    if head == last:
        return AuditCheck(ok=True, rows=rows)
    if head is None:
        return AuditCheck(False, rows, None if last is None else last[0], "audit head missing")
    if last is None or last[0] < head[0]:
        end = "the table is empty" if last is None else f"the table ends at row {last[0]}"
        return AuditCheck(False, rows, head[0], f"rows up to {head[0]} missing ({end})")
    return AuditCheck(False, rows, head[0], f"row {head[0]} is not the recorded head")


class AuditStore(StoreBackend):
    """The audit log's methods."""

    async def audit(
        self, *, at: float, actor: str, action: str, subject: str, details: dict[str, Any]
    ) -> int:
        """Append one hash-chained audit row; returns its id."""

        def run() -> int:
            with self.db.atomic():
                # one append at a time across every process sharing the database: each row
                # links to the row committed before it
                self.db.lock(AUDIT_LOCK)
                last = self.db.execute(
                    "SELECT id, hash FROM audit_log ORDER BY id DESC LIMIT 1"
                ).fetchone()
                prev = last[1] if last else GENESIS_HASH
                row_id = int(last[0]) + 1 if last else 1
                row = {
                    "at": at,
                    "actor": actor,
                    "action": action,
                    "subject": subject,
                    "details": json.dumps(details, sort_keys=True),
                    "prev_hash": prev,
                }
                digest = audit_row_hash(prev, row)
                self.db.execute(
                    "INSERT INTO audit_log (id, at, actor, action, subject, details, prev_hash, "
                    "hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [row_id, at, actor, action, subject, row["details"], prev, digest],
                )
                checkpoint = None
                sealer = self.audit_sealer
                if sealer is not None and row_id % sealer.checkpoint_every == 0:
                    checkpoint = sealer.seal({"id": row_id, "hash": digest, "at": at})
                    self.db.execute(
                        "INSERT INTO audit_checkpoints (id, hash, at, sig) VALUES (?, ?, ?, ?)",
                        [checkpoint["id"], checkpoint["hash"], checkpoint["at"], checkpoint["sig"]],
                    )
                if self.dialect == "postgresql":  # the head is shared: written in the append
                    self._record_audit_head((row_id, digest))
            if self.dialect != "postgresql":
                self._record_audit_head((row_id, digest))
            if checkpoint is not None and sealer is not None:
                sealer.export(checkpoint)
            return row_id

        return await self._run(run)

    def _record_audit_head(self, head: tuple[int, str]) -> None:
        self._memory_audit_head = head
        document: dict[str, Any] = {"id": head[0], "hash": head[1]}
        if self.audit_sealer is not None and (
            self._audit_head_file is not None or self.dialect == "postgresql"
        ):
            document = self.audit_sealer.seal(document)
        if self.dialect == "postgresql":
            self.db.execute(
                "INSERT INTO audit_head (id, row_id, hash, document) VALUES (1, ?, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET row_id = excluded.row_id, "
                "hash = excluded.hash, document = excluded.document",
                [head[0], head[1], _canonical(document).decode()],
            )
        elif self._audit_head_file is not None:
            _write_audit_head(self._audit_head_file, document)

    def _audit_head_document(self) -> dict[str, Any] | None:
        """The recorded head as written (signed when a sealer is set); raises
        :class:`AuditHeadError`."""
        if self.dialect != "postgresql":
            if self._audit_head_file is None:
                return None
            return _read_audit_head_document(self._audit_head_file)
        row = self.db.execute("SELECT document FROM audit_head WHERE id = 1").fetchone()
        if row is None:
            return None
        try:
            data = json.loads(row[0])
        except ValueError as e:
            raise AuditHeadError(f"audit_head: {e}") from None
        return _checked_head(data, "audit_head")

    async def verify_audit_seals(
        self,
        public_key: ec.EllipticCurvePublicKey,
        *,
        checkpoint_every: int,
        export_file: Path | None = None,
    ) -> AuditCheck:
        """The seals (hub.auditseal) against the chain: the head file's signature, a signed
        checkpoint with the chain's hash for every ``checkpoint_every``-th row, and every
        exported checkpoint. Run after :meth:`verify_audit_chain` passed."""

        def run() -> AuditCheck:
            hashes = dict(self.db.execute("SELECT id, hash FROM audit_log").fetchall())
            rows = len(hashes)
            if (self._audit_head_file is not None or self.dialect == "postgresql") and hashes:
                try:
                    head = self._audit_head_document()
                except AuditHeadError as e:
                    return AuditCheck(False, rows, None, str(e))
                if head is None or not verify_seal(public_key, head):
                    return AuditCheck(False, rows, None, "audit head not signed by the hub's key")
            stored = {
                int(r["id"]): r for r in self._rows("SELECT * FROM audit_checkpoints ORDER BY id")
            }
            start = self.db.execute("SELECT after_row FROM audit_seal_start").fetchone()[0]
            first = (start // checkpoint_every + 1) * checkpoint_every
            for row_id in range(first, max(hashes, default=0) + 1, checkpoint_every):
                cp = stored.get(row_id)
                if cp is None:
                    return AuditCheck(False, rows, row_id, "audit checkpoint missing")
                if not verify_seal(public_key, cp) or cp["hash"] != hashes.get(row_id):
                    return AuditCheck(False, rows, row_id, "audit checkpoint does not match")
            if export_file is not None:
                try:
                    exported = read_exported(export_file)
                except (OSError, ValueError, TypeError) as e:
                    return AuditCheck(False, rows, None, f"export file unreadable: {e}")
                for cp in exported:
                    cp_id = cp.get("id")
                    if not verify_seal(public_key, cp) or hashes.get(cp_id) != cp.get("hash"):
                        bad = cp_id if isinstance(cp_id, int) else None
                        return AuditCheck(False, rows, bad, "exported checkpoint does not match")
            return AuditCheck(True, rows)

        return await self._run(run)

    def _recorded_audit_head(self) -> tuple[int, str] | None:
        if self._audit_head_file is None and self.dialect != "postgresql":
            return self._memory_audit_head
        data = self._audit_head_document()
        return None if data is None else (data["id"], data["hash"])

    async def list_audit(self) -> list[dict[str, Any]]:
        return await self._run(self._rows, "SELECT * FROM audit_log ORDER BY id")

    async def verify_audit_chain(self) -> AuditCheck:
        """Recompute every row's hash and link, then compare the last row with the recorded
        head (so deleted newest rows show); report the first row that does not fit."""

        def run() -> AuditCheck:
            prev = GENESIS_HASH
            count = 0
            last: tuple[int, str] | None = None
            for r in self._rows("SELECT * FROM audit_log ORDER BY id"):
                count += 1
                row = {k: r[k] for k in ("at", "actor", "action", "subject", "details")}
                row["prev_hash"] = r["prev_hash"]
                if r["prev_hash"] != prev or audit_row_hash(prev, row) != r["hash"]:
                    return AuditCheck(False, count, int(r["id"]), "hash chain broken")
                prev = r["hash"]
                last = (int(r["id"]), str(r["hash"]))
            try:
                head = self._recorded_audit_head()
            except AuditHeadError as e:
                return AuditCheck(False, count, None, f"audit head unreadable: {e}")
            return _check_audit_head(head, last, count)

        return await self._run(run)
