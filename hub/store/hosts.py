"""Hosts: what each host says of itself, its state, tags, flavors, group and keys."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from hub.store.backend import StoreBackend, _columns


@dataclass(frozen=True, slots=True)
class Host:
    id: str
    state: str  # pending | approved | enrolled | revoked
    hostname: str
    node_name: str | None
    dmi_uuid: str | None
    tags: dict[str, str]
    flavors: tuple[str, ...]
    created: float
    last_report: float | None
    verdict: str
    reasons: tuple[str, ...]
    valid_until: float | None
    rule_results: tuple[dict[str, Any], ...]
    group: str | None = None  # its host group (whose flavors it is verified against too)
    # hex serial of the one client certificate that authenticates it (None: enrolled before the
    # hub recorded serials, any certificate for it from the hub's CA is accepted)
    cert_serial: str | None = None


@dataclass(frozen=True, slots=True)
class HostGroup:
    """A named set of hosts sharing assigned flavors (a host is in at most one group)."""

    name: str
    flavors: tuple[str, ...]
    hosts: tuple[str, ...]  # member host ids, sorted


@dataclass(frozen=True, slots=True)
class HostKeys:
    host_id: str
    ek_public: bytes
    ak_public: bytes
    ek_certificate: bytes | None
    binding_public: bytes | None
    ek_verified: bool


@dataclass(frozen=True, slots=True)
class HostFacts:
    """What an agent says about itself; applied to an enrolled host only after activation."""

    hostname: str
    node_name: str | None = None
    dmi_uuid: str | None = None


class HostsStore(StoreBackend):
    """The hosts' and host groups' methods."""

    async def get_host(self, host_id: str, *, with_rules: bool = True) -> Host | None:
        """The host, or ``None``. ``with_rules=False`` leaves ``rule_results`` empty (the
        largest column: the per-request agent check does not need it decoded)."""
        return await self._run_grouped(self._get_host_sync, host_id, with_rules=with_rules)

    def _get_host_sync(self, host_id: str, *, with_rules: bool = True) -> Host | None:
        sql = "SELECT * FROM hosts WHERE id = ?" if with_rules else self._host_light_sql
        cur = self.db.conn.execute(sql, [host_id])
        row = cur.fetchone()
        if row is None:
            return None
        fields = dict(zip(_columns(cur), row, strict=True))
        if not with_rules:
            fields["rule_results"] = None  # decoded as ()
        return _host(fields)

    async def list_hosts(self) -> list[Host]:
        return await self._run(
            lambda: [_host(r) for r in self._rows("SELECT * FROM hosts ORDER BY id")]
        )

    async def count_hosts(self, state: str) -> int:
        def run() -> int:
            row = self.db.execute("SELECT count(*) FROM hosts WHERE state = ?", [state]).fetchone()
            return int(row[0])

        return await self._run(run)

    async def register_host(
        self,
        *,
        host_id: str,
        state: str,
        hostname: str,
        node_name: str | None,
        dmi_uuid: str | None,
        now: float,
    ) -> Host:
        """Create the host; a host that is still ``pending`` may update what it says about
        itself and be raised to ``approved``. Approved and enrolled hosts are left alone here:
        their facts change only with a completed activation (:meth:`complete_enrollment`),
        since anyone can send a host's (public) EK.
        """

        def run() -> Host:
            with self.db.atomic():
                existing = self._get_host_sync(host_id)
                if existing is None:
                    self.db.execute(
                        "INSERT INTO hosts (id, state, hostname, node_name, dmi_uuid, tags, "
                        "flavors, created, verdict, reasons, rule_results) "
                        "VALUES (?, ?, ?, ?, ?, '{}', '[]', ?, 'pending', '[]', '[]')",
                        [host_id, state, hostname, node_name, dmi_uuid, now],
                    )
                elif existing.state == "pending":
                    self.db.execute(
                        "UPDATE hosts SET hostname = ?, node_name = ?, dmi_uuid = ?, state = ? "
                        "WHERE id = ?",
                        [hostname, node_name, dmi_uuid, state, host_id],
                    )
                host = self._get_host_sync(host_id)
            if host is None:  # pragma: no cover - written above in the same transaction
                raise RuntimeError("host vanished")
            return host

        return await self._run(run)

    async def identity_conflicts(
        self, host_id: str, hostname: str, node_name: str | None, dmi_uuid: str | None
    ) -> list[tuple[str, str]]:
        """Active hosts (approved or enrolled) other than ``host_id`` that already use one of
        these names: ``[(host id, "hostname" | "node_name" | "dmi_uuid"), ...]``."""

        def run() -> list[tuple[str, str]]:
            found: list[tuple[str, str]] = []
            checks = (
                ("hostname", hostname or None),
                ("node_name", node_name),
                ("dmi_uuid", dmi_uuid.lower() if dmi_uuid else None),
            )
            for column, value in checks:
                if value is None:
                    continue
                expr = "lower(dmi_uuid)" if column == "dmi_uuid" else column
                rows = self.db.execute(
                    f"SELECT id FROM hosts WHERE {expr} = ? AND id != ? "  # noqa: S608 - fixed names
                    "AND state IN ('approved', 'enrolled') ORDER BY id",
                    [value, host_id],
                ).fetchall()
                found.extend((row[0], column) for row in rows)
            return found

        return await self._run(run)

    async def set_host_state(self, host_id: str, state: str) -> bool:
        def run() -> bool:
            with self.db.atomic():
                cur = self.db.execute("UPDATE hosts SET state = ? WHERE id = ?", [state, host_id])
                return cur.rowcount == 1

        return await self._run(run)

    async def set_host_tags(self, host_id: str, tags: dict[str, str]) -> None:
        await self._run(self._set_host_column, host_id, "tags", json.dumps(tags))

    async def set_host_flavors(self, host_id: str, flavors: list[str]) -> None:
        await self._run(self._set_host_column, host_id, "flavors", json.dumps(flavors))

    def _set_host_column(self, host_id: str, column: str, value: str) -> None:
        with self.db.atomic():
            self.db.execute(f"UPDATE hosts SET {column} = ? WHERE id = ?", [value, host_id])  # noqa: S608 - fixed names

    async def set_host_group(self, host_id: str, group: str | None, now: float) -> None:
        """Put the host in ``group`` (made, without flavors, if new) or in none."""

        def run() -> None:
            with self.db.atomic():
                if group is not None:
                    self.db.execute(
                        "INSERT INTO host_groups (name, flavors, created) "
                        "VALUES (?, '[]', ?) ON CONFLICT (name) DO NOTHING",
                        [group, now],
                    )
                self.db.execute("UPDATE hosts SET group_name = ? WHERE id = ?", [group, host_id])

        await self._run(run)

    async def set_group_flavors(self, group: str, flavors: list[str], now: float) -> None:
        """Set ``group``'s assigned flavors (the group is made if new)."""

        def run() -> None:
            with self.db.atomic():
                self.db.execute(
                    "INSERT INTO host_groups (name, flavors, created) VALUES (?, ?, ?) "
                    "ON CONFLICT(name) DO UPDATE SET flavors = excluded.flavors",
                    [group, json.dumps(flavors), now],
                )

        await self._run(run)

    async def list_groups(self) -> list[HostGroup]:
        """Every host group with its flavors and members, by name."""

        def run() -> list[HostGroup]:
            members: dict[str, list[str]] = {}
            for host_id, name in self.db.execute(
                "SELECT id, group_name FROM hosts WHERE group_name IS NOT NULL ORDER BY id"
            ).fetchall():
                members.setdefault(name, []).append(host_id)
            return [
                HostGroup(name, tuple(json.loads(flavors)), tuple(members.get(name, ())))
                for name, flavors in self.db.execute(
                    "SELECT name, flavors FROM host_groups ORDER BY name"
                ).fetchall()
            ]

        return await self._run(run)

    async def get_host_keys(self, host_id: str) -> HostKeys | None:
        def run() -> HostKeys | None:
            row = self._row("SELECT * FROM host_keys WHERE host_id = ?", [host_id])
            return None if row is None else _keys(row)

        return await self._run(run)


def _host(r: dict[str, Any]) -> Host:
    return Host(
        id=r["id"],
        state=r["state"],
        hostname=r["hostname"],
        node_name=r["node_name"],
        dmi_uuid=r["dmi_uuid"],
        tags=json.loads(r["tags"] or "{}"),
        flavors=tuple(json.loads(r["flavors"] or "[]")),
        created=r["created"],
        last_report=r["last_report"],
        verdict=r["verdict"],
        reasons=tuple(json.loads(r["reasons"] or "[]")),
        valid_until=r["valid_until"],
        rule_results=tuple(json.loads(r["rule_results"] or "[]")),
        group=r.get("group_name"),
        cert_serial=r.get("cert_serial"),
    )


def _keys(r: dict[str, Any]) -> HostKeys:
    return HostKeys(
        host_id=r["host_id"],
        ek_public=r["ek_public"],
        ak_public=r["ak_public"],
        ek_certificate=r["ek_certificate"],
        binding_public=r["binding_public"],
        ek_verified=bool(r["ek_verified"]),
    )
