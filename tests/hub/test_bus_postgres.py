"""The verdict bus on PostgreSQL (hub.bus.PostgresVerdictBus): changes published through any
connection reach every reader in id order by LISTEN/NOTIFY wake-ups (no polling), concurrent
publishers commit their ids in order, and a reader whose listening connection was cut off
catches up once it listens again."""

from __future__ import annotations

import asyncio

import psycopg

from hub.bus import PostedChange, PostgresVerdictBus, VerdictChange
from hub.store import Store
from trustplane.pgcluster import PostgresCluster

HOST = "ab" * 32
NO_POLL = 600.0  # readers are woken by notifications only


def change(n: int, verdict: str = "untrusted") -> VerdictChange:
    return VerdictChange(HOST, "trusted", verdict, (f"reason.{n}",), float(n), None)


async def take(bus: PostgresVerdictBus, after: int, n: int) -> list[PostedChange]:
    got: list[PostedChange] = []

    async def read() -> None:
        async for posted in bus.changes(after):
            got.append(posted)
            if len(got) == n:
                return

    await asyncio.wait_for(read(), 15.0)
    return got


async def buses(url: str, n: int) -> tuple[list[Store], list[PostgresVerdictBus]]:
    stores = [await Store.open(url) for _ in range(n)]
    out = [PostgresVerdictBus(s, url, poll=NO_POLL) for s in stores]
    for bus in out:
        await bus.start()
        await asyncio.wait_for(bus.wait_listening(), 15.0)
    return stores, out


async def close(stores: list[Store], all_buses: list[PostgresVerdictBus]) -> None:
    for bus in all_buses:
        await bus.close()
    for store in stores:
        await store.close()


def test_changes_from_every_connection_reach_every_reader_in_order(
    postgres: PostgresCluster,
) -> None:
    url = postgres.create_database()

    async def go() -> None:
        stores, (a, b, c) = await buses(url, 3)
        assert await c.position() == 0
        reader = asyncio.create_task(take(c, 0, 40))
        await asyncio.sleep(0.1)  # the reader waits for a wake-up now
        # two publishers at once: the ids commit in order, none is skipped
        ids = await asyncio.gather(*(bus.publish(change(i)) for i in range(20) for bus in (a, b)))
        assert sorted(ids) == list(range(1, 41))
        got = await reader
        assert [p.id for p in got] == list(range(1, 41))
        assert not any(p.local for p in got)  # c published none of them
        mine = await take(a, 0, 40)
        assert sorted(p.id for p in mine if p.local) == sorted(ids[0::2])
        assert await b.position() == 40
        await close(stores, [a, b, c])

    asyncio.run(go())


def test_a_reader_cut_off_from_the_server_catches_up(postgres: PostgresCluster) -> None:
    url = postgres.create_database()

    async def go() -> None:
        stores, (a, b) = await buses(url, 2)
        reader = asyncio.create_task(take(b, 0, 3))
        await a.publish(change(1))
        # the server ends b's listening connection; b listens again after its pause
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute(
                b"SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                b"WHERE query LIKE 'LISTEN%' AND pid <> pg_backend_pid()"
            )
        await a.publish(change(2))  # its notification reaches nobody listening on b's side
        await a.publish(change(3, "trusted"))
        got = await reader
        assert [(p.id, p.change.verdict) for p in got] == [
            (1, "untrusted"),
            (2, "untrusted"),
            (3, "trusted"),
        ]
        await close(stores, [a, b])

    asyncio.run(go())
