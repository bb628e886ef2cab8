"""Evaluating flavors against evidence: one result per rule, per flavor, per part, one verdict.

A failing rule is a *verdict*, never an exception: it carries a stable reason id
(``flavor.platform.pcr_mismatch``), the expected and actual values and, for event-log rules, the
exact events that differ. Exceptions (:class:`FlavorError`) are kept for what cannot be
evaluated at all: an empty flavor set, or a group under which no flavor part was evaluated
(both would otherwise be vacuous successes).

This module compares; it does not decide what evidence is trustworthy (the caller hands over
PCR values from a verified quote and the events proved by replay against it).
"""

from __future__ import annotations

import difflib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from trustcore.algorithms import HASH_ALGORITHMS
from trustcore.flavors.evidence import Evidence, MeasuredEvent
from trustcore.flavors.model import (
    DEFAULT_GROUP,
    MAX_FLAVORS,
    ExpectedEvent,
    Flavor,
    FlavorError,
    FlavorGroup,
    FlavorPart,
    MatchPolicy,
    Requirement,
    Rule,
    RuleKind,
)
from trustcore.verdict import MAX_DETAIL, Reason

REASON_NONE_MATCHED: Final = "flavor.none_matched"
REASON_REPLAY: Final = "flavor.replay_integrity"
REASON_ASSET_TAG: Final = "assettag.mismatch"


def part_reason(part: FlavorPart, what: str) -> str:
    """``flavor.<part>.<what>``, e.g. ``flavor.os.pcr_mismatch``."""
    return f"flavor.{part.value}.{what}"


class DifferenceKind(StrEnum):
    MISSING = "missing"  # the flavor expects it, the host did not measure it
    UNEXPECTED = "unexpected"  # the host measured it, the flavor does not expect it
    CHANGED = "changed"  # same place and type, different digest


@dataclass(frozen=True, slots=True)
class EventDifference:
    """One event that differs. ``index`` is the host log's event index (None if missing);
    ``position`` is the place in the flavor's list for that PCR (None if unexpected)."""

    kind: DifferenceKind
    pcr: int
    type_name: str
    index: int | None
    position: int | None
    expected_digest: bytes | None
    actual_digest: bytes | None
    description: str = ""

    def describe(self) -> str:
        exp = self.expected_digest.hex() if self.expected_digest else "-"
        act = self.actual_digest.hex() if self.actual_digest else "-"
        where = f"event {self.index}" if self.index is not None else f"#{self.position}"
        text = f" ({self.description})" if self.description else ""
        return f"PCR {self.pcr} {where} {self.type_name} {self.kind}: {exp} -> {act}{text}"


@dataclass(frozen=True, slots=True)
class RuleResult:
    """The outcome of one rule of one flavor; ``reason`` is None when it passed."""

    flavor_id: str
    rule_id: str
    kind: RuleKind
    pcr: int | None
    passed: bool
    reason: str | None
    expected: str
    actual: str | None
    differences: tuple[EventDifference, ...] = ()


@dataclass(frozen=True, slots=True)
class FlavorResult:
    flavor_id: str
    name: str
    part: FlavorPart
    rules: tuple[RuleResult, ...]

    @property
    def matched(self) -> bool:
        return all(r.passed for r in self.rules)


@dataclass(frozen=True, slots=True)
class PartResult:
    """How one part fared under its policy; ``flavors`` empty when none was defined."""

    part: FlavorPart
    match: MatchPolicy
    requirement: Requirement
    passed: bool
    reasons: tuple[str, ...]
    flavors: tuple[FlavorResult, ...]


