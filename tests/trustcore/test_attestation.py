"""trustcore.attestation: a real event log (tests/data/eventlogs) checked against a verified quote
whose PCR values are the log's expected PCRs as tpm2-tools computed them (expected.json), signed
by a software AK. The same against a real swtpm is in tests/nodeagent/test_tpm_attestation.py."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence

import pytest

from tests.conftest import EVENTLOGS
from tests.trustcore.test_tpm_oracle import SHA1, SHA256, pcr_digest, quote_attest, software_ak
from tests.trustcore.test_tpm_oracle import tpm_selection as oracle_selection
from trustcore.attestation import ReplayMismatch, VerifiedEvents, verify_events, verify_replay
from trustcore.errors import VerificationError
from trustcore.eventlog import EventLog, parse_eventlog, replay_eventlog
from trustcore.quote import AttestationKey, VerifiedQuote, verify_quote
from trustcore.tpm import PcrSelection

LOG = EVENTLOGS / "tpm2-tools" / "event-arch-linux.bin"
EXPECTED = json.loads(LOG.with_name("event-arch-linux.expected.json").read_text())["expected_pcrs"]
NAMES = {"sha1": SHA1, "sha256": SHA256}
NONCE = b"n" * 32


def expected(alg: int, pcr: int) -> bytes:
    name = {v: k for k, v in NAMES.items()}[alg]
    return bytes.fromhex(EXPECTED[name][str(pcr)].removeprefix("0x"))


def quoted(
    banks: Mapping[int, Sequence[int]], values: Mapping[int, Mapping[int, bytes]]
) -> VerifiedQuote:
    """A verified quote over ``banks`` holding ``values`` (software AK, tpm2-pytss bytes)."""
    ak = software_ak()
    ordered = [values[alg][pcr] for alg, pcrs in banks.items() for pcr in sorted(pcrs)]
    attest = quote_attest(
        selection=oracle_selection(banks), pcr_digest=pcr_digest(ordered), extra=NONCE
    )
    return verify_quote(
        AttestationKey.from_tpmt_public(ak.public),
        attest,
        ak.sign(attest),
        qualifying_data=NONCE,
        pcr_selection=PcrSelection.of(banks),
        pcr_values=values,
    )


@pytest.fixture(scope="module")
def log() -> EventLog:
    return parse_eventlog(LOG.read_bytes())


def values_for(banks: Mapping[int, Sequence[int]]) -> dict[int, dict[int, bytes]]:
    return {alg: {pcr: expected(alg, pcr) for pcr in pcrs} for alg, pcrs in banks.items()}


def test_log_matching_the_quote_yields_verified_events(log: EventLog) -> None:
    banks = {SHA256: list(range(8))}
    result = verify_events(log, quoted(banks, values_for(banks)))
    assert isinstance(result, VerifiedEvents)
    assert result.verified == {SHA256: frozenset(range(8))}
    assert result.unverified == {SHA1: frozenset(range(9)), SHA256: frozenset({8})}
    assert result.log_format == "crypto-agile"
    measured = [e for e in log.events if e.event_type != 0x03 and e.pcr in range(8)]
    assert result.events == tuple(measured)
    assert all(event.pcr != 8 for event in result.events)


def test_both_banks(log: EventLog) -> None:
    banks = {SHA1: list(range(9)), SHA256: list(range(9))}
    result = verify_events(log, quoted(banks, values_for(banks)))
    assert result.verified == {SHA1: frozenset(range(9)), SHA256: frozenset(range(9))}
    assert result.unverified == {}
    assert len(result.events) == sum(1 for e in log.events if e.event_type != 0x03)


def test_quoted_pcrs_beyond_the_log_are_not_an_error(log: EventLog) -> None:
    banks = {SHA256: [0, 7, 16]}
    values = values_for({SHA256: [0, 7]})
    values[SHA256][16] = hashlib.sha256(b"not in this log").digest()
    result = verify_events(log, quoted(banks, values))
    assert result.verified == {SHA256: frozenset({0, 7})}


@pytest.mark.parametrize("pcr", [0, 4, 7])
def test_one_differing_pcr_is_named(log: EventLog, pcr: int) -> None:
    banks = {SHA256: list(range(8))}
    values = values_for(banks)
    values[SHA256][pcr] = hashlib.sha256(b"tampered").digest()
    with pytest.raises(ReplayMismatch) as info:
        verify_events(log, quoted(banks, values))
    assert info.value.reason == "eventlog.replay_mismatch"
    assert (info.value.alg, info.value.pcr) == (SHA256, pcr)
    assert info.value.quoted == values[SHA256][pcr]
    assert info.value.replayed == expected(SHA256, pcr)
    assert f"bank sha256 PCR {pcr}" in info.value.message


def test_mismatch_in_the_other_bank(log: EventLog) -> None:
    banks = {SHA256: [0], SHA1: [0]}
    values = values_for(banks)
    values[SHA1][0] = bytes(20)
    with pytest.raises(ReplayMismatch) as info:
        verify_events(log, quoted(banks, values))
    assert (info.value.alg, info.value.pcr) == (SHA1, 0)


def test_a_log_that_touches_no_quoted_pcr_is_refused(log: EventLog) -> None:
    banks = {SHA256: [16, 23]}
    quote = quoted(banks, {SHA256: {16: bytes(32), 23: bytes(32)}})
    with pytest.raises(VerificationError) as info:
        verify_events(log, quote)
    assert info.value.reason == "eventlog.not_quoted"


def test_verify_replay_uses_the_given_replay(log: EventLog) -> None:
    banks = {SHA256: [0]}
    quote = quoted(banks, values_for(banks))
    replayed = replay_eventlog(log)
    assert verify_replay(log, replayed, quote).verified == {SHA256: frozenset({0})}
    wrong = {SHA256: {0: bytes(32)}}
    with pytest.raises(ReplayMismatch):
        verify_replay(log, wrong, quote)
