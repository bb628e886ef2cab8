"""The TXT heap walk: the real intel-secl heap image, and hand-built heaps that are wrong.

Expected offsets come from ``txt_heap_eventlog.expected.json`` (the byte range it was carved
from) and the Intel TXT MLE developer's guide layouts, not from our own output.
"""

from __future__ import annotations

import json
import re
import struct
from typing import Any

import pytest

from tests.conftest import EVENTLOGS
from trustcore.errors import ParseError
from trustcore.eventlog import (
    locate_txt_eventlog,
    locate_txt_eventlog_in_image,
    parse_eventlog,
    read_txt_eventlog_from_image,
    replay_eventlog,
)

IMAGE = (EVENTLOGS / "intel-secl" / "txt_heap_info.bin").read_bytes()
LOG = (EVENTLOGS / "intel-secl" / "txt_heap_eventlog.bin").read_bytes()
LOG_EXPECTED: dict[str, Any] = json.loads(
    (EVENTLOGS / "intel-secl" / "txt_heap_eventlog.expected.json").read_text()
)
# "bytes [0x1114c, 0x1314c) of txt_heap_info.bin ...": where the carved log came from.
_RANGE = re.search(r"\[0x([0-9a-f]+), 0x([0-9a-f]+)\)", LOG_EXPECTED["source"]["extract"])
assert _RANGE is not None
LOG_START, LOG_END = int(_RANGE[1], 16), int(_RANGE[2], 16)
USED = LOG_EXPECTED["trailing_bytes"]["start_offset"]
HEAP_BASE, HEAP_SIZE = struct.unpack_from("<QQ", IMAGE, 0)


def test_walk_finds_exactly_the_carved_log_up_to_its_fill() -> None:
    where = locate_txt_eventlog_in_image(IMAGE)
    assert where.offset == LOG_START
    assert where.size == USED
    assert where.container_size == LOG_END - LOG_START == len(LOG)
    assert where.os_sinit_version == 7
    found = read_txt_eventlog_from_image(IMAGE)
    assert found == LOG[:USED]
    assert LOG[USED:] == bytes(len(LOG) - USED)


def test_found_log_parses_as_txt_and_replays_to_the_expected_pcrs() -> None:
    log = parse_eventlog(read_txt_eventlog_from_image(IMAGE))
    assert (log.format, len(log.events), log.trailing_bytes) == ("txt", LOG_EXPECTED["events"], 0)
    replayed = {
        {4: "sha1", 11: "sha256"}[alg]: {str(p): v.hex() for p, v in bank.items()}
        for alg, bank in replay_eventlog(log).items()
    }
    assert replayed == LOG_EXPECTED["expected_pcrs"]


def test_walk_over_the_heap_alone_reports_physical_addresses() -> None:
    heap = IMAGE[HEAP_BASE : HEAP_BASE + HEAP_SIZE]
    where = locate_txt_eventlog(heap)
    # This image records the container address relative to the heap.
    assert where.address == where.container_address == LOG_START - HEAP_BASE
    assert where.offset is None
    assert locate_txt_eventlog(heap, heap_base=HEAP_BASE).offset == where.address - HEAP_BASE
    assert locate_txt_eventlog(heap, heap_base=0x7000_0000).offset is None


# --- hand-built heaps ---------------------------------------------------------------------------


def element(etype: int, payload: bytes) -> bytes:
    return struct.pack("<II", etype, 8 + len(payload)) + payload


def heap(
    *,
    version: int = 7,
    elements: bytes | None = None,
    bios: bytes = b"B" * 20,
    os_mle: bytes = b"M" * 40,
) -> bytes:
    """BiosData, OsMleData, OsSinitData (with extended elements), SinitMleData."""
    if elements is None:
        elements = element(8, struct.pack("<QIII", 0x7F001000, 0x2000, 0, 0x6BA)) + element(0, b"")
    sinit = struct.pack("<II", version, 0) + bytes(84) + elements
    out = b""
    for body in (bios, os_mle, sinit, b"S" * 16):
        out += struct.pack("<Q", 8 + len(body)) + body
    return out


