"""A bounded big-endian reader for TPM 2.0 marshalled structures.

Every read checks the length against what remains and raises :class:`ParseError` with the
offset (from the start of the buffer) where the read began; nothing else escapes. Structure
decoders in :mod:`trustcore.tpm` are built on it; the hot path of quote verification in
:mod:`trustcore.quote` does its own inline reads for speed but applies the same checks.
"""

from __future__ import annotations

import struct
from typing import Final

from trustcore.errors import ParseError

__all__ = ["Reader"]

_U16: Final = struct.Struct(">H")
_U32: Final = struct.Struct(">I")
_U64: Final = struct.Struct(">Q")


class Reader:
    """Reads TPM marshalled integers and sized buffers from ``data`` starting at ``offset``."""

    __slots__ = ("_data", "_end", "_pos")

    def __init__(self, data: bytes, offset: int = 0) -> None:
        self._data = data
        self._pos = offset
        self._end = len(data)

    @property
    def offset(self) -> int:
        """The offset of the next byte to read."""
        return self._pos

    @property
    def remaining(self) -> int:
        return self._end - self._pos

    def fail(self, message: str, offset: int | None = None) -> ParseError:
        """A :class:`ParseError` at ``offset`` (default: the current position), to raise."""
        return ParseError(message, offset=self._pos if offset is None else offset)

    def _need(self, n: int, what: str) -> int:
        pos = self._pos
        if self._end - pos < n:
            raise ParseError(f"{what}: needs {n} bytes, only {self._end - pos} remain", offset=pos)
        self._pos = pos + n
        return pos

    def u8(self, what: str = "UINT8") -> int:
        pos = self._need(1, what)
        return self._data[pos]

    def u16(self, what: str = "UINT16") -> int:
        pos = self._need(2, what)
        return int(_U16.unpack_from(self._data, pos)[0])

    def u32(self, what: str = "UINT32") -> int:
        pos = self._need(4, what)
        return int(_U32.unpack_from(self._data, pos)[0])

    def u64(self, what: str = "UINT64") -> int:
        pos = self._need(8, what)
        return int(_U64.unpack_from(self._data, pos)[0])

    def raw(self, n: int, what: str = "bytes") -> bytes:
        pos = self._need(n, what)
        return bytes(self._data[pos : pos + n])

    def tpm2b(self, what: str, max_size: int) -> bytes:
        """A TPM2B: a UINT16 size then that many bytes; the size must not exceed ``max_size``."""
        start = self._pos
        size = self.u16(f"{what} size")
        if size > max_size:
            raise ParseError(f"{what}: size {size} exceeds the maximum {max_size}", offset=start)
        return self.raw(size, what)

    def taken_since(self, start: int) -> bytes:
        """The bytes from ``start`` up to the current position (e.g. a structure's raw form)."""
        return bytes(self._data[start : self._pos])

    def expect_end(self, what: str) -> None:
        """Raise unless every byte was consumed."""
        if self._pos != self._end:
            raise ParseError(f"{what}: {self._end - self._pos} trailing bytes", offset=self._pos)
