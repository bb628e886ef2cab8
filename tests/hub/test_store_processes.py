"""Several processes writing one SQLite hub database at once (server.workers, the CLI): the
audit chain stays one chain with its head file at the last row, and read-then-write
transactions wait for each other instead of failing with "database is locked"."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

from hub.store import Store
from tests.conftest import REPO

ROWS = 60
WRITER = """
import asyncio, sys
from hub.store import Store

async def main() -> None:
    store = await Store.open(sys.argv[1])
    print("ready", flush=True)
    sys.stdin.readline()  # all writers start together
    for n in range(int(sys.argv[3])):
        await store.audit(at=float(n), actor=sys.argv[2], action="test.write", subject=str(n),
                          details={"n": n})
    await store.close()

asyncio.run(main())
"""


def test_three_processes_append_to_one_audit_chain(tmp_path: Path) -> None:
    db = tmp_path / "hub.db"

    async def create() -> None:
        store = await Store.open(db)
        await store.close()

    asyncio.run(create())
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(db), f"writer-{i}", str(ROWS)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        for i in range(3)
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None
            assert proc.stdout.readline() == "ready\n"
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        for proc in procs:
            _, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()

    async def check() -> tuple[bool, int, str | None]:
        store = await Store.open(db)
        result = await store.verify_audit_chain()
        await store.close()
        return result.ok, result.rows, result.problem

    assert asyncio.run(check()) == (True, 3 * ROWS, None)
    head = json.loads((tmp_path / "hub.db-audit-head.json").read_text())
    assert head["id"] == 3 * ROWS
    assert list(tmp_path.glob("*.tmp")) == []
