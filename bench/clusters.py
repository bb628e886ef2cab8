"""The cluster sync at scale: N nodes against the FAKE API server on 127.0.0.1.

``python -m bench.clusters --json --nodes 5000``:

1. The fake Kubernetes API server (tests/kubefake: a fake, not a Kubernetes API server; Debian
   packages none) runs as its own process (``python -m tests.kubefake``), HTTPS with a client
   certificate, as a real one would be reached. N nodes ``bench-node-<i>`` are created in it
   (each with its own ``systemUUID``), and N enrolled, trusted hosts naming those nodes are
   written into a hub store (SQLite, a temporary file). Setup is not measured.
2. ``reconcile_s``: the hub's :class:`~hub.clusters.sync.ClusterWorker` (the very code the hub
   runs, through kubernetes_asyncio) lists the N nodes and reconciles them all: a server-side
   apply of the labels and signed trust report per node.
3. Verdict to label while a full reconcile runs: every host's report validity moves (so the
   next full reconcile re-applies every node), a periodic full reconcile starts (over the
   nodes the watch keeps current, as the hub's does), and meanwhile
   ``--changes`` verdict changes (every ``--interval`` seconds, alternating untrusted/trusted on
   random hosts) are handed to the worker as the verdict bus does; each is timed from the store
   write to the node's labels and taint being written (``verdict_to_label_p50_ms``, ``p99_ms``).
4. Baseline in the same run: a plain merge patch of one label per node with the same client
   and concurrency (the API's own cost); ``ratio_to_baseline`` = reconcile_s / baseline_s.

CPU: this process (the sync) and the fake's process, from /proc, per node of the first full
reconcile. Prints one JSON line; progress on stderr. Targets: 5,000 nodes in <= 30 s, p99 <=
1,000 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from hub.clusters.client import KubeClient
from hub.clusters.settings import SyncCounters, SyncSettings
from hub.clusters.sync import ClusterWorker
from hub.store import Cluster, Store

REPO = Path(__file__).resolve().parent.parent
TICKS = os.sysconf("SC_CLK_TCK")


def say(text: str) -> None:
    sys.stderr.write(f"bench.clusters: {text}\n")
    sys.stderr.flush()


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def process_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def start_fake(workdir: Path) -> tuple[subprocess.Popen[bytes], Path]:
    kubeconfig = workdir / "kubeconfig"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.kubefake", "--kubeconfig", str(kubeconfig)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().decode()
    if "serving" not in line:
        proc.kill()
        raise SystemExit(f"bench.clusters: the fake API server did not start: {line!r}")
    return proc, kubeconfig


async def create_nodes(kubeconfig: Path, n: int, concurrency: int) -> dict[str, str]:
    client = await KubeClient.connect(kubeconfig.read_bytes(), None)
    try:
        return await _create_nodes(client, n, concurrency)
    finally:
        await client.close()


async def _create_nodes(client: KubeClient, n: int, concurrency: int) -> dict[str, str]:
    uuids = {f"bench-node-{i}": str(uuid.UUID(int=i + 1)) for i in range(n)}
    gate = asyncio.Semaphore(concurrency)

    async def one(name: str, system_uuid: str) -> None:
        body = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
            "status": {"nodeInfo": {"systemUUID": system_uuid}},
        }
        async with gate:
            await client.request("POST", "/api/v1/nodes", body=body)

    await asyncio.gather(*(one(k, v) for k, v in uuids.items()))
    return uuids


async def seed_hosts(store: Store, uuids: dict[str, str], now: float) -> list[str]:
    ids = []
    for i, (node, system_uuid) in enumerate(uuids.items()):
        host_id = f"{i:064x}"
        await store.register_host(
            host_id=host_id,
            state="approved",
            hostname=node,
            node_name=node,
            dmi_uuid=system_uuid,
            now=now,
        )
        ids.append(host_id)
    await store.execute_raw(
        "UPDATE hosts SET state = 'enrolled', verdict = 'trusted', valid_until = ?", [now + 600]
    )
    return ids


async def baseline(client: KubeClient, names: list[str], concurrency: int) -> float:
    gate = asyncio.Semaphore(concurrency)

    async def one(name: str) -> None:
        async with gate:
            await client.request(
                "PATCH",
                f"/api/v1/nodes/{name}",
                body={"metadata": {"labels": {"bench.example/baseline": "1"}}},
                content_type="application/merge-patch+json",
            )

    start = time.perf_counter()
    await asyncio.gather(*(one(n) for n in names))
    return time.perf_counter() - start


class TimedClient(KubeClient):
    """The hub's client, noting when each node's labels or taints were last written."""

    written: dict[str, float]

    async def apply_node_metadata(
        self, name: str, labels: dict[str, str], annotations: dict[str, str]
    ) -> dict[str, Any]:
        out = await super().apply_node_metadata(name, labels, annotations)
        self.written[name] = time.perf_counter()
        return out

    async def set_node_taints(
        self, name: str, resource_version: str, taints: list[dict[str, Any]]
    ) -> dict[str, Any]:
        out = await super().set_node_taints(name, resource_version, taints)
        self.written[name] = time.perf_counter()
        return out


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def changes_during_reconcile(  # noqa: PLR0917
    worker: ClusterWorker,
    client: TimedClient,
    store: Store,
    nodes: dict[str, str],
    args: argparse.Namespace,
    now: float,
) -> tuple[list[float], list[float], float]:
    """Verdict changes handed to ``worker`` while a full reconcile that has to re-apply every
    node runs; each change's seconds from store write to node written, and the reconcile's."""
    await store.execute_raw("UPDATE hosts SET valid_until = ?", [now + 1200])
    start = time.perf_counter()
    full = asyncio.create_task(worker.full_reconcile(relist=False))  # as the periodic one
    await asyncio.sleep(args.interval)
    delays: list[float] = []
    told: list[float] = []
    rng = random.Random(7)
    ids = list(nodes)
    pending = []

    async def change(host_id: str, new: str) -> None:
        t0 = time.perf_counter()
        await store.execute_raw(
            "UPDATE hosts SET verdict = ?, reasons = ? WHERE id = ?",
            [new, '["bench.flip"]' if new != "trusted" else "[]", host_id],
        )
        await worker.host_changed(host_id, time.time())
        told.append(time.perf_counter() - t0)  # the Event too
        delays.append(client.written[nodes[host_id]] - t0)
        if os.environ.get("BENCH_TRACE"):
            say(f"change at {t0 - start:.2f}s took {delays[-1] * 1000:.0f} ms")

    for i in range(args.changes):
        if full.done():
            break
        new = "untrusted" if i % 2 == 0 else "trusted"
        pending.append(asyncio.create_task(change(rng.choice(ids), new)))
        await asyncio.sleep(args.interval)
    await asyncio.gather(*pending)
    await full
    return delays, told, time.perf_counter() - start


async def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    fake, kubeconfig = start_fake(workdir)
    store = await Store.open(workdir / "hub.db")
    try:
        say(f"creating {args.nodes} nodes in the fake API server")
        uuids = await create_nodes(kubeconfig, args.nodes, 32)
        now = time.time()
        ids = await seed_hosts(store, uuids, now)
        await store.add_cluster("bench", None, None, now)
        counters = SyncCounters()

        async def connect(_cluster: Cluster) -> KubeClient:
            return await KubeClient.connect(kubeconfig.read_bytes(), None)

        async def alert(*_: object) -> None:
            raise AssertionError("no node of the benchmark mismatches")

        settings = SyncSettings(resync_interval=3600.0, request_timeout=30.0)
        worker = ClusterWorker(
            Cluster("bench", None, None, now),
            store=store,
            connect=connect,
            settings=settings,
            clock=time.time,
            jws_key=ec.generate_private_key(ec.SECP256R1()),
            alert=alert,
            counters=counters,
        )
        client = await TimedClient.connect(kubeconfig.read_bytes(), None)
        client.written = {}
        worker._client = client
        try:
            say("first full reconcile")
            cpu0, fake0 = own_cpu(), process_cpu(fake.pid)
            start = time.perf_counter()
            version = await worker.full_reconcile()
            reconcile_s = time.perf_counter() - start
            cpu1, fake1 = own_cpu(), process_cpu(fake.pid)
            if counters.applies != args.nodes or worker.last_error:
                raise SystemExit(
                    f"bench.clusters: {counters.applies} applies, error {worker.last_error!r}"
                )
            watch = asyncio.create_task(worker._watch(version))

            say("verdict changes during a second full reconcile")
            delays, told, second_s = await changes_during_reconcile(
                worker, client, store, dict(zip(ids, uuids, strict=True)), args, now
            )
            during = len(delays)
            watch.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await watch

            say("baseline: one merge patch per node")
            base = await baseline(
                worker._require_client(), list(uuids), settings.reconcile_concurrency
            )
        finally:
            await client.close()
        return {
            "nodes": args.nodes,
            "reconcile_s": round(reconcile_s, 3),
            "verdict_to_label_p50_ms": round(percentile(delays, 0.5) * 1000, 1) if delays else None,
            "p99_ms": round(percentile(delays, 0.99) * 1000, 1) if delays else None,
            "max_ms": round(max(delays) * 1000, 1) if delays else None,
            "verdict_to_event_p99_ms": round(percentile(told, 0.99) * 1000, 1) if told else None,
            "verdict_changes": during,
            "second_reconcile_s": round(second_s, 3),
            "sync_cpu_ms_per_node": round((cpu1 - cpu0) * 1000 / args.nodes, 3),
            "fake_cpu_ms_per_node": round((fake1 - fake0) * 1000 / args.nodes, 3),
            "baseline": "merge patch of one label per node, same client and concurrency",
            "baseline_s": round(base, 3),
            "ratio_to_baseline": round(reconcile_s / base, 2),
            "conflicts": counters.conflicts,
            "errors": counters.errors,
        }
    finally:
        await store.close()
        fake.terminate()
        try:
            fake.wait(10)
        except subprocess.TimeoutExpired:
            fake.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--json", action="store_true", help="print one JSON line")
    parser.add_argument("--nodes", type=int, default=5000)
    parser.add_argument("--changes", type=int, default=200, help="verdict changes at most")
    parser.add_argument("--interval", type=float, default=0.02, help="seconds between changes")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-clusters-") as tmp:
        result = asyncio.run(run(args, Path(tmp)))
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
