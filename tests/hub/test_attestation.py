"""Reports from a real swtpm to a real hub over mTLS: each failure gets its exact reason id.

The agent's keys are bound in the store directly here (``direct_agent``); the enrollment round
trip has its own tests. Every report is a real TPM2_Quote over real PCRs.
"""

from __future__ import annotations

import os
import ssl
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from hub.jws import verify_jws
from hub.pki import certificate_pem, issue_client_certificate, make_ca
from tests.hub.conftest import running_agent
from tests.hub.harness import Agent, HubProcess
from trustcore.wire import ReportResult, encode_report_body
from trustplane.swtpm import SwtpmFactory


@pytest.fixture(scope="module")
def hub(hub_on_each_backend: HubProcess) -> HubProcess:
    """These tests run on a hub over SQLite, then on one over PostgreSQL."""
    return hub_on_each_backend


def result(resp) -> ReportResult:
    assert resp.status == 200, resp.body
    return ReportResult.from_json(resp.body)


def test_good_report_is_trusted_with_a_signed_trust_report(
    hub: HubProcess, direct_agent: Agent
) -> None:
    now = hub.clock()
    res = result(direct_agent.attest(hub))
    assert (res.verdict, res.reasons) == ("trusted", ())
    assert res.valid_until == now + 600
    assert res.next_report_in == 60
    assert res.missing_eventlogs == ()
    payload = verify_jws(res.trust_report, hub.state.keys.jws_key.public_key())
    assert payload == {
        "host_id": direct_agent.host_id,
        "node_name": "direct",
        "verdict": "trusted",
        "reasons": [],
        "asset_tags": {},
        "flavors": [],
        "iat": int(now),
        "valid_until": int(now + 600),
    }
    viewer = hub.client(token=hub.token("viewer"))
    host = viewer.get(f"/v1/hosts/{direct_agent.host_id}").body
    assert (host["verdict"], host["state"], host["reasons"]) == ("trusted", "enrolled", [])
    assert host["reports"][0]["verdict"] == "trusted"


def test_replayed_nonce(hub: HubProcess, direct_agent: Agent) -> None:
    report = direct_agent.build_report(direct_agent.challenge(hub))
    assert result(direct_agent.send(hub, report)).verdict == "trusted"
    again = direct_agent.send(hub, report)
    assert (again.status, again.code) == (409, "nonce.replayed")


def test_expired_nonce(hub: HubProcess, direct_agent: Agent) -> None:
    nonce = direct_agent.challenge(hub)
    hub.clock.advance(120.5)
    resp = direct_agent.send(hub, direct_agent.build_report(nonce))
    assert (resp.status, resp.code) == (409, "nonce.expired")


def test_nonce_at_its_last_second_is_accepted(hub: HubProcess, direct_agent: Agent) -> None:
    nonce = direct_agent.challenge(hub)
    hub.clock.advance(120)
    assert result(direct_agent.send(hub, direct_agent.build_report(nonce))).verdict == "trusted"


def test_unknown_nonce(hub: HubProcess, direct_agent: Agent) -> None:
    resp = direct_agent.send(hub, direct_agent.build_report(os.urandom(32)))
    assert (resp.status, resp.code) == (409, "nonce.unknown")


def test_forged_signature(hub: HubProcess, direct_agent: Agent) -> None:
    report = direct_agent.build_report(direct_agent.challenge(hub))
    sig = bytearray(report.signature)
    sig[-1] ^= 0x01
    res = result(direct_agent.send(hub, replace(report, signature=bytes(sig))))
    assert (res.verdict, res.reasons) == ("untrusted", ("quote.signature_invalid",))
    payload = verify_jws(res.trust_report, hub.state.keys.jws_key.public_key())
    assert (payload["verdict"], payload["reasons"]) == ("untrusted", ["quote.signature_invalid"])
    alerts = hub.client(token=hub.token("viewer")).get("/v1/alerts?open=1").body["alerts"]
    mine = [a for a in alerts if a["host_id"] == direct_agent.host_id]
    assert mine[0]["reasons"] == ["quote.signature_invalid"]


def test_forged_signature_does_not_spend_the_nonce(hub: HubProcess, direct_agent: Agent) -> None:
    nonce = direct_agent.challenge(hub)
    report = direct_agent.build_report(nonce)
    sig = bytearray(report.signature)
    sig[-1] ^= 0x01
    assert (
        result(direct_agent.send(hub, replace(report, signature=bytes(sig)))).verdict == "untrusted"
    )
    assert result(direct_agent.send(hub, report)).verdict == "trusted"


