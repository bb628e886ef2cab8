"""Host identity after enrollment: a renewed client certificate supersedes the old one at once,
and a revoked host's certificate never works (real swtpm agents, real hub on loopback TLS)."""

from __future__ import annotations

import hashlib
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hub.cli import main as hub_main
from tests.hub.conftest import ca_bundle, running_agent
from tests.hub.harness import Agent, FakeClock, HubProcess, make_state
from tests.hub.weblib import base_url, http
from trustplane.swtpm import SwtpmFactory


class RunningClock(FakeClock):
    """Real time plus what the test advanced: EK certificates made after the hub started are
    valid for it (they start at the real time of their making)."""

    def __call__(self) -> float:
        return time.time() + (self.now - self.started)

    def __init__(self) -> None:
        super().__init__()
        self.started = self.now


@pytest.fixture
def hub(
    request: pytest.FixtureRequest, tmp_path: Path, swtpm_factory: SwtpmFactory
) -> Iterator[HubProcess]:
    """A hub of this test's own (its fake clock starts now: the agent's EK certificate, made
    now, is valid for it); an indirect parameter holds more [enrollment] settings."""
    bundle = ca_bundle(swtpm_factory, tmp_path / "ek-ca.pem")
    extra = getattr(request, "param", {})
    config = make_state(tmp_path, enrollment={"ek_ca_bundle": str(bundle), **extra})
    process = HubProcess(config, RunningClock())
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


# --- hostname, node name and DMI UUID are unique among active hosts -----------------------------


@pytest.fixture
def second(hub: HubProcess, swtpm_factory: SwtpmFactory, tmp_path: Path) -> Iterator[Agent]:
    """Another TPM (its own EK, chaining to the vendor CA), not enrolled yet; the hub's clock
    moves past its EK certificate's start."""
    tpm = swtpm_factory.start(unique=True)
    other = Agent(tpm, tmp_path / "second")
    try:
        yield other
    finally:
        other.close()
        tpm.stop()


@pytest.mark.parametrize("taken", ["hostname", "node_name", "dmi_uuid"])
def test_a_second_tpm_with_a_hosts_names_waits_for_the_operator(
    hub: HubProcess, agent: Agent, second: Agent, taken: str
) -> None:
    # was: a second approved TPM enrolled with an existing host's hostname, node name and UUID
    names = dict(zip(("hostname", "node_name", "dmi_uuid"), second.names, strict=True))
    names[taken] = dict(zip(("hostname", "node_name", "dmi_uuid"), agent.names, strict=True))[taken]
    anon = hub.client()
    answer = anon.post("/v1/enroll", second.enroll_request(**names).to_json())
    assert (answer.status, answer.body["status"]) == (200, "pending")  # EK chain verified, still
    new_id = answer.body["host_id"]
    admin = hub.client(token=hub.token("admin", f"ops-{taken}"))
    refused = admin.post(f"/v1/hosts/{new_id}/approve")
    assert (refused.status, refused.code) == (409, "host.identity_conflict")
    assert agent.host_id in refused.body["error"]["message"]
    # the operator confirms the replacement: the old host is retired, the new one approved
    ok = admin.post(f"/v1/hosts/{new_id}/approve", {"replace": agent.host_id})
    assert ok.body == {"id": new_id, "state": "approved", "retired": agent.host_id}
    gone = agent.mtls(hub).post("/v1/challenge", {})
    assert (gone.status, gone.code) == (403, "host.unknown")
    again = anon.post("/v1/enroll", agent.enroll_request().to_json())
    assert (again.status, again.code) == (403, "enroll.revoked")
    second.enroll(hub, **names)
    assert second.mtls(hub).post("/v1/challenge", {}).status == 200


def test_names_of_its_own_enroll_at_once_and_replace_needs_a_conflict(
    hub: HubProcess, agent: Agent, second: Agent
) -> None:
    answer = hub.client().post("/v1/enroll", second.enroll_request().to_json())
    assert answer.body["status"] == "challenge"  # its EK chain approves it: no conflict
    pending = hub.client().post(
        "/v1/enroll", second.enroll_request(node_name=agent.names[1]).to_json()
    )
    assert pending.body["status"] == "challenge"  # approved already: the names change only on
    # activation, and a conflict there is refused (next test)
    admin = hub.client(token=hub.token("admin", "ops"))
    wrong = admin.post(f"/v1/hosts/{second_id(second)}/approve", {"replace": agent.host_id})
    assert (wrong.status, wrong.code) == (409, "host.not_pending")


def second_id(agent: Agent) -> str:
    return hashlib.sha256(agent.ek.key.public).hexdigest()


def test_an_enrolled_host_may_not_take_another_hosts_names(
    hub: HubProcess, agent: Agent, second: Agent
) -> None:
    second.enroll(hub)
    took = hub.client(cert=second.cert_files).post(
        "/v1/enroll", second.enroll_request(hostname=agent.names[0]).to_json()
    )
    assert (took.status, took.code) == (409, "enroll.identity_conflict")


def test_a_host_enrolled_again_through_another_process_is_verified_with_its_new_ak(
    hub: HubProcess, agent: Agent
) -> None:
    """Two hub processes on one database (as workers or replicas would be): the AK cache is
    keyed by the host's current certificate, which every enrollment changes, so a process that
    cached the old AK never verifies the host's new one with it."""
    other = HubProcess(hub.config, RunningClock())
    try:
        assert agent.attest(other).body["verdict"] == "trusted"  # other caches the AK
        agent.device.flush(agent.ak)
        agent.ak, _ = agent.device.create_ak("ecc256")  # a new AK, enrolled through `hub`
        agent.enroll(hub)
        answer = agent.attest(other)
        assert (answer.body["verdict"], answer.body["reasons"]) == ("trusted", [])
    finally:
        other.stop()
