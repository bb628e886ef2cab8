"""Enrollment challenges (by handle) and completing an enrollment."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from hub.store.backend import SqliteBackend
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


class EnrollmentStore(SqliteBackend):
    """Open challenges and their completion."""

    async def put_enrollment(self, pending: PendingEnrollment) -> None:
        """Store an open challenge under its handle; a host keeps at most
        :data:`MAX_OPEN_CHALLENGES_PER_HOST` (the oldest goes)."""
        k = pending.keys
        row = {
            "handle": pending.handle,
            "host_id": pending.host_id,
            "secret_hash": pending.secret_hash,
            "expires": pending.expires,
            "csr": pending.csr,
            "ek_public": k.ek_public,
            "ek_certificate": k.ek_certificate,
            "ak_public": k.ak_public,
            "binding_public": k.binding_public,
            "ek_verified": int(k.ek_verified),
            "hostname": pending.facts.hostname,
            "node_name": pending.facts.node_name,
            "dmi_uuid": pending.facts.dmi_uuid,
        }

        def run() -> None:
            with self.db.atomic():
                self._t("enrollment_challenges").insert(row)
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
                rows = list(
                    self._t("enrollment_challenges").rows_where(
                        "handle = ? AND host_id = ?", [handle, host_id]
                    )
                )
                if not rows:
                    return None
                self.db.execute("DELETE FROM enrollment_challenges WHERE handle = ?", [handle])
            r = rows[0]
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
                self._t("host_keys").upsert(
                    {
                        "host_id": keys.host_id,
                        "ek_public": keys.ek_public,
                        "ek_certificate": keys.ek_certificate,
                        "ak_public": keys.ak_public,
                        "binding_public": keys.binding_public,
                        "ek_verified": int(keys.ek_verified),
                    },
                    pk="host_id",
                )
                self._t("hosts").update(
                    keys.host_id,
                    {
                        "state": "enrolled",
                        "hostname": facts.hostname,
                        "node_name": facts.node_name,
                        "dmi_uuid": facts.dmi_uuid,
                        # an agent that enrolls again may have lost its ledger: count anew
                        "last_sequence": 0,
                        "cert_serial": cert_serial,
                    },
                )

        await self._run(run)

    async def count_open_enrollments(self, now: float) -> int:
        def run() -> int:
            with self.db.atomic():
                self.db.execute("DELETE FROM enrollment_challenges WHERE expires < ?", [now])
            return self._t("enrollment_challenges").count

        return await self._run(run)
