"""hub.store on a real SQLite file and (tests taking ``store_target``) a real PostgreSQL
database: migrations, single-use nonces, history, the audit chain."""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import sqlite_utils

from hub.store import (
    GENESIS_HASH,
    MIGRATIONS,
    HostGroup,
    Store,
    StoredWebSession,
    audit_row_hash,
    websessions,
)

HOST = "ab" * 32


def run(coro):
    return asyncio.run(coro)


async def opened(path: Path) -> Store:
    store = await Store.open(path)
    await store.register_host(
        host_id=HOST, state="approved", hostname="h1", node_name="n1", dmi_uuid=None, now=1.0
    )
    return store


MIGRATION_LIST = [
    (1, "_migration_1"),
    (2, "_migration_2"),
    (3, "_migration_3"),
    (4, "_migration_4"),
    (5, "_migration_5"),
    (6, "_migration_6"),
    (7, "_migration_7"),
    (8, "_migration_8"),
    (9, "_migration_9"),
    (10, "_migration_10"),
    (11, "_migration_11"),
    (12, "_migration_12"),
    (13, "_migration_13"),
    (14, "_migration_14"),
    (15, "_migration_15"),
]


def test_new_database_is_migrated_to_version_15_and_reopens(tmp_path: Path) -> None:
    async def go() -> None:
        store = await Store.open(tmp_path / "hub.db")
        assert store.schema_version == 15
        await store.close()
        again = await Store.open(tmp_path / "hub.db")
        assert again.schema_version == 15
        await again.close()

    run(go())
    conn = sqlite3.connect(tmp_path / "hub.db")
    assert conn.execute("SELECT version, name FROM schema_migrations").fetchall() == (
        MIGRATION_LIST
    )
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {
        "hosts",
        "host_keys",
        "enrollment_challenges",
        "nonces",
        "reports",
        "verdicts",
        "flavors",
        "alerts",
        "tokens",
        "eventlog_cache",
        "audit_log",
        "host_evidence",
        "tag_certificates",
        "host_groups",
        "verdict_changes",
        "web_sessions",
    } <= tables
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_later_migration_runs_once(store_target: str) -> None:
    """A migration in portable SQL runs as written on both backends, once."""
    calls: list[int] = []

    def _migration_99(db: sqlite_utils.Database) -> None:
        calls.append(99)
        db.execute("ALTER TABLE hosts ADD COLUMN extra TEXT")

    async def go() -> list[str]:
        s1 = await Store.open(store_target)
        await s1.close()
        s2 = await Store.open(store_target, migrations=(*MIGRATIONS, _migration_99))
        assert s2.schema_version == 99
        await s2.close()
        s3 = await Store.open(store_target, migrations=(*MIGRATIONS, _migration_99))
        assert s3.schema_version == 99
        columns = await s3._run(s3.db.columns, "hosts")
        await s3.close()
        return columns

    columns = run(go())
    assert calls == [99]
    assert columns[-1] == "extra"


def test_nonce_is_single_use_under_concurrency(store_target: str) -> None:
    async def go() -> list[str]:
        store = await opened(store_target)
        nonce = b"\x01" * 32
        await store.put_nonce(nonce, HOST, expires=100.0)
        results = await asyncio.gather(*(store.consume_nonce(nonce, HOST, 50.0) for _ in range(50)))
        await store.close()
        return results

    results = run(go())
    assert results.count("ok") == 1
    assert results.count("replayed") == 49


def test_nonce_unknown_expired_and_other_host(store_target: str) -> None:
    async def go() -> tuple[str, str, str, str]:
        store = await opened(store_target)
        await store.put_nonce(b"\x02" * 32, HOST, expires=100.0)
        other = await store.consume_nonce(b"\x02" * 32, "cd" * 32, 50.0)
        expired = await store.consume_nonce(b"\x02" * 32, HOST, 100.5)
        unknown = await store.consume_nonce(b"\x03" * 32, HOST, 50.0)
        # expired nonces are pruned after their grace period
        await store.prune_nonces(1000.0, keep_for=600.0)
        pruned = await store.consume_nonce(b"\x02" * 32, HOST, 50.0)
        await store.close()
        return other, expired, unknown, pruned

    assert run(go()) == ("unknown", "expired", "unknown", "unknown")


