"""trustcore.eventlog: every real log in tests/data/eventlogs, the replay rules, named bad inputs.

The expected values come from each log's ``.expected.json`` (other projects' tools and the real
TPMs), or are computed here with hashlib from hand-built logs, never from our own output.
"""

from __future__ import annotations

import hashlib
import re
import struct
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import EVENTLOGS, expected_logs
from trustcore.algorithms import HASH_ALGORITHMS, TPM_ALG_SHA1, TPM_ALG_SHA256, TPM_ALG_SHA384
from trustcore.errors import ParseError, TrustcoreError
from trustcore.eventlog import (
    MAX_EVENTS,
    MAX_LOG_BYTES,
    PCR_INDEX_NONE,
    Event,
    EventLog,
    parse_eventlog,
    replay_eventlog,
    startup_locality,
)

LOGS = expected_logs()
ACCEPTED = [(p, e) for p, e in LOGS if e["expected_pcrs"] is not None]
REJECTED = [(p, e) for p, e in LOGS if e["expected_pcrs"] is None]
NAMES = {a.name: a.alg_id for a in HASH_ALGORITHMS.values()}
# The reason each kind of rejected file must be refused with.
REJECT_REASONS = {"txt-heap-image": "eventlog.not_an_event_log", "empty": "eventlog.empty"}


def log_id(item: tuple[Path, dict[str, Any]]) -> str:
    return str(item[0].relative_to(EVENTLOGS))


def replay_hex(log: EventLog) -> dict[str, dict[str, str]]:
    by_id = {a.alg_id: a.name for a in HASH_ALGORITHMS.values()}
    return {
        by_id[alg]: {str(pcr): value.hex() for pcr, value in bank.items()}
        for alg, bank in replay_eventlog(log).items()
    }


def test_the_shared_logs_are_all_there() -> None:
    assert len(LOGS) == 53
    assert len(REJECTED) == 2


@pytest.mark.parametrize(("path", "expected"), ACCEPTED, ids=[log_id(x) for x in ACCEPTED])
def test_real_log_parses_and_replays_to_the_expected_pcrs(
    path: Path, expected: dict[str, Any]
) -> None:
    log = parse_eventlog(path.read_bytes())
    assert len(log.events) == expected["events"]
    assert log.format == expected["format"].split()[0]
    assert log.trailing_bytes == (expected.get("trailing_bytes") or {}).get("count", 0)
    assert [e.index for e in log.events] == list(range(expected["events"]))
    # Replay covers exactly the PCRs some event extends, with the expected values.
    assert replay_hex(log) == expected["expected_pcrs"]


@pytest.mark.parametrize(("path", "expected"), ACCEPTED, ids=[log_id(x) for x in ACCEPTED])
def test_real_log_still_matches_the_tpm_where_it_did(path: Path, expected: dict[str, Any]) -> None:
    matches = (expected.get("tpm_pcrs_vs_replay") or {}).get("match", [])
    replayed = replay_hex(parse_eventlog(path.read_bytes()))
    for item in matches:
        bank, pcr = item.split(":")
        assert replayed[bank][pcr] == expected["tpm_pcrs"][bank][pcr], item


@pytest.mark.parametrize(("path", "expected"), ACCEPTED, ids=[log_id(x) for x in ACCEPTED])
def test_real_log_types_pcrs_and_banks(path: Path, expected: dict[str, Any]) -> None:
    log = parse_eventlog(path.read_bytes())
    names = {e.type_name for e in log.events}
    # The .expected.json describes tboot's 0x501 in words; its spec name is ours to choose.
    wanted = {
        "TPM_EVT_TBOOT_HASH" if t.startswith("tboot measurement (0x501") else t
        for t in expected["event_types"]
    }
    assert names == wanted
    assert sorted({e.pcr for e in log.events}) == expected["pcr_indices"]
    spec = expected.get("spec_id")
    if spec is not None:
        assert log.algorithms == tuple(int(a["algorithmId"], 16) for a in spec["algorithms"])
    else:
        assert log.algorithms == (TPM_ALG_SHA1,)
    minus1 = [e for e in log.events if e.pcr == PCR_INDEX_NONE]
    assert len(minus1) == expected.get("pcr_minus1_events", 0)


