"""TCG event logs: parse (crypto-agile, legacy SHA-1, Intel TXT), replay, describe, TXT heap walk.

The stable API the rest of trustplane uses:

- :func:`parse_eventlog` ``(bytes) -> EventLog``: an UNVERIFIED log (raises ParseError);
- :func:`replay_eventlog` ``(EventLog) -> {alg_id: {pcr: value}}``;
- :class:`Event` (``type_name``, ``description``) and :class:`EventLog`;
- :func:`check_event_data` ``(Event) -> DataCheck``: whether the data of an event type that is
  hashed over its data gives the record's digests;
- :func:`locate_txt_eventlog` ``(heap, heap_base=None) -> TxtLogLocation``: the TXT heap walk,
  and :func:`locate_txt_eventlog_in_image` for a fake ``/dev/mem`` image.

Turning a parsed log into verified events (replay compared with a verified quote) is the quote
verification module's job; reading logs from the kernel or ``/dev/mem`` is the node agent's.
"""

from trustcore.eventlog.datadigest import DataCheck, check_event_data, is_data_hashed
from trustcore.eventlog.descriptions import describe_event_data
from trustcore.eventlog.eventtypes import EVENT_TYPE_NAMES, event_type_name, is_txt_event_type
from trustcore.eventlog.parser import MAX_EVENTS, MAX_LOG_BYTES, PCR_COUNT, parse_eventlog
from trustcore.eventlog.records import (
    FORMAT_CRYPTO_AGILE,
    FORMAT_SHA1_LEGACY,
    FORMAT_TXT,
    PCR_INDEX_NONE,
    Event,
    EventLog,
)
from trustcore.eventlog.replay import ReplayError, pcr0_start, replay_eventlog, startup_locality
from trustcore.eventlog.specid import SpecIdEvent, parse_spec_id_event
from trustcore.eventlog.txtheap import (
    TxtLogLocation,
    locate_txt_eventlog,
    locate_txt_eventlog_in_image,
    read_txt_eventlog_from_image,
)

__all__ = [
    "EVENT_TYPE_NAMES",
    "FORMAT_CRYPTO_AGILE",
    "FORMAT_SHA1_LEGACY",
    "FORMAT_TXT",
    "MAX_EVENTS",
    "MAX_LOG_BYTES",
    "PCR_COUNT",
    "PCR_INDEX_NONE",
    "DataCheck",
    "Event",
    "EventLog",
    "ReplayError",
    "SpecIdEvent",
    "TxtLogLocation",
    "check_event_data",
    "describe_event_data",
    "event_type_name",
    "is_data_hashed",
    "is_txt_event_type",
    "locate_txt_eventlog",
    "locate_txt_eventlog_in_image",
    "parse_eventlog",
    "parse_spec_id_event",
    "pcr0_start",
    "read_txt_eventlog_from_image",
    "replay_eventlog",
    "startup_locality",
]
