"""The report transaction on each backend: SQLite (the baseline) and PostgreSQL, same run.

``python -m bench.store_report --json`` opens a :class:`hub.store.Store` on a SQLite file and on
a throw-away PostgreSQL server (:mod:`trustplane.pgcluster`, the settings of ``bench.hub
--database postgresql``), registers ``--hosts`` hosts, and measures what the hub does per
report in the store, as the report handler calls it:

- ``get_host`` (the light read of every agent request), ``flavors_for_host`` (three flavors),
  ``record_report`` with its nonce spent in the same transaction (history pruning, the host
  row, evidence upsert), ``put_nonce`` (the next report's nonce);
- ``sequential``: one report at a time (the latency of the transaction);
- ``concurrent``: ``--concurrency`` reports in flight (group commit shares transactions).

Per backend: reports per second, wall milliseconds per report, this process's CPU per report
(the store's thread included) and, for PostgreSQL, the server's CPU per report; and
``postgresql_vs_sqlite``: the ratio of reports per second (concurrent). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Final

from hub.store import HostEvidence, Store
from trustplane.pgcluster import PostgresCluster

SETTINGS: Final = ("synchronous_commit=off",)  # as bench.hub --database postgresql
FLAVOR: Final = {"id": "x", "pcrs": {str(i): "ab" * 32 for i in range(8)}, "rules": ["r"] * 20}


def host_id(i: int) -> str:
    return f"{i:064x}"


async def prepare(store: Store, hosts: int) -> None:
    for name in ("platform", "os", "host_unique"):
        await store.put_flavor(name, {**FLAVOR, "id": name}, 1.0)
    for i in range(hosts):
        await store.register_host(
            host_id=host_id(i),
            state="approved",
            hostname=f"h{i}",
            node_name=f"n{i}",
            dmi_uuid=None,
            now=1.0,
        )
        await store.set_host_flavors(host_id(i), ["platform", "os", "host_unique"])


async def one_report(store: Store, i: int, seq: int) -> None:
    hid = host_id(i)
    nonce = seq.to_bytes(8, "big") + bytes(24)
    await store.put_nonce(nonce, hid, 1e12)
    host = await store.get_host(hid, with_rules=False)
    assert host is not None
    await store.flavors_for_host(host)
    now = 1000.0 + seq
    await store.record_report(
        host_id=hid,
        received=now,
        verdict="trusted",
        reasons=(),
        sequence=seq,
        body_sha256="11" * 32,
        valid_until=now + 600,
        rule_results='[{"rule": "r", "passed": true}]',
        history=20,
        evidence=HostEvidence(
            hid, now, {11: {p: bytes(32) for p in range(8)}}, {"uefi": "22" * 32}
        ),
        nonce=nonce,
        alert_on=("untrusted", "stale"),
    )


async def measure(
    store: Store, hosts: int, reports: int, concurrency: int, server: PostgresCluster | None
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    seq = 1
    for mode, width in (("sequential", 1), ("concurrent", concurrency)):
        cpu0, wall0 = time.process_time(), time.perf_counter()
        db0 = server.cpu_seconds() if server else 0.0
        done = 0
        while done < reports:
            batch = min(width, reports - done)
            await asyncio.gather(
                *(one_report(store, (done + k) % hosts, seq + k) for k in range(batch))
            )
            seq += batch
            done += batch
        wall = time.perf_counter() - wall0
        cpu = time.process_time() - cpu0
        result = {
            "reports": reports,
            "reports_per_s": round(reports / wall, 1),
            "wall_ms_per_report": round(1000 * wall / reports, 3),
            "process_cpu_ms_per_report": round(1000 * cpu / reports, 3),
        }
        if server is not None:
            db_cpu = server.cpu_seconds() - db0
            result["server_cpu_ms_per_report"] = round(1000 * db_cpu / reports, 3)
        out[mode] = result
    return out


async def run(args: argparse.Namespace, tmp: Path, server: PostgresCluster) -> dict[str, Any]:
    result: dict[str, Any] = {"benchmark": "store_report", "hosts": args.hosts}
    for name, target in (("sqlite", str(tmp / "hub.db")), ("postgresql", server.create_database())):
        store = await Store.open(target)
        try:
            await prepare(store, args.hosts)
            result[name] = await measure(
                store,
                args.hosts,
                args.reports,
                args.concurrency,
                server if name == "postgresql" else None,
            )
        finally:
            await store.close()
    result["baseline"] = "sqlite"
    result["postgresql_vs_sqlite"] = round(
        result["postgresql"]["concurrent"]["reports_per_s"]
        / max(result["sqlite"]["concurrent"]["reports_per_s"], 1e-9),
        3,
    )
    result["postgresql_settings"] = list(SETTINGS)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.store_report", description=__doc__)
    parser.add_argument("--json", action="store_true", help="print one JSON line")
    parser.add_argument("--hosts", type=int, default=200)
    parser.add_argument("--reports", type=int, default=2000, help="per mode and backend")
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args(argv)
    with (
        tempfile.TemporaryDirectory(prefix="bench-store-") as tmp,
        PostgresCluster(settings=SETTINGS) as server,
    ):
        result = asyncio.run(run(args, Path(tmp), server))
    print(json.dumps(result) if args.json else json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
