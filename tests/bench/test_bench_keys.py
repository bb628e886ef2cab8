"""Smoke test of ``python -m bench.keys``: key releases through a real hub with a real swtpm
agent, run as ``make bench`` would (a subprocess). It checks the JSON line's shape and that a
ten-layer image took one release request; no latency is asserted (that depends on the machine).
"""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import REPO


def test_bench_keys_prints_its_numbers_and_one_round_trip_for_ten_layers() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bench.keys", "--json", "--iterations", "3"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert set(result) == {
        "baseline",
        "cpu_ms_per_release",
        "iterations",
        "ratio_vs_report",
        "report_p50_ms",
        "ten_layers_hub_p50_ms",
        "ten_layers_hub_round_trips",
        "unwrap_hub_p50_ms",
    }
    assert result["iterations"] == 3
    assert result["ten_layers_hub_round_trips"] == 1.0
    for key in ("unwrap_hub_p50_ms", "ten_layers_hub_p50_ms", "report_p50_ms"):
        assert result[key] > 0, key
