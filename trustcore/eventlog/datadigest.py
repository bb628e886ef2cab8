"""Is an event's data what was measured? The digest check of event types hashed over their data.

A record's digests are what the TPM was extended with; its data is what the firmware *says* it
measured. For most event types the digest covers something that is not in the log (a PE image,
a firmware volume), and nothing can check the data. For the types below the TCG PC Client
Platform Firmware Profile (section 10.4.1, "Event Types") defines the digest over the event data
itself, so the data can be checked byte for byte. Replay only proves the digests; this proves
the data behind them.

=============================  ============================================================
event type                     digest of (every bank the record carries must match)
=============================  ============================================================
EV_EFI_VARIABLE_DRIVER_CONFIG  the whole UEFI_VARIABLE_DATA (the event data)
EV_EFI_VARIABLE_BOOT2          the whole UEFI_VARIABLE_DATA
EV_EFI_VARIABLE_AUTHORITY      the whole UEFI_VARIABLE_DATA
EV_EFI_VARIABLE_BOOT           the whole UEFI_VARIABLE_DATA, or only its VariableData (what
                               EDK2 measures for Boot#### and BootOrder: 257 of the 309
                               such events in the corpus)
EV_EFI_GPT_EVENT               the event data (UEFI_GPT_DATA)
EV_SEPARATOR                   the event data
EV_EFI_ACTION, EV_ACTION       the event data (the action string)
EV_S_CRTM_VERSION              the event data
EV_IPL in PCR 8                GRUB's strings: ``grub_cmd: X``, ``kernel_cmdline: X`` and
                               ``grub_kernel_cmdline X`` hash X; the older
                               ``grub_cmd X\\0`` / ``kernel_cmdline X\\0`` hash X and its NUL
=============================  ============================================================

A record of these types whose data does not give its digests is :data:`DataCheck.MISMATCH`:
the bytes were changed, or the firmware measured something else than it logged. In the 53 real
logs of the corpus that is 6 EV_EFI_VARIABLE_AUTHORITY records (shim's own certificate in
go-attestation's ``sb_cert_eventlog``, the ``db`` certificates of two COS AMD SEV VMs), 2
EV_S_CRTM_VERSION records (UTF-16 version strings) and 2 EV_IPL command lines of systemd-boot
(UTF-16), each measured in another form than logged: their data is shown as unverified.
EV_IPL records outside PCR 8 (GRUB's files, shim's MokList) measure content that is not in the
log: :data:`DataCheck.NOT_DATA_HASHED`, like every other type. This module reads only the
record; it raises nothing.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable, Mapping
from enum import StrEnum
from typing import Final, Protocol

from trustcore.algorithms import hash_algorithm
from trustcore.errors import TrustcoreError
from trustcore.eventlog.eventtypes import (
    EV_ACTION,
    EV_EFI_ACTION,
    EV_EFI_GPT_EVENT,
    EV_EFI_VARIABLE_AUTHORITY,
    EV_EFI_VARIABLE_BOOT,
    EV_EFI_VARIABLE_BOOT2,
    EV_EFI_VARIABLE_DRIVER_CONFIG,
    EV_IPL,
    EV_S_CRTM_VERSION,
    EV_SEPARATOR,
)


class Record(Protocol):
    """What the check reads of an event (:class:`~trustcore.eventlog.Event` has it all)."""

    @property
    def pcr(self) -> int: ...
    @property
    def event_type(self) -> int: ...
    @property
    def digests(self) -> Mapping[int, bytes]: ...
    @property
    def data(self) -> bytes: ...


class DataCheck(StrEnum):
    """What the digest check says about an event's data."""

    VERIFIED = "verified"  # the data gives every digest the record carries
    MISMATCH = "mismatch"  # the type hashes its data, and this data does not give the digests
    NOT_DATA_HASHED = "not_data_hashed"  # the digest is of something not in the log


