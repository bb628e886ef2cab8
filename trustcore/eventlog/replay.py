"""Replay a parsed event log into the PCR values it implies.

Every PCR starts at all zeros, except PCR 0, whose starting value the TCG PC Client Platform
Firmware Profile ties to how the TPM was started (PFP 1.05, 3.3.4.1 "PCR[0]" / 10.4.5.3
"StartupLocality Event", 10.4.5.4 "H-CRTM event"), implemented completely here
(:func:`pcr0_start`):

- a StartupLocality record (EV_NO_ACTION in PCR 0, data ``"StartupLocality\\0"`` plus one
  byte) says from which locality TPM2_Startup was sent: 0 (PCR 0 starts at zeros), 3
  (``00..03``) or 4 (``00..04``, an H-CRTM that used locality 4); any other byte is
  ``eventlog.bad_startup_locality``;
  it must come before the first extension of PCR 0 (``eventlog.startup_locality_misplaced``) and
  at most once (``eventlog.startup_locality_repeated``);
- an H-CRTM sequence (_TPM_Hash_Start/Data/End before TPM2_Startup) resets PCR 0 to ``00..04``
  and extends it with the H-CRTM measurement, which the firmware logs as EV_EFI_HCRTM_EVENT: when
  PCR 0's first extension is that event, PCR 0 starts at ``00..04`` even without a
  StartupLocality record; the event anywhere else is ``eventlog.hcrtm_misplaced`` (nothing can
  precede _TPM_Hash_End), and a StartupLocality record naming another locality than 4 beside it
  is ``eventlog.hcrtm_locality_conflict``;
- EV_NO_ACTION records are never extended (the Spec ID header, StartupLocality, H-CRTM component
  records, SP800-155 events), nor are records for PCR 0xFFFFFFFF. A record extends exactly the
  banks it carries digests for.

Comparing the result with quoted PCRs (and so trusting the log) is the job of the quote
verification module, which calls :func:`replay_eventlog`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Final, Protocol

from trustcore.algorithms import UnsupportedAlgorithm, hash_algorithm
from trustcore.errors import TrustcoreError
from trustcore.eventlog.eventtypes import EV_EFI_HCRTM_EVENT, EV_NO_ACTION
from trustcore.eventlog.records import PCR_INDEX_NONE, Event, EventLog

STARTUP_LOCALITY_SIGNATURE: Final = b"StartupLocality\0"
_STARTUP_LOCALITIES: Final = frozenset({0, 3, 4})


class _Hash(Protocol):
    def digest(self) -> bytes: ...


_Constructor = Callable[[bytes], _Hash]


class ReplayError(TrustcoreError):
    """The log cannot be replayed: a digest whose size does not fit its algorithm, or records
    that break PCR 0's start rules (see the module docstring for their reasons)."""

    reason = "eventlog.replay_error"


def _is_startup_locality(event: Event) -> bool:
    return (
        event.event_type == EV_NO_ACTION
        and len(event.data) == 17
        and event.data.startswith(STARTUP_LOCALITY_SIGNATURE)
    )


def startup_locality(log: EventLog) -> int:
    """The locality of the first StartupLocality record (0 when there is none)."""
    for event in log.events:
        if event.pcr == 0 and _is_startup_locality(event):
            return event.data[16]
    return 0


def pcr0_start(log: EventLog) -> int:
    """The locality byte PCR 0 starts from (0, 3 or 4; the module docstring has the rules).

    Raises :class:`ReplayError` with the reasons named there.
    """
    declared: int | None = None
    first: Event | None = None  # PCR 0's first extension
    for event in log.events:
        if event.pcr != 0:
            continue
        if event.event_type == EV_NO_ACTION:
            if _is_startup_locality(event):
                declared = _check_startup_locality(event, declared, first)
            continue
        if first is None:
            first = event
        elif event.event_type == EV_EFI_HCRTM_EVENT:
            raise ReplayError(
                f"record {event.index}: an H-CRTM event after PCR 0 was already extended",
                reason="eventlog.hcrtm_misplaced",
            )
    if first is not None and first.event_type == EV_EFI_HCRTM_EVENT:
        if declared not in (None, 4):
            raise ReplayError(
                f"an H-CRTM sequence (record {first.index}) starts PCR 0 at locality 4, but the "
                f"StartupLocality record says {declared}",
                reason="eventlog.hcrtm_locality_conflict",
            )
        return 4
    return declared or 0


def _check_startup_locality(event: Event, declared: int | None, first: Event | None) -> int:
    locality = event.data[16]
    if declared is not None:
        raise ReplayError(
            f"record {event.index}: a second StartupLocality record",
            reason="eventlog.startup_locality_repeated",
        )
    if first is not None:
        raise ReplayError(
            f"record {event.index}: StartupLocality after PCR 0 was extended (record "
            f"{first.index})",
            reason="eventlog.startup_locality_misplaced",
        )
    if locality not in _STARTUP_LOCALITIES:
        raise ReplayError(
            f"record {event.index}: StartupLocality {locality} (0, 3 or 4 allowed)",
            reason="eventlog.bad_startup_locality",
        )
    return locality


def _hasher(alg_id: int) -> tuple[_Constructor, int]:
    alg = hash_algorithm(alg_id)
    name = alg.hashlib_name
    if name is None:
        raise UnsupportedAlgorithm(f"no implementation for {alg.name}")
    try:
        hashlib.new(name)
    except ValueError:
        raise UnsupportedAlgorithm(f"this Python cannot compute {alg.name}") from None
    constructor = getattr(hashlib, name, None)
    if constructor is None:
        return (lambda b: hashlib.new(name, b)), alg.digest_size
    return constructor, alg.digest_size


def replay_eventlog(log: EventLog) -> dict[int, dict[int, bytes]]:
    """The PCR values the log implies: ``{TPM_ALG_ID: {pcr: value}}``.

    Only PCRs some record extends appear, and only banks some record carries. Raises
    :class:`~trustcore.algorithms.UnsupportedAlgorithm` for a bank this Python cannot hash and
    :class:`ReplayError` for a digest of the wrong size (impossible for a parsed log).
    """
    locality = pcr0_start(log)
    banks: dict[int, dict[int, bytes]] = {}
    hashers: dict[int, tuple[_Constructor, int]] = {}
    for event in log.events:
        pcr = event.pcr
        if event.event_type == EV_NO_ACTION or pcr == PCR_INDEX_NONE:
            continue
        for alg_id, digest in event.digests.items():
            found = hashers.get(alg_id)
            if found is None:
                found = hashers[alg_id] = _hasher(alg_id)
                banks[alg_id] = {}
            construct, size = found
            if len(digest) != size:
                raise ReplayError(
                    f"record {event.index}: {len(digest)}-byte digest for algorithm "
                    f"0x{alg_id:04x} ({size} bytes expected)"
                )
            bank = banks[alg_id]
            current = bank.get(pcr)
            if current is None:
                current = _initial_value(pcr, size, locality)
            bank[pcr] = construct(current + digest).digest()
    return banks


def _initial_value(pcr: int, size: int, locality: int) -> bytes:
    if pcr == 0 and locality:
        return bytes(size - 1) + bytes([locality])
    return bytes(size)