@pytest.mark.parametrize(("path", "expected"), ACCEPTED, ids=[log_id(x) for x in ACCEPTED])
def test_real_log_features_are_seen(path: Path, expected: dict[str, Any]) -> None:
    """The per-event quirks listed in ``features`` show up in the parsed events."""
    log = parse_eventlog(path.read_bytes())
    for feature in expected["features"]:
        if m := re.fullmatch(r"event (\d+): DigestCount (\d+) != \d+ .*\((\[.*\])\)", feature):
            event = log.events[int(m[1])]
            banks = {NAMES[b.strip("' ")] for b in m[3].strip("[]").split(",")}
            assert set(event.digests) == banks
            assert len(event.digests) == int(m[2])
        elif m := re.fullmatch(r"event (\d+): PCR index 0xffffffff \(type 0x(\w+)\)", feature):
            event = log.events[int(m[1])]
            assert (event.pcr, event.event_type) == (PCR_INDEX_NONE, int(m[2], 16))
        elif m := re.fullmatch(r"StartupLocality event \(locality (\d)\) at index (\d+)", feature):
            assert log.events[int(m[2])].data == b"StartupLocality\0" + bytes([int(m[1])])
            assert startup_locality(log) == int(m[1])
        elif m := re.fullmatch(r"SP800-155 .* \((SP800-155 Event3?)\) at index (\d+)", feature):
            assert log.events[int(m[2])].data.startswith(m[1].encode())
        else:
            assert re.fullmatch(r"\.\.\. \d+ more", feature), f"unknown feature {feature!r}"


@pytest.mark.parametrize(("path", "expected"), REJECTED, ids=[log_id(x) for x in REJECTED])
def test_files_that_are_not_logs_are_rejected_cleanly(path: Path, expected: dict[str, Any]) -> None:
    with pytest.raises(ParseError) as info:
        parse_eventlog(path.read_bytes())
    assert info.value.reason == REJECT_REASONS[expected["format"]]
    assert "\n" not in str(info.value)
    assert info.value.offset == 0


def test_heap_image_is_named_as_memory_not_a_log() -> None:
    with pytest.raises(ParseError) as info:
        parse_eventlog((EVENTLOGS / "intel-secl" / "txt_heap_info.bin").read_bytes())
    text = info.value.describe()
    assert text.startswith("eventlog.not_an_event_log: not an event log but a memory image")
    assert "TXT heap at 0x1000" in text


def test_header_whose_size_misses_the_vendor_info_leaves_it_as_trailing_bytes() -> None:
    strict = parse_eventlog((EVENTLOGS / "tpm2-tss" / "specid-vendordata.bin").read_bytes())
    short = parse_eventlog((EVENTLOGS / "tpm2-tools" / "specid-vendordata.bin").read_bytes())
    assert (len(strict.events), strict.trailing_bytes) == (1, 0)
    assert (len(short.events), short.trailing_bytes) == (1, 4)
    assert short.algorithms == strict.algorithms == (TPM_ALG_SHA1, TPM_ALG_SHA256)


# --- hand-built logs: the replay rules --------------------------------------------------------

SIZES = {TPM_ALG_SHA1: 20, TPM_ALG_SHA256: 32, TPM_ALG_SHA384: 48}


def spec_id(algs: list[tuple[int, int]], vendor: bytes = b"") -> bytes:
    body = b"Spec ID Event03\0" + struct.pack("<IBBBBI", 0, 0, 2, 0, 2, len(algs))
    body += b"".join(struct.pack("<HH", a, s) for a, s in algs)
    return body + bytes([len(vendor)]) + vendor


def legacy_record(pcr: int, etype: int, digest: bytes, data: bytes) -> bytes:
    return struct.pack("<II20sI", pcr, etype, digest, len(data)) + data


def header(algs: tuple[int, ...] = (TPM_ALG_SHA1, TPM_ALG_SHA256)) -> bytes:
    return legacy_record(0, 3, bytes(20), spec_id([(a, SIZES[a]) for a in algs]))


def agile_record(pcr: int, etype: int, digests: dict[int, bytes], data: bytes) -> bytes:
    out = struct.pack("<III", pcr, etype, len(digests))
    for alg, value in digests.items():
        out += struct.pack("<H", alg) + value
    return out + struct.pack("<I", len(data)) + data


def measured(
    data: bytes, algs: tuple[int, ...] = (TPM_ALG_SHA1, TPM_ALG_SHA256)
) -> dict[int, bytes]:
    return {a: hashlib.new(HASH_ALGORITHMS[a].name, data).digest() for a in algs}


def extend(alg: int, start: bytes, *digests: bytes) -> bytes:
    value = start
    for d in digests:
        value = hashlib.new(HASH_ALGORITHMS[alg].name, value + d).digest()
    return value


LOCALITY3 = agile_record(
    0, 3, {TPM_ALG_SHA1: bytes(20), TPM_ALG_SHA256: bytes(32)}, b"StartupLocality\0\x03"
)
SEP = agile_record(7, 4, measured(b"\0\0\0\0"), b"\0\0\0\0")


