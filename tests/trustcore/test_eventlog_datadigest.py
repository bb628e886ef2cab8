"""trustcore.eventlog.datadigest: the data of event types hashed over their data is checked
against the record's digests; a changed byte shows, appended bytes are refused.

The logs are real (tests/data/eventlogs); the changed ones differ from them in one byte of one
record's data, so their digests (and the replay, and any quote) are exactly the real ones: only
the data check can tell.
"""

from __future__ import annotations

import collections
from pathlib import Path

import pytest

from tests.conftest import EVENTLOGS, expected_logs
from trustcore.errors import ParseError
from trustcore.eventlog import DataCheck, check_event_data, parse_eventlog, replay_eventlog
from trustcore.flavors import (
    Flavor,
    FlavorPart,
    PcrReference,
    Rule,
    RuleKind,
    evaluate_flavor,
    evidence_from_events,
)
from trustcore.flavors.evidence import UNVERIFIED_MARK

DEMO_LOG = EVENTLOGS / "guard-oss-evidence" / "test-before.bin"
# records of the demo's real log, one per kind the review named: a Secure Boot variable, an
# authority, the GPT, two GRUB strings (a command and the kernel command line), a Boot#### entry
# (EDK2 hashes only its VariableData)
CHANGED = {
    3: ("EV_EFI_VARIABLE_DRIVER_CONFIG", "SecureBoot"),
    31: ("EV_EFI_VARIABLE_AUTHORITY", "db"),
    32: ("EV_EFI_GPT_EVENT", "GPT disk"),
    109: ("EV_IPL", "grub_cmd: linux"),
    112: ("EV_IPL", "kernel_cmdline:"),
    15: ("EV_EFI_VARIABLE_BOOT", "Boot0007"),
}


def _flip(raw: bytes, log_offset: int, data: bytes, at: int) -> bytes:
    start = raw.index(data, log_offset)
    pos = start + at
    return raw[:pos] + bytes([raw[pos] ^ 0x01]) + raw[pos + 1 :]


def test_the_demo_logs_chosen_records_verify_as_they_are() -> None:
    log = parse_eventlog(DEMO_LOG.read_bytes())
    for index, (type_name, text) in CHANGED.items():
        event = log.events[index]
        assert event.type_name == type_name
        assert text in event.description
        assert check_event_data(event) is DataCheck.VERIFIED, index


@pytest.mark.parametrize("index", sorted(CHANGED))
def test_one_changed_byte_of_data_is_a_mismatch_with_the_same_replay(index: int) -> None:
    raw = DEMO_LOG.read_bytes()
    log = parse_eventlog(raw)
    event = log.events[index]
    changed_raw = _flip(raw, event.offset, event.data, len(event.data) - 2)
    changed = parse_eventlog(changed_raw)
    assert changed.events[index].data != event.data
    assert replay_eventlog(changed) == replay_eventlog(log)  # replay cannot see it
    assert check_event_data(changed.events[index]) is DataCheck.MISMATCH
    others = [e for e in changed.events if e.index != index]
    assert all(check_event_data(e) is not DataCheck.MISMATCH for e in others)


def _flavor(pcrs: tuple[int, ...]) -> Flavor:
    return Flavor(
        id="data-verified",
        name="data verified",
        part=FlavorPart.PLATFORM,
        bank=0x000B,
        pcrs=tuple(PcrReference(pcr, value=bytes(32)) for pcr in pcrs),
        rules=(Rule(RuleKind.EVENTLOG_DATA_VERIFIED),),
    )


def test_evidence_marks_unverified_data_and_a_rule_can_require_verified_data() -> None:
    raw = DEMO_LOG.read_bytes()
    log = parse_eventlog(raw)
    authority = log.events[31]
    changed = parse_eventlog(_flip(raw, authority.offset, authority.data, 40))
    pcrs = replay_eventlog(log)
    good = evidence_from_events(log.events, pcrs, replay_ok=True)
    bad = evidence_from_events(changed.events, pcrs, replay_ok=True)
    bad_event = next(e for e in bad.events if e.index == 31)
    assert bad_event.data_check == "mismatch"
    assert bad_event.description.startswith(UNVERIFIED_MARK)
    assert bad_event.tags == ()  # its variable name is not used to select or exclude it
    assert next(e for e in good.events if e.index == 31).tags == ("db",)
    result = evaluate_flavor(_flavor((7,)), bad).rules[0]
    assert (result.passed, result.reason) == (False, "flavor.platform.event_data_unverified")
    assert result.actual == "unverified: PCR 7 event 31 EV_EFI_VARIABLE_AUTHORITY"
    assert evaluate_flavor(_flavor((7,)), good).rules[0].passed
    # the rule looks only at the flavor's PCRs
    assert evaluate_flavor(_flavor((4, 5)), bad).rules[0].passed


