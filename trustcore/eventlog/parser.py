"""Parse TCG event logs: crypto-agile, legacy SHA-1, and Intel TXT DRTM logs.

Formats (TCG PC Client Platform Firmware Profile):

- crypto-agile: a Spec ID Event03 header in the legacy TCG_PCClientPCREvent layout, then
  TCG_PCR_EVENT2 records (PCR, type, TPML_DIGEST_VALUES, event size, event data). A log whose
  records include Intel TXT SINIT (0x400-0x4ff) or tboot (0x500-0x5ff) events is reported as
  ``txt``.
- sha1-legacy: TCG_PCClientPCREvent records only (PCR, type, SHA-1 digest, size, data).

The parse is total and bounded: every length is checked against what remains, the input and
the number of records are capped, and bad input raises :class:`~trustcore.errors.ParseError`
with the offset and a reason id (``eventlog.empty``, ``eventlog.truncated``,
``eventlog.bad_header``, ``eventlog.bad_digest_count``, ``eventlog.unknown_algorithm``,
``eventlog.bad_pcr_index``, ``eventlog.not_an_event_log``, ...). Parsing stops cleanly at 0x00 or
0xFF fill after the last record, and at a tail too short to hold any record; both are counted in
``trailing_bytes``. Event data is not interpreted here (see
:mod:`trustcore.eventlog.descriptions`), and nothing is verified: the result is an
:class:`~trustcore.eventlog.records.EventLog`, unverified by type.
"""

from __future__ import annotations

import struct
from types import MappingProxyType
from typing import Final

from trustcore.algorithms import TPM_ALG_SHA1
from trustcore.errors import ParseError
from trustcore.eventlog.eventtypes import EV_NO_ACTION, is_txt_event_type
from trustcore.eventlog.records import (
    FORMAT_CRYPTO_AGILE,
    FORMAT_SHA1_LEGACY,
    FORMAT_TXT,
    PCR_INDEX_NONE,
    Event,
    EventLog,
)
from trustcore.eventlog.specid import SPEC_ID_SIGNATURE_03, parse_spec_id_event
from trustcore.eventlog.txtheap import describe_memory_image

MAX_LOG_BYTES: Final = 16 * 1024 * 1024
MAX_EVENTS: Final = 20_000
"""Real boot logs hold hundreds of records (a few thousand at most); this bounds memory and time."""
PCR_COUNT: Final = 24
"""PCRs 0-23: the PC Client platform's PCRs; 0xFFFFFFFF marks records that extend nothing."""

_LEGACY: Final = struct.Struct("<II20sI")  # TCG_PCClientPCREvent up to the data: 32 bytes
_AGILE_HEAD: Final = struct.Struct("<III")  # PCR, type, digest count
_U16: Final = struct.Struct("<H")
_U32: Final = struct.Struct("<I")


def parse_eventlog(data: bytes) -> EventLog:
    """Parse an event log in any supported format into an (unverified) :class:`EventLog`.

    Raises :class:`~trustcore.errors.ParseError` for anything that is not a well-formed log:
    ``eventlog.empty`` (no records), ``eventlog.too_large``, ``eventlog.truncated``,
    ``eventlog.not_an_event_log`` (the first record is implausible, e.g. a memory image),
    ``eventlog.bad_header``, ``eventlog.unknown_algorithm``, ``eventlog.bad_digest_count``,
    ``eventlog.duplicate_digest``, ``eventlog.bad_pcr_index``, ``eventlog.too_many_events``.
    """
    data = bytes(data)
    n = len(data)
    if n > MAX_LOG_BYTES:
        raise ParseError(
            f"{n} bytes is larger than any event log ({MAX_LOG_BYTES} allowed)",
            offset=0,
            reason="eventlog.too_large",
        )
    fill_start = _fill_start(data)
    if fill_start == 0:
        what = "no data" if n == 0 else f"only {n} bytes of 0x{data[0]:02x} fill"
        raise ParseError(f"empty event log: {what}", offset=0, reason="eventlog.empty")
    first = _parse_first_record(data)
    if (
        first.pcr == 0
        and first.event_type == EV_NO_ACTION
        and first.data.startswith(SPEC_ID_SIGNATURE_03)
    ):
        return _parse_agile(data, first, fill_start)
    return _parse_legacy(data, first, fill_start)


def _fill_start(data: bytes) -> int:
    """Where the trailing run of 0x00 or 0xFF fill begins (``len(data)`` when there is none)."""
    return min(len(data.rstrip(b"\0")), len(data.rstrip(b"\xff")))


def _parse_first_record(data: bytes) -> Event:
    if len(data) < _LEGACY.size:
        raise ParseError(
            f"{len(data)} bytes is shorter than one event record ({_LEGACY.size})",
            offset=0,
            reason="eventlog.truncated",
        )
    pcr, etype, sha1, size = _LEGACY.unpack_from(data, 0)
    if pcr >= PCR_COUNT and pcr != PCR_INDEX_NONE:
        raise ParseError(
            _not_a_log_message(data, f"its first record names PCR {pcr}"),
            offset=0,
            reason="eventlog.not_an_event_log",
        )
    end = _LEGACY.size + size
    if end > len(data):
        raise ParseError(
            f"first record's event data ({size} bytes) runs past the end ({len(data)} bytes)",
            offset=28,
            reason="eventlog.truncated",
        )
    return Event(0, pcr, etype, MappingProxyType({TPM_ALG_SHA1: sha1}), data[32:end], 0)


def _not_a_log_message(data: bytes, why: str) -> str:
    image = describe_memory_image(data)
    if image is not None:
        return f"not an event log but {image} ({why})"
    return f"not an event log: {why}"


