"""End to end on swtpm: PCRs extended as firmware would from a real event log, quoted through
nodeagent.tpm, verified by trustcore (quote, then event-log replay); the verified values equal
the log's expected PCRs computed by tpm2-tools (tests/data/eventlogs/.../expected.json)."""

from __future__ import annotations

import hashlib
import json

import pytest

from nodeagent.tpm import TpmDevice
from tests.conftest import EVENTLOGS
from trustcore.attestation import ReplayMismatch, verify_events
from trustcore.eventlog import PCR_INDEX_NONE, parse_eventlog
from trustcore.eventlog.eventtypes import EV_NO_ACTION
from trustcore.quote import AttestationKey, verify_quote
from trustcore.tpm import PcrSelection
from trustplane.swtpm import Swtpm

LOG = EVENTLOGS / "tpm2-tools" / "event-arch-linux.bin"
EXPECTED = json.loads(LOG.with_name("event-arch-linux.expected.json").read_text())["expected_pcrs"]
SHA1, SHA256 = 0x0004, 0x000B
SELECTION = PcrSelection.of({SHA256: range(10), SHA1: range(10)})
NONCE = hashlib.sha256(b"attestation nonce").digest()


def test_quote_and_event_log_from_swtpm(swtpm: Swtpm) -> None:
    log = parse_eventlog(LOG.read_bytes())
    with TpmDevice(swtpm.tcti) as device:
        for event in log.events:
            if event.event_type != EV_NO_ACTION and event.pcr != PCR_INDEX_NONE:
                device.pcr_extend(event.pcr, event.digests)
        ak, _ = device.create_ak("ecc256")
        key = AttestationKey.from_tpmt_public(ak.public)
        values = device.pcr_read(SELECTION)
        signed = device.quote(ak, SELECTION, NONCE)
        quote = verify_quote(
            key,
            signed.attest,
            signed.signature,
            qualifying_data=NONCE,
            pcr_selection=SELECTION,
            pcr_values=values,
        )
        events = verify_events(log, quote)
        for name, alg in (("sha1", SHA1), ("sha256", SHA256)):
            for pcr, value in EXPECTED[name].items():
                if int(pcr) < 10:
                    assert quote.pcr_values[alg][int(pcr)].hex() == value.removeprefix("0x")
        assert events.verified == {SHA1: frozenset(range(9)), SHA256: frozenset(range(9))}
        assert events.unverified == {}

        # Something the log does not show is extended into PCR 4 afterwards: refused.
        device.pcr_extend(4, {SHA256: hashlib.sha256(b"unlogged").digest()})
        values = device.pcr_read(SELECTION)
        signed = device.quote(ak, SELECTION, NONCE)
        later = verify_quote(
            key,
            signed.attest,
            signed.signature,
            qualifying_data=NONCE,
            pcr_selection=SELECTION,
            pcr_values=values,
        )
    with pytest.raises(ReplayMismatch) as info:
        verify_events(log, later)
    assert (info.value.alg, info.value.pcr) == (SHA256, 4)
