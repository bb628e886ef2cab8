"""Smoke test of ``python -m bench.bus``: the JSON line's shape, every change read in both
modes, and no timing asserted (that depends on the machine)."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import REPO


def test_bench_bus_reads_every_change_in_both_modes() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bench.bus", "--json", "--changes", "12", "--gap", "0.01"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    (line,) = proc.stdout.strip().splitlines()
    out = json.loads(line)
    assert (out["benchmark"], out["backend"], out["gap_s"]) == ("bus", "sqlite", 0.01)
    for mode in ("datagram_wakeup", "poll_only"):
        assert out[mode]["changes"] == 12
        assert 0 <= out[mode]["p50_ms"] <= out[mode]["p99_ms"] <= out[mode]["max_ms"]
    assert isinstance(out["vs_poll_p50"], float)