def test_quote_by_a_different_ak(hub: HubProcess, direct_agent: Agent) -> None:
    other_ak, _ = direct_agent.device.create_ak("ecc256")
    try:
        res = result(direct_agent.attest(hub, ak=other_ak))
    finally:
        direct_agent.device.flush(other_ak)
    assert (res.verdict, res.reasons) == ("untrusted", ("quote.signature_invalid",))


def test_pcr_left_out_of_the_quote(hub: HubProcess, direct_agent: Agent) -> None:
    res = result(direct_agent.attest(hub, pcrs=(0, 1, 2, 3, 4, 5, 6)))
    assert (res.verdict, res.reasons) == ("untrusted", ("quote.pcr_selection_insufficient",))


def test_coverage_is_checked_before_the_digest(hub: HubProcess, direct_agent: Agent) -> None:
    res = result(direct_agent.attest(hub, pcrs=(0, 1, 2, 3, 4, 5, 6), tamper_values=True))
    assert (res.verdict, res.reasons) == ("untrusted", ("quote.pcr_selection_insufficient",))


def test_pcr_values_that_do_not_match_the_digest(hub: HubProcess, direct_agent: Agent) -> None:
    res = result(direct_agent.attest(hub, tamper_values=True))
    assert (res.verdict, res.reasons) == ("untrusted", ("quote.pcr_digest_mismatch",))


def test_digest_mismatch_with_a_replayed_nonce_reports_the_nonce(
    hub: HubProcess, direct_agent: Agent
) -> None:
    nonce = direct_agent.challenge(hub)
    assert result(direct_agent.send(hub, direct_agent.build_report(nonce))).verdict == "trusted"
    resp = direct_agent.send(hub, direct_agent.build_report(nonce, tamper_values=True))
    assert (resp.status, resp.code) == (409, "nonce.replayed")


def test_body_changed_after_quoting(hub: HubProcess, direct_agent: Agent) -> None:
    report = direct_agent.build_report(direct_agent.challenge(hub))
    body = replace(report.body(), sequence=report.body().sequence + 1000)
    res = result(direct_agent.send(hub, replace(report, body_bytes=encode_report_body(body))))
    assert (res.verdict, res.reasons) == ("untrusted", ("quote.qualifying_data_mismatch",))


def test_attest_bytes_that_are_not_a_quote(hub: HubProcess, direct_agent: Agent) -> None:
    report = direct_agent.build_report(direct_agent.challenge(hub))
    res = result(direct_agent.send(hub, replace(report, attest=report.attest[:20])))
    assert (res.verdict, res.reasons) == ("untrusted", ("quote.signature_invalid",))


def test_body_for_another_host_is_refused(hub: HubProcess, direct_agent: Agent) -> None:
    report = direct_agent.build_report(direct_agent.challenge(hub))
    body = replace(report.body(), host_id="ee" * 32)
    resp = direct_agent.send(hub, replace(report, body_bytes=encode_report_body(body)))
    assert (resp.status, resp.code) == (403, "report.host_mismatch")


def test_unknown_host_with_a_hub_issued_certificate(hub: HubProcess, tmp_path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")]))
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
        .decode()
    )
    cert = issue_client_certificate(hub.state.keys.ca, csr, "99" * 32, time.time())
    (tmp_path / "c.pem").write_text(certificate_pem(cert))
    (tmp_path / "k.pem").write_bytes(private_pem(key))
    client = hub.client(cert=(tmp_path / "c.pem", tmp_path / "k.pem"))
    for path in ("/v1/challenge", "/v1/report"):
        resp = client.post(path, {})
        assert (resp.status, resp.code) == (403, "host.unknown")


def test_malformed_report_is_400(hub: HubProcess, direct_agent: Agent) -> None:
    client = direct_agent.mtls(hub)
    resp = client.post("/v1/report", raw=b"\x00\x01")
    assert (resp.status, resp.code) == (400, "http.malformed_json")
    resp = client.post(
        "/v1/report", {"type": "report", "version": 1, "body": "{}", "attest": "", "signature": ""}
    )
    assert (resp.status, resp.code) == (400, "wire.malformed")


def test_oversized_challenge_body_is_413(hub: HubProcess, direct_agent: Agent) -> None:
    resp = direct_agent.mtls(hub).post("/v1/challenge", raw=b'{"pad":"' + b"x" * 2048 + b'"}')
    assert (resp.status, resp.code) == (413, "http.body_too_large")


def private_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def test_client_certificate_from_another_ca_fails_the_handshake(
    hub: HubProcess, direct_agent: Agent, tmp_path: Path
) -> None:
    rogue_ca = make_ca("rogue", time.time())
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
        .decode()
    )
    cert = issue_client_certificate(rogue_ca, csr, direct_agent.host_id, time.time())
    (tmp_path / "c.pem").write_text(certificate_pem(cert))
    (tmp_path / "k.pem").write_bytes(private_pem(key))
    client = hub.client(cert=(tmp_path / "c.pem", tmp_path / "k.pem"))
    with pytest.raises((ssl.SSLError, ConnectionError)):
        client.post("/v1/challenge", {})


