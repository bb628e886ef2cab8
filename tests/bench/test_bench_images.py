"""bench.images: one JSON line with per-MiB CPU times and same-run ratios to the baseline."""

from __future__ import annotations

from bench.images import run


def test_a_small_run_reports_every_figure() -> None:
    result = run(1, 1)
    assert set(result) == {
        "layer_mib",
        "chunk_bytes",
        "encrypt_cpu_ms_per_mib",
        "decrypt_cpu_ms_per_mib",
        "baseline",
        "baseline_cpu_ms_per_mib",
        "encrypt_ratio",
        "decrypt_ratio",
        "repeat",
    }
    assert (result["layer_mib"], result["chunk_bytes"], result["repeat"]) == (1, 65536, 1)
    for key in ("encrypt_cpu_ms_per_mib", "decrypt_cpu_ms_per_mib", "baseline_cpu_ms_per_mib"):
        value = result[key]
        assert isinstance(value, float)
        assert value > 0
