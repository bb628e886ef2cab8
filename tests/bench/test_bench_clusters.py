"""Smoke test of ``python -m bench.clusters``: 40 nodes against the FAKE API server
(tests/kubefake; Debian packages no Kubernetes API server), run as ``make bench`` runs it (a
subprocess starting its own fake). Checks the JSON line's shape and that the run was clean:
every node applied once in the first full reconcile, no errors, verdict changes measured while
the second one ran. No rate or latency is asserted: those depend on the machine."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import REPO


def test_small_run_prints_one_clean_json_line() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bench.clusters", "--json", "--nodes", "40", "--changes", "6",
         "--interval", "0.005"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1, proc.stdout
    out = json.loads(lines[0])
    assert set(out) == {
        "nodes",
        "reconcile_s",
        "verdict_to_label_p50_ms",
        "p99_ms",
        "max_ms",
        "verdict_to_event_p99_ms",
        "verdict_changes",
        "second_reconcile_s",
        "sync_cpu_ms_per_node",
        "fake_cpu_ms_per_node",
        "baseline",
        "baseline_s",
        "ratio_to_baseline",
        "conflicts",
        "errors",
    }
    assert out["nodes"] == 40
    assert out["errors"] == 0
    assert 1 <= out["verdict_changes"] <= 6
    assert out["p99_ms"] >= out["verdict_to_label_p50_ms"] > 0