def test_report_history_is_bounded_and_verdict_changes_recorded(store_target: str) -> None:
    async def go() -> None:
        store = await opened(store_target)
        previous = []
        for i in range(7):
            verdict = "trusted" if i % 3 else "untrusted"
            previous.append(
                await store.record_report(
                    host_id=HOST,
                    received=10.0 + i,
                    verdict=verdict,
                    reasons=() if verdict == "trusted" else ("quote.signature_invalid",),
                    sequence=i,
                    body_sha256="00" * 32,
                    valid_until=100.0 + i,
                    rule_results=[],
                    history=3,
                    alert_on=("untrusted",),
                )
            )
        reports = await store.list_reports(HOST)
        assert [r.sequence for r in reports] == [4, 5, 6]
        assert [r.previous for r in previous] == [
            "pending",
            "untrusted",
            "trusted",
            "trusted",
            "untrusted",
            "trusted",
            "trusted",
        ]
        verdicts = await store.list_verdicts(HOST)
        assert [(v["previous"], v["verdict"]) for v in verdicts] == [
            ("pending", "untrusted"),
            ("untrusted", "trusted"),
            ("trusted", "untrusted"),
            ("untrusted", "trusted"),
            ("trusted", "untrusted"),
        ]
        # each change to untrusted wrote its alert in the same transaction
        alerts = await store.list_alerts()
        assert [(a.at, a.kind) for a in alerts] == [
            (16.0, "untrusted"),
            (13.0, "untrusted"),
            (10.0, "untrusted"),
        ]
        assert [v["alert_id"] for v in verdicts] == [
            alerts[2].id,
            None,
            alerts[1].id,
            None,
            alerts[0].id,
        ]
        assert [r.transition is None for r in previous] == [
            False, False, True, False, False, True, False,
        ]  # fmt: skip
        # and each change is in the cross-process log (hub.bus), in order
        logged = await store.verdict_changes_after(0)
        assert [(c.previous, c.verdict, c.alert_id) for c in logged] == [
            (v["previous"], v["verdict"], v["alert_id"]) for v in verdicts
        ]
        assert [c.id for c in logged] == [r.transition.change_id for r in previous if r.transition]
        host = await store.get_host(HOST)
        assert host is not None
        assert (host.verdict, host.valid_until, host.last_report) == ("untrusted", 106.0, 16.0)
        assert await store.mark_stale(106.0) == []
        ((before, transition),) = await store.mark_stale(106.5, alert_on=("stale",))
        assert before.verdict == "untrusted"
        assert (transition.previous, transition.verdict, transition.reasons) == (
            "untrusted",
            "stale",
            ("report.expired",),
        )
        assert transition.alert_id == (await store.list_alerts())[0].id
        assert (await store.get_host(HOST)).verdict == "stale"  # type: ignore[union-attr]
        assert await store.mark_stale(200.0) == []
        await store.close()

    run(go())


def test_audit_chain_verifies_and_detects_tampering(store_target: str) -> None:
    async def go() -> None:
        store = await Store.open(store_target)
        on = " ON audit_log" if store.dialect == "postgresql" else ""
        for i in range(4):
            await store.audit(
                at=float(i), actor="cli", action="x", subject=str(i), details={"i": i}
            )
        check = await store.verify_audit_chain()
        assert (check.ok, check.rows, check.first_bad) == (True, 4, None)
        rows = await store.list_audit()
        assert rows[0]["prev_hash"] == GENESIS_HASH
        assert rows[1]["prev_hash"] == rows[0]["hash"]
        # the database refuses updates and deletes of audit rows
        with pytest.raises(store.integrity_error, match="audit_log is append-only"):
            await store.execute_raw("UPDATE audit_log SET actor = 'evil' WHERE id = 2")
        with pytest.raises(store.integrity_error, match="audit_log is append-only"):
            await store.execute_raw("DELETE FROM audit_log WHERE id = 2")
        # someone with write access drops the triggers and rewrites a row
        await store.execute_raw("DROP TRIGGER audit_log_no_update" + on)
        await store.execute_raw("UPDATE audit_log SET subject = 'forged' WHERE id = 3")
        check = await store.verify_audit_chain()
        assert (check.ok, check.first_bad) == (False, 3)
        await store.close()

    run(go())


def test_deleting_the_newest_audit_rows_is_detected(tmp_path: Path) -> None:
    async def go() -> None:
        store = await Store.open(tmp_path / "hub.db")
        assert (await store.verify_audit_chain()).ok is True  # empty, no head yet
        for i in range(3):
            await store.audit(at=float(i), actor="cli", action="x", subject=str(i), details={})
        rows = await store.list_audit()
        head = json.loads((tmp_path / "hub.db-audit-head.json").read_text())
        assert head == {"id": 3, "hash": rows[2]["hash"]}
        assert ((tmp_path / "hub.db-audit-head.json").stat().st_mode & 0o777) == 0o600
        await store.execute_raw("DROP TRIGGER audit_log_no_delete")
        await store.execute_raw("DELETE FROM audit_log WHERE id = 3")
        check = await store.verify_audit_chain()
        assert (check.ok, check.rows, check.first_bad) == (False, 2, 3)
        assert check.problem == "rows up to 3 missing (the table ends at row 2)"
        await store.execute_raw("DELETE FROM audit_log")
        check = await store.verify_audit_chain()
        assert (check.ok, check.rows, check.first_bad) == (False, 0, 3)
        assert check.problem == "rows up to 3 missing (the table is empty)"
        await store.close()
        # a reopened store still compares against the file
        store = await Store.open(tmp_path / "hub.db")
        assert (await store.verify_audit_chain()).ok is False
        (tmp_path / "hub.db-audit-head.json").unlink()
        await store.audit(at=9.0, actor="cli", action="x", subject="9", details={})
        assert (await store.verify_audit_chain()).ok is True
        await store.close()

    run(go())