@dataclass(frozen=True, slots=True)
class FlavorVerdict:
    """Trusted only when every evaluated part passed. ``reasons`` are sorted, unique ids."""

    trusted: bool
    reasons: tuple[str, ...]
    parts: tuple[PartResult, ...]
    matched_flavors: tuple[str, ...]

    def rule_results(self) -> tuple[RuleResult, ...]:
        return tuple(r for p in self.parts for f in p.flavors for r in f.rules)

    def verdict_reasons(self) -> tuple[Reason, ...]:
        """The failures of failing parts as :class:`~trustcore.verdict.Reason` values, one per
        failing rule (``<flavor>/<rule>: expected ...; actual ...``), plus part-level ones."""
        out: list[Reason] = []
        for part in self.parts:
            if part.passed:
                continue
            ruled = set()
            for flavor in part.flavors:
                for r in flavor.rules:
                    if r.reason is None:
                        continue
                    ruled.add(r.reason)
                    detail = f"{r.flavor_id}/{r.rule_id}: expected {r.expected}; actual {r.actual}"
                    out.append(Reason(r.reason, detail[:MAX_DETAIL]))
            out.extend(Reason(rid, f"part {part.part}") for rid in part.reasons if rid not in ruled)
        return tuple(out)


def evaluate(
    flavors: Sequence[Flavor], evidence: Evidence, group: FlavorGroup = DEFAULT_GROUP
) -> FlavorVerdict:
    """Evaluate ``flavors`` against ``evidence`` under ``group``'s part policies.

    Raises :class:`FlavorError` (reason ``flavor.vacuous``) when ``flavors`` is empty or no part
    of ``group`` had flavors to evaluate and none was required, and ``flavor.invalid`` when
    more than MAX_FLAVORS are given or two flavors share an id.
    """
    if not flavors:
        raise FlavorError("no flavors: nothing to be trusted against", reason="flavor.vacuous")
    if len(flavors) > MAX_FLAVORS:
        raise FlavorError(f"more than {MAX_FLAVORS} flavors")
    if len({f.id for f in flavors}) != len(flavors):
        raise FlavorError("two flavors share an id")
    parts: list[PartResult] = []
    for policy in group.policies:
        candidates = [f for f in flavors if f.part is policy.part]
        if not candidates and policy.requirement is Requirement.REQUIRED_IF_DEFINED:
            continue
        results = tuple(evaluate_flavor(f, evidence) for f in candidates)
        parts.append(_part_result(policy.part, policy.match, policy.requirement, results))
    if not any(p.flavors for p in parts):
        raise FlavorError(
            f"group {group.name} evaluated none of the given flavors", reason="flavor.vacuous"
        )
    reasons = sorted({r for p in parts for r in p.reasons})
    matched = tuple(f.flavor_id for p in parts for f in p.flavors if f.matched)
    return FlavorVerdict(
        trusted=all(p.passed for p in parts),
        reasons=tuple(reasons),
        parts=tuple(parts),
        matched_flavors=matched,
    )


def _part_result(
    part: FlavorPart,
    match: MatchPolicy,
    requirement: Requirement,
    results: tuple[FlavorResult, ...],
) -> PartResult:
    if not results:
        return PartResult(part, match, requirement, False, (part_reason(part, "missing"),), ())
    if match is MatchPolicy.ANY_OF:
        passed = any(f.matched for f in results)
    else:
        passed = all(f.matched for f in results)
    reasons: set[str] = set()
    if not passed:
        reasons = {r.reason for f in results for r in f.rules if r.reason is not None}
        if match is MatchPolicy.ANY_OF:
            reasons.add(REASON_NONE_MATCHED)
    return PartResult(part, match, requirement, passed, tuple(sorted(reasons)), results)


def evaluate_flavor(flavor: Flavor, evidence: Evidence) -> FlavorResult:
    """Every rule of one flavor against ``evidence``; raises nothing."""
    rules = tuple(evaluate_rule(flavor, rule, evidence) for rule in flavor.rules)
    return FlavorResult(flavor.id, flavor.name, flavor.part, rules)