def test_hand_built_heap_is_walked() -> None:
    where = locate_txt_eventlog(heap(), heap_base=0x7F000000)
    assert (where.address, where.size, where.container_size) == (0x7F001000, 0x6BA, 0x2000)
    assert where.offset is None  # the log lies outside this small heap


def test_log_inside_the_heap_gets_its_offset() -> None:
    inside = element(8, struct.pack("<QIII", 0x7F000010, 0x40, 0, 0x20)) + element(0, b"")
    where = locate_txt_eventlog(heap(elements=inside), heap_base=0x7F000000)
    assert (where.offset, where.size) == (0x10, 0x20)


def test_first_record_offset_moves_the_start() -> None:
    elements = element(3, b"stm!") + element(8, struct.pack("<QIII", 0x5000, 0x100, 0x20, 0x80))
    where = locate_txt_eventlog(heap(elements=elements + element(0, b"")))
    assert (where.address, where.size, where.container_address) == (0x5020, 0x60, 0x5000)


BAD_HEAPS: dict[str, tuple[bytes, str]] = {
    "empty": (b"", "txtheap.truncated"),
    "BiosData larger than the heap": (struct.pack("<Q", 4096) + bytes(64), "txtheap.bad_table"),
    "BiosData size below 8": (struct.pack("<Q", 4) + bytes(64), "txtheap.bad_table"),
    "OsSinitData version 5": (heap(version=5), "txtheap.no_extended_data"),
    "no log pointer": (
        heap(elements=element(3, b"x" * 8) + element(0, b"")),
        "txtheap.no_log_pointer",
    ),
    "only a TPM 1.2 log pointer": (
        heap(elements=element(5, struct.pack("<Q", 0x1000)) + element(0, b"")),
        "txtheap.unsupported_log_pointer",
    ),
    "element size below 8": (
        heap(elements=struct.pack("<II", 8, 4) + bytes(24)),
        "txtheap.bad_element",
    ),
    "log pointer element too short": (
        heap(elements=element(8, bytes(12)) + element(0, b"")),
        "txtheap.bad_element",
    ),
    "next record beyond the container": (
        heap(elements=element(8, struct.pack("<QIII", 0x1000, 0x100, 0, 0x200)) + element(0, b"")),
        "txtheap.bad_log_pointer",
    ),
    "first record after next": (
        heap(
            elements=element(8, struct.pack("<QIII", 0x1000, 0x100, 0x80, 0x40)) + element(0, b"")
        ),
        "txtheap.bad_log_pointer",
    ),
}


@pytest.mark.parametrize(("data", "reason"), BAD_HEAPS.values(), ids=BAD_HEAPS.keys())
def test_bad_heap_is_refused_with_its_reason(data: bytes, reason: str) -> None:
    with pytest.raises(ParseError) as info:
        locate_txt_eventlog(data)
    assert info.value.reason == reason
    assert "\n" not in str(info.value)


BAD_IMAGES: dict[str, tuple[bytes, str]] = {
    "shorter than its header": (b"\0" * 15, "txtheap.bad_image"),
    "heap beyond the image": (
        struct.pack("<QQ", 0x1000, 0x100000) + bytes(0x2000),
        "txtheap.bad_image",
    ),
    "pointer to no log": (struct.pack("<QQ", 16, len(heap())) + heap(), "txtheap.log_not_found"),
    "an event log is not an image": (LOG, "txtheap.bad_image"),
}


@pytest.mark.parametrize(("data", "reason"), BAD_IMAGES.values(), ids=BAD_IMAGES.keys())
def test_bad_image_is_refused_with_its_reason(data: bytes, reason: str) -> None:
    with pytest.raises(ParseError) as info:
        locate_txt_eventlog_in_image(data)
    assert info.value.reason == reason
