"""The verdict bus (hub.bus): changes published by any process reach every reader, in order,
from a starting point; on SQLite across connections and across real processes (unix datagram
wake-ups in the state directory), with a long state directory path too."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

from hub.bus import PostedChange, SqliteVerdictBus, VerdictChange
from hub.store import Store
from hub.store.verdictchanges import KEEP_ROWS, PRUNE_EVERY
from tests.conftest import REPO

HOST = "ab" * 32


def change(n: int, verdict: str = "untrusted") -> VerdictChange:
    return VerdictChange(HOST, "trusted", verdict, (f"reason.{n}",), float(n), None)


async def take(it: object, n: int, timeout: float = 10.0) -> list[PostedChange]:
    got: list[PostedChange] = []

    async def read() -> None:
        async for posted in it:  # type: ignore[attr-defined]
            got.append(posted)
            if len(got) == n:
                return

    await asyncio.wait_for(read(), timeout)
    return got


def test_two_connections_see_each_others_changes_in_order_from_a_start(tmp_path: Path) -> None:
    async def go() -> None:
        a_store = await Store.open(tmp_path / "hub.db")
        b_store = await Store.open(tmp_path / "hub.db")
        # a long state directory: socket addresses are limited to 108 bytes
        bus_dir = tmp_path / ("d" * 90) / "bus"
        bus_dir.parent.mkdir()
        a = SqliteVerdictBus(a_store, bus_dir, poll=60.0)  # no polling: only wake-ups
        b = SqliteVerdictBus(b_store, bus_dir, poll=60.0)
        await a.start()
        await b.start()
        assert sorted(p.name.endswith(".sock") for p in bus_dir.iterdir()) == [True, True]
        assert bus_dir.stat().st_mode & 0o777 == 0o700
        assert await b.position() == 0
        first = await a.publish(change(1))
        start = await b.position()
        assert start == first == 1
        reader = asyncio.create_task(take(b.changes(start), 3))
        await asyncio.sleep(0.05)  # the reader waits for a wake-up now
        assert await b.publish(change(2, "trusted")) == 2
        assert await a.publish(change(3)) == 3
        assert await a.publish(change(4)) == 4
        got = await reader
        assert [(p.id, p.local, p.change.verdict, p.change.reasons) for p in got] == [
            (2, True, "trusted", ("reason.2",)),
            (3, False, "untrusted", ("reason.3",)),
            (4, False, "untrusted", ("reason.4",)),
        ]
        # from the beginning, in a's view
        again = await take(a.changes(0), 4)
        assert [(p.id, p.local) for p in again] == [(1, True), (2, False), (3, True), (4, True)]
        assert again[0].change == change(1)
        await a.close()
        await b.close()
        assert list(bus_dir.iterdir()) == []
        await a_store.close()
        await b_store.close()

    asyncio.run(go())


def test_a_dead_processes_socket_is_removed_and_polling_catches_up(tmp_path: Path) -> None:
    async def go() -> None:
        store = await Store.open(tmp_path / "hub.db")
        bus_dir = tmp_path / "bus"
        bus_dir.mkdir(mode=0o700)
        # a socket file nobody listens on any more (its process was killed)
        import socket  # noqa: PLC0415

        dead = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        dead.bind(str(bus_dir / "1-dead.sock"))
        dead.close()
        bus = SqliteVerdictBus(store, bus_dir, poll=0.05)
        await bus.start()
        await bus.publish(change(1))
        assert [p.name for p in bus_dir.iterdir()] == [bus._name]
        # a change written without a wake-up (another writer's datagram lost) is read by polling
        other = await Store.open(tmp_path / "hub.db")
        await other.add_verdict_change(HOST, "untrusted", "trusted", (), 9.0, None)
        got = await take(bus.changes(1), 1)
        assert (got[0].id, got[0].local, got[0].change.verdict) == (2, False, "trusted")
        await bus.close()
        await other.close()
        await store.close()

    asyncio.run(go())


def test_the_log_keeps_its_newest_rows(tmp_path: Path) -> None:
    async def go() -> None:
        store = await Store.open(tmp_path / "hub.db")
        total = KEEP_ROWS + 2 * PRUNE_EVERY
        for n in range(total):
            await store.add_verdict_change(HOST, "trusted", "untrusted", ("x",), float(n), n)
        rows = await store.verdict_changes_after(0, 1)
        # the last prune ran at insert 10496 (41 * 256): rows 1..496 went, 497..10512 stay
        assert (total, KEEP_ROWS, PRUNE_EVERY) == (10512, 10000, 256)
        assert rows[0].id == 497
        assert rows[0].alert_id == 496
        assert await store.last_verdict_change_id() == total
        await store.close()

    asyncio.run(go())


WRITER = """
import asyncio, sys
from pathlib import Path
from hub.bus import SqliteVerdictBus, VerdictChange
from hub.store import Store

async def main() -> None:
    store = await Store.open(sys.argv[1])
    bus = SqliteVerdictBus(store, Path(sys.argv[2]), poll=60.0)
    await bus.start()
    print("ready", flush=True)
    for line in sys.stdin:
        n = int(line)
        await bus.publish(VerdictChange("ab" * 32, "trusted", "untrusted", (f"r.{n}",), n))
        print("sent", n, flush=True)
    await bus.close()
    await store.close()

asyncio.run(main())
"""


def test_a_change_from_another_process_arrives_by_wake_up(tmp_path: Path) -> None:
    """A real second process writes; this one reads with polling off (60 s), so only the
    datagram can wake it in time."""

    async def go() -> None:
        store = await Store.open(tmp_path / "hub.db")
        bus = SqliteVerdictBus(store, tmp_path / "bus", poll=60.0)
        await bus.start()
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(tmp_path / "hub.db"), str(tmp_path / "bus")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        try:
            assert proc.stdout is not None
            assert proc.stdin is not None
            assert proc.stdout.readline() == "ready\n"
            reader = asyncio.create_task(take(bus.changes(await bus.position()), 2, 20.0))
            await asyncio.sleep(0.05)
            started = time.monotonic()
            proc.stdin.write("7\n8\n")
            proc.stdin.flush()
            got = await reader
            assert time.monotonic() - started < 30.0  # far below the 60 s poll
            assert [(p.id, p.local, p.change.reasons) for p in got] == [
                (1, False, ("r.7",)),
                (2, False, ("r.8",)),
            ]
            proc.stdin.close()
            assert proc.wait(20) == 0
        finally:
            proc.kill()
            proc.wait()
        await bus.close()
        await store.close()

    asyncio.run(go())