def test_a_removed_or_replaced_audit_head_is_detected(tmp_path: Path) -> None:
    async def go() -> None:
        store = await Store.open(tmp_path / "hub.db")
        for i in range(2):
            await store.audit(at=float(i), actor="cli", action="x", subject=str(i), details={})
        head_file = tmp_path / "hub.db-audit-head.json"
        saved = head_file.read_bytes()
        head_file.unlink()
        check = await store.verify_audit_chain()
        assert (check.ok, check.first_bad, check.problem) == (False, 2, "audit head missing")
        head_file.write_text('{"id": 2, "hash": "' + "ab" * 32 + '"}')
        check = await store.verify_audit_chain()
        assert (check.ok, check.problem) == (False, "row 2 is not the recorded head")
        head_file.write_text("[]")
        check = await store.verify_audit_chain()
        assert check.ok is False
        assert check.problem == f"audit head unreadable: {head_file}: not an audit head"
        head_file.write_bytes(saved)
        assert (await store.verify_audit_chain()).ok is True
        await store.close()

    run(go())


def test_in_memory_store_keeps_the_head_in_memory() -> None:
    async def go() -> None:
        store = await Store.open(":memory:")
        await store.audit(at=1.0, actor="cli", action="x", subject="1", details={})
        await store.audit(at=2.0, actor="cli", action="x", subject="2", details={})
        assert (await store.verify_audit_chain()).ok is True
        await store.execute_raw("DROP TRIGGER audit_log_no_delete")
        await store.execute_raw("DELETE FROM audit_log WHERE id = 2")
        check = await store.verify_audit_chain()
        assert (check.ok, check.first_bad) == (False, 2)
        await store.close()

    run(go())


def test_version_3_database_gains_host_groups(store_target: str) -> None:
    async def go() -> None:
        old = await Store.open(store_target, migrations=MIGRATIONS[:3])
        await old.register_host(
            host_id=HOST, state="approved", hostname="h1", node_name="n1", dmi_uuid=None, now=1.0
        )
        await old.close()
        store = await Store.open(store_target)
        assert store.schema_version == 15
        host = await store.get_host(HOST)
        assert host is not None
        assert host.group is None
        await store.close()

    run(go())


def test_host_groups_and_the_flavors_a_host_is_verified_against(store_target: str) -> None:
    async def go() -> None:
        store = await opened(store_target)
        for name in ("a", "b", "c"):
            await store.put_flavor(name, {"id": name}, 1.0)
        await store.set_host_flavors(HOST, ["a", "b"])
        host = await store.get_host(HOST)
        assert host is not None
        assert list(await store.flavors_for_host(host)) == ["a", "b"]
        await store.set_group_flavors("rack-7", ["c", "a"], 2.0)
        await store.set_host_group(HOST, "rack-7", 3.0)
        host = await store.get_host(HOST)
        assert host is not None
        assert host.group == "rack-7"
        assert list(await store.flavors_for_host(host)) == ["a", "b", "c"]
        assert await store.list_groups() == [HostGroup("rack-7", ("c", "a"), (HOST,))]
        # a new group is made by naming it; a host is in at most one group
        await store.set_host_group(HOST, "rack-8", 4.0)
        assert await store.list_groups() == [
            HostGroup("rack-7", ("c", "a"), ()),
            HostGroup("rack-8", (), (HOST,)),
        ]
        await store.set_host_group(HOST, None, 5.0)
        host = await store.get_host(HOST)
        assert host is not None
        assert host.group is None
        assert list(await store.flavors_for_host(host)) == ["a", "b"]
        # the database refuses a group that does not exist
        with pytest.raises(store.integrity_error):
            await store.execute_raw("UPDATE hosts SET group_name = 'nope' WHERE id = ?", [HOST])
        await store.close()

    run(go())


