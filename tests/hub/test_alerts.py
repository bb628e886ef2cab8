"""Alerts and webhooks on the real hub: one alert per trust loss (never a duplicate of the
core's row), enrollment refusals, Alertmanager-format messages delivered to a real aiohttp
receiver on 127.0.0.1 with retries after 5xx, resolved messages, bounded queues."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from hub.alerts import MAX_SOURCES, AlertCenter, AlertNotice
from hub.attestation import sweep_stale
from hub.config import AlertsConfig, HubConfig
from hub.fanout import Fanout
from hub.store import Alert, Store
from hub.webhooks import WEBHOOKS, WebhookSender, alertmanager_message, retry_delay
from tests.hub.harness import HubProcess
from tests.hub.weblib import Receiver, base_url, http, report_verdict, seed_host, start_hub
from trustcore.wire import PROTOCOL_VERSION

HOST = "1" * 64
T0 = 1_800_000_000.25  # 2027-01-15T08:00:00.250000Z


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    try:
        yield r
    finally:
        r.stop()


@pytest.fixture
def hub(tmp_path_factory: pytest.TempPathFactory, receiver: Receiver) -> Iterator[HubProcess]:
    process = start_hub(
        tmp_path_factory.mktemp("alerts"),
        alerts={
            "webhooks": [receiver.url],
            "webhook_backoff": 0.02,
            "webhook_backoff_max": 0.05,
            "webhook_retries": 3,
            "external_url": "https://hub.test:8443/",
        },
    )
    process.clock.now = T0
    try:
        yield process
    finally:
        process.stop()


def expected_message(status: str, alert_id: int, ends_at: str) -> dict:
    labels = {
        "alertname": "TrustplaneHostUntrusted",
        "host": HOST,
        "node": "node-1",
        "severity": "critical",
        "service": "trustplane-hub",
    }
    annotations = {
        "summary": "node-1 is untrusted: quote.pcr_digest_mismatch",
        "reasons": "quote.pcr_digest_mismatch",
        "hostname": "node-1.test",
        "alert_id": str(alert_id),
    }
    return {
        "version": "4",
        "groupKey": '{}:{alertname="TrustplaneHostUntrusted"}',
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "trustplane",
        "groupLabels": {"alertname": "TrustplaneHostUntrusted"},
        "commonLabels": labels,
        "commonAnnotations": annotations,
        "externalURL": "https://hub.test:8443",
        "alerts": [
            {
                "status": status,
                "labels": labels,
                "annotations": annotations,
                "startsAt": "2027-01-15T08:00:00.250000Z",
                "endsAt": ends_at,
                "generatorURL": f"https://hub.test:8443/hosts/{HOST}",
                "fingerprint": FINGERPRINT,
            }
        ],
    }


# sha256 of the canonical labels JSON, first 16 hex digits (computed by hand with hashlib
# over the literal labels above, not by the code under test)
FINGERPRINT = "ff144eb1d17631e3"


def test_fingerprint_constant_matches_the_labels() -> None:
    labels = expected_message("firing", 1, "")["commonLabels"]
    digest = hashlib.sha256(json.dumps(labels, sort_keys=True).encode()).hexdigest()
    assert digest[:16] == FINGERPRINT


def test_untrusted_fires_once_and_is_delivered_after_two_500s(
    hub: HubProcess, receiver: Receiver
) -> None:
    receiver.statuses.extend([500, 500])
    seed_host(hub, HOST)
    report_verdict(hub, HOST, "trusted")
    seeded = report_verdict(hub, HOST, "untrusted", ("quote.pcr_digest_mismatch",))
    assert seeded.alert_id is not None
    receiver.wait_for(3)
    assert receiver.answered == [500, 500, 200]
    want = expected_message("firing", seeded.alert_id, "0001-01-01T00:00:00Z")
    assert receiver.bodies == [want, want, want]
    alerts = hub.call(hub.state.store.list_alerts())
    assert [(a.host_id, a.kind, a.reasons) for a in alerts] == [
        (HOST, "untrusted", ("quote.pcr_digest_mismatch",))
    ]


def test_recovery_resolves_with_the_same_labels(hub: HubProcess, receiver: Receiver) -> None:
    seed_host(hub, HOST)
    report_verdict(hub, HOST, "trusted")
    seeded = report_verdict(hub, HOST, "untrusted", ("quote.pcr_digest_mismatch",))
    receiver.wait_for(1)
    hub.clock.advance(60)
    report_verdict(hub, HOST, "trusted")
    receiver.wait_for(2)
    assert seeded.alert_id is not None
    resolved = receiver.bodies[1]
    assert resolved["status"] == "resolved"
    assert resolved["alerts"][0]["status"] == "resolved"
    assert resolved["alerts"][0]["labels"] == receiver.bodies[0]["alerts"][0]["labels"]
    assert resolved["alerts"][0]["startsAt"] == "2027-01-15T08:00:00.250000Z"
    assert resolved["alerts"][0]["endsAt"] == "2027-01-15T08:01:00.250000Z"
    assert len(hub.call(hub.state.store.list_alerts())) == 1


def test_stale_fires_and_resolves_untrusted(hub: HubProcess, receiver: Receiver) -> None:
    seed_host(hub, HOST)
    report_verdict(hub, HOST, "trusted")
    report_verdict(hub, HOST, "untrusted", ("quote.pcr_digest_mismatch",))
    receiver.wait_for(1)
    hub.clock.advance(hub.config.attestation.report_validity + 1)
    assert hub.call(sweep_stale(hub.state)) == 1
    receiver.wait_for(3)
    by_status = {b["alerts"][0]["labels"]["alertname"]: b["status"] for b in receiver.bodies[1:]}
    assert by_status == {"TrustplaneHostUntrusted": "resolved", "TrustplaneHostStale": "firing"}
    stale = next(
        b for b in receiver.bodies if b["alerts"][0]["labels"]["alertname"].endswith("Stale")
    )
    assert stale["alerts"][0]["labels"]["severity"] == "warning"
    assert stale["alerts"][0]["annotations"]["reasons"] == "report.expired"
    kinds = [a.kind for a in hub.call(hub.state.store.list_alerts())]
    assert kinds == ["stale", "untrusted"]


def test_refused_enrollment_raises_an_alert(hub: HubProcess, receiver: Receiver) -> None:
    body = {
        "type": "activate",
        "version": PROTOCOL_VERSION,
        "host_id": "9" * 64,
        "secret": base64.b64encode(b"\x01" * 32).decode(),
        "handle": base64.b64encode(b"\x02" * 16).decode(),
    }
    resp = http(hub).post(base_url(hub) + "/v1/enroll/activate", json=body)
    assert resp.status_code == 403
    assert resp.json()["error"]["code"] == "enroll.no_challenge"
    alerts = hub.call(hub.state.store.list_alerts())
    assert [(a.host_id, a.kind, a.reasons) for a in alerts] == [
        ("", "enrollment_failed", ("enroll.no_challenge",))
    ]
    receiver.wait_for(1)
    alert = receiver.bodies[0]["alerts"][0]
    assert alert["labels"]["alertname"] == "TrustplaneEnrollmentFailed"
    assert alert["labels"]["host"] == "unknown"
    assert alert["annotations"]["summary"] == (
        "enrollment refused from 127.0.0.1: enroll.no_challenge"
    )
    assert alert["generatorURL"] == "https://hub.test:8443/alerts"


def test_malformed_enrollment_raises_no_alert(hub: HubProcess) -> None:
    resp = http(hub).post(base_url(hub) + "/v1/enroll/activate", json={"type": "activate"})
    assert resp.status_code == 400
    assert hub.call(hub.state.store.list_alerts()) == []


def test_a_4xx_answer_is_not_retried(hub: HubProcess, receiver: Receiver) -> None:
    receiver.statuses.extend([400])
    seed_host(hub, HOST)
    report_verdict(hub, HOST, "trusted")
    report_verdict(hub, HOST, "untrusted", ("quote.pcr_digest_mismatch",))
    receiver.wait_for(1)
    sender = hub.app[WEBHOOKS]
    for _ in range(100):  # the worker counts after the answer arrives (bounded wait)
        if sender.counts.failed:
            break
        asyncio.run(asyncio.sleep(0.02))
    assert receiver.answered == [400]
    assert (sender.counts.failed, sender.counts.delivered, sender.counts.attempts_failed) == (
        1,
        0,
        1,
    )


def test_retry_delays_double_up_to_the_cap() -> None:
    config = AlertsConfig(webhook_backoff=1.0, webhook_backoff_max=60.0)
    assert [retry_delay(config, n) for n in range(1, 9)] == [1, 2, 4, 8, 16, 32, 60, 60]


def notice(n: int) -> AlertNotice:
    return AlertNotice("firing", "untrusted", f"{n:064x}", "h", None, ("x.y",), float(n))


def test_full_queue_drops_without_waiting() -> None:
    async def run() -> tuple[int, int]:
        config = HubConfig(alerts=AlertsConfig(webhooks=("http://127.0.0.1:9/",), webhook_queue=2))
        async with aiohttp.ClientSession() as session:
            sender = WebhookSender(config, session)  # not started: nothing drains the queue
            for n in range(5):
                sender.submit(notice(n))
            sender.submit(AlertNotice("acknowledged", "untrusted", "a", "h", None, (), 0.0))
            return sender.counts.dropped, sender.counts.delivered

    assert asyncio.run(run()) == (3, 0)


def test_message_for_a_host_without_node_name() -> None:
    msg = alertmanager_message(
        AlertNotice("firing", "stale", "ab" * 32, "h.test", None, ("report.expired",), 0.0),
        "http://127.0.0.1:8443",
    )
    assert msg["alerts"][0]["labels"] == {
        "alertname": "TrustplaneHostStale",
        "host": "ab" * 32,
        "severity": "warning",
        "service": "trustplane-hub",
    }
    assert msg["alerts"][0]["startsAt"] == "1970-01-01T00:00:00.000000Z"
    assert msg["alerts"][0]["annotations"]["summary"] == "h.test is stale: report.expired"


def test_bogus_activations_from_one_source_open_one_alert(
    hub: HubProcess, receiver: Receiver
) -> None:
    # was: 50 bogus activations opened 50 alerts and sent 50 webhooks
    s = http(hub)
    for i in range(50):
        body = {
            "type": "activate",
            "version": PROTOCOL_VERSION,
            "host_id": f"{i:064x}",
            "secret": base64.b64encode(b"\x01" * 32).decode(),
            "handle": base64.b64encode(b"\x02" * 16).decode(),
        }
        assert s.post(base_url(hub) + "/v1/enroll/activate", json=body).status_code in (403, 429)
    alerts = [a for a in hub.call(hub.state.store.list_alerts()) if a.kind == "enrollment_failed"]
    assert len(alerts) == 1
    refused = int(alerts[0].reasons[-1].removeprefix("attempts:"))
    assert alerts[0].reasons == ("enroll.no_challenge", f"attempts:{refused}")
    assert refused >= 40  # the rest were rate-limited (429), which raises no alert
    receiver.wait_for(1)
    time.sleep(0.3)
    assert len(receiver.bodies) == 1


def test_many_sources_share_one_alert_past_the_cap() -> None:
    async def go() -> list[Alert]:
        with tempfile.TemporaryDirectory() as tmp:
            store = await Store.open(Path(tmp) / "hub.db")
            center = AlertCenter(store, lambda: 1000.0, Fanout("alerts"))
            for n in range(MAX_SOURCES + 20):
                for _ in range(3):
                    await center.enrollment_failed("enroll.activation_failed", f"10.0.0.{n}")
            alerts = await store.list_alerts()
            await store.close()
            return alerts

    alerts = asyncio.run(go())
    assert len(alerts) == MAX_SOURCES + 1
    shared = alerts[0]  # newest first: the one the 21st and later sources share
    assert shared.reasons == ("enroll.activation_failed", f"attempts:{20 * 3}")
    assert {a.reasons for a in alerts[1:]} == {("enroll.activation_failed", "attempts:3")}
