"""The hub's side of flavors: evaluate a host's assigned flavors against verified evidence.

:func:`evaluate_flavors` is the one hook the verification path calls after the quote and the
event-log replay have been verified. It decodes the stored flavor documents
(:func:`trustcore.flavors.document.flavor_from_json`; documents that carry a content
``revision``, :class:`hub.store.FlavorDocuments`, are decoded once and kept in a bounded cache
keyed by name and content digest), builds the flavor engine's
:class:`~trustcore.flavors.evidence.Evidence` from the *quoted* PCR values and the *replayed*
events (already in the engine's form: :func:`measured_events` runs once per event log), and
runs :func:`trustcore.flavors.evaluation.evaluate`. Assigning flavors to hosts and importing
documents are the API's job.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from hub.cache import LruCache
from trustcore.eventlog import Event
from trustcore.flavors.document import flavor_from_json
from trustcore.flavors.evaluation import (
    DifferenceKind,
    EventDifference,
    FlavorVerdict,
    evaluate,
)
from trustcore.flavors.evidence import Evidence, MeasuredEvent, evidence_from_events
from trustcore.flavors.model import Flavor, FlavorError
from trustcore.quote import VerifiedQuote

MAX_DIFFERENCES: Final = 16  # differing events stored per rule result
DECODED_CACHE_SIZE: Final = 16384  # decoded flavors kept, by (name, content SHA-256)


@dataclass(frozen=True, slots=True)
class RuleOutcome:
    """One flavor rule's result as the hub stores and shows it."""

    rule: str
    passed: bool
    reason: str = ""
    detail: str = ""
    difference: str = ""  # the first differing event in words, for event-log rules
    differences: tuple[Mapping[str, Any], ...] = ()  # the first MAX_DIFFERENCES, as JSON

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "rule": self.rule,
            "passed": self.passed,
            "reason": self.reason,
            "detail": self.detail,
        }
        if self.difference:
            out["difference"] = self.difference
            out["differences"] = [dict(d) for d in self.differences]
        return out


@dataclass(frozen=True, slots=True)
class FlavorOutcome:
    """``reasons`` empty means the flavors are satisfied; ``matched`` names matched flavors."""

    reasons: tuple[str, ...] = ()
    rules: tuple[RuleOutcome, ...] = ()
    matched: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class VerifiedEvidence:
    """What flavor rules may look at: a verified quote and events proved by replay against it."""

    quote: VerifiedQuote
    events: tuple[MeasuredEvent, ...]  # from :func:`measured_events`, in log order
    asset_tags: Mapping[str, str]


def measured_events(events: Sequence[Event]) -> tuple[MeasuredEvent, ...]:
    """A log's events in the flavor engine's form (tags, cut descriptions; events that extend
    no PCR left out). Decodes every event's data: done once per log, cached with it."""
    return evidence_from_events(events, {}, replay_ok=True).events


# decoded flavors by "name:sha256" (hub.store.FlavorDocuments.revision): content-addressed,
# so an entry can never stand for a changed document
_decoded: LruCache[str, Flavor] = LruCache(DECODED_CACHE_SIZE)


def _decode(documents: Mapping[str, Mapping[str, Any]]) -> list[Flavor]:
    revision: tuple[str, ...] | None = getattr(documents, "revision", None)
    keys = dict(zip(documents, revision, strict=True)) if revision is not None else {}
    out: list[Flavor] = []
    for name, doc in sorted(documents.items()):
        key = keys.get(name)
        flavor = _decoded.get(key) if key is not None else None
        if flavor is None:
            flavor = flavor_from_json(doc, f"flavor {name}")
            if key is not None:
                _decoded.put(key, flavor)
        out.append(flavor)
    return out


def describe_difference(d: EventDifference) -> str:
    """One differing event in words: ``PCR 4: EV_EFI_BOOT_SERVICES_APPLICATION (image at
    0x8b980d60, 13664512 bytes) digest changed``. Raises nothing."""
    what = f"{d.type_name} ({d.description})" if d.description else d.type_name
    if d.kind is DifferenceKind.CHANGED:
        return f"PCR {d.pcr}: {what} digest changed"
    if d.kind is DifferenceKind.MISSING:
        return f"PCR {d.pcr}: {what} expected but not measured"
    return f"PCR {d.pcr}: {what} measured but not expected"


def difference_json(d: EventDifference) -> dict[str, Any]:
    """One differing event as the status page shows it (digests in hex)."""
    return {
        "kind": str(d.kind),
        "pcr": d.pcr,
        "type_name": d.type_name,
        "index": d.index,
        "position": d.position,
        "expected_digest": d.expected_digest.hex() if d.expected_digest else None,
        "actual_digest": d.actual_digest.hex() if d.actual_digest else None,
        "description": d.description,
    }


def _outcome(verdict: FlavorVerdict) -> FlavorOutcome:
    rules = tuple(
        RuleOutcome(
            f"{r.flavor_id}/{r.rule_id}",
            r.passed,
            r.reason or "",
            "" if r.passed else f"expected {r.expected}; actual {r.actual}",
            describe_difference(r.differences[0]) if r.differences else "",
            tuple(difference_json(d) for d in r.differences[:MAX_DIFFERENCES]),
        )
        for r in verdict.rule_results()
    )
    reasons = () if verdict.trusted else verdict.reasons or ("flavor.none_matched",)
    return FlavorOutcome(tuple(reasons), rules, tuple(verdict.matched_flavors))


def evaluate_flavors(
    evidence: VerifiedEvidence,
    documents: Mapping[str, Mapping[str, Any]],
    require_flavor: bool,
) -> FlavorOutcome:
    """Evaluate the host's flavor documents; never raises.

    No flavor assigned: nothing to evaluate (``flavor.none_assigned`` if the policy requires
    one). A document that does not decode, or a flavor set the engine refuses as vacuous, is a
    failure with the engine's reason id.
    """
    if not documents:
        if require_flavor:
            return FlavorOutcome(
                ("flavor.none_assigned",),
                (RuleOutcome("flavor.assigned", False, "flavor.none_assigned"),),
            )
        return FlavorOutcome()
    try:
        flavors: Sequence[Flavor] = _decode(documents)
        measured = Evidence(
            pcrs={alg: dict(v) for alg, v in evidence.quote.pcr_values.items()},
            events=evidence.events,
            replay_ok=True,
            asset_tags=dict(evidence.asset_tags),
        )
        return _outcome(evaluate(flavors, measured))
    except FlavorError as e:
        return FlavorOutcome(
            (e.reason,), (RuleOutcome("flavor.evaluate", False, e.reason, e.message),)
        )
