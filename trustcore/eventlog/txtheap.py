"""Find the Intel TXT DRTM event log inside a TXT heap.

The TXT heap (Intel TXT MLE developer's guide, "Intel TXT heap memory") holds four tables in
order, each starting with its own u64 size (which counts the size field): BiosData, OsMleData,
OsSinitData, SinitMleData. From OsSinitData version 6 on, OsSinitData ends with extended data
elements (u32 type, u32 size including the 8-byte element header, terminated by type 0). The
HEAP_EVENT_LOG_POINTER_ELEMENT2_1 element (type 8) points at the TPM 2.0 crypto-agile log: u64
PhysicalAddress of the event container, u32 AllocatedEventContainerSize, u32 FirstRecordOffset,
u32 NextRecordOffset (where the next record would be written, i.e. the end of the records).

The walk is a pure function over bytes (:func:`locate_txt_eventlog`); reading the heap and the
log out of physical memory (``/dev/mem``) is the node agent's job. For the "fake /dev/mem" image
used in tests and demos (u64 heap base at offset 0, u64 heap size at offset 8, the heap at file
offset = heap base) there is :func:`locate_txt_eventlog_in_image`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

from trustcore.errors import ParseError
from trustcore.eventlog.specid import SPEC_ID_SIGNATURE_03

HEAP_EXTDATA_TYPE_END: Final = 0
HEAP_EXTDATA_TYPE_TPM_EVENT_LOG_PTR: Final = 5
HEAP_EXTDATA_TYPE_EVENT_LOG_POINTER2: Final = 7
HEAP_EXTDATA_TYPE_EVENT_LOG_POINTER2_1: Final = 8
OS_SINIT_MIN_EXT_VERSION: Final = 6
# OsSinitData fields before the extended elements (after the u64 size): Version, Flags, 9 u64
# (MLE page table base/size/header base, PMR low/high base/size, LCP PO base/size),
# Capabilities, EFI RSDP pointer: 4 + 4 + 72 + 4 + 8 bytes.
OS_SINIT_EXT_OFFSET: Final = 8 + 92

_U64: Final = struct.Struct("<Q")
_U32: Final = struct.Struct("<I")
_ELEMENT: Final = struct.Struct("<II")
_LOG_POINTER2_1: Final = struct.Struct("<QIII")


@dataclass(frozen=True, slots=True)
class TxtLogLocation:
    """Where the TXT event log is.

    ``address`` is the physical address of the first record and ``size`` the number of bytes
    of records written (NextRecordOffset - FirstRecordOffset); ``container_address`` and
    ``container_size`` describe the whole allocated container. ``offset`` is the first
    record's offset inside the buffer that was walked (the heap, or the memory image), or None
    when the log lies outside it and must be read from ``address``.
    """

    address: int
    size: int
    container_address: int
    container_size: int
    os_sinit_version: int
    offset: int | None


def _heap_error(message: str, offset: int, reason: str) -> ParseError:
    return ParseError(f"TXT heap: {message}", offset=offset, reason=reason)


def _table(heap: bytes, offset: int, name: str) -> int:
    """The size of the heap table at ``offset`` (checked to lie inside the heap)."""
    if offset + 8 > len(heap):
        raise _heap_error(f"{name} starts past the end of the heap", offset, "txtheap.truncated")
    (size,) = _U64.unpack_from(heap, offset)
    if size < 8 or size > len(heap) - offset:
        raise _heap_error(
            f"{name} size {size} does not fit the heap ({len(heap) - offset} bytes left)",
            offset,
            "txtheap.bad_table",
        )
    return int(size)


def locate_txt_eventlog(heap: bytes, heap_base: int | None = None) -> TxtLogLocation:
    """Walk ``heap`` (the TXT heap's bytes) to the HEAP_EVENT_LOG_POINTER_ELEMENT2_1.

    ``heap_base`` is the heap's physical address (TXT.HEAP.BASE); given it, the result's
    ``offset`` says where the log starts inside ``heap`` when it lies there. Raises
    :class:`~trustcore.errors.ParseError`: ``txtheap.truncated``, ``txtheap.bad_table``,
    ``txtheap.no_extended_data`` (OsSinitData older than version 6),
    ``txtheap.bad_element``, ``txtheap.unsupported_log_pointer`` (only a TPM 1.2 or
    per-algorithm log pointer), ``txtheap.no_log_pointer``, ``txtheap.bad_log_pointer``.
    """
    heap = bytes(heap)
    bios = _table(heap, 0, "BiosData")
    os_mle = _table(heap, bios, "OsMleData")
    sinit_at = bios + os_mle
    sinit_size = _table(heap, sinit_at, "OsSinitData")
    if sinit_size < 12:
        raise _heap_error("OsSinitData has no version", sinit_at, "txtheap.bad_table")
    (version,) = _U32.unpack_from(heap, sinit_at + 8)
    if version < OS_SINIT_MIN_EXT_VERSION:
        raise _heap_error(
            f"OsSinitData version {version} has no extended data elements (needs 6+)",
            sinit_at + 8,
            "txtheap.no_extended_data",
        )
    address, container, first, nxt = _find_log_pointer(heap, sinit_at, sinit_size)
    start = address + first
    offset = None
    if (
        heap_base is not None
        and heap_base <= start
        and start + (nxt - first) <= heap_base + len(heap)
    ):
        offset = start - heap_base
    return TxtLogLocation(start, nxt - first, address, container, version, offset)


def _find_log_pointer(heap: bytes, sinit_at: int, sinit_size: int) -> tuple[int, int, int, int]:
    pos = sinit_at + OS_SINIT_EXT_OFFSET
    end = sinit_at + sinit_size
    others: list[int] = []
    while pos + _ELEMENT.size <= end:
        etype, esize = _ELEMENT.unpack_from(heap, pos)
        if etype == HEAP_EXTDATA_TYPE_END:
            break
        if esize < _ELEMENT.size or esize > end - pos:
            raise _heap_error(
                f"extended element type {etype} has size {esize}", pos, "txtheap.bad_element"
            )
        if etype == HEAP_EXTDATA_TYPE_EVENT_LOG_POINTER2_1:
            if esize < _ELEMENT.size + _LOG_POINTER2_1.size:
                raise _heap_error(
                    f"event log pointer element of {esize} bytes", pos, "txtheap.bad_element"
                )
            address, container, first, nxt = _LOG_POINTER2_1.unpack_from(heap, pos + 8)
            if not first <= nxt <= container:
                raise _heap_error(
                    f"event log pointer offsets first={first} next={nxt} do not fit the "
                    f"{container}-byte container",
                    pos + 8,
                    "txtheap.bad_log_pointer",
                )
            return address, container, first, nxt
        others.append(etype)
        pos += esize
    if {HEAP_EXTDATA_TYPE_TPM_EVENT_LOG_PTR, HEAP_EXTDATA_TYPE_EVENT_LOG_POINTER2} & set(others):
        raise _heap_error(
            "only a TPM 1.2 or per-algorithm event log pointer (element 5/7) is present; "
            "the crypto-agile pointer (element 8) is not",
            sinit_at,
            "txtheap.unsupported_log_pointer",
        )
    raise _heap_error(
        "OsSinitData has no HEAP_EVENT_LOG_POINTER_ELEMENT2_1",
        sinit_at,
        "txtheap.no_log_pointer",
    )


def _starts_spec_id_header(data: bytes, offset: int) -> bool:
    """True when a Spec ID Event03 header record starts at ``offset``."""
    head = data[offset : offset + 48]
    return (
        len(head) == 48
        and head[:8] == b"\0\0\0\0\x03\0\0\0"
        and head[32:48] == SPEC_ID_SIGNATURE_03
    )


def locate_txt_eventlog_in_image(image: bytes) -> TxtLogLocation:
    """Find the TXT log in a fake ``/dev/mem`` image; ``offset`` is relative to the image.

    Layout: u64 heap base at 0, u64 heap size at 8, the heap at file offset heap base (file
    offsets are physical addresses). The log pointer is taken as a physical address first; an
    image whose pointer is relative to the heap (as intel-secl's test image records it) is
    recognised by finding the Spec ID header there instead. Raises ParseError
    (``txtheap.bad_image``, ``txtheap.log_not_found`` and the heap walk's reasons).
    """
    where, start = _locate_in_image(bytes(image))
    return TxtLogLocation(
        where.address,
        where.size,
        where.container_address,
        where.container_size,
        where.os_sinit_version,
        start,
    )


def _locate_in_image(image: bytes) -> tuple[TxtLogLocation, int]:
    """The heap walk's result and the first record's offset in ``image``."""
    if len(image) < 16:
        raise _heap_error("image shorter than its 16-byte header", 0, "txtheap.bad_image")
    base, size = struct.unpack_from("<QQ", image, 0)
    if base < 16 or size < 8 or base + size > len(image):
        raise _heap_error(
            f"image header gives heap base 0x{base:x} size 0x{size:x}, outside the "
            f"{len(image)}-byte image",
            0,
            "txtheap.bad_image",
        )
    where = locate_txt_eventlog(image[base : base + size], heap_base=base)
    for start in (where.address, base + where.address):
        if start + where.size <= len(image) and _starts_spec_id_header(image, start):
            return where, start
    raise _heap_error(
        f"no Spec ID header at the logged address 0x{where.address:x} (physical or heap-relative)",
        0,
        "txtheap.log_not_found",
    )


def read_txt_eventlog_from_image(image: bytes) -> bytes:
    """The bytes of the TXT log's records in a fake ``/dev/mem`` image. Raises ParseError."""
    image = bytes(image)
    where, start = _locate_in_image(image)
    return image[start : start + where.size]


def describe_memory_image(data: bytes) -> str | None:
    """A phrase naming ``data`` as a TXT heap memory image, or None if it is not one."""
    try:
        where = locate_txt_eventlog_in_image(data)
    except ParseError:
        return None
    base = int.from_bytes(data[0:8], "little")
    return (
        f"a memory image holding a TXT heap at 0x{base:x} whose event log is at offset "
        f"0x{where.offset or 0:x}; walk the heap to read it"
    )