def test_audit_row_hash_is_sha256_of_prev_and_canonical_row() -> None:
    row = {
        "at": 1.0,
        "actor": "a",
        "action": "b",
        "subject": "c",
        "details": "{}",
        "prev_hash": GENESIS_HASH,
    }
    canonical = (
        b'{"action":"b","actor":"a","at":1.0,"details":"{}","prev_hash":"'
        + GENESIS_HASH.encode()
        + b'","subject":"c"}'
    )
    assert audit_row_hash(GENESIS_HASH, row) == hashlib.sha256(bytes(32) + canonical).hexdigest()


def test_tokens_and_alerts(store_target: str) -> None:
    async def go() -> None:
        store = await opened(store_target)
        tid = await store.add_token("h" * 64, "viewer", "ops", 1.0)
        found = await store.find_token("h" * 64)
        assert found is not None
        assert (found.id, found.role, found.name) == (tid, "viewer", "ops")
        assert await store.revoke_token(tid) is True
        assert await store.revoke_token(tid) is False
        assert await store.find_token("h" * 64) is None
        aid = await store.add_alert(HOST, 5.0, "untrusted", ("quote.signature_invalid",))
        assert [a.id for a in await store.list_alerts(open_only=True)] == [aid]
        assert await store.ack_alert(aid, 6.0, "ops") is True
        assert await store.ack_alert(aid, 7.0, "ops") is False
        assert await store.list_alerts(open_only=True) == []
        (alert,) = await store.list_alerts()
        assert (alert.acked_at, alert.acked_by, alert.reasons) == (
            6.0,
            "ops",
            ("quote.signature_invalid",),
        )
        await store.close()

    run(go())


def test_web_sessions_expire_and_are_bounded(store_target: str) -> None:
    async def go() -> None:
        store = await opened(store_target)
        first = StoredWebSession("a" * 64, b"\x00sealed", "ops", "admin", "c" * 43, 100.0)
        await store.add_web_session(first, now=10.0)
        assert await store.web_session("a" * 64, now=50.0) == first
        assert await store.web_session("b" * 64, now=50.0) is None
        # met after its expiry: gone, also for a later reader
        assert await store.web_session("a" * 64, now=100.0) is None
        await store.add_web_session(first, now=10.0)  # the key is free again
        await store.delete_web_session("a" * 64)
        assert await store.web_session("a" * 64, now=50.0) is None
        await store.close()

    run(go())


def test_web_sessions_keep_at_most_the_bound(
    store_target: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(websessions, "MAX_WEB_SESSIONS", 3)

    async def go() -> None:
        store = await opened(store_target)
        for i in range(5):
            row = StoredWebSession(f"{i:064d}", b"x", "ops", "viewer", "c", 100.0 + i)
            await store.add_web_session(row, now=10.0)
        alive = [i for i in range(5) if await store.web_session(f"{i:064d}", now=20.0)]
        assert alive == [2, 3, 4]  # the two that would expire first were dropped
        await store.close()

    run(go())


def test_eventlog_cache_round_trip(store_target: str) -> None:
    async def go() -> None:
        store = await Store.open(store_target)
        await store.put_eventlog("aa" * 32, b"\x00log", 1.0)
        assert await store.get_eventlog("aa" * 32) == b"\x00log"
        assert await store.get_eventlog("bb" * 32) is None
        assert await store.prune_eventlogs(1.0) == 0
        assert await store.prune_eventlogs(1.5) == 1
        assert await store.get_eventlog("aa" * 32) is None
        await store.close()

    run(go())


def test_two_connections_appending_at_once_keep_the_chain_and_its_head(store_target: str) -> None:
    """Processes sharing the database (workers, replicas): each append reads the last row and
    writes after it, and the recorded head ends at the last row whoever wrote it last."""

    async def go() -> None:
        first = await Store.open(store_target)
        second = await Store.open(store_target)
        await asyncio.gather(
            *(
                store.audit(at=float(i), actor=name, action="x", subject=str(i), details={})
                for i in range(40)
                for name, store in (("one", first), ("two", second))
            )
        )
        for store in (first, second):
            check = await store.verify_audit_chain()
            assert (check.ok, check.rows, check.problem) == (True, 80, None)
        await first.close()
        await second.close()

    run(go())


def test_a_hub_on_sqlite_needs_no_postgresql_driver(tmp_path: Path) -> None:
    """The hub RPM does not require psycopg (PostgreSQL is optional): with the driver made
    unimportable, the hub's modules import and a SQLite store opens."""
    code = (
        "import sys, asyncio\n"
        "sys.modules['psycopg'] = None\n"  # any import of it now raises ImportError
        "import hub.app, hub.cli, hub.bus\n"
        "from hub.store import Store\n"
        "async def go():\n"
        f"    s = await Store.open({str(tmp_path / 'hub.db')!r})\n"
        "    print(s.schema_version)\n"
        "    await s.close()\n"
        "asyncio.run(go())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) == MIGRATION_LIST[-1][0]
