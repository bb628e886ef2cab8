"""hub.store's report write path: a report recorded together with its nonce (one transaction,
exactly once), evidence upserts, history pruning, and the flavor-row cache's revisions."""

from __future__ import annotations

import asyncio
import sqlite3
from dataclasses import replace
from hashlib import sha256
from pathlib import Path
from typing import Any

import psycopg
import pytest

from hub.store import HostEvidence, HostFacts, HostKeys, NonceRefused, SequenceRefused, Store

HOST = "ab" * 32
NONCE = b"\x07" * 32


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def opened(path: Path) -> Store:
    store = await Store.open(path)
    await store.register_host(
        host_id=HOST, state="approved", hostname="h1", node_name="n1", dmi_uuid=None, now=1.0
    )
    return store


async def record(store: Store, seq: int, *, nonce: bytes | None, at: float = 50.0) -> str:
    recorded = await store.record_report(
        host_id=HOST,
        received=at,
        verdict="trusted",
        reasons=(),
        sequence=seq,
        body_sha256="11" * 32,
        valid_until=at + 600.0,
        rule_results='[{"rule": "r", "passed": true}]',
        history=2,
        evidence=HostEvidence(HOST, at, {11: {0: bytes([seq]) * 32}}, {"uefi": "22" * 32}),
        nonce=nonce,
    )
    return recorded.previous


def other_connection_reads(target: str, sql: str) -> list[tuple[Any, ...]]:
    """``sql``'s rows read through a connection of its own (what another process sees)."""
    if target.startswith("postgresql://"):
        with psycopg.connect(target) as conn:
            return [tuple(r) for r in conn.execute(sql.encode()).fetchall()]  # type: ignore[arg-type]
    conn3 = sqlite3.connect(target)
    try:
        return [tuple(r) for r in conn3.execute(sql).fetchall()]
    finally:
        conn3.close()


def test_a_report_is_recorded_once_with_its_nonce(store_target: str) -> None:
    async def go() -> None:
        store = await opened(store_target)
        await store.put_nonce(NONCE, HOST, expires=100.0)
        assert await record(store, 1, nonce=NONCE) == "pending"
        with pytest.raises(NonceRefused) as replayed:
            await record(store, 2, nonce=NONCE)
        assert replayed.value.status == "replayed"
        with pytest.raises(NonceRefused) as unknown:
            await record(store, 3, nonce=b"\x08" * 32)
        assert unknown.value.status == "unknown"
        await store.put_nonce(b"\x09" * 32, HOST, expires=100.0)
        with pytest.raises(NonceRefused) as expired:
            await record(store, 4, nonce=b"\x09" * 32, at=100.5)
        assert expired.value.status == "expired"
        # only the first report was written, with its rules and evidence
        assert [r.sequence for r in await store.list_reports(HOST)] == [1]
        host = await store.get_host(HOST)
        assert host is not None
        assert (host.verdict, host.rule_results) == ("trusted", ({"rule": "r", "passed": True},))
        evidence = await store.get_host_evidence(HOST)
        assert evidence == HostEvidence(HOST, 50.0, {11: {0: b"\x01" * 32}}, {"uefi": "22" * 32})
        await store.close()

    run(go())


def test_concurrent_reports_with_one_nonce_record_one(store_target: str) -> None:
    async def go() -> list[object]:
        store = await opened(store_target)
        await store.put_nonce(NONCE, HOST, expires=100.0)
        results = await asyncio.gather(
            *(record(store, i, nonce=NONCE) for i in range(1, 21)), return_exceptions=True
        )
        assert len(await store.list_reports(HOST)) == 1
        await store.close()
        return results

    results = run(go())
    assert results.count("pending") == 1
    refused = [r for r in results if isinstance(r, NonceRefused)]
    assert [r.status for r in refused] == ["replayed"] * 19


def test_history_keeps_the_newest_and_evidence_is_replaced(store_target: str) -> None:
    async def go() -> None:
        store = await opened(store_target)
        for seq in range(1, 6):
            await record(store, seq, nonce=None, at=10.0 * seq)
        assert [r.sequence for r in await store.list_reports(HOST)] == [4, 5]
        evidence = await store.get_host_evidence(HOST)
        assert evidence == HostEvidence(HOST, 50.0, {11: {0: b"\x05" * 32}}, {"uefi": "22" * 32})
        await store.close()

    run(go())