WHOLE_DATA_TYPES: Final = frozenset(
    {
        EV_EFI_VARIABLE_DRIVER_CONFIG,
        EV_EFI_VARIABLE_BOOT2,
        EV_EFI_VARIABLE_AUTHORITY,
        EV_EFI_GPT_EVENT,
        EV_SEPARATOR,
        EV_EFI_ACTION,
        EV_ACTION,
        EV_S_CRTM_VERSION,
    }
)
GRUB_STRING_PCR: Final = 8
_GRUB_PREFIXES: Final = (b"grub_cmd: ", b"kernel_cmdline: ", b"grub_kernel_cmdline: ")
_GRUB_OLD_NUL_PREFIXES: Final = (b"grub_cmd ", b"kernel_cmdline ")
_GRUB_OLD_PREFIXES: Final = (b"grub_kernel_cmdline ",)


def is_data_hashed(event: Record) -> bool:
    """Whether ``event``'s type (and PCR, for EV_IPL) defines its digest over its data."""
    return (
        event.event_type in WHOLE_DATA_TYPES
        or event.event_type == EV_EFI_VARIABLE_BOOT
        or (event.event_type == EV_IPL and event.pcr == GRUB_STRING_PCR)
    )


_Hasher = Callable[[bytes], "hashlib._Hash"]
_HASHERS: dict[int, _Hasher | None] = {}  # a memo of constructors by TPM_ALG_ID


def _make_hasher(alg_id: int) -> _Hasher | None:
    name = hash_algorithm(alg_id).hashlib_name
    if name is None:
        return None
    constructor: _Hasher | None = getattr(hashlib, name, None)
    if constructor is not None:
        return constructor
    hashlib.new(name)  # ValueError if this Python cannot compute it
    return lambda blob: hashlib.new(name, blob)


def _hasher(alg_id: int) -> _Hasher | None:
    if alg_id not in _HASHERS:
        _HASHERS[alg_id] = _make_hasher(alg_id)
    return _HASHERS[alg_id]


def _gives_digests(event: Record, blob: bytes) -> bool:
    if not event.digests:
        return False
    for alg_id, digest in event.digests.items():
        construct = _hasher(alg_id)
        if construct is None or construct(blob).digest() != digest:
            return False
    return True


def _variable_data(data: bytes) -> bytes | None:
    """The VariableData of a UEFI_VARIABLE_DATA structure (GUID, name length in UTF-16 chars,
    data length, name, data), or ``None`` if the lengths do not fit exactly."""
    if len(data) < 32:
        return None
    chars, size = struct.unpack_from("<QQ", data, 16)
    start = 32 + 2 * chars
    if start + size != len(data):
        return None
    return data[start:]


def _grub_candidates(data: bytes) -> list[bytes]:
    text = data.rstrip(b"\x00")
    out = [text[len(p) :] for p in _GRUB_PREFIXES if text.startswith(p)]
    out += [text[len(p) :] for p in _GRUB_OLD_PREFIXES if text.startswith(p)]
    out += [text[len(p) :] + b"\x00" for p in _GRUB_OLD_NUL_PREFIXES if text.startswith(p)]
    return out


def check_event_data(event: Record) -> DataCheck:
    """Check ``event``'s data against its digests (see the module docstring). Raises nothing:
    a digest algorithm this Python cannot compute counts as a mismatch."""
    if not is_data_hashed(event):
        return DataCheck.NOT_DATA_HASHED
    try:
        if event.event_type == EV_IPL:
            candidates = _grub_candidates(event.data)
        else:
            candidates = [event.data]
            if event.event_type == EV_EFI_VARIABLE_BOOT:
                value = _variable_data(event.data)
                if value is not None:
                    candidates.append(value)
        verified = any(_gives_digests(event, blob) for blob in candidates)
    except (ValueError, LookupError, TrustcoreError):  # an algorithm we cannot compute
        verified = False
    return DataCheck.VERIFIED if verified else DataCheck.MISMATCH
