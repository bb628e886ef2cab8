"""The Spec ID header event that opens a crypto-agile log (TCG_EfiSpecIDEvent, "Spec ID Event03").

It is logged in the legacy TCG_PCClientPCREvent layout (PCR 0, EV_NO_ACTION, a zero SHA-1
digest) and lists the hash algorithms, with their digest sizes, that every later
TCG_PCR_EVENT2 record may carry. This module decodes it and checks it against
:mod:`trustcore.algorithms`; finding it in a log is the parser's business.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

from trustcore.algorithms import HASH_ALGORITHMS
from trustcore.errors import ParseError

SPEC_ID_SIGNATURE_03: Final = b"Spec ID Event03\0"
MAX_ALGORITHMS: Final = 16

_FIXED: Final = struct.Struct("<16sIBBBBI")  # signature .. numberOfAlgorithms: 28 bytes
_ALG: Final = struct.Struct("<HH")


@dataclass(frozen=True, slots=True)
class SpecIdEvent:
    """The decoded TCG_EfiSpecIDEvent: algorithms are (TPM_ALG_ID, digest size) pairs."""

    platform_class: int
    spec_version_major: int
    spec_version_minor: int
    spec_errata: int
    uintn_size: int
    algorithms: tuple[tuple[int, int], ...]
    vendor_info: bytes
    vendor_info_truncated: bool
    vendor_info_missing: int = 0  # declared vendor bytes past the end of the event data


def parse_spec_id_event(data: bytes, offset: int = 0) -> SpecIdEvent:
    """Decode the event data of a Spec ID Event03 record (``offset``: where ``data`` starts).

    A vendorInfo that runs past the event data is tolerated (some firmware's EventSize does not
    cover it) and flagged ``vendor_info_truncated``. Raises ParseError: ``eventlog.bad_header``
    (too short, no algorithms, too many, duplicates, a digest size that disagrees with the
    algorithm) or ``eventlog.unknown_algorithm``.
    """
    if len(data) < _FIXED.size or not data.startswith(SPEC_ID_SIGNATURE_03):
        raise ParseError(
            "not a Spec ID Event03 structure", offset=offset, reason="eventlog.bad_header"
        )
    _, pclass, minor, major, errata, uintn, count = _FIXED.unpack_from(data, 0)
    if count == 0 or count > MAX_ALGORITHMS:
        raise ParseError(
            f"Spec ID lists {count} algorithms (1..{MAX_ALGORITHMS} allowed)",
            offset=offset + 24,
            reason="eventlog.bad_header",
        )
    pos = _FIXED.size
    if pos + count * _ALG.size > len(data):
        raise ParseError(
            f"Spec ID algorithm list ({count} entries) runs past the event data",
            offset=offset + pos,
            reason="eventlog.bad_header",
        )
    algorithms: list[tuple[int, int]] = []
    for _ in range(count):
        alg_id, size = _ALG.unpack_from(data, pos)
        _check_algorithm(alg_id, size, algorithms, offset + pos)
        algorithms.append((alg_id, size))
        pos += _ALG.size
    vendor = b""
    truncated = False
    if pos < len(data):
        vsize = data[pos]
        vendor = data[pos + 1 : pos + 1 + vsize]
        truncated = len(vendor) < vsize
    return SpecIdEvent(
        platform_class=pclass,
        spec_version_major=major,
        spec_version_minor=minor,
        spec_errata=errata,
        uintn_size=uintn,
        algorithms=tuple(algorithms),
        vendor_info=vendor,
        vendor_info_truncated=truncated,
        vendor_info_missing=vsize - len(vendor) if truncated else 0,
    )


def _check_algorithm(alg_id: int, size: int, seen: list[tuple[int, int]], offset: int) -> None:
    known = HASH_ALGORITHMS.get(alg_id)
    if known is None:
        raise ParseError(
            f"Spec ID lists unknown hash algorithm 0x{alg_id:04x}",
            offset=offset,
            reason="eventlog.unknown_algorithm",
        )
    if size != known.digest_size:
        raise ParseError(
            f"Spec ID gives {known.name} a digest size of {size}, not {known.digest_size}",
            offset=offset,
            reason="eventlog.bad_header",
        )
    if any(a == alg_id for a, _ in seen):
        raise ParseError(
            f"Spec ID lists {known.name} twice", offset=offset, reason="eventlog.bad_header"
        )