def test_replay_starts_at_zero_and_extends_in_order() -> None:
    a, b = measured(b"a"), measured(b"b")
    log = parse_eventlog(header() + agile_record(0, 8, a, b"a") + agile_record(0, 1, b, b"b"))
    assert (log.format, len(log.events), log.trailing_bytes) == ("crypto-agile", 3, 0)
    assert replay_eventlog(log) == {
        TPM_ALG_SHA1: {0: extend(TPM_ALG_SHA1, bytes(20), a[TPM_ALG_SHA1], b[TPM_ALG_SHA1])},
        TPM_ALG_SHA256: {
            0: extend(TPM_ALG_SHA256, bytes(32), a[TPM_ALG_SHA256], b[TPM_ALG_SHA256])
        },
    }


@pytest.mark.parametrize("locality", [3, 4])
def test_startup_locality_sets_pcr0_start(locality: int) -> None:
    marker = agile_record(
        0,
        3,
        {TPM_ALG_SHA1: bytes(20), TPM_ALG_SHA256: bytes(32)},
        b"StartupLocality\0" + bytes([locality]),
    )
    d = measured(b"crtm")
    log = parse_eventlog(header() + marker + agile_record(0, 8, d, b"crtm") + SEP)
    pcrs = replay_eventlog(log)
    start = bytes(31) + bytes([locality])
    assert pcrs[TPM_ALG_SHA256][0] == extend(TPM_ALG_SHA256, start, d[TPM_ALG_SHA256])
    assert pcrs[TPM_ALG_SHA1][0] == extend(
        TPM_ALG_SHA1, bytes(19) + bytes([locality]), d[TPM_ALG_SHA1]
    )
    # Locality touches PCR 0 only.
    assert pcrs[TPM_ALG_SHA256][7] == extend(
        TPM_ALG_SHA256, bytes(32), measured(b"\0\0\0\0")[TPM_ALG_SHA256]
    )


def test_no_action_and_pcr_minus_one_records_are_counted_but_never_extended() -> None:
    d = measured(b"x")
    log = parse_eventlog(
        header()
        + LOCALITY3
        + agile_record(PCR_INDEX_NONE, 5, d, b"x")
        + agile_record(4, 3, d, b"x")
        + SEP
    )
    assert len(log.events) == 5
    assert set(replay_eventlog(log)[TPM_ALG_SHA256]) == {7}


def test_a_record_extends_only_the_banks_it_carries() -> None:
    header4 = header((TPM_ALG_SHA1, TPM_ALG_SHA256, TPM_ALG_SHA384))
    only256 = measured(b"y", (TPM_ALG_SHA256,))
    log = parse_eventlog(header4 + agile_record(5, 0x80000007, only256, b"y"))
    assert replay_eventlog(log) == {
        TPM_ALG_SHA256: {5: extend(TPM_ALG_SHA256, bytes(32), only256[TPM_ALG_SHA256])}
    }
    assert log.algorithms == (TPM_ALG_SHA1, TPM_ALG_SHA256, TPM_ALG_SHA384)


@pytest.mark.parametrize("fill", [b"\0", b"\xff"])
@pytest.mark.parametrize("length", [1, 15, 16, 4096])
def test_fill_after_the_last_record_ends_the_log(fill: bytes, length: int) -> None:
    log = parse_eventlog(header() + SEP + fill * length)
    assert (len(log.events), log.trailing_bytes) == (2, length)


def test_legacy_log_with_startup_locality_and_fill() -> None:
    d = hashlib.sha1(b"v").digest()
    raw = (
        legacy_record(0, 3, bytes(20), b"StartupLocality\0\x03")
        + legacy_record(0, 8, d, b"v")
        + legacy_record(PCR_INDEX_NONE, 3, d, b"w")
        + bytes(64)
    )
    log = parse_eventlog(raw)
    assert (log.format, len(log.events), log.trailing_bytes) == ("sha1-legacy", 3, 64)
    assert replay_eventlog(log) == {TPM_ALG_SHA1: {0: extend(TPM_ALG_SHA1, bytes(19) + b"\3", d)}}


def test_txt_event_types_make_a_txt_log() -> None:
    d = measured(b"sinit")
    log = parse_eventlog(
        header() + agile_record(17, 0x402, d, b"") + agile_record(17, 0x501, d, b"")
    )
    assert log.format == "txt"


def test_events_are_frozen_and_digests_read_only() -> None:
    log = parse_eventlog(header() + SEP)
    event = log.events[1]
    assert isinstance(event, Event)
    assert event == Event(1, 7, 4, measured(b"\0\0\0\0"), b"\0\0\0\0", event.offset)
    with pytest.raises(TypeError):
        event.digests[TPM_ALG_SHA1] = b""  # type: ignore[index]
    assert hash(event) == hash(Event(1, 7, 4, {}, b"\0\0\0\0", event.offset))


