"""hub.store on PostgreSQL where several processes share one database: the same schema as
SQLite, the audit chain with concurrent appenders (real processes), nonces and alerts once
across connections, the audit head kept in the database."""

from __future__ import annotations

import asyncio
import itertools
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg

from hub.store import Store
from tests.conftest import REPO
from trustplane.pgcluster import PostgresCluster

HOST = "ab" * 32


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def opened(url: str) -> Store:
    store = await Store.open(url)
    await store.register_host(
        host_id=HOST, state="approved", hostname="h1", node_name="n1", dmi_uuid=None, now=1.0
    )
    return store


def test_both_backends_make_the_same_tables_and_migrations(
    tmp_path: Path, postgres: PostgresCluster
) -> None:
    url = postgres.create_database()

    async def go() -> None:
        for target in (str(tmp_path / "hub.db"), url):
            await (await Store.open(target)).close()

    run(go())
    lite = sqlite3.connect(tmp_path / "hub.db")
    sqlite_tables = {
        name: [c[1] for c in lite.execute(f"PRAGMA table_info({name})")]
        for (name,) in lite.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
    }
    sqlite_migrations = lite.execute("SELECT version, name FROM schema_migrations").fetchall()
    lite.close()
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            b"SELECT table_name, column_name FROM information_schema.columns "
            b"WHERE table_schema = 'public' ORDER BY table_name, ordinal_position"
        ).fetchall()
        pg_migrations = conn.execute(
            b"SELECT version, name FROM schema_migrations ORDER BY version"
        ).fetchall()
    pg_tables: dict[str, list[str]] = {}
    for table, column in rows:
        pg_tables.setdefault(table, []).append(column)
    assert pg_tables == sqlite_tables
    assert pg_migrations == sqlite_migrations
    assert len(pg_tables) == 28


APPENDER = """
import asyncio, sys
from hub.store import Store

async def main() -> None:
    store = await Store.open(sys.argv[1])
    for i in range(int(sys.argv[3])):
        await store.audit(at=float(i), actor=sys.argv[2], action="x", subject=str(i), details={})
    await store.close()

asyncio.run(main())
"""


def test_two_hubs_appending_concurrently_keep_one_verifiable_chain(
    postgres: PostgresCluster,
) -> None:
    url = postgres.create_database()

    async def migrate() -> None:  # before the appenders race
        await (await Store.open(url)).close()

    run(migrate())
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    appenders = [
        subprocess.Popen([sys.executable, "-c", APPENDER, url, name, "150"], env=env, cwd=REPO)
        for name in ("hub-a", "hub-b")
    ]
    assert [p.wait(timeout=120) for p in appenders] == [0, 0]

    async def go() -> None:
        store = await Store.open(url)
        check = await store.verify_audit_chain()
        rows = await store.list_audit()
        assert (check.ok, check.rows, check.first_bad) == (True, 300, None)
        assert [r["id"] for r in rows] == list(range(1, 301))
        actors = [r["actor"] for r in rows]
        assert (actors.count("hub-a"), actors.count("hub-b")) == (150, 150)
        # the appends interleaved: each row links to the one committed before it
        assert any(a != b for a, b in itertools.pairwise(actors))
        await store.close()

    run(go())


def test_the_audit_head_in_the_database_shows_deleted_newest_rows(
    postgres: PostgresCluster,
) -> None:
    async def go() -> None:
        store = await Store.open(postgres.create_database())
        for i in range(3):
            await store.audit(at=float(i), actor="cli", action="x", subject=str(i), details={})
        await store.execute_raw("DROP TRIGGER audit_log_no_delete ON audit_log")
        await store.execute_raw("DELETE FROM audit_log WHERE id = 3")
        check = await store.verify_audit_chain()
        assert (check.ok, check.rows, check.first_bad) == (False, 2, 3)
        assert check.problem == "rows up to 3 missing (the table ends at row 2)"
        await store.execute_raw("DELETE FROM audit_head")
        check = await store.verify_audit_chain()
        assert (check.ok, check.first_bad, check.problem) == (False, 2, "audit head missing")
        await store.close()

    run(go())


def test_a_nonce_is_spent_once_across_two_connections(postgres: PostgresCluster) -> None:
    url = postgres.create_database()

    async def go() -> list[str]:
        first = await opened(url)
        second = await Store.open(url)
        nonce = b"\x01" * 32
        await first.put_nonce(nonce, HOST, expires=100.0)
        results = await asyncio.gather(
            *(s.consume_nonce(nonce, HOST, 50.0) for _ in range(20) for s in (first, second))
        )
        await first.close()
        await second.close()
        return results

    results = run(go())
    assert (results.count("ok"), results.count("replayed")) == (1, 39)


def test_one_alert_per_trust_loss_whichever_connection_records_it(
    postgres: PostgresCluster,
) -> None:
    url = postgres.create_database()

    async def record(store: Store, verdict: str, at: float) -> Any:
        return await store.record_report(
            host_id=HOST,
            received=at,
            verdict=verdict,
            reasons=() if verdict == "trusted" else ("quote.signature_invalid",),
            sequence=1,
            body_sha256="00" * 32,
            valid_until=at + 600.0,
            rule_results=[],
            history=5,
            alert_on=("untrusted", "stale"),
        )

    async def go() -> None:
        stores = [await opened(url), await Store.open(url), await Store.open(url)]
        await record(stores[0], "trusted", 10.0)
        results = await asyncio.gather(
            *(record(s, "untrusted", 20.0 + i) for i, s in enumerate(stores * 4))
        )
        transitions = [r.transition for r in results if r.transition is not None]
        assert len(transitions) == 1
        alerts = await stores[1].list_alerts()
        assert [(a.kind, a.id) for a in alerts] == [("untrusted", transitions[0].alert_id)]
        verdicts = await stores[2].list_verdicts(HOST)
        assert [(v["previous"], v["verdict"]) for v in verdicts] == [
            ("pending", "trusted"),
            ("trusted", "untrusted"),
        ]
        for store in stores:
            await store.close()

    run(go())
