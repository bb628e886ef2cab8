"""bench.keyservice: a short real run (swtpm, hub, agent daemon, provider processes) gives every
number it promises, from the socket, the provider and the hub's own count of releases."""

from __future__ import annotations

from bench.keyservice import measure


def test_short_run_reports_every_number() -> None:
    result = measure(samples=5, provider_samples=2)
    assert set(result) == {
        "unwrap_cached_p50_ms",
        "unwrap_cached_cpu_ms",
        "socket_status_p50_ms",
        "unwrap_cached_vs_status",
        "unwrap_hub_p50_ms",
        "unwrap_hub_cpu_ms",
        "provider_process_p50_ms",
        "provider_cpu_ms",
        "python_startup_p50_ms",
        "provider_vs_python_startup",
        "ten_layers_hub_round_trips",
        "ten_layers_at_once_hub_round_trips",
        "samples",
        "provider_samples",
    }
    assert (result["samples"], result["provider_samples"]) == (5, 2)
    for key in ("unwrap_cached_p50_ms", "unwrap_hub_p50_ms", "provider_process_p50_ms"):
        assert result[key] > 0, key
    # a cache hit needs no hub: it is faster than a release
    assert result["unwrap_cached_p50_ms"] < result["unwrap_hub_p50_ms"]
    # ten new blobs always need the hub, at most once per blob
    assert 1 <= result["ten_layers_hub_round_trips"] <= 10
    assert 1 <= result["ten_layers_at_once_hub_round_trips"] <= 10
