"""``/metrics`` on the real hub: who may read it, and what it says after real reports from a
swtpm-backed agent, verdict changes and webhook failures (parsed with prometheus_client's own
text parser, so the exposition is checked by an independent reader)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.hub.harness import Agent, HubProcess
from tests.hub.weblib import base_url, http, report_verdict, seed_host, start_hub


def scrape(hub: HubProcess, token: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    resp = http(hub).get(base_url(hub) + "/metrics", headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code == 200, resp.text
    assert resp.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(resp.text)
        for s in family.samples
    }


def test_metrics_need_a_reader_token(tmp_path_factory: pytest.TempPathFactory) -> None:
    hub = start_hub(tmp_path_factory.mktemp("m"), metrics={"token": "scrape-me-0123456789"})
    try:
        url = base_url(hub) + "/metrics"
        s = http(hub)
        none = s.get(url)
        assert (none.status_code, none.json()["error"]["code"]) == (401, "auth.required")
        bad = s.get(url, headers={"Authorization": "Bearer nope"})
        assert (bad.status_code, bad.json()["error"]["code"]) == (401, "auth.invalid_token")
        pipeline = s.get(url, headers={"Authorization": f"Bearer {hub.token('pipeline')}"})
        assert (pipeline.status_code, pipeline.json()["error"]["code"]) == (403, "auth.forbidden")
        for token in (hub.token("viewer"), hub.token("admin"), "scrape-me-0123456789"):
            assert s.get(url, headers={"Authorization": f"Bearer {token}"}).status_code == 200
        # the metrics token opens nothing else
        other = s.get(
            base_url(hub) + "/v1/hosts", headers={"Authorization": "Bearer scrape-me-0123456789"}
        )
        assert other.status_code == 401
    finally:
        hub.stop()


@pytest.fixture(scope="module")
def viewer(hub: HubProcess) -> str:
    return hub.token("viewer", "prometheus")


def test_reports_and_latency_from_real_attestation(
    hub: HubProcess, direct_agent: Agent, viewer: str
) -> None:
    before = scrape(hub, viewer)
    assert direct_agent.attest(hub).body["verdict"] == "trusted"
    nonce = direct_agent.challenge(hub)
    report = direct_agent.build_report(nonce)
    assert direct_agent.send(hub, report).status == 200
    replay = direct_agent.send(hub, report)
    assert (replay.status, replay.code) == (409, "nonce.replayed")
    after = scrape(hub, viewer)

    def delta(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert delta("trustplane_hub_reports_total", result="trusted") == 2
    assert delta("trustplane_hub_reports_total", result="nonce_rejected") == 1
    assert delta("trustplane_hub_report_duration_seconds_count") == 3
    assert delta("trustplane_hub_report_duration_seconds_bucket", le="+Inf") == 3
    assert delta("trustplane_hub_report_duration_seconds_sum") > 0
    host_state = ("trustplane_hub_hosts", (("state", "enrolled"), ("verdict", "trusted")))
    assert after[host_state] >= 1


def test_gauges_and_verdict_changes(tmp_path_factory: pytest.TempPathFactory) -> None:
    hub = start_hub(tmp_path_factory.mktemp("g"))
    try:
        token = hub.token("viewer")
        seed_host(hub, "a" * 64)
        seed_host(hub, "b" * 64)
        seed_host(hub, "c" * 64)
        report_verdict(hub, "a" * 64, "trusted")
        report_verdict(hub, "b" * 64, "trusted")
        report_verdict(hub, "b" * 64, "untrusted", ("quote.pcr_digest_mismatch",))
        for _ in range(100):  # the bus is asynchronous: wait for its subscriber (bounded)
            m = scrape(hub, token)
            if m.get(("trustplane_hub_verdict_changes_total", (("verdict", "untrusted"),))):
                break
        assert m[("trustplane_hub_verdict_changes_total", (("verdict", "trusted"),))] == 2
        assert m[("trustplane_hub_verdict_changes_total", (("verdict", "untrusted"),))] == 1
        assert m[("trustplane_hub_hosts", (("state", "enrolled"), ("verdict", "trusted")))] == 1
        assert m[("trustplane_hub_hosts", (("state", "enrolled"), ("verdict", "untrusted")))] == 1
        assert m[("trustplane_hub_hosts", (("state", "enrolled"), ("verdict", "pending")))] == 1
        assert m[("trustplane_hub_alerts_open", ())] == 1
        assert m[("trustplane_hub_webhook_messages_total", (("result", "delivered"),))] == 0
    finally:
        hub.stop()


@pytest.fixture
def failing_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    # port 9 on loopback: nothing listens, every POST fails at once
    hub = start_hub(
        tmp_path_factory.mktemp("w"),
        alerts={
            "webhooks": ["http://127.0.0.1:9/hook"],
            "webhook_retries": 2,
            "webhook_backoff": 0.01,
        },
    )
    try:
        yield hub
    finally:
        hub.stop()


def test_webhook_failures_are_counted(failing_hub: HubProcess) -> None:
    hub = failing_hub
    token = hub.token("viewer")
    seed_host(hub, "d" * 64)
    report_verdict(hub, "d" * 64, "trusted")
    report_verdict(hub, "d" * 64, "untrusted", ("quote.pcr_digest_mismatch",))
    key = ("trustplane_hub_webhook_messages_total", (("result", "failed"),))
    for _ in range(200):  # bounded wait for the worker's three attempts
        m = scrape(hub, token)
        if m[key] == 1:
            break
    assert m[key] == 1
    assert m[("trustplane_hub_webhook_attempts_failed_total", ())] == 3
    assert m[("trustplane_hub_webhook_messages_total", (("result", "delivered"),))] == 0
