"""Metrics summed over worker processes (hub.metrics in prometheus_client's multiprocess mode):
totals a process keeps outside prometheus_client (the cluster sync's, the webhook sender's) are
mirrored into summed counters by their growth, so the sum counts each increment once whatever
process is scraped. Each "worker" is a real process sharing one metrics directory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

WORKER = """
import sys
from pathlib import Path
from prometheus_client import values
values.ValueClass = values.MultiProcessValue()
from hub.metrics import HubMetrics, Scrape

metrics = HubMetrics(Path(sys.argv[1]))
for total in sys.argv[2:]:
    metrics.mirror_counter("trustplane_hub_cluster_applies", "applies", int(total))
metrics.mirror_webhooks({"delivered": 2, "failed": 0, "dropped": 1}, 3)
sys.stdout.write(metrics.exposition(Scrape()).decode())
"""


def run_worker(directory: Path, *totals: int) -> str:
    proc = subprocess.run(
        [sys.executable, "-c", WORKER, str(directory), *(str(t) for t in totals)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONPATH": str(REPO), "PROMETHEUS_MULTIPROC_DIR": str(directory)},
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def value(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{name} not in\n{text}")


def test_mirrored_totals_are_summed_over_processes(tmp_path: Path) -> None:
    # worker A's sync total went 3 -> 5 -> 5: it adds 5; worker B's went to 2: 7 in all
    first = run_worker(tmp_path, 3, 5, 5)
    assert value(first, "trustplane_hub_cluster_applies_total") == 5
    second = run_worker(tmp_path, 2)
    assert value(second, "trustplane_hub_cluster_applies_total") == 7
    # each process mirrored its sender's counts once: 2 delivered, 1 dropped, 3 failed attempts
    assert value(second, 'trustplane_hub_webhook_messages_total{result="delivered"}') == 4
    assert value(second, 'trustplane_hub_webhook_messages_total{result="dropped"}') == 2
    assert value(second, "trustplane_hub_webhook_attempts_failed_total") == 6
    # the webhook families come from the mirrored counters only (no per-process copy)
    assert second.count("# TYPE trustplane_hub_webhook_messages_total counter") == 1
