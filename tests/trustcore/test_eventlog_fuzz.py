"""Fuzzing the event-log parser, replay, decoders and heap walk with Hypothesis.

Random bytes and mutated real logs (bit flips, truncations, insertions, overwritten length
fields) must either parse or raise ParseError, never anything else, and quickly. A parsed log
must replay and describe itself without error.
"""

from __future__ import annotations

import contextlib
import struct
from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import EVENTLOGS, expected_logs
from trustcore.algorithms import UnsupportedAlgorithm
from trustcore.errors import ParseError
from trustcore.eventlog import (
    ReplayError,
    check_event_data,
    describe_event_data,
    locate_txt_eventlog,
    locate_txt_eventlog_in_image,
    parse_eventlog,
    replay_eventlog,
)

REAL = [p.read_bytes() for p, e in expected_logs() if e["expected_pcrs"] is not None]
SMALL = sorted(REAL, key=len)[:20]
IMAGE = (EVENTLOGS / "intel-secl" / "txt_heap_info.bin").read_bytes()
HEAP_BASE = struct.unpack_from("<Q", IMAGE, 0)[0]
# The heap's tables (and the log inside OsMleData) end before heap offset 0x16400: a copy of the
# image cut there, with its header saying so, keeps the mutations where they matter.
HEAP_TABLES = struct.pack("<QQ", HEAP_BASE, 0x16400) + IMAGE[16 : HEAP_BASE + 0x16400]
INTERESTING_U32 = [0, 1, 2, 3, 0x17, 0x18, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFE, 0xFFFFFFFF]

FUZZ = settings(
    max_examples=400,
    deadline=timedelta(milliseconds=2000),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


PCR0_REASONS = frozenset(
    {
        "eventlog.bad_startup_locality",
        "eventlog.startup_locality_misplaced",
        "eventlog.startup_locality_repeated",
        "eventlog.hcrtm_misplaced",
        "eventlog.hcrtm_locality_conflict",
    }
)


def check_total(data: bytes) -> None:
    """Parse; on success replay and describe everything. Only ParseError may escape parse."""
    error: ParseError | None = None
    try:
        log = parse_eventlog(data)
    except ParseError as e:
        error = e
    if error is not None:
        assert "\n" not in error.describe()
        assert 0 <= error.offset <= len(data)
        return
    # Replay refuses a bank this Python cannot hash (SM3 without OpenSSL support) and records
    # that break PCR 0's start rules (StartupLocality, H-CRTM), each with its reason id.
    refused: ReplayError | None = None
    try:
        replay_eventlog(log)
    except UnsupportedAlgorithm:
        pass
    except ReplayError as e:
        refused = e
    if refused is not None:
        assert refused.reason in PCR0_REASONS, refused.describe()
    for event in log.events:
        assert event.type_name
        assert "\n" not in event.description
        check_event_data(event)  # never raises


@st.composite
def mutated_logs(draw: st.DrawFn, sources: list[bytes]) -> bytes:
    data = bytearray(draw(st.sampled_from(sources)))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "truncate", "insert", "u32", "delete"]))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif kind == "truncate":
            del data[pos:]
        elif kind == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=64))
        elif kind == "delete":
            del data[pos : pos + draw(st.integers(1, 64))]
        elif kind == "u32" and len(data) >= 4:
            pos = min(pos, len(data) - 4)
            data[pos : pos + 4] = struct.pack("<I", draw(st.sampled_from(INTERESTING_U32)))
    return bytes(data)


@FUZZ
@given(st.binary(max_size=4096))
def test_random_bytes_parse_or_raise_parse_error(data: bytes) -> None:
    check_total(data)


@FUZZ
@given(st.sampled_from(SMALL[:6]), st.binary(max_size=512))
def test_valid_prefix_then_random_records(prefix: bytes, tail: bytes) -> None:
    check_total(prefix + tail)


@settings(FUZZ, max_examples=1000)
@given(mutated_logs(SMALL))
def test_mutated_real_logs_parse_or_raise_parse_error(data: bytes) -> None:
    check_total(data)


@settings(FUZZ, max_examples=100)
@given(mutated_logs(sorted(REAL, key=len)[-6:]))
def test_mutated_large_real_logs_parse_or_raise_parse_error(data: bytes) -> None:
    check_total(data)


@FUZZ
@given(st.integers(0, 0xFFFFFFFF), st.binary(max_size=2048))
def test_decoders_never_raise(event_type: int, data: bytes) -> None:
    text = describe_event_data(event_type, data)
    assert text
    assert "\n" not in text


@FUZZ
@given(
    st.sampled_from([0x80000001, 0x80000002, 0x80000003, 0x80000006, 0x800000E0, 0x3]),
    st.binary(max_size=1024),
)
def test_uefi_decoders_never_raise(event_type: int, data: bytes) -> None:
    assert describe_event_data(event_type, data)


@settings(FUZZ, max_examples=300)
@given(mutated_logs([HEAP_TABLES]))
def test_mutated_heap_image_walks_or_raises_parse_error(data: bytes) -> None:
    for walk in (locate_txt_eventlog_in_image, lambda d: locate_txt_eventlog(d[HEAP_BASE:])):
        error: ParseError | None = None
        try:
            where = walk(data)
        except ParseError as e:
            error = e
        if error is None:
            assert 0 <= where.size <= where.container_size
        else:
            assert "\n" not in str(error)


@FUZZ
@given(st.binary(max_size=1024))
def test_random_heaps_walk_or_raise_parse_error(data: bytes) -> None:
    with contextlib.suppress(ParseError):
        locate_txt_eventlog(data, heap_base=0x1000)
