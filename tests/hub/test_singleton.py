"""Leases (hub.store.leases) and work under them (hub.singleton): one holder at a time, and
another process takes over when the holder is killed (real processes on one SQLite file, and on
one PostgreSQL database)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from hub.store import Store
from tests.conftest import REPO


def test_a_lease_has_one_holder_until_it_expires(store_target: str) -> None:
    async def go() -> None:
        store = await Store.open(store_target)
        assert await store.take_lease("sweep", "a", 10.0, 100.0)
        assert not await store.take_lease("sweep", "b", 10.0, 105.0)
        assert await store.take_lease("sweep", "a", 10.0, 108.0)  # renewed until 118
        assert not await store.take_lease("sweep", "b", 10.0, 117.0)
        assert await store.lease_holder("sweep", 117.0) == "a"
        assert await store.take_lease("sweep", "b", 10.0, 118.5)  # a let it expire
        assert not await store.take_lease("sweep", "a", 10.0, 119.0)
        await store.release_lease("sweep", "a")  # not a's: nothing happens
        assert await store.lease_holder("sweep", 119.0) == "b"
        await store.release_lease("sweep", "b")
        assert await store.lease_holder("sweep", 119.0) is None
        assert await store.take_lease("sweep", "a", 10.0, 119.0)
        await store.close()

    asyncio.run(go())


CHILD = """
import asyncio, os, sys, time
from pathlib import Path
from hub.singleton import run_singleton
from hub.store import Store

async def main() -> None:
    store = await Store.open(sys.argv[1])
    out = Path(sys.argv[2])

    async def work() -> None:
        while True:
            with out.open("a") as f:
                f.write(f"{os.getpid()} {time.time()}\\n")
            await asyncio.sleep(0.05)

    await run_singleton(store, "sweep", work, holder=f"p{os.getpid()}", clock=time.time, ttl=1.0)

asyncio.run(main())
"""


def _writers(out: Path, since: float = 0.0) -> list[int]:
    if not out.exists():
        return []
    rows = [line.split() for line in out.read_text().splitlines() if line.strip()]
    return [int(pid) for pid, at in rows if float(at) >= since]


def test_the_work_runs_in_one_process_and_moves_when_its_holder_is_killed(
    tmp_path: Path, store_target: str
) -> None:
    db, out = store_target, tmp_path / "work.log"

    async def create() -> None:
        await (await Store.open(db)).close()

    asyncio.run(create())
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    children = [
        subprocess.Popen([sys.executable, "-c", CHILD, str(db), str(out)], env=env, cwd=REPO)
        for _ in range(2)
    ]
    try:
        deadline = time.monotonic() + 20
        while len(_writers(out)) < 20:
            assert time.monotonic() < deadline, "no process took the lease"
            time.sleep(0.1)
        time.sleep(1.0)
        first = set(_writers(out))
        assert len(first) == 1  # exactly one process works
        (holder,) = first
        victim = next(c for c in children if c.pid == holder)
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        killed_at = time.time()
        deadline = time.monotonic() + 20
        while not [p for p in _writers(out, killed_at) if p != holder]:
            assert time.monotonic() < deadline, "nobody took over the killed holder's lease"
            time.sleep(0.1)
        time.sleep(1.0)
        assert set(_writers(out, killed_at + 0.2)) == {c.pid for c in children if c is not victim}
    finally:
        for child in children:
            if child.poll() is None:
                child.terminate()
                child.wait(timeout=10)