def evaluate_rule(flavor: Flavor, rule: Rule, evidence: Evidence) -> RuleResult:
    """One rule of ``flavor`` against ``evidence``; raises nothing."""
    if rule.kind is RuleKind.PCR_MATCHES:
        return _pcr_matches(flavor, rule, evidence)
    if rule.kind is RuleKind.EVENTLOG_EQUALS:
        return _eventlog_equals(flavor, rule, evidence)
    if rule.kind is RuleKind.EVENTLOG_INCLUDES:
        return _eventlog_includes(flavor, rule, evidence)
    if rule.kind is RuleKind.EVENTLOG_DATA_VERIFIED:
        return _data_verified(flavor, rule, evidence)
    if rule.kind is RuleKind.EVENTLOG_INTEGRITY:
        actual = "replay ok" if evidence.replay_ok else "replay failed"
        return _result(
            flavor, rule, evidence.replay_ok, REASON_REPLAY, expected="replay ok", actual=actual
        )
    return _asset_tags(flavor, rule, evidence)


def _result(
    flavor: Flavor,
    rule: Rule,
    passed: bool,
    reason: str,
    *,
    expected: str,
    actual: str | None,
    differences: tuple[EventDifference, ...] = (),
) -> RuleResult:
    return RuleResult(
        flavor_id=flavor.id,
        rule_id=rule.rule_id,
        kind=rule.kind,
        pcr=rule.pcr,
        passed=passed,
        reason=None if passed else reason,
        expected=expected,
        actual=actual,
        differences=differences,
    )


def _data_verified(flavor: Flavor, rule: Rule, evidence: Evidence) -> RuleResult:
    """Every event in the flavor's PCRs whose type is hashed over its data carries data that
    gives its digests (trustcore.eventlog.datadigest)."""
    pcrs = {ref.index for ref in flavor.pcrs}
    bad = [e for e in evidence.events if e.pcr in pcrs and e.data_check == "mismatch"]
    named = ", ".join(f"PCR {e.pcr} event {e.index} {e.type_name}" for e in bad[:3])
    more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
    return _result(
        flavor,
        rule,
        not bad,
        part_reason(flavor.part, "event_data_unverified"),
        expected="the data of every data-hashed event gives its digest",
        actual=f"unverified: {named}{more}" if bad else "all verified",
    )


def _pcr_matches(flavor: Flavor, rule: Rule, evidence: Evidence) -> RuleResult:
    assert rule.pcr is not None  # guaranteed by Rule
    expected = flavor.reference(rule.pcr).value
    assert expected is not None  # guaranteed by Flavor
    actual = evidence.pcrs.get(flavor.bank, {}).get(rule.pcr)
    bank = HASH_ALGORITHMS[flavor.bank].name
    return _result(
        flavor,
        rule,
        actual == expected,
        part_reason(flavor.part, "pcr_mismatch"),
        expected=f"{bank}:{rule.pcr}={expected.hex()}",
        actual=None if actual is None else f"{bank}:{rule.pcr}={actual.hex()}",
    )


_Key = tuple[int, bytes | None]


def _selected(
    flavor: Flavor, rule: Rule, evidence: Evidence
) -> tuple[list[tuple[int, ExpectedEvent]], list[MeasuredEvent]]:
    """The PCR's expected events (with their places in the flavor's list) and the host's
    events, both without the excluded ones."""
    assert rule.pcr is not None
    excluded = frozenset(rule.excluding_tags)
    events = flavor.reference(rule.pcr).events or ()
    expected = [(i, e) for i, e in enumerate(events) if not e.carries_any(excluded)]
    actual = [e for e in evidence.events_in(rule.pcr) if not e.carries_any(excluded)]
    return expected, actual


def _summary(count: int, excluded: tuple[str, ...]) -> str:
    suffix = f" excluding {', '.join(excluded)}" if excluded else ""
    return f"{count} events{suffix}"


def _eventlog_equals(flavor: Flavor, rule: Rule, evidence: Evidence) -> RuleResult:
    assert rule.pcr is not None
    expected, actual = _selected(flavor, rule, evidence)
    diffs = _diff(rule.pcr, expected, actual, flavor.bank)
    return _result(
        flavor,
        rule,
        not diffs,
        part_reason(flavor.part, "eventlog_mismatch"),
        expected=_summary(len(expected), rule.excluding_tags),
        actual=_summary(len(actual), rule.excluding_tags),
        differences=diffs,
    )


