"""Smoke test of ``python -m bench.hub``: a small fleet against a real hub process.

It runs the benchmark as ``make bench`` does (a subprocess, its own hub) with 20 hosts and a
short steady state, and checks the JSON line's shape and that the benchmark measured no errors:
every host enrolled through the real endpoints, every report came back ``trusted`` (quotes,
event-log replay and flavors all verified), the first round carried every host's log once and
the steady state none. Nothing here asserts a rate or a latency: those depend on the machine.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from tests.conftest import EVENTLOGS, REPO

HOSTS = 20
# the logs bench.hub assigns round-robin, and their sizes on disk
LOG_FILES = (
    "keylime-tests/binary_bios_measurements.bin",
    "keylime/binary_bios_measurements-secureboot.bin",
    "tpm2-tools/event-bootorder.bin",
    "go-attestation/ubuntu_2104_shielded_vm_no_secure_boot_eventlog.bin",
)
LATENCY_KEYS = {"reports", "seconds", "reports_per_s", "p50_ms", "p90_ms", "p99_ms", "max_ms"}
CPU_KEYS = {
    "hub_cpu_cores",
    "hub_threads_cpu_cores",
    "loadgen_cpu_cores",
    "other_processes_cpu_cores",
    "hub_cpu_ms_per_report",
    "loadgen_cpu_ms_per_report",
}


def run_bench(hosts: int, *extra: str) -> dict[str, Any]:
    proc = subprocess.run(
        [
            sys.executable, "-m", "bench.hub", "--json", "--hosts", str(hosts),
            "--duration", "2", "--baseline-duration", "0.5", "--concurrency", "8", *extra,
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1, proc.stdout
    out: dict[str, Any] = json.loads(lines[0])
    return out


@pytest.fixture(scope="module")
def result() -> dict[str, Any]:
    return run_bench(HOSTS, "--idle-connections", "40")


def test_every_report_is_trusted_and_nothing_failed(result: dict[str, Any]) -> None:
    assert result["errors"] == {}
    assert result["error_count"] == 0
    assert set(result["verdicts"]) == {"trusted"}
    assert result["reports"] > 0
    # every completed report was counted once: steady + first round + the few in flight
    # across the boundary are all trusted
    assert result["verdicts"]["trusted"] >= result["reports"] + result["first_round"]["reports"]
    assert result["baseline_health_pairs"]["errors"] == {}


def test_the_fleet_enrolled_and_sent_each_log_once(result: dict[str, Any]) -> None:
    assert result["hosts"] == HOSTS
    assert result["concurrency"] == 8
    assert result["flavors"] is True
    assert result["offered_rate"] is None
    # by default every report opens a new connection (as the agent's does at a 60 s interval)
    # and resumes the host's last TLS session
    assert (result["keep_alive"], result["tls_resumption"]) == (False, True)
    assert result["new_connection_share"] == 1.0
    assert result["resumed_share"] == 1.0
    assert (result["workers"], result["hub_processes"], result["database"]) == (1, 1, "sqlite")
    completed = result["reports"] + result["first_round"]["reports"]
    assert result["tls_handshakes"] >= completed
    assert result["reconnects_after_idle_close"] == 0
    # 20 hosts over 4 logs: each log uploaded by 5 hosts in their first report, never again
    sent = sum((EVENTLOGS / name).stat().st_size for name in LOG_FILES) * HOSTS // len(LOG_FILES)
    assert result["first_round"]["eventlog_mb_sent"] == round(sent / 1e6, 1)
    assert result["first_round"]["reports"] >= HOSTS - result["concurrency"]
    assert result["eventlogs"] == [
        f"{name} ({(EVENTLOGS / name).stat().st_size} B)" for name in LOG_FILES
    ]


def test_json_shape(result: dict[str, Any]) -> None:
    assert (result["benchmark"], result["database"]) == ("hub", "sqlite")
    assert set(result) >= LATENCY_KEYS | CPU_KEYS
    # 40 idle TLS connections to a fresh hub (too few for a stable figure: shape only, and less
    # than the 256 KiB read buffer asyncio would give each by default)
    assert isinstance(result["idle_tls_conn_kb"], float)
    assert result["idle_tls_conn_kb"] < 256
    assert set(result["first_round"]) >= LATENCY_KEYS | CPU_KEYS
    assert set(result["baseline_health_pairs"]) >= LATENCY_KEYS | CPU_KEYS
    for key in (
        "reports_per_s", "requests_per_s", "report_p50_ms", "report_p99_ms", "db_mb",
        "hub_rss_mb", "vs_baseline",
    ):  # fmt: skip
        assert isinstance(result[key], int | float), key
        assert result[key] > 0, key
    # in the steady state every report uses the nonce the hub's previous answer carried: one
    # request per report, no challenge
    assert result["requests_per_report"] == 1.0
    assert result["challenge_p99_ms"] == 0
    assert result["requests_per_s"] == pytest.approx(result["reports_per_s"], abs=0.2)
    assert result["p50_ms"] <= result["p99_ms"] <= result["max_ms"]
    assert set(result["enroll"]) == {"seconds", "hosts_per_s"}
    assert set(result["target"]) == {"reports_per_s", "p99_ms", "met"}
    assert (result["target"]["reports_per_s"], result["target"]["p99_ms"]) == (1000, 250)


def test_unique_logs_are_trusted_and_uploaded_once_each() -> None:
    """Every host its own log (own GPT disk GUID) and host_unique flavor: still all trusted,
    with the hub finding digest-only logs in its store, never asking for them again."""
    out = run_bench(6, "--unique-logs", "--keep-alive", "--workers", "2", "--idle-connections", "0")
    assert "idle_tls_conn_kb" not in out
    assert (out["unique_logs"], out["keep_alive"]) == (True, True)
    assert out["errors"] == {}
    assert set(out["verdicts"]) == {"trusted"}
    assert out["reports"] > 0
    # two workers under their parent, each host on its one kept-alive connection
    assert (out["workers"], out["hub_processes"]) == (2, 3)
    assert out["tls_handshakes"] == 6
    assert out["new_connection_share"] == 0.0
    # the same bytes as the shared logs (only 16 bytes of one event differ), once per host
    sizes = [(EVENTLOGS / name).stat().st_size for name in LOG_FILES]
    assert out["first_round"]["eventlog_mb_sent"] == round(
        (sum(sizes) + sizes[0] + sizes[1]) / 1e6, 1
    )


def test_the_hub_on_a_throw_away_postgresql() -> None:
    """``--database postgresql``: the same fleet on a PostgreSQL server the benchmark starts,
    every report trusted, the server's CPU reported beside the hub's."""
    out = run_bench(6, "--database", "postgresql", "--idle-connections", "0")
    assert (out["database"], out["errors"], set(out["verdicts"])) == (
        "postgresql",
        {},
        {"trusted"},
    )
    assert out["reports"] > 0
    assert out["database_settings"] == ["synchronous_commit=off"]
    assert out["database_cpu_ms_per_report"] > 0
    assert out["hub_and_database_cpu_ms_per_report"] == pytest.approx(
        out["hub_cpu_ms_per_report"] + out["database_cpu_ms_per_report"], abs=0.002
    )
    assert out["db_mb"] > 0  # pg_database_size of its database
    assert out["database_pss_mb"] > 0
