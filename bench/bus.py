"""The verdict bus's delay: a change published in one process, read in another.

``python -m bench.bus --json`` starts a writer process that publishes ``--changes`` verdict
changes through :class:`hub.bus.SqliteVerdictBus` (one every ``--gap`` seconds; each change's
``at`` is the writer's ``time.time()`` just before it publishes) on a fresh SQLite hub
database, and reads them here through another bus on the same database. The delay of a change
is the reader's ``time.time()`` when the change is handed to it minus its ``at``: the insert's
commit, the datagram wake-up, the read of the new rows. Twice: with the wake-ups, and with
polling only (the reader's bus has no socket, as when every datagram is lost), for comparison
with the poll interval. Both processes share the machine's cores with whatever else runs.
Prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Final

from hub.bus import ChangeLogBus, SqliteVerdictBus, VerdictBus
from hub.store import Store

REPO: Final = Path(__file__).resolve().parent.parent

WRITER: Final = """
import asyncio, sys, time
from pathlib import Path
from hub.bus import SqliteVerdictBus, VerdictChange
from hub.store import Store

async def main() -> None:
    store = await Store.open(sys.argv[1])
    bus = SqliteVerdictBus(store, Path(sys.argv[2]))
    await bus.start()
    print("ready", flush=True)
    sys.stdin.readline()
    for n in range(int(sys.argv[3])):
        await bus.publish(VerdictChange("ab" * 32, "trusted", "untrusted", ("r",), time.time()))
        await asyncio.sleep(float(sys.argv[4]))
    await bus.close()
    await store.close()

asyncio.run(main())
"""


def percentile_ms(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)


async def measure(workdir: Path, changes: int, gap: float, *, wake: bool) -> dict[str, Any]:
    db = workdir / f"hub-{'wake' if wake else 'poll'}.db"
    bus_dir = workdir / f"bus-{'wake' if wake else 'poll'}"
    store = await Store.open(db)
    bus: VerdictBus = SqliteVerdictBus(store, bus_dir) if wake else ChangeLogBus(store)
    await bus.start()
    if not wake:
        bus_dir.mkdir(mode=0o700)  # the writer wakes nobody: nothing is bound there
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(db), str(bus_dir), str(changes), str(gap)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    delays: list[float] = []
    try:
        assert writer.stdout is not None
        assert writer.stdin is not None
        if writer.stdout.readline() != "ready\n":
            raise RuntimeError("the writer did not start")
        start = await bus.position()
        writer.stdin.write("go\n")
        writer.stdin.flush()
        async for posted in bus.changes(start):
            delays.append(time.time() - posted.change.at)
            if len(delays) == changes:
                break
        writer.wait(30)
    finally:
        writer.kill()
        writer.wait()
        await bus.close()
        await store.close()
    return {
        "changes": len(delays),
        "p50_ms": percentile_ms(delays, 0.5),
        "p90_ms": percentile_ms(delays, 0.9),
        "p99_ms": percentile_ms(delays, 0.99),
        "max_ms": percentile_ms(delays, 1.0),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bus", description=__doc__)
    parser.add_argument("--json", action="store_true", help="print one JSON line")
    parser.add_argument("--changes", type=int, default=200)
    parser.add_argument("--gap", type=float, default=0.02, help="seconds between two changes")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-bus-") as tmp:
        workdir = Path(tmp)
        wake = asyncio.run(measure(workdir, args.changes, args.gap, wake=True))
        poll = asyncio.run(measure(workdir, args.changes, args.gap, wake=False))
    result = {
        "benchmark": "bus",
        "backend": "sqlite",
        "gap_s": args.gap,
        "datagram_wakeup": wake,
        "poll_only": poll,
        "vs_poll_p50": round(wake["p50_ms"] / max(poll["p50_ms"], 1e-9), 3),
    }
    print(json.dumps(result) if args.json else json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
