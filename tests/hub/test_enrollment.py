"""Enrollment against a real hub over TLS with real swtpm evidence: EK certificate chain (the
swtpm local CA), pending and approval, MakeCredential/ActivateCredential, client certificates.

All TPMs of one swtpm factory share the manufactured EK, so every hub here is fresh per test.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from hub.cli import main as cli_main
from hub.pki import check_csr
from tests.hub.conftest import ca_bundle
from tests.hub.harness import Agent, FakeClock, HubProcess, make_state
from trustcore.tpm import parse_public
from trustcore.tpm.constants import TPMA_OBJECT_DECRYPT, TPMA_OBJECT_USERWITHAUTH
from trustcore.wire import ActivateRequest, EnrollChallenge, ReportResult
from trustplane.swtpm import SwtpmFactory


@pytest.fixture
def make_hub(tmp_path: Path, swtpm_factory: SwtpmFactory) -> Iterator[Any]:
    hubs: list[HubProcess] = []

    def make(*, bundle: bool = True, **enrollment: Any) -> HubProcess:
        if bundle:
            enrollment["ek_ca_bundle"] = str(ca_bundle(swtpm_factory, tmp_path / "ek-ca.pem"))
        process = HubProcess(
            make_state(tmp_path / f"h{len(hubs)}", enrollment=enrollment), FakeClock()
        )
        hubs.append(process)
        return process

    yield make
    for h in hubs:
        h.stop()


@pytest.fixture
def new_agent(swtpm_factory: SwtpmFactory, tmp_path: Path) -> Iterator[Agent]:
    tpm = swtpm_factory.start()
    a = Agent(tpm, tmp_path / "agent")
    try:
        yield a
    finally:
        a.close()
        tpm.stop()


def enroll_raw(hub: HubProcess, agent: Agent, **kw: Any) -> Any:
    return hub.client().post("/v1/enroll", agent.enroll_request(**kw).to_json())


def test_whole_enrollment_then_attestation_over_mtls(make_hub: Any, new_agent: Agent) -> None:
    hub = make_hub()
    enrollment = new_agent.enroll(hub)
    host_id = hashlib.sha256(new_agent.ek.key.public).hexdigest()
    assert enrollment.host_id == host_id
    assert enrollment.ca_certificate == (hub.config.state.dir / "ca.pem").read_text()
    cert = x509.load_pem_x509_certificate(enrollment.client_certificate.encode())  # type: ignore[union-attr]
    ca = x509.load_pem_x509_certificate(enrollment.ca_certificate.encode())
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == host_id
    assert cert.issuer == ca.subject
    cert.verify_directly_issued_by(ca)
    life = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert 30 * 86400 <= life.total_seconds() <= 30 * 86400 + 600
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert cert.public_key().public_numbers() == new_agent.tls_key.public_key().public_numbers()
    host = hub.call(hub.state.store.get_host(host_id))
    assert (host.state, host.hostname, host.node_name) == ("enrolled", "node-1.test", "node-1")
    keys = hub.call(hub.state.store.get_host_keys(host_id))
    assert (keys.ak_public, keys.ek_verified) == (new_agent.ak.public, True)
    res = ReportResult.from_json(new_agent.attest(hub).body)
    assert (res.verdict, res.reasons) == ("trusted", ())
    actions = [r["action"] for r in hub.call(hub.state.store.list_audit())]
    assert actions == ["enroll.request", "enroll.activated"]
    assert hub.call(hub.state.store.verify_audit_chain()).ok


def test_host_without_ek_chain_waits_for_approval(make_hub: Any, new_agent: Agent) -> None:
    hub = make_hub(bundle=False)
    resp = enroll_raw(hub, new_agent)
    assert resp.status == 200
    pending = EnrollChallenge.from_json(resp.body)
    assert (pending.status, pending.credential_blob) == ("pending", None)
    resp = hub.client().post(
        "/v1/enroll/activate", ActivateRequest(pending.host_id, b"x" * 32, b"h" * 16).to_json()
    )
    assert (resp.status, resp.code) == (403, "enroll.no_challenge")
    viewer = hub.client(token=hub.token("viewer"))
    assert viewer.get(f"/v1/hosts/{pending.host_id}").body["state"] == "pending"
    resp = hub.client(token=hub.token("admin", "alice")).post(
        f"/v1/hosts/{pending.host_id}/approve"
    )
    assert (resp.status, resp.body) == (200, {"id": pending.host_id, "state": "approved"})
    new_agent.enroll(hub)
    assert viewer.get(f"/v1/hosts/{pending.host_id}").body["state"] == "enrolled"
    keys = hub.call(hub.state.store.get_host_keys(pending.host_id))
    assert keys.ek_verified is False
    audit = hub.call(hub.state.store.list_audit())
    assert [(r["action"], r["actor"]) for r in audit][:2] == [
        ("enroll.request", f"agent:{pending.host_id}"),
        ("host.approve", "token:alice"),
    ]


def test_cli_approves_while_the_hub_runs(
    make_hub: Any, new_agent: Agent, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hub = make_hub(bundle=False)
    host_id = EnrollChallenge.from_json(enroll_raw(hub, new_agent).body).host_id
    state = ["--config", str(tmp_path / "none.toml"), "--state-dir", str(hub.config.state.dir)]
    assert cli_main(["hosts", "approve", host_id, *state]) == 0
    assert cli_main(["hosts", "approve", host_id, *state]) == 1  # no longer pending
    capsys.readouterr()
    assert cli_main(["hosts", "show", host_id, *state]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert (shown["id"], shown["state"], shown["hostname"]) == (host_id, "approved", "node-1.test")
    assert cli_main(["hosts", "list", *state]) == 0
    assert capsys.readouterr().out.split("\t")[:3] == [host_id, "approved", "pending"]
    assert new_agent.enroll(hub).status == "enrolled"


def test_wrong_secret_fails_and_burns_the_challenge(make_hub: Any, new_agent: Agent) -> None:
    hub = make_hub()
    challenge = EnrollChallenge.from_json(enroll_raw(hub, new_agent).body)
    assert challenge.status == "challenge"
    secret = new_agent.activate(challenge)
    wrong = bytes([secret[0] ^ 1]) + secret[1:]
    client = hub.client()
    resp = client.post(
        "/v1/enroll/activate",
        ActivateRequest(challenge.host_id, wrong, challenge.handle or b"").to_json(),
    )
    assert (resp.status, resp.code) == (403, "enroll.activation_failed")
    resp = client.post(
        "/v1/enroll/activate",
        ActivateRequest(challenge.host_id, secret, challenge.handle or b"").to_json(),
    )
    assert (resp.status, resp.code) == (403, "enroll.no_challenge")
    host = hub.call(hub.state.store.get_host(challenge.host_id))
    assert host.state == "approved"
    assert hub.call(hub.state.store.get_host_keys(challenge.host_id)) is None


def test_expired_challenge(make_hub: Any, new_agent: Agent) -> None:
    hub = make_hub()
    challenge = EnrollChallenge.from_json(enroll_raw(hub, new_agent).body)
    secret = new_agent.activate(challenge)
    hub.clock.advance(301)
    resp = hub.client().post(
        "/v1/enroll/activate",
        ActivateRequest(challenge.host_id, secret, challenge.handle or b"").to_json(),
    )
    assert (resp.status, resp.code) == (403, "enroll.challenge_expired")


def test_registration_token_approves_without_ek_certificate(
    make_hub: Any, new_agent: Agent
) -> None:
    hub = make_hub(bundle=False, tokens=["join-me"])
    resp = enroll_raw(hub, new_agent, token="wrong", with_cert=False)
    assert EnrollChallenge.from_json(resp.body).status == "pending"
    assert new_agent.enroll(hub, token="join-me", with_cert=False).status == "enrolled"


def test_required_ek_certificate_missing(make_hub: Any, new_agent: Agent) -> None:
    hub = make_hub(require_ek_certificate=True)
    resp = enroll_raw(hub, new_agent, with_cert=False)
    assert (resp.status, resp.code) == (403, "enroll.ek_certificate_required")


def test_ek_certificate_of_another_key(make_hub: Any, new_agent: Agent) -> None:
    hub = make_hub()
    ecc_ek = new_agent.device.create_ek("ecc256")
    new_agent.device.flush(ecc_ek.key)
    request = replace(  # the RSA EK's certificate sent with the ECC EK
        new_agent.enroll_request(),
        ek_public=ecc_ek.key.public,
        binding_public=None,
        binding_certify_attest=None,
        binding_certify_signature=None,
    )
    resp = hub.client().post("/v1/enroll", request.to_json())
    assert (resp.status, resp.code) == (403, "enroll.ek_certificate_invalid")


def test_weak_csr_is_refused(make_hub: Any, new_agent: Agent) -> None:
    hub = make_hub()
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "a")]))
        .sign(weak, hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
        .decode()
    )
    resp = hub.client().post("/v1/enroll", replace(new_agent.enroll_request(), csr=csr).to_json())
    assert (resp.status, resp.code) == (400, "enroll.csr_invalid")
    resp = hub.client().post(
        "/v1/enroll", replace(new_agent.enroll_request(), csr="garbage").to_json()
    )
    assert (resp.status, resp.code) == (400, "enroll.csr_invalid")


def test_binding_certify_with_other_qualifying_data(make_hub: Any, new_agent: Agent) -> None:
    hub = make_hub()
    resp = enroll_raw(hub, new_agent, binding_qd=b"\x00" * 32)
    assert (resp.status, resp.code) == (400, "certify.qualifying_data_mismatch")


def test_binding_key_is_stored_and_must_be_a_pcr_policy_decrypt_key(
    make_hub: Any, new_agent: Agent
) -> None:
    hub = make_hub()
    signing_key, _ = new_agent.device.create_ak("rsa2048")  # certified, but a signing key
    resp = enroll_raw(hub, new_agent, binding_key=signing_key)
    assert (resp.status, resp.code) == (400, "binding.key_invalid")
    assert "not a decryption-only key" in resp.body["error"]["message"]
    request = new_agent.enroll_request()
    new_agent.enroll(hub)
    keys = hub.call(hub.state.store.get_host_keys(new_agent.host_id))
    sent = parse_public(request.binding_public)  # type: ignore[arg-type]
    stored = parse_public(keys.binding_public)
    assert stored.has(TPMA_OBJECT_DECRYPT)
    assert not stored.has(TPMA_OBJECT_USERWITHAUTH)
    assert (stored.type, stored.auth_policy) == (sent.type, sent.auth_policy)
    assert len(stored.auth_policy) == 32


def test_ak_that_is_not_a_restricted_signing_key(make_hub: Any, new_agent: Agent) -> None:
    hub = make_hub()
    request = replace(
        new_agent.enroll_request(),
        ak_public=new_agent.ek.key.public,
        binding_public=None,
        binding_certify_attest=None,
        binding_certify_signature=None,
    )
    resp = hub.client().post("/v1/enroll", request.to_json())
    assert (resp.status, resp.code) == (400, "ak.invalid")


def test_enrollment_is_rate_limited(make_hub: Any, new_agent: Agent) -> None:
    hub = make_hub(rate_per_minute=2)
    body = new_agent.enroll_request().to_json()
    assert hub.client().post("/v1/enroll", body).status == 200
    assert hub.client().post("/v1/enroll", body).status == 200
    resp = hub.client().post("/v1/enroll", body)
    assert (resp.status, resp.code) == (429, "enroll.rate_limited")
    hub.clock.advance(61)
    assert hub.client().post("/v1/enroll", body).status == 200


def test_pending_hosts_are_bounded(make_hub: Any, new_agent: Agent) -> None:
    hub = make_hub(bundle=False, max_pending=1)
    hub.call(
        hub.state.store.register_host(
            host_id="77" * 32, state="pending", hostname="x", node_name=None, dmi_uuid=None, now=0.0
        )
    )
    resp = enroll_raw(hub, new_agent)
    assert (resp.status, resp.code) == (503, "enroll.capacity")


def test_ecdsa_key_types_in_certificates() -> None:
    # the CSR check accepts P-256 (what the agent makes)
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
        .decode()
    )
    assert check_csr(csr).public_key().public_numbers() == key.public_key().public_numbers()  # type: ignore[union-attr]


def test_facts_of_an_enrolled_host_change_only_with_activation(
    make_hub: Any, new_agent: Agent
) -> None:
    hub = make_hub()
    host_id = new_agent.enroll(hub).host_id
    claim = replace(new_agent.enroll_request(), node_name="someone-else", hostname="evil")
    challenge = EnrollChallenge.from_json(hub.client().post("/v1/enroll", claim.to_json()).body)
    assert challenge.status == "challenge"
    host = hub.call(hub.state.store.get_host(host_id))
    assert (host.state, host.node_name, host.hostname) == ("enrolled", "node-1", "node-1.test")
    secret = new_agent.activate(challenge)
    resp = hub.client().post(
        "/v1/enroll/activate", ActivateRequest(host_id, secret, challenge.handle or b"").to_json()
    )
    assert resp.status == 200
    host = hub.call(hub.state.store.get_host(host_id))
    assert (host.node_name, host.hostname) == ("someone-else", "evil")


# --- the activation challenge belongs to the request that got it ------------------------------


def _activate(hub: HubProcess, host_id: str, secret: bytes, handle: bytes) -> Any:
    return hub.client().post(
        "/v1/enroll/activate", ActivateRequest(host_id, secret, handle).to_json()
    )


def test_a_stranger_with_the_ek_can_neither_replace_nor_take_the_challenge(
    make_hub: Any, new_agent: Agent
) -> None:
    # was: the host's one open challenge, replaced by anyone's enrollment with its (public) EK
    # and consumed by anyone's activation naming its host id
    hub = make_hub()
    mine = EnrollChallenge.from_json(enroll_raw(hub, new_agent).body)
    assert mine.handle is not None
    assert len(mine.handle) == 16
    # the stranger replays the host's public enrollment request: a challenge of its own
    theirs = EnrollChallenge.from_json(enroll_raw(hub, new_agent).body)
    assert theirs.handle is not None
    assert theirs.handle != mine.handle
    # and guesses at activation: nothing of the host's is taken
    for guess in (b"\x00" * 16, theirs.handle[::-1]):
        stolen = _activate(hub, mine.host_id, b"s" * 32, guess)
        assert (stolen.status, stolen.code) == (403, "enroll.no_challenge")
    secret = new_agent.activate(mine)
    assert _activate(hub, mine.host_id, secret, mine.handle).status == 200


def test_activation_needs_a_handle(make_hub: Any, new_agent: Agent) -> None:
    hub = make_hub()
    challenge = EnrollChallenge.from_json(enroll_raw(hub, new_agent).body)
    body = ActivateRequest(challenge.host_id, b"s" * 32, b"x" * 16).to_json()
    for bad in (None, "", "AAAA"):
        if bad is None:
            body.pop("handle")
        else:
            body["handle"] = bad
        resp = hub.client().post("/v1/enroll/activate", body)
        assert resp.status == 400, bad


def test_a_host_keeps_its_newest_challenges(make_hub: Any, new_agent: Agent) -> None:
    hub = make_hub(rate_per_ek=100)
    handles = []
    for _ in range(9):
        hub.clock.advance(1)  # each newer than the last
        challenge = EnrollChallenge.from_json(enroll_raw(hub, new_agent).body)
        assert challenge.handle is not None
        handles.append((challenge, challenge.handle))
    oldest, handle = handles[0]
    refused = _activate(hub, oldest.host_id, new_agent.activate(oldest), handle)
    assert (refused.status, refused.code) == (403, "enroll.no_challenge")
    newest, handle = handles[-1]
    assert _activate(hub, newest.host_id, new_agent.activate(newest), handle).status == 200