def test_eventlog_refuses_an_unknown_format() -> None:
    with pytest.raises(TrustcoreError) as info:
        EventLog("yaml", (), ())
    assert info.value.reason == "eventlog.bad_format"


# --- named bad inputs -------------------------------------------------------------------------

GOOD = header() + SEP
HEADER_LEN = len(header())


def spec_with(algs: list[tuple[int, int]]) -> bytes:
    return legacy_record(0, 3, bytes(20), spec_id(algs))


BAD_INPUTS: dict[str, tuple[bytes, str, int]] = {
    "zero-length": (b"", "eventlog.empty", 0),
    "only zero fill": (bytes(100), "eventlog.empty", 0),
    "only 0xff fill": (b"\xff" * 100, "eventlog.empty", 0),
    "shorter than one record": (b"\x01" * 31, "eventlog.truncated", 0),
    "truncated header": (GOOD[:40], "eventlog.truncated", 28),
    "header event size beyond end": (GOOD[: HEADER_LEN - 1], "eventlog.truncated", 28),
    "no algorithms in header": (spec_with([]), "eventlog.bad_header", 56),
    "unknown algorithm in header": (
        spec_with([(TPM_ALG_SHA256, 32), (0x0099, 32)]),
        "eventlog.unknown_algorithm",
        64,
    ),
    "wrong digest size in header": (spec_with([(TPM_ALG_SHA256, 20)]), "eventlog.bad_header", 60),
    "algorithm twice in header": (
        spec_with([(TPM_ALG_SHA1, 20), (TPM_ALG_SHA1, 20)]),
        "eventlog.bad_header",
        64,
    ),
    "digest count huge": (
        header() + struct.pack("<III", 7, 4, 0xFFFFFFFF) + bytes(40),
        "eventlog.bad_digest_count",
        HEADER_LEN + 8,
    ),
    "digest count zero": (
        header() + struct.pack("<III", 7, 4, 0) + bytes(40),
        "eventlog.bad_digest_count",
        HEADER_LEN + 8,
    ),
    "digest count above header banks": (
        header() + struct.pack("<III", 7, 4, 3) + bytes(120),
        "eventlog.bad_digest_count",
        HEADER_LEN + 8,
    ),
    "digest of an unlisted algorithm": (
        header() + agile_record(7, 4, {TPM_ALG_SHA384: bytes(48)}, b""),
        "eventlog.unknown_algorithm",
        HEADER_LEN + 12,
    ),
    "same digest twice": (
        header() + struct.pack("<III", 7, 4, 2) + (struct.pack("<H", 4) + bytes(20)) * 2 + bytes(4),
        "eventlog.duplicate_digest",
        HEADER_LEN + 34,
    ),
    "event size beyond end": (
        header() + agile_record(7, 4, measured(b""), b"abcd")[:-1],
        "eventlog.truncated",
        HEADER_LEN + 12 + 22 + 34,
    ),
    "digest beyond end": (
        (header() + agile_record(7, 4, measured(b""), b""))[: HEADER_LEN + 50],
        "eventlog.truncated",
        HEADER_LEN + 36,
    ),
    "last record cut inside its digest list": (
        GOOD + agile_record(7, 4, measured(b""), b"")[:20],
        "eventlog.truncated",
        len(GOOD),
    ),
    "legacy last record cut before its digest": (
        legacy_record(0, 8, bytes(20), b"v") + struct.pack("<II", 1, 8) + b"\x01\x02",
        "eventlog.truncated",
        33,
    ),
    "PCR index 24": (
        header() + agile_record(24, 4, measured(b""), b""),
        "eventlog.bad_pcr_index",
        HEADER_LEN,
    ),
    "legacy event size beyond end": (
        legacy_record(0, 8, bytes(20), b"v") + struct.pack("<II20sI", 0, 8, bytes(20), 99),
        "eventlog.truncated",
        33 + 28,
    ),
    "garbage": (hashlib.sha256(b"garbage").digest() * 64, "eventlog.not_an_event_log", 0),
    "too large": (b"\x01" * (MAX_LOG_BYTES + 1), "eventlog.too_large", 0),
    "too many records": (
        legacy_record(1, 1, b"\x11" * 20, b"") * (MAX_EVENTS + 1),
        "eventlog.too_many_events",
        32 * MAX_EVENTS,
    ),
}


@pytest.mark.parametrize(("data", "reason", "offset"), BAD_INPUTS.values(), ids=BAD_INPUTS.keys())
def test_bad_input_is_refused_with_its_reason(data: bytes, reason: str, offset: int) -> None:
    with pytest.raises(ParseError) as info:
        parse_eventlog(data)
    assert info.value.reason == reason
    assert info.value.offset == offset
    assert "\n" not in info.value.describe()
