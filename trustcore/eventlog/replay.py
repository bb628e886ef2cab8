"""Replay a parsed event log into the PCR values it implies.

Rules (TCG PC Client Platform Firmware Profile): every PCR starts at all zeros, except PCR 0
when a StartupLocality EV_NO_ACTION record says the TPM was started from locality 3 (PCR 0
starts at ``00..03``) or by an H-CRTM (locality 4, ``00..04``). EV_NO_ACTION records are never
extended, nor are records for PCR 0xFFFFFFFF. A record extends exactly the banks it carries
digests for. Comparing the result with quoted PCRs (and so trusting the log) is the job of the
quote verification module, which calls :func:`replay_eventlog`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Final, Protocol

from trustcore.algorithms import UnsupportedAlgorithm, hash_algorithm
from trustcore.errors import TrustcoreError
from trustcore.eventlog.eventtypes import EV_NO_ACTION
from trustcore.eventlog.records import PCR_INDEX_NONE, EventLog

STARTUP_LOCALITY_SIGNATURE: Final = b"StartupLocality\0"
_LOCALITY_PCR0: Final = frozenset({3, 4})


class _Hash(Protocol):
    def digest(self) -> bytes: ...


_Constructor = Callable[[bytes], _Hash]


class ReplayError(TrustcoreError):
    """The log cannot be replayed (a digest whose size does not fit its algorithm)."""

    reason = "eventlog.replay_error"


def startup_locality(log: EventLog) -> int:
    """The locality of the first StartupLocality record (0 when there is none)."""
    for event in log.events:
        if (
            event.event_type == EV_NO_ACTION
            and event.pcr == 0
            and len(event.data) == 17
            and event.data.startswith(STARTUP_LOCALITY_SIGNATURE)
        ):
            return event.data[16]
    return 0


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
    locality = startup_locality(log)
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
    if pcr == 0 and locality in _LOCALITY_PCR0:
        return bytes(size - 1) + bytes([locality])
    return bytes(size)
