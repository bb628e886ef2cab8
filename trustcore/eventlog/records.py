"""The parsed event log: :class:`Event` and :class:`EventLog`, both UNVERIFIED.

A parsed log says what the firmware *claims* it measured. Nothing here has been checked against
a TPM: only replaying the log against a verified quote (another module's ``verify_events``)
turns these records into verified events. Parsing lives in :mod:`trustcore.eventlog.parser`,
replay in :mod:`trustcore.eventlog.replay`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from trustcore.errors import TrustcoreError
from trustcore.eventlog.descriptions import describe_event_data
from trustcore.eventlog.eventtypes import event_type_name

FORMAT_CRYPTO_AGILE: Final = "crypto-agile"
FORMAT_SHA1_LEGACY: Final = "sha1-legacy"
FORMAT_TXT: Final = "txt"
FORMATS: Final = (FORMAT_CRYPTO_AGILE, FORMAT_SHA1_LEGACY, FORMAT_TXT)

PCR_INDEX_NONE: Final = 0xFFFFFFFF
"""The PCR index of records that are logged but never extended (Windows' PCR[-1] records)."""


@dataclass(frozen=True, slots=True)
class Event:
    """One record of an event log, exactly as logged: UNVERIFIED.

    ``index`` counts records from 0 (the Spec ID header record is index 0 in a crypto-agile
    log); ``digests`` maps TPM_ALG_ID to the digest the record claims was extended;
    ``offset`` is the record's byte offset in the log. ``description`` decodes ``data`` on
    demand and never fails.
    """

    index: int
    pcr: int
    event_type: int
    digests: Mapping[int, bytes] = field(hash=False)
    data: bytes
    offset: int

    @property
    def type_name(self) -> str:
        """``EV_EFI_VARIABLE_BOOT``, ``EVTYPE_MLE_HASH``, or ``0x8401`` for unnamed types."""
        return event_type_name(self.event_type)

    @property
    def description(self) -> str:
        """A one-line human reading of ``data`` (``raw: ...`` when it cannot be decoded)."""
        return describe_event_data(self.event_type, self.data)


@dataclass(frozen=True, slots=True)
class EventLog:
    """A parsed TCG event log: UNVERIFIED until replayed against a verified quote.

    ``format`` is ``crypto-agile``, ``sha1-legacy`` or ``txt`` (a crypto-agile Intel TXT DRTM
    log with SINIT/tboot events); ``events`` holds every record including the header record and
    PCR 0xFFFFFFFF records; ``algorithms`` are the banks the log carries (the Spec ID header's
    list, or SHA-1 for a legacy log); ``trailing_bytes`` counts the fill (or too-short tail)
    after the last record.
    """

    format: str
    events: tuple[Event, ...]
    algorithms: tuple[int, ...]
    trailing_bytes: int = 0

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise TrustcoreError(
                f"unknown event log format {self.format!r}", reason="eventlog.bad_format"
            )