def _eventlog_includes(flavor: Flavor, rule: Rule, evidence: Evidence) -> RuleResult:
    assert rule.pcr is not None
    expected, actual = _selected(flavor, rule, evidence)
    have = Counter((e.event_type, e.digests.get(flavor.bank)) for e in actual)
    missing: list[EventDifference] = []
    for pos, event in expected:
        key = (event.type_id, event.digest)
        if have[key] > 0:
            have[key] -= 1
            continue
        missing.append(_missing(rule.pcr, pos, event))
    return _result(
        flavor,
        rule,
        not missing,
        part_reason(flavor.part, "eventlog_missing"),
        expected=f"includes {_summary(len(expected), rule.excluding_tags)}",
        actual=_summary(len(actual), rule.excluding_tags),
        differences=tuple(missing),
    )


def diff_events(
    pcr: int, expected: Sequence[ExpectedEvent], actual: Sequence[MeasuredEvent], bank: int
) -> tuple[EventDifference, ...]:
    """The differences between a flavor's events and a host's events of one PCR, in order.

    Runs that differ are aligned by event type: an expected event and a host event of the same
    type at the same place are one ``changed`` difference; the rest are ``missing`` (expected,
    not measured) or ``unexpected`` (measured, not expected). Raises nothing.
    """
    return _diff(pcr, list(enumerate(expected)), actual, bank)


def _diff(
    pcr: int,
    expected: Sequence[tuple[int, ExpectedEvent]],
    actual: Sequence[MeasuredEvent],
    bank: int,
) -> tuple[EventDifference, ...]:
    exp_keys: list[_Key] = [(e.type_id, e.digest) for _, e in expected]
    act_keys: list[_Key] = [(e.event_type, e.digests.get(bank)) for e in actual]
    if exp_keys == act_keys:
        return ()
    matcher = difflib.SequenceMatcher(a=exp_keys, b=act_keys, autojunk=False)
    out: list[EventDifference] = []
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag != "equal":
            out.extend(_align(pcr, bank, expected[i1:i2], actual[j1:j2]))
    return tuple(out)


def _align(
    pcr: int,
    bank: int,
    expected: Sequence[tuple[int, ExpectedEvent]],
    actual: Sequence[MeasuredEvent],
) -> list[EventDifference]:
    out: list[EventDifference] = []
    j = 0
    for pos, e in expected:
        k = next((k for k in range(j, len(actual)) if actual[k].event_type == e.type_id), None)
        if k is None:
            out.append(_missing(pcr, pos, e))
            continue
        out.extend(_unexpected(pcr, a, bank) for a in actual[j:k])
        a = actual[k]
        out.append(
            EventDifference(
                DifferenceKind.CHANGED,
                pcr,
                e.type_name,
                a.index,
                pos,
                e.digest,
                a.digests.get(bank),
                a.description,
            )
        )
        j = k + 1
    out.extend(_unexpected(pcr, a, bank) for a in actual[j:])
    return out


def _missing(pcr: int, pos: int, e: ExpectedEvent) -> EventDifference:
    return EventDifference(
        DifferenceKind.MISSING, pcr, e.type_name, None, pos, e.digest, None, e.description
    )


def _unexpected(pcr: int, a: MeasuredEvent, bank: int) -> EventDifference:
    return EventDifference(
        DifferenceKind.UNEXPECTED,
        pcr,
        a.type_name,
        a.index,
        None,
        None,
        a.digests.get(bank),
        a.description,
    )


def _asset_tags(flavor: Flavor, rule: Rule, evidence: Evidence) -> RuleResult:
    wrong = sorted(k for k, v in flavor.asset_tags.items() if evidence.asset_tags.get(k) != v)
    expected = ", ".join(f"{k}={v}" for k, v in sorted(flavor.asset_tags.items()))
    actual = ", ".join(f"{k}={evidence.asset_tags.get(k, '<absent>')}" for k in wrong)
    return _result(
        flavor,
        rule,
        not wrong,
        REASON_ASSET_TAG,
        expected=expected,
        actual=actual if wrong else expected,
    )
