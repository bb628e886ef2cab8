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
from trustplane.swtpm import SwtpmFactory


@pytest.fixture
def hub(tmp_path: Path, swtpm_factory: SwtpmFactory) -> Iterator[HubProcess]:
    """A hub of this test's own (its fake clock starts now: the agent's EK certificate, made
    now, is valid for it)."""
    bundle = ca_bundle(swtpm_factory, tmp_path / "ek-ca.pem")
    process = HubProcess(
        make_state(tmp_path, enrollment={"ek_ca_bundle": str(bundle)}), FakeClock()
    )
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