def test_flavor_revisions_follow_the_stored_text(store_target: str) -> None:
    async def go() -> None:
        store = await opened(store_target)
        await store.put_flavor("f", {"v": 1}, 1.0)
        host = await store.get_host(HOST)
        assert host is not None
        host = replace(host, flavors=("f",))
        first = await store.flavors_for_host(host)
        again = await store.flavors_for_host(host)
        # each name with the SHA-256 of its stored text (json.dumps of the document)
        assert first.revision == again.revision == ("f:" + sha256(b'{"v": 1}').hexdigest(),)
        assert dict(first) == {"f": {"v": 1}}
        await store.put_flavor("f", {"v": 2}, 2.0)
        changed = await store.flavors_for_host(host)
        assert dict(changed) == {"f": {"v": 2}}
        assert changed.revision != first.revision
        await store.delete_flavor("f")
        gone = await store.flavors_for_host(host)
        assert (dict(gone), gone.revision) == ({}, ())
        await store.close()

    run(go())


def test_get_host_without_rules_leaves_only_the_rules_out(store_target: str) -> None:
    async def go() -> None:
        store = await opened(store_target)
        await record(store, 1, nonce=None)
        full = await store.get_host(HOST)
        light = await store.get_host(HOST, with_rules=False)
        assert full is not None
        assert full.rule_results == ({"rule": "r", "passed": True},)
        assert light == replace(full, rule_results=())
        assert await store.get_host("cd" * 32, with_rules=False) is None
        await store.close()

    run(go())


def test_enrollment_and_stale_scans_use_indexes(tmp_path: Path) -> None:
    async def go() -> None:
        store = await opened(tmp_path / "hub.db")
        await store.close()

    run(go())
    conn = sqlite3.connect(tmp_path / "hub.db")
    plans = {
        sql: " ".join(row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", [1.0]))
        for sql in (
            "SELECT count(*) FROM hosts WHERE state = ?",
            "SELECT id FROM hosts WHERE valid_until IS NOT NULL AND valid_until < ?",
        )
    }
    conn.close()
    assert list(plans.values()) == [
        "SEARCH hosts USING COVERING INDEX hosts_state (state=?)",
        "SEARCH hosts USING INDEX hosts_valid_until (valid_until>? AND valid_until<?)",
    ]


def test_grouped_jobs_fail_alone_and_are_committed_when_answered(store_target: str) -> None:
    """Reports, nonces and host reads queued together share a transaction: a refused nonce
    rolls back only its own report, and every answered write is visible to another
    connection at once."""

    async def go() -> list[object]:
        store = await opened(store_target)
        good = [bytes([i]) * 32 for i in range(1, 11)]
        await asyncio.gather(*(store.put_nonce(n, HOST, expires=100.0) for n in good))
        jobs = []
        for i, nonce in enumerate(good):
            jobs.append(record(store, 2 * i + 2, nonce=nonce))
            jobs.append(record(store, 2 * i + 3, nonce=b"\xee" * 31 + bytes([i])))
            jobs.append(store.get_host(HOST, with_rules=False))
        results = await asyncio.gather(*jobs, return_exceptions=True)
        seen = [
            r[0]
            for r in other_connection_reads(
                store_target, "SELECT sequence FROM reports ORDER BY sequence"
            )
        ]
        ((spent,),) = other_connection_reads(
            store_target, "SELECT count(*) FROM nonces WHERE consumed = 1"
        )
        assert (seen, spent) == ([18, 20], 10)  # history=2 keeps the newest two
        await store.close()
        return results

    results = run(go())
    refused = [r.status for r in results[1::3] if isinstance(r, NonceRefused)]
    assert refused == ["unknown"] * 10
    assert results[0::3] == ["pending"] + ["trusted"] * 9
    assert all(h is not None and h.id == HOST for h in results[2::3])


def test_sequence_numbers_only_grow_until_the_host_enrolls_again(store_target: str) -> None:
    async def go() -> None:
        store = await opened(store_target)
        nonces = [bytes([0x40 + i]) * 32 for i in range(4)]
        for nonce in nonces:
            await store.put_nonce(nonce, HOST, expires=100.0)
        await record(store, 5, nonce=nonces[0])
        with pytest.raises(SequenceRefused) as old:
            await record(store, 5, nonce=nonces[1])
        assert old.value.last == 5
        # the refusal wrote nothing: that nonce is still unspent
        await record(store, 6, nonce=nonces[1])
        keys = HostKeys(HOST, b"ek", b"ak", None, None, ek_verified=True)
        await store.complete_enrollment(keys, HostFacts("h1", "n1", None))
        await record(store, 1, nonce=nonces[2])  # a new ledger counts from 1 again
        assert [r.sequence for r in await store.list_reports(HOST)] == [6, 1]
        await store.close()

    run(go())
