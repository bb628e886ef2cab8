"""The agent's Prometheus metrics: the loopback endpoint and the textfile, read by the real
prometheus_client parser, after real attestations to a real hub (swtpm) and a hub outage."""

from __future__ import annotations

import asyncio
import socket
import stat
import urllib.request
from dataclasses import replace
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from nodeagent.config import ConfigError, MetricsConfig, load_config
from tests.nodeagent.conftest import LoopbackHub, RunningDaemon, agent_config, wait_for
from trustplane.swtpm import Swtpm


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        assert resp.headers["Content-Type"].startswith("text/plain; version=")
        return str(resp.read().decode())


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ('"0.0.0.0:9464"', "must be a loopback address"),
        ('"192.0.2.1:9464"', "must be a loopback address"),
        ('"127.0.0.1"', "expected HOST:PORT"),
        ('"127.0.0.1:0"', "expected HOST:PORT"),
        ('"127.0.0.1:65536"', "expected HOST:PORT"),
        ('"127.1.2.999:80"', "must be a loopback address"),
        ("9464", "expected a non-empty string"),
    ],
)
def test_listen_must_be_a_loopback_host_and_port(tmp_path: Path, value: str, problem: str) -> None:
    cfg = tmp_path / "agent.toml"
    cfg.write_text(f"[metrics]\nlisten = {value}\n")
    with pytest.raises(ConfigError, match=problem):
        load_config(cfg)


def test_metrics_are_off_by_default_and_parse_when_set(tmp_path: Path) -> None:
    cfg = tmp_path / "agent.toml"
    cfg.write_text("[hub]\ntimeout = 5\n")
    assert load_config(cfg).metrics == MetricsConfig()
    cfg.write_text('[metrics]\nlisten = "[::1]:9464"\ntextfile = "/tmp/x.prom"\n')
    assert load_config(cfg).metrics == MetricsConfig(("::1", 9464), Path("/tmp/x.prom"))


def test_attestations_and_an_outage_show_in_the_endpoint_and_the_textfile(
    tmp_path: Path, booted_tpm: Swtpm, hub: LoopbackHub
) -> None:
    port = free_port()
    textfile = tmp_path / "trustplane.prom"
    cfg = replace(
        agent_config(tmp_path, booted_tpm, hub.url, hub.ca_file),
        metrics=MetricsConfig(listen=("127.0.0.1", port), textfile=textfile),
    )

    async def scenario() -> tuple[str, str]:
        async with RunningDaemon(cfg) as daemon:
            await wait_for(lambda: daemon.cycles == 1)
            daemon.attest_now("requested")
            await wait_for(lambda: daemon.cycles == 2)
            first = await asyncio.to_thread(scrape, port)
            hub.stop()  # the hub goes away: the next step fails as hub_unreachable
            daemon.attest_now("requested")
            await wait_for(lambda: bool(daemon.hub_problem))
            await asyncio.sleep(0.1)  # the step's status (and textfile) is written after it
            second = await asyncio.to_thread(scrape, port)
        return first, second

    first, second = asyncio.run(scenario())
    got = samples(first)
    assert got[("trustplane_agent_attestation_cycles_total", ())] == 2
    assert got[("trustplane_agent_trusted", ())] == 1
    assert got[("trustplane_agent_last_success_timestamp_seconds", ())] > 1.7e9
    assert got[("trustplane_agent_queue_length", ())] == 0
    # two reports, one challenge: the first answer carried the second report's nonce
    # (enrollment uses its own client)
    rtt = "trustplane_agent_hub_round_trip_seconds_count"
    assert got[(rtt, (("endpoint", "/v1/challenge"),))] == 1
    assert got[(rtt, (("endpoint", "/v1/report"),))] == 2
    failures = "trustplane_agent_attestation_failures_total"
    assert got[(failures, (("reason", "hub_unreachable"),))] == 0
    later = samples(second)
    assert later[(failures, (("reason", "hub_unreachable"),))] >= 1
    assert later[("trustplane_agent_queue_length", ())] == 1  # the owed report
    assert later[("trustplane_agent_attestation_cycles_total", ())] == 2
    # the textfile holds the same families, written atomically, readable by node_exporter
    text = textfile.read_text()
    assert samples(text)[("trustplane_agent_attestation_cycles_total", ())] == 2
    assert stat.S_IMODE(textfile.stat().st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".trustplane.prom")] == []


def test_a_taken_port_is_logged_and_the_agent_attests_anyway(
    tmp_path: Path, booted_tpm: Swtpm, hub: LoopbackHub, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cfg = replace(
            agent_config(tmp_path, booted_tpm, hub.url, hub.ca_file),
            metrics=MetricsConfig(listen=("127.0.0.1", port)),
        )

        async def scenario() -> None:
            async with RunningDaemon(cfg) as daemon:
                await wait_for(lambda: daemon.cycles == 1)

        asyncio.run(scenario())
    assert f"cannot serve metrics on 127.0.0.1:{port}" in caplog.text
