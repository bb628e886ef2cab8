"""What flavors are evaluated against: PCR values, measured events, asset tags, replay status.

:class:`Evidence` is deliberately small and independent of how it was obtained: the hub builds
it from a verified quote and the events proved by replay against it (so ``replay_ok`` is the
outcome of that replay), tests and the flavor generator build it from an event log alone with
:func:`evidence_from_events`. This module only defines the shape and derives event tags from
event data; it verifies nothing.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final, Protocol

from trustcore.eventlog.datadigest import DataCheck, check_event_data

EV_EFI_VARIABLE_DRIVER_CONFIG: Final = 0x80000001
EV_EFI_VARIABLE_BOOT: Final = 0x80000002
EV_EFI_VARIABLE_BOOT2: Final = 0x8000000C
EV_EFI_VARIABLE_AUTHORITY: Final = 0x800000E0
TXT_TBOOT_MEASUREMENT: Final = 0x501
EV_NO_ACTION: Final = 0x3
MAX_PCR_INDEX: Final = 23
DESCRIPTION_CHARS: Final = 160

_VARIABLE_EVENTS: Final = frozenset(
    {
        EV_EFI_VARIABLE_DRIVER_CONFIG,
        EV_EFI_VARIABLE_BOOT,
        EV_EFI_VARIABLE_BOOT2,
        EV_EFI_VARIABLE_AUTHORITY,
    }
)
_MAX_NAME_CHARS: Final = 128


@dataclass(frozen=True, slots=True)
class MeasuredEvent:
    """One event of a host's log: where it sits, what it is, its digests per bank, and the names
    it carries besides its type name (``tags``)."""

    index: int
    pcr: int
    event_type: int
    type_name: str
    digests: Mapping[int, bytes]
    tags: tuple[str, ...] = ()
    description: str = ""
    # trustcore.eventlog.DataCheck's value: "verified", "mismatch" or "not_data_hashed"
    data_check: str = "not_data_hashed"

    def carries_any(self, tags: frozenset[str]) -> bool:
        """Whether this event has its type name or one of its tags in ``tags``."""
        return self.type_name in tags or not tags.isdisjoint(self.tags)


@dataclass(frozen=True, slots=True)
class Evidence:
    """A host's measurements as far as the caller has verified them.

    ``pcrs`` maps bank (TPM_ALG_ID) to PCR index to value; ``events`` are in log order;
    ``replay_ok`` says whether replaying ``events`` reproduced ``pcrs``.
    """

    pcrs: Mapping[int, Mapping[int, bytes]]
    events: tuple[MeasuredEvent, ...]
    replay_ok: bool
    asset_tags: Mapping[str, str] = field(default_factory=dict)

    def events_in(self, pcr: int) -> tuple[MeasuredEvent, ...]:
        return tuple(e for e in self.events if e.pcr == pcr)


class EventLike(Protocol):
    """The fields of :class:`trustcore.eventlog.Event` this module reads."""

    @property
    def index(self) -> int: ...
    @property
    def pcr(self) -> int: ...
    @property
    def event_type(self) -> int: ...
    @property
    def digests(self) -> Mapping[int, bytes]: ...
    @property
    def data(self) -> bytes: ...
    @property
    def type_name(self) -> str: ...
    @property
    def description(self) -> str: ...


def efi_variable_name(data: bytes) -> str | None:
    """The variable name of a UEFI_VARIABLE_DATA event, or None if ``data`` is not one.

    Layout: GUID (16), UnicodeNameLength (u64, in UTF-16 chars), VariableDataLength (u64),
    name (UTF-16LE), data. Never raises.
    """
    if len(data) < 32:
        return None
    (chars,) = struct.unpack_from("<Q", data, 16)
    if chars == 0 or chars > _MAX_NAME_CHARS or 32 + 2 * chars > len(data):
        return None
    try:
        name = data[32 : 32 + 2 * chars].decode("utf-16-le")
    except UnicodeDecodeError:
        return None
    return name if name.isprintable() else None


def _ascii_label(data: bytes) -> str | None:
    text = data.rstrip(b"\x00")
    if not 0 < len(text) <= 256 or not all(0x20 <= b < 0x7F for b in text):
        return None
    return text.decode("ascii")


def event_tags(event_type: int, data: bytes) -> tuple[str, ...]:
    """Names an event carries besides its type name: the UEFI variable name of variable events
    (``BootOrder``, ``db``) and the module label of tboot measurements (``vmlinuz``). Never
    raises."""
    extra: str | None = None
    if event_type in _VARIABLE_EVENTS:
        extra = efi_variable_name(data)
    elif event_type == TXT_TBOOT_MEASUREMENT:
        extra = _ascii_label(data)
    return (extra,) if extra else ()


UNVERIFIED_MARK: Final = "[data does not match the measured digest] "


def _measured(e: EventLike) -> MeasuredEvent:
    """One event as evidence. Data that does not give the record's digests is never shown as
    fact: its description is marked and its names (variable name, module label) are not used
    as tags, so no rule's tag selection depends on bytes nobody measured."""
    check = check_event_data(e)
    mismatch = check is DataCheck.MISMATCH
    return MeasuredEvent(
        index=e.index,
        pcr=e.pcr,
        event_type=e.event_type,
        type_name=e.type_name,
        digests=dict(e.digests),
        tags=() if mismatch else event_tags(e.event_type, e.data),
        description=_cut((UNVERIFIED_MARK if mismatch else "") + e.description),
        data_check=check.value,
    )


def evidence_from_events(
    events: Iterable[EventLike],
    pcrs: Mapping[int, Mapping[int, bytes]],
    *,
    replay_ok: bool,
    asset_tags: Mapping[str, str] | None = None,
) -> Evidence:
    """Evidence from parsed events and PCR values (replayed, or quoted and checked by replay).

    Events that extend no PCR (EV_NO_ACTION, PCR index above 23) are left out; descriptions are
    cut to DESCRIPTION_CHARS. Raises nothing.
    """
    measured = tuple(
        _measured(e) for e in events if e.event_type != EV_NO_ACTION and 0 <= e.pcr <= MAX_PCR_INDEX
    )
    return Evidence(
        pcrs={alg: dict(v) for alg, v in pcrs.items()},
        events=measured,
        replay_ok=replay_ok,
        asset_tags=dict(asset_tags or {}),
    )


def _cut(text: str) -> str:
    return text if len(text) <= DESCRIPTION_CHARS else text[: DESCRIPTION_CHARS - 3] + "..."
