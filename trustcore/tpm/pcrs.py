"""TPML_PCR_SELECTION: which PCRs of which banks, parsed from and marshalled to TPM bytes.

A :class:`PcrSelection` keeps the wire order of its banks (a quote's PCR digest hashes the
values in that order) and each bank's ``sizeofSelect``, so that parsing and marshalling round
trip exactly. Two selections that name the same PCRs in different encodings are not ``==`` but
are :meth:`PcrSelection.same_pcrs`. Reading PCR values is the agent's business, not this module's.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

from trustcore.algorithms import HASH_ALGORITHMS
from trustcore.tpm.reader import Reader

__all__ = [
    "MAX_PCR_BANKS",
    "MAX_SIZE_OF_SELECT",
    "PcrBank",
    "PcrSelection",
    "parse_pcr_selection",
    "read_pcr_selection",
]

MAX_PCR_BANKS: Final = 16  # TPM_NUM_PCR_BANKS in the reference headers
MAX_SIZE_OF_SELECT: Final = 32  # 256 PCRs: far above any real TPM (24)
MIN_SIZE_OF_SELECT: Final = 3  # PCR_SELECT_MIN for a PC-client TPM with 24 PCRs


@dataclass(frozen=True, slots=True)
class PcrBank:
    """TPMS_PCR_SELECTION: one hash bank and its selected PCR indices (ascending)."""

    alg: int
    pcrs: tuple[int, ...]
    size_of_select: int

    def __post_init__(self) -> None:
        if not 0 <= self.alg <= 0xFFFF:
            raise ValueError(f"algorithm id {self.alg} out of range")
        if not 0 <= self.size_of_select <= MAX_SIZE_OF_SELECT:
            raise ValueError(f"sizeofSelect {self.size_of_select} out of range")
        if list(self.pcrs) != sorted(set(self.pcrs)):
            raise ValueError("PCR indices must be unique and ascending")
        if self.pcrs and not 0 <= self.pcrs[0] <= self.pcrs[-1] < 8 * self.size_of_select:
            raise ValueError(f"PCR indices must be in 0..{8 * self.size_of_select - 1}")

    def bitmap(self) -> bytes:
        """The pcrSelect bytes: PCR n is bit (n % 8) of byte (n // 8)."""
        bits = bytearray(self.size_of_select)
        for pcr in self.pcrs:
            bits[pcr >> 3] |= 1 << (pcr & 7)
        return bytes(bits)


@dataclass(frozen=True, slots=True)
class PcrSelection:
    """TPML_PCR_SELECTION: banks in wire order; a bank's algorithm appears at most once."""

    banks: tuple[PcrBank, ...]
    _wire: bytes = field(init=False, repr=False, compare=False)
    _sets: Mapping[int, frozenset[int]] = field(init=False, repr=False, compare=False)
    _plan: tuple[tuple[int, tuple[int, ...]], ...] = field(init=False, repr=False, compare=False)
    _digest_plan: tuple[tuple[int, tuple[int, ...], int], ...] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        if len(self.banks) > MAX_PCR_BANKS:
            raise ValueError(f"more than {MAX_PCR_BANKS} banks")
        algs = [b.alg for b in self.banks]
        if len(set(algs)) != len(algs):
            raise ValueError("a bank algorithm appears twice")
        parts = [struct.pack(">I", len(self.banks))]
        for bank in self.banks:
            parts.append(struct.pack(">HB", bank.alg, bank.size_of_select) + bank.bitmap())
        object.__setattr__(self, "_wire", b"".join(parts))
        sets = {b.alg: frozenset(b.pcrs) for b in self.banks if b.pcrs}
        object.__setattr__(self, "_sets", sets)
        plan = tuple((b.alg, b.pcrs) for b in self.banks if b.pcrs)
        object.__setattr__(self, "_plan", plan)
        sizes = tuple((alg, pcrs, _digest_size(alg)) for alg, pcrs in plan)
        object.__setattr__(self, "_digest_plan", sizes)

    @classmethod
    def of(cls, banks: Mapping[int, Iterable[int]]) -> PcrSelection:
        """A selection from ``{alg: pcrs}`` in the mapping's order, with the smallest sizeofSelect
        that is at least 3 and holds the highest PCR. Raises ``ValueError`` on bad indices."""
        out = []
        for alg, pcrs in banks.items():
            ordered = tuple(sorted(set(pcrs)))
            if ordered and ordered[0] < 0:
                raise ValueError("PCR indices must not be negative")
            size = max(MIN_SIZE_OF_SELECT, (ordered[-1] // 8 + 1) if ordered else 0)
            out.append(PcrBank(alg, ordered, size))
        return cls(tuple(out))

    def marshal(self) -> bytes:
        """The TPML_PCR_SELECTION bytes."""
        return self._wire

    def as_dict(self) -> dict[int, tuple[int, ...]]:
        """``{alg: pcrs}`` for every bank that selects at least one PCR, in wire order."""
        return {b.alg: b.pcrs for b in self.banks if b.pcrs}

    def plan(self) -> tuple[tuple[int, tuple[int, ...]], ...]:
        """``(alg, pcrs)`` for every non-empty bank in wire order: the order a PCR digest uses."""
        return self._plan

    def digest_plan(self) -> tuple[tuple[int, tuple[int, ...], int], ...]:
        """:meth:`plan` with each bank's digest size (0 for an algorithm trustcore does not
        know)."""
        return self._digest_plan

    def same_pcrs(self, other: PcrSelection) -> bool:
        """True when both select exactly the same (bank, PCR) pairs, whatever their encoding."""
        return self._sets == other._sets

    def __len__(self) -> int:
        """The number of selected (bank, PCR) pairs."""
        return sum(len(b.pcrs) for b in self.banks)


def _digest_size(alg: int) -> int:
    known = HASH_ALGORITHMS.get(alg)
    return 0 if known is None else known.digest_size


def parse_pcr_selection(data: bytes, offset: int = 0) -> tuple[PcrSelection, int]:
    """Decode a TPML_PCR_SELECTION at ``offset``; return it and the offset after it.

    Raises :class:`ParseError` on truncation, more than 16 banks, a sizeofSelect above 32, or a
    bank algorithm that appears twice.
    """
    reader = Reader(data, offset)
    return read_pcr_selection(reader), reader.offset


def read_pcr_selection(reader: Reader) -> PcrSelection:
    """Decode a TPML_PCR_SELECTION from ``reader``; raises :class:`ParseError`."""
    start = reader.offset
    count = reader.u32("TPML_PCR_SELECTION count")
    if count > MAX_PCR_BANKS:
        raise reader.fail(f"TPML_PCR_SELECTION: {count} banks exceed {MAX_PCR_BANKS}", start)
    banks = []
    seen = set()
    for _ in range(count):
        bank_at = reader.offset
        alg = reader.u16("TPMS_PCR_SELECTION hash")
        size = reader.u8("TPMS_PCR_SELECTION sizeofSelect")
        if size > MAX_SIZE_OF_SELECT:
            raise reader.fail(f"sizeofSelect {size} exceeds {MAX_SIZE_OF_SELECT}", bank_at + 2)
        bitmap = reader.raw(size, "TPMS_PCR_SELECTION pcrSelect")
        if alg in seen:
            raise reader.fail(f"bank 0x{alg:04x} selected twice", bank_at)
        seen.add(alg)
        pcrs = tuple(
            8 * i + bit for i, byte in enumerate(bitmap) for bit in range(8) if byte >> bit & 1
        )
        banks.append(PcrBank(alg, pcrs, size))
    return PcrSelection(tuple(banks))
