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


def test_another_connections_commit_does_not_decode_unchanged_flavors_again(
    tmp_path: Path,
) -> None:
    """Any commit by another connection (another worker) empties the flavor rows' cache; an
    unchanged flavor's text then gives back the document already decoded (the same object),
    a changed one its new document."""
    db = tmp_path / "hub.db"
    host_id = "ab" * 32

    async def go() -> None:
        mine = await Store.open(db)
        other = await Store.open(db)
        await mine.register_host(
            host_id=host_id, state="enrolled", hostname="h", node_name="n", dmi_uuid=None, now=1.0
        )
        await mine.put_flavor("f1", {"id": "f1", "v": 1}, 1.0)
        await mine.set_host_flavors(host_id, ["f1"])
        host = await mine.get_host(host_id)
        assert host is not None
        first = (await mine.flavors_for_host(host))["f1"]
        # another connection commits something that is not a flavor
        await other.audit(at=2.0, actor="t", action="test", subject="x", details={})
        again = await mine.flavors_for_host(host)
        assert again["f1"] is first
        # another connection changes the flavor: its new text is decoded
        await other.put_flavor("f1", {"id": "f1", "v": 2}, 3.0)
        changed = await mine.flavors_for_host(host)
        assert changed["f1"] == {"id": "f1", "v": 2}
        assert changed.revision != again.revision
        await other.close()
        await mine.close()

    asyncio.run(go())