def _check_pcr(pcr: int, index: int, offset: int) -> None:
    if pcr >= PCR_COUNT and pcr != PCR_INDEX_NONE:
        raise ParseError(
            f"record {index} names PCR {pcr} (0-{PCR_COUNT - 1} or 0xffffffff allowed)",
            offset=offset,
            reason="eventlog.bad_pcr_index",
        )


def _check_event_count(index: int, offset: int) -> None:
    if index >= MAX_EVENTS:
        raise ParseError(
            f"more than {MAX_EVENTS} records", offset=offset, reason="eventlog.too_many_events"
        )


_MAX_LOOSE_TAIL: Final = 8
"""A tail of this many bytes or more after the last record (before any fill) is a record cut
short (``eventlog.truncated``): a log that was cut must not pass as a shorter good one."""


def _check_tail(pos: int, fill_start: int, index: int, *, vendor_bytes: int = 0) -> None:
    """Nothing but 0x00/0xFF fill may follow the last record: appended bytes are nobody's
    measurement. The one tail allowed is the rest of the Spec ID header's vendor data when the
    header is the log's only record and its size field left those bytes out (``vendor_bytes``).
    """
    loose = fill_start - pos
    if loose <= 0 or (index == 1 and loose == vendor_bytes):  # <0: the last record ends in 0s
        return
    if loose >= _MAX_LOOSE_TAIL:
        raise ParseError(
            f"record {index} is cut short: {loose} bytes remain, fewer than a record",
            offset=pos,
            reason="eventlog.truncated",
        )
    raise ParseError(
        f"{loose} bytes after the last record that are neither a record nor fill",
        offset=pos,
        reason="eventlog.trailing_data",
    )


def _parse_legacy(data: bytes, first: Event, fill_start: int) -> EventLog:
    n = len(data)
    events = [first]
    pos = _LEGACY.size + len(first.data)
    unpack = _LEGACY.unpack_from
    while pos < fill_start and n - pos >= _LEGACY.size:
        index = len(events)
        _check_event_count(index, pos)
        pcr, etype, sha1, size = unpack(data, pos)
        _check_pcr(pcr, index, pos)
        end = pos + _LEGACY.size + size
        if end > n:
            raise ParseError(
                f"record {index}'s event data ({size} bytes) runs past the end ({n} bytes)",
                offset=pos + 28,
                reason="eventlog.truncated",
            )
        digests = MappingProxyType({TPM_ALG_SHA1: sha1})
        events.append(Event(index, pcr, etype, digests, data[pos + _LEGACY.size : end], pos))
        pos = end
    _check_tail(pos, fill_start, len(events))
    return EventLog(FORMAT_SHA1_LEGACY, tuple(events), (TPM_ALG_SHA1,), n - pos)


def _parse_agile(data: bytes, header: Event, fill_start: int) -> EventLog:
    spec = parse_spec_id_event(header.data, offset=_LEGACY.size)
    sizes = dict(spec.algorithms)
    max_digests = len(sizes)
    min_record = _AGILE_HEAD.size + _U16.size + min(sizes.values()) + _U32.size
    n = len(data)
    events = [header]
    txt = False
    pos = _LEGACY.size + len(header.data)
    while pos < fill_start and n - pos >= min_record:
        index = len(events)
        _check_event_count(index, pos)
        pcr, etype, count = _AGILE_HEAD.unpack_from(data, pos)
        _check_pcr(pcr, index, pos)
        if count == 0 or count > max_digests:
            raise ParseError(
                f"record {index} has {count} digests (1..{max_digests} banks in the header)",
                offset=pos + 8,
                reason="eventlog.bad_digest_count",
            )
        p, digests = _read_digests(data, pos + _AGILE_HEAD.size, count, sizes, index)
        if p + 4 > n:
            raise ParseError(
                f"record {index} ends before its event size field",
                offset=p,
                reason="eventlog.truncated",
            )
        (size,) = _U32.unpack_from(data, p)
        end = p + 4 + size
        if end > n:
            raise ParseError(
                f"record {index}'s event data ({size} bytes) runs past the end ({n} bytes)",
                offset=p,
                reason="eventlog.truncated",
            )
        txt = txt or is_txt_event_type(etype)
        events.append(Event(index, pcr, etype, digests, data[p + 4 : end], pos))
        pos = end
    _check_tail(pos, fill_start, len(events), vendor_bytes=spec.vendor_info_missing)
    fmt = FORMAT_TXT if txt else FORMAT_CRYPTO_AGILE
    return EventLog(fmt, tuple(events), tuple(sizes), n - pos)


def _read_digests(
    data: bytes, pos: int, count: int, sizes: dict[int, int], index: int
) -> tuple[int, MappingProxyType[int, bytes]]:
    """Read ``count`` TPMT_HA entries at ``pos``; returns (position after them, digests)."""
    n = len(data)
    digests: dict[int, bytes] = {}
    for _ in range(count):
        if pos + 2 > n:
            raise ParseError(
                f"record {index}'s digest list runs past the end",
                offset=pos,
                reason="eventlog.truncated",
            )
        (alg,) = _U16.unpack_from(data, pos)
        size = sizes.get(alg)
        if size is None:
            raise ParseError(
                f"record {index} carries a digest of algorithm 0x{alg:04x}, "
                "which the Spec ID header does not list",
                offset=pos,
                reason="eventlog.unknown_algorithm",
            )
        if alg in digests:
            raise ParseError(
                f"record {index} carries two digests of algorithm 0x{alg:04x}",
                offset=pos,
                reason="eventlog.duplicate_digest",
            )
        pos += 2
        if pos + size > n:
            raise ParseError(
                f"record {index}'s digest runs past the end",
                offset=pos,
                reason="eventlog.truncated",
            )
        digests[alg] = data[pos : pos + size]
        pos += size
    return pos, MappingProxyType(digests)
