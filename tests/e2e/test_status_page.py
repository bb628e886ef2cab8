"""The status page in a real browser: headless Chromium logs in to the real hub, sees an
untrusted host with its reason, watches a second host turn untrusted without a reload,
acknowledges the alert with the button, and sees it acknowledged."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.browser import open_chromium
from tests.hub.harness import HubProcess
from tests.hub.weblib import base_url, report_verdict, seed_host, start_hub

BAD = "b" * 64
LATER = "c" * 64


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    process = start_hub(tmp_path_factory.mktemp("e2e-web"))
    try:
        seed_host(
            process, "a" * 64, hostname="web-01.eu", node_name="worker-01", tags={"region": "EU"}
        )
        report_verdict(process, "a" * 64, "trusted")
        seed_host(
            process,
            BAD,
            hostname="web-02.eu",
            node_name="worker-02",
            tags={"region": "EU", "rack": "7"},
        )
        report_verdict(process, BAD, "trusted")
        report_verdict(process, BAD, "untrusted", ("eventlog.replay_mismatch",))
        seed_host(process, LATER, hostname="db-01.us", node_name="worker-03", tags={"region": "US"})
        report_verdict(process, LATER, "trusted")
        process.clock.advance(90)
        yield process
    finally:
        process.stop()


def log_in(page: Page, hub: HubProcess, token: str) -> None:
    page.goto(base_url(hub) + "/")
    expect(page).to_have_url(base_url(hub) + "/login?next=/")
    page.fill("#token", token)
    page.click("button[type=submit]")
    expect(page).to_have_url(base_url(hub) + "/")


def test_untrusted_host_reason_live_update_and_acknowledge(hub: HubProcess, tmp_path: Path) -> None:
    token = hub.token("admin", "alice")
    server_cert = (hub.config.state.dir / "server.pem").read_bytes()
    with open_chromium(tmp_path, trust=[server_cert]) as page:
        log_in(page, hub, token)
        row = page.locator(f'tr[data-host="{BAD}"]')
        expect(row.locator(".verdict")).to_have_text("untrusted")
        expect(row).to_contain_text("eventlog.replay_mismatch")
        expect(row).to_contain_text("Replaying the event log does not give the quoted PCR values.")
        expect(page.locator("#live")).to_have_class("live on")

        page.evaluate("window.__notReloaded = true")
        report_verdict(hub, LATER, "untrusted", ("quote.pcr_digest_mismatch",))
        later = page.locator(f'tr[data-host="{LATER}"]')
        expect(later.locator(".verdict")).to_have_text("untrusted")
        expect(later).to_contain_text("The reported PCR values do not hash to the quoted digest.")
        expect(page.locator("#count-untrusted")).to_have_text("2")
        assert page.evaluate("window.__notReloaded") is True
        page.screenshot(path=str(tmp_path / "hosts.png"), full_page=True)

        page.click("header nav >> text=Alerts")
        alert = page.locator("#open tr", has_text="web-02.eu")
        expect(alert).to_contain_text("eventlog.replay_mismatch")
        alert.locator("button", has_text="Acknowledge").click()
        expect(page).to_have_url(base_url(hub) + "/alerts")
        acked = page.locator("#acked tr", has_text="web-02.eu")
        expect(acked).to_contain_text("by alice")
        expect(page.locator("#open")).not_to_contain_text("web-02.eu")
        page.screenshot(path=str(tmp_path / "alerts.png"), full_page=True)
    stored = [a for a in hub.call(hub.state.store.list_alerts()) if a.host_id == BAD]
    assert [(a.kind, a.acked_by) for a in stored] == [("untrusted", "alice")]
