"""Enrollment challenges (by handle) and completing an enrollment."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from hub.store.backend import StoreBackend
from hub.store.hosts import HostFacts, HostKeys, _keys


@dataclass(frozen=True, slots=True)
class PendingEnrollment:
    """An issued MakeCredential challenge and the keys it will bind once answered."""

    host_id: str
    secret_hash: bytes
    expires: float
    csr: str
    keys: HostKeys
    facts: HostFacts
    handle: bytes = b""  # names the challenge; only the request that got it knows it


MAX_OPEN_CHALLENGES_PER_HOST: Final = 8


class EnrollmentStore(StoreBackend):
    """Open challenges and their completion."""

    async def put_enrollment(self, pending: PendingEnrollment) -> None:
        """Store an open challenge under its handle; a host keeps at most
        :data:`MAX_OPEN_CHALLENGES_PER_HOST` (the oldest goes)."""
        k = pending.keys
        row = [
            pending.handle,
            pending.host_id,
            pending.secret_hash,
            pending.expires,
            pending.csr,
            k.ek_public,
            k.ek_certificate,
            k.ak_public,
            k.binding_public,
            int(k.ek_verified),
            pending.facts.hostname,
            pending.facts.node_name,
            pending.facts.dmi_uuid,
        ]

        def run() -> None:
            with self.db.atomic():
                self.db.execute(
                    "INSERT INTO enrollment_challenges (handle, host_id, secret_hash, expires, "
                    "csr, ek_public, ek_certificate, ak_public, binding_public, ek_verified, "
                    "hostname, node_name, dmi_uuid) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    row,
                )
                self.db.execute(
                    "DELETE FROM enrollment_challenges WHERE host_id = ? AND handle NOT IN "
                    "(SELECT handle FROM enrollment_challenges WHERE host_id = ? "
                    "ORDER BY expires DESC LIMIT ?)",
                    [pending.host_id, pending.host_id, MAX_OPEN_CHALLENGES_PER_HOST],
                )

        await self._run(run)

    async def take_enrollment(self, host_id: str, handle: bytes) -> PendingEnrollment | None:
        """Remove and return the host's open challenge named ``handle`` (single use), or
        ``None``."""

        def run() -> PendingEnrollment | None:
            with self.db.atomic():
                r = self._row(
                    self.db.locking(
                        "SELECT * FROM enrollment_challenges WHERE handle = ? AND host_id = ?"
                    ),
                    [handle, host_id],
                )
                if r is None:
                    return None
                cur = self.db.execute(
                    "DELETE FROM enrollment_challenges WHERE handle = ?", [handle]
                )
                if cur.rowcount != 1:  # taken by another process meanwhile
                    return None
            return PendingEnrollment(
                host_id=r["host_id"],
                secret_hash=r["secret_hash"],
                expires=r["expires"],
                csr=r["csr"],
                keys=_keys(r),
                facts=HostFacts(r["hostname"], r["node_name"], r["dmi_uuid"]),
                handle=r["handle"],
            )

        return await self._run(run)

    async def complete_enrollment(
        self, keys: HostKeys, facts: HostFacts, *, cert_serial: str | None = None
    ) -> None:
        """Bind the activated keys and the facts to the host and mark it ``enrolled``; with
        ``cert_serial``, that certificate becomes the only one that authenticates the host."""

        def run() -> None:
            with self.db.atomic():
                self.db.execute(
                    "INSERT INTO host_keys (host_id, ek_public, ek_certificate, ak_public, "
                    "binding_public, ek_verified) VALUES (?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT (host_id) DO UPDATE SET ek_public = excluded.ek_public, "
                    "ek_certificate = excluded.ek_certificate, ak_public = excluded.ak_public, "
                    "binding_public = excluded.binding_public, "
                    "ek_verified = excluded.ek_verified",
                    [
                        keys.host_id,
                        keys.ek_public,
                        keys.ek_certificate,
                        keys.ak_public,
                        keys.binding_public,
                        int(keys.ek_verified),
                    ],
                )
                # an agent that enrolls again may have lost its ledger: count anew
                self.db.execute(
                    "UPDATE hosts SET state = 'enrolled', hostname = ?, node_name = ?, "
                    "dmi_uuid = ?, last_sequence = 0, cert_serial = ? WHERE id = ?",
                    [facts.hostname, facts.node_name, facts.dmi_uuid, cert_serial, keys.host_id],
                )

        await self._run(run)

    async def count_open_enrollments(self, now: float) -> int:
        def run() -> int:
            with self.db.atomic():
                self.db.execute("DELETE FROM enrollment_challenges WHERE expires < ?", [now])
            return int(self.db.execute("SELECT count(*) FROM enrollment_challenges").fetchone()[0])

        return await self._run(run)
