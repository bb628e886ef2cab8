"""Host identity after enrollment: a renewed client certificate supersedes the old one at once,
and a revoked host's certificate never works (real swtpm agents, real hub on loopback TLS)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from hub.cli import main as hub_main
from tests.hub.conftest import ca_bundle, running_agent
from tests.hub.harness import Agent, FakeClock, HubProcess, make_state
from tests.hub.weblib import base_url, http
from trustplane.swtpm import SwtpmFactory


@pytest.fixture
def hub(
    request: pytest.FixtureRequest, tmp_path: Path, swtpm_factory: SwtpmFactory
) -> Iterator[HubProcess]:
    """A hub of this test's own (its fake clock starts now: the agent's EK certificate, made
    now, is valid for it); an indirect parameter holds more [enrollment] settings."""
    bundle = ca_bundle(swtpm_factory, tmp_path / "ek-ca.pem")
    extra = getattr(request, "param", {})
    config = make_state(tmp_path, enrollment={"ek_ca_bundle": str(bundle), **extra})
    process = HubProcess(config, FakeClock())
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def agent(hub: HubProcess, swtpm_factory: SwtpmFactory, tmp_path: Path) -> Iterator[Agent]:
    yield from running_agent(hub, swtpm_factory, tmp_path / "agent", enroll="full", unique=True)


def test_a_renewed_certificate_supersedes_the_old_one_at_once(
    hub: HubProcess, agent: Agent, tmp_path: Path
) -> None:
    assert agent.cert_files is not None
    old = (tmp_path / "old.pem", agent.cert_files[1])
    shutil.copy(agent.cert_files[0], old[0])
    assert agent.mtls(hub).post("/v1/challenge", {}).status == 200
    agent.enroll(hub)  # renewal: same EK and AK, a new certificate
    refused = hub.client(cert=old).post("/v1/challenge", {})
    assert (refused.status, refused.code) == (401, "auth.certificate_superseded")
    assert agent.mtls(hub).post("/v1/challenge", {}).status == 200


def test_a_revoked_host_cannot_use_its_certificate_nor_enroll_until_approved(
    hub: HubProcess, agent: Agent
) -> None:
    admin = hub.client(token=hub.token("admin", "revoker"))
    revoked = admin.post(f"/v1/hosts/{agent.host_id}/revoke")
    assert (revoked.status, revoked.body) == (200, {"id": agent.host_id, "state": "revoked"})
    refused = agent.mtls(hub).post("/v1/challenge", {})
    assert (refused.status, refused.code) == (403, "host.unknown")
    again = hub.client().post("/v1/enroll", agent.enroll_request().to_json())
    assert (again.status, again.code) == (403, "enroll.revoked")
    assert admin.post(f"/v1/hosts/{agent.host_id}/approve").status == 200
    agent.enroll(hub)
    assert agent.mtls(hub).post("/v1/challenge", {}).status == 200


def test_revoke_from_the_cli(
    hub: HubProcess, agent: Agent, capsys: pytest.CaptureFixture[str]
) -> None:
    config = hub.config
    code = hub_main(
        [
            "hosts",
            "revoke",
            agent.host_id,
            "--config",
            "/nonexistent-ok",
            "--state-dir",
            str(config.state.dir),
        ]
    )
    assert code == 0
    assert capsys.readouterr().out.strip() == f"revoked {agent.host_id}"
    refused = agent.mtls(hub).post("/v1/challenge", {})
    assert (refused.status, refused.code) == (403, "host.unknown")


@pytest.mark.parametrize("hub", [{"rate_per_minute": 5}], indirect=True)
def test_anonymous_garbage_never_uses_up_a_renewal(hub: HubProcess, agent: Agent) -> None:
    # was: one bucket for everyone, spent before the body was parsed: 70 anonymous {} posts
    # locked out every enrollment and renewal (the agent's own enrollment used 2 of the 5)
    anon = hub.client()
    answers = [anon.post("/v1/enroll", {}) for _ in range(8)]
    assert [a.status for a in answers] == [400] * 3 + [429] * 5
    assert answers[-1].code == "enroll.rate_limited"
    # the renewal presents the host's current certificate: not counted against the address
    renewal = hub.client(cert=agent.cert_files).post("/v1/enroll", agent.enroll_request().to_json())
    assert renewal.status == 200, renewal.body
    assert anon.post("/v1/enroll", agent.enroll_request().to_json()).status == 429


@pytest.mark.parametrize("hub", [{"rate_per_minute": 1}], indirect=True)
def test_429_says_when_to_retry(hub: HubProcess) -> None:
    s = http(hub)
    assert s.post(base_url(hub) + "/v1/enroll", json={}).status_code == 400
    hub.clock.advance(20)
    refused = s.post(base_url(hub) + "/v1/enroll", json={})
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "40"


@pytest.mark.parametrize("hub", [{"rate_per_ek": 4}], indirect=True)
def test_one_ek_has_its_own_budget(hub: HubProcess, agent: Agent) -> None:
    # the agent's enrollment used 2 of the EK's 4
    anon = hub.client()
    request = agent.enroll_request().to_json()
    statuses = [anon.post("/v1/enroll", request).status for _ in range(3)]
    assert statuses == [200, 200, 429]
