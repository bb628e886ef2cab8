"""Event logs made trustworthy by a verified quote: the only way to get :class:`VerifiedEvents`.

:func:`verify_events` replays an UNVERIFIED parsed log (:mod:`trustcore.eventlog`) and compares
the replay with the PCR values of a :class:`~trustcore.quote.VerifiedQuote`: every (bank, PCR)
that both the log extends and the quote covers must be equal, else
:class:`ReplayMismatch` (reason ``eventlog.replay_mismatch``, naming the bank and PCR). A log
that extends none of the quoted PCRs verifies nothing and is refused (``eventlog.not_quoted``).

What the result vouches for: each event in :attr:`VerifiedEvents.events` was extended into a
PCR whose replayed value the TPM signed, in at least one bank the event carries a digest for
(:attr:`VerifiedEvents.verified` says which). Events for PCRs the quote does not cover are left
out; the quoted PCRs the log does not extend are not explained by it. Whether an event's data
matches its digest, and whether the events are the expected ones, is for the flavor rules.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass

from trustcore.algorithms import HASH_ALGORITHMS
from trustcore.errors import VerificationError
from trustcore.eventlog import PCR_INDEX_NONE, Event, EventLog, replay_eventlog
from trustcore.eventlog.eventtypes import EV_NO_ACTION
from trustcore.quote import VerifiedQuote

__all__ = ["ReplayMismatch", "VerifiedEvents", "verify_events", "verify_replay"]


class ReplayMismatch(VerificationError):
    """The log's replay of bank ``alg`` PCR ``pcr`` differs from the quoted value."""

    reason = "eventlog.replay_mismatch"

    def __init__(self, alg: int, pcr: int, replayed: bytes, quoted: bytes) -> None:
        known = HASH_ALGORITHMS.get(alg)
        bank = known.name if known else f"0x{alg:04x}"
        super().__init__(
            f"bank {bank} PCR {pcr}: the event log replays to {replayed.hex()}, "
            f"the quote says {quoted.hex()}"
        )
        self.alg = alg
        self.pcr = pcr
        self.replayed = replayed
        self.quoted = quoted


@dataclass(frozen=True, slots=True)
class VerifiedEvents:
    """The events of a log whose replay equals the quoted PCRs it touches.

    ``verified`` maps each bank to the PCRs compared (and equal); ``unverified`` to the PCRs the
    log extends that the quote does not cover (their events are not in ``events``).
    """

    events: tuple[Event, ...]
    verified: Mapping[int, frozenset[int]]
    unverified: Mapping[int, frozenset[int]]
    log_format: str
    quote: VerifiedQuote


def verify_events(log: EventLog, quote: VerifiedQuote) -> VerifiedEvents:
    """Replay ``log`` and check it against ``quote``.

    Raises :class:`ReplayMismatch` (``eventlog.replay_mismatch``), :class:`VerificationError`
    (``eventlog.not_quoted``), and what :func:`~trustcore.eventlog.replay_eventlog` raises for
    a bank this Python cannot hash.
    """
    return verify_replay(log, replay_eventlog(log), quote)


def verify_replay(
    log: EventLog, replayed: Mapping[int, Mapping[int, bytes]], quote: VerifiedQuote
) -> VerifiedEvents:
    """:func:`verify_events` with the replay already computed (``replay_eventlog(log)``, e.g.
    from a cache keyed by the log's hash). Raises as :func:`verify_events`."""
    verified: dict[int, frozenset[int]] = {}
    unverified: dict[int, frozenset[int]] = {}
    for alg in sorted(replayed):
        bank = replayed[alg]
        quoted = quote.pcr_values.get(alg, {})
        matched = set()
        for pcr in sorted(bank):
            if pcr not in quoted:
                continue
            if not hmac.compare_digest(bank[pcr], quoted[pcr]):
                raise ReplayMismatch(alg, pcr, bank[pcr], quoted[pcr])
            matched.add(pcr)
        if matched:
            verified[alg] = frozenset(matched)
        if len(matched) < len(bank):
            unverified[alg] = frozenset(bank) - matched
    if not verified:
        raise VerificationError(
            "the event log extends none of the quoted PCRs", reason="eventlog.not_quoted"
        )
    events = tuple(event for event in log.events if _is_verified(event, verified))
    return VerifiedEvents(events, verified, unverified, log.format, quote)


def _is_verified(event: Event, verified: Mapping[int, frozenset[int]]) -> bool:
    if event.event_type == EV_NO_ACTION or event.pcr == PCR_INDEX_NONE:
        return False
    return any(event.pcr in verified.get(alg, ()) for alg in event.digests)