def test_concurrent_copies_of_one_report_are_accepted_once(
    hub: HubProcess, direct_agent: Agent
) -> None:
    report = direct_agent.build_report(direct_agent.challenge(hub))
    with ThreadPoolExecutor(max_workers=8) as pool:
        responses = list(pool.map(lambda _: direct_agent.send(hub, report), range(8)))
    statuses = sorted((r.status, r.code) for r in responses)
    assert statuses == [(200, None)] + [(409, "nonce.replayed")] * 7


# --- the next report's nonce (docs/protocol.md, "The next report's nonce") ---------------------


def test_a_report_answer_carries_the_next_nonce_which_works_once(
    hub: HubProcess, direct_agent: Agent
) -> None:
    now = hub.clock()
    first = result(direct_agent.attest(hub))
    assert first.next_challenge is not None
    assert first.next_challenge.expires_at == now + 60 + 120  # interval + nonce_ttl
    # the next report needs no /v1/challenge
    report = direct_agent.build_report(first.next_challenge.nonce)
    second = result(direct_agent.send(hub, report))
    assert second.verdict == "trusted"
    assert second.next_challenge is not None
    assert second.next_challenge.nonce != first.next_challenge.nonce
    again = direct_agent.send(hub, direct_agent.build_report(first.next_challenge.nonce))
    assert (again.status, again.code) == (409, "nonce.replayed")


def test_another_host_cannot_use_a_hosts_next_nonce(
    hub: HubProcess,
    direct_agent: Agent,
    swtpm_factory: SwtpmFactory,
    tmp_path: Path,
) -> None:
    ahead = result(direct_agent.attest(hub)).next_challenge
    assert ahead is not None
    stranger_agents = running_agent(hub, swtpm_factory, tmp_path / "stranger", unique=True)
    stranger = next(stranger_agents)
    assert stranger.host_id != direct_agent.host_id
    try:
        stolen = stranger.send(hub, stranger.build_report(ahead.nonce))
    finally:
        stranger_agents.close()
    assert stolen.status == 409
    assert stolen.code is not None
    assert stolen.code.startswith("nonce.")
    # and the owner can still use it: the stranger's attempt did not spend it
    assert result(direct_agent.send(hub, direct_agent.build_report(ahead.nonce))).verdict


# last: it moves the module hub's clock, and agents made after it get certificates from the
# hub's future
def test_the_next_nonce_expires_after_interval_plus_nonce_ttl(
    hub: HubProcess, direct_agent: Agent
) -> None:
    ahead = result(direct_agent.attest(hub)).next_challenge
    assert ahead is not None
    hub.clock.advance(180.5)
    late = direct_agent.send(hub, direct_agent.build_report(ahead.nonce))
    assert (late.status, late.code) == (409, "nonce.expired")


# --- sequence numbers (docs/protocol.md, "Sequence numbers") -----------------------------------


def test_a_report_not_above_the_last_sequence_is_refused_and_spends_nothing(
    hub: HubProcess, direct_agent: Agent
) -> None:
    assert result(direct_agent.attest(hub)).verdict == "trusted"
    last = direct_agent.sequence
    for old in (last, last - 1):
        nonce = direct_agent.challenge(hub)
        direct_agent.sequence = old - 1  # build_report counts up to ``old``
        stale = direct_agent.send(hub, direct_agent.build_report(nonce))
        assert (stale.status, stale.code) == (409, "report.sequence_old")
        assert stale.body["error"]["last_sequence"] == last
        # nothing was written: the same nonce still works for a report numbered after ``last``
        direct_agent.sequence = last
        assert result(direct_agent.send(hub, direct_agent.build_report(nonce))).verdict
        last = direct_agent.sequence


def test_a_forged_report_does_not_move_the_sequence(hub: HubProcess, direct_agent: Agent) -> None:
    assert result(direct_agent.attest(hub)).verdict == "trusted"
    nonce = direct_agent.challenge(hub)
    direct_agent.sequence += 1000
    forged = direct_agent.build_report(nonce)
    sig = bytearray(forged.signature)
    sig[-1] ^= 0x01
    assert result(direct_agent.send(hub, replace(forged, signature=bytes(sig)))).verdict == (
        "untrusted"
    )
    direct_agent.sequence -= 1000  # the next honest number is still accepted
    assert result(direct_agent.attest(hub)).verdict == "trusted"
