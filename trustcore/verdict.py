"""Trust verdicts: a host's status with the stable reason ids that explain it.

A verdict is a *value* (see STYLE.md: the second kind of "no"): the hub stores it, shows it,
signs it into trust reports and turns it into labels and taints. Reason ids are dotted, stable
identifiers (``quote.signature_invalid``, ``flavor.platform.pcr_mismatch``); the detail is for
people. This module only defines the values and how reasons combine; the checks that produce
them live in their own modules (quote, eventlog, flavors) and the decision in the hub.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from trustcore.errors import TrustcoreError

_REASON_RE: Final = re.compile(r"^[a-z0-9_]+(\.[a-z0-9_]+)+$")
MAX_DETAIL: Final = 1024


class TrustStatus(StrEnum):
    TRUSTED = "trusted"
    UNTRUSTED = "untrusted"
    STALE = "stale"  # no valid report since the last one expired: treated as untrusted
    PENDING = "pending"  # not yet attested (enrollment awaiting approval, no report)


@dataclass(frozen=True, slots=True, order=True)
class Reason:
    """One reason: a stable dotted id and a sentence for people."""

    id: str
    detail: str = ""

    def __post_init__(self) -> None:
        if not _REASON_RE.match(self.id):
            raise TrustcoreError(f"not a dotted reason id: {self.id!r}", reason="verdict.invalid")
        if len(self.detail) > MAX_DETAIL:
            raise TrustcoreError("reason detail too long", reason="verdict.invalid")


@dataclass(frozen=True, slots=True)
class TrustVerdict:
    """A status and its reasons, sorted and unique by id.

    Invariants: ``trusted`` has no reasons; ``untrusted`` and ``stale`` have at least one.
    """

    status: TrustStatus
    reasons: tuple[Reason, ...] = ()

    def __post_init__(self) -> None:
        if self.status is TrustStatus.TRUSTED and self.reasons:
            raise TrustcoreError("a trusted verdict carries no reasons", reason="verdict.invalid")
        if self.status in (TrustStatus.UNTRUSTED, TrustStatus.STALE) and not self.reasons:
            raise TrustcoreError(
                f"a {self.status} verdict needs a reason", reason="verdict.invalid"
            )

    @property
    def trusted(self) -> bool:
        return self.status is TrustStatus.TRUSTED

    @property
    def reason_ids(self) -> tuple[str, ...]:
        return tuple(r.id for r in self.reasons)


def trusted() -> TrustVerdict:
    return TrustVerdict(TrustStatus.TRUSTED)


def untrusted(reasons: Iterable[Reason]) -> TrustVerdict:
    """An untrusted verdict; reasons are de-duplicated by id (first detail wins) and sorted.

    Raises :class:`TrustcoreError` (``verdict.invalid``) when ``reasons`` is empty.
    """
    by_id: dict[str, Reason] = {}
    for reason in reasons:
        by_id.setdefault(reason.id, reason)
    return TrustVerdict(TrustStatus.UNTRUSTED, tuple(sorted(by_id.values())))
