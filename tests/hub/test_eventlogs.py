"""Reports that carry a real UEFI event log (go-attestation's crypto-agile sample, from
tests/data/eventlogs) whose events were extended into a real swtpm: replay, cache, digest-only
reports, and logs that do not replay or are truncated."""

from __future__ import annotations

import hashlib
import json

from tests.conftest import EVENTLOGS
from tests.hub.conftest import LOG
from tests.hub.harness import Agent, HubProcess
from trustcore.algorithms import TPM_ALG_SHA256
from trustcore.eventlog import parse_eventlog
from trustcore.tpm.pcrs import PcrSelection
from trustcore.wire import EventLogEvidence, ReportResult

EXPECTED = EVENTLOGS / "go-attestation" / "crypto_agile_eventlog.expected.json"


def evidence(data: bytes, *, with_data: bool = True) -> dict[str, EventLogEvidence]:
    return {"uefi": EventLogEvidence(hashlib.sha256(data).digest(), data if with_data else None)}


def result(resp) -> ReportResult:
    assert resp.status == 200, resp.body
    return ReportResult.from_json(resp.body)


def test_tpm_holds_the_logs_published_pcr_values(booted: Agent) -> None:
    expected = json.loads(EXPECTED.read_text())["expected_pcrs"]["sha256"]
    values = booted.device.pcr_read(PcrSelection.of({TPM_ALG_SHA256: range(8)}))
    assert {str(k): v.hex() for k, v in values[TPM_ALG_SHA256].items()} == expected


def test_log_that_replays_is_trusted_and_then_cached(hub: HubProcess, booted: Agent) -> None:
    data = LOG.read_bytes()
    res = result(booted.attest(hub, eventlogs=evidence(data)))
    assert (res.verdict, res.reasons) == ("trusted", ())
    stored = hub.call(hub.state.store.get_eventlog(hashlib.sha256(data).hexdigest()))
    assert stored == data
    # the next report sends only the digest: the hub uses its cache
    res = result(booted.attest(hub, eventlogs=evidence(data, with_data=False)))
    assert (res.verdict, res.reasons, res.missing_eventlogs) == ("trusted", (), ())


def test_digest_only_log_after_a_restart_comes_from_the_database(
    hub: HubProcess, booted: Agent
) -> None:
    data = LOG.read_bytes()
    result(booted.attest(hub, eventlogs=evidence(data)))
    hub.state.verifier.eventlogs.discard(hashlib.sha256(data).digest())
    res = result(booted.attest(hub, eventlogs=evidence(data, with_data=False)))
    assert (res.verdict, res.missing_eventlogs) == ("trusted", ())


def test_unknown_digest_asks_for_the_log_without_spending_the_nonce(
    hub: HubProcess, booted: Agent
) -> None:
    data = LOG.read_bytes() + b"\x00" * 8  # a log the hub has never seen (fill bytes)
    nonce = booted.challenge(hub)
    res = result(
        booted.send(hub, booted.build_report(nonce, eventlogs=evidence(data, with_data=False)))
    )
    assert res.missing_eventlogs == ("uefi",)
    assert res.next_report_in == 0
    again = result(booted.send(hub, booted.build_report(nonce, eventlogs=evidence(data))))
    assert (again.verdict, again.reasons, again.missing_eventlogs) == ("trusted", (), ())


def test_log_that_does_not_replay_to_the_quote(hub: HubProcess, booted: Agent) -> None:
    data = bytearray(LOG.read_bytes())
    event = next(e for e in parse_eventlog(bytes(data)).events if e.pcr == 4)
    at = bytes(data).find(event.digests[TPM_ALG_SHA256])
    assert at > 0
    data[at] ^= 0xFF
    res = result(booted.attest(hub, eventlogs=evidence(bytes(data))))
    assert (res.verdict, res.reasons) == ("untrusted", ("eventlog.replay_mismatch",))


def test_truncated_log(hub: HubProcess, booted: Agent) -> None:
    data = LOG.read_bytes()[:-10]
    res = result(booted.attest(hub, eventlogs=evidence(data)))
    assert (res.verdict, res.reasons) == ("untrusted", ("eventlog.truncated",))


def test_garbage_log(hub: HubProcess, booted: Agent) -> None:
    res = result(booted.attest(hub, eventlogs=evidence(b"\xff" * 64)))
    assert res.verdict == "untrusted"
    assert res.reasons[0].startswith("eventlog.")