# every record of the corpus whose data does not give its digests (found by a separate scan
# of the corpus before this module existed): another form was measured than logged
KNOWN_MISMATCHES = {
    "go-attestation/sb_cert_eventlog.bin": {
        12: "EV_EFI_VARIABLE_AUTHORITY",
        14: "EV_EFI_VARIABLE_AUTHORITY",
    },
    "go-tpm-tools/arch-linux-workstation.bin": {24: "EV_IPL"},
    "go-tpm-tools/cos-85-amd-sev.bin": {
        24: "EV_EFI_VARIABLE_AUTHORITY",
        42: "EV_EFI_VARIABLE_AUTHORITY",
    },
    "go-tpm-tools/cos-93-amd-sev.bin": {
        24: "EV_EFI_VARIABLE_AUTHORITY",
        42: "EV_EFI_VARIABLE_AUTHORITY",
    },
    "go-tpm-tools/gdc-host.bin": {3: "EV_S_CRTM_VERSION"},
    "guard-oss-evidence/IMN-DELL.bin": {2: "EV_S_CRTM_VERSION"},
    "tpm2-tools/event-arch-linux.bin": {24: "EV_IPL"},
}


def test_the_corpus() -> None:
    verified: collections.Counter[str] = collections.Counter()
    mismatched: dict[str, dict[int, str]] = {}
    for path, expected in expected_logs():
        if expected["expected_pcrs"] is None:
            continue
        for event in parse_eventlog(path.read_bytes()).events:
            check = check_event_data(event)
            if check is DataCheck.VERIFIED:
                verified[event.type_name] += 1
            elif check is DataCheck.MISMATCH:
                name = str(path.relative_to(EVENTLOGS))
                mismatched.setdefault(name, {})[event.index] = event.type_name
    assert mismatched == KNOWN_MISMATCHES
    for kind in (
        "EV_EFI_VARIABLE_DRIVER_CONFIG",
        "EV_EFI_VARIABLE_BOOT",
        "EV_EFI_VARIABLE_AUTHORITY",
        "EV_EFI_GPT_EVENT",
        "EV_SEPARATOR",
        "EV_EFI_ACTION",
        "EV_IPL",
    ):
        assert verified[kind] >= 40, kind


@pytest.mark.parametrize(
    ("tail", "reason"),
    [
        (b"\x01", "eventlog.trailing_data"),
        (b"junk!", "eventlog.trailing_data"),
        (b"\x00\x00\x00\x00\x00\x00\x07", "eventlog.trailing_data"),
        (b"A" * 12, "eventlog.truncated"),
    ],
)
def test_bytes_appended_after_the_last_record_are_refused(tail: bytes, reason: str) -> None:
    raw = DEMO_LOG.read_bytes().rstrip(b"\x00").rstrip(b"\xff")
    parse_eventlog(raw)
    parse_eventlog(raw + b"\x00" * 64)  # fill is fine
    with pytest.raises(ParseError) as err:
        parse_eventlog(raw + tail)
    assert err.value.reason == reason


def test_the_header_vendor_data_quirk_is_still_a_log(tmp_path: Path) -> None:
    # tpm2-tools' fixture: the Spec ID header's size leaves out its 4 vendor bytes, which
    # follow it; they are the header's, not appended data
    data = (EVENTLOGS / "tpm2-tools" / "specid-vendordata.bin").read_bytes()
    assert len(parse_eventlog(data).events) == 1
    with pytest.raises(ParseError, match="neither a record nor fill"):
        parse_eventlog(data + b"\x05")
