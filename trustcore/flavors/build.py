"""Making flavors from a known-good host's evidence and a template.

For each part of the template, the flavor takes from the evidence the value of every listed PCR
in the template's bank and its events (all of them, or those carrying one of ``select_tags``),
and gets the template's rules. What the evidence is worth is the caller's business: the hub
makes flavors from verified evidence; the example generator from a replayed event log file.
"""

from __future__ import annotations

from collections.abc import Mapping

from trustcore.algorithms import HASH_ALGORITHMS
from trustcore.eventlog import EventLog, replay_eventlog
from trustcore.flavors.evidence import Evidence, MeasuredEvent, evidence_from_events
from trustcore.flavors.model import (
    ExpectedEvent,
    Flavor,
    FlavorError,
    FlavorMeta,
    FlavorTemplate,
    PcrReference,
    RuleKind,
    TemplatePart,
    TemplatePcr,
    check_id,
)


def flavors_from_evidence(
    evidence: Evidence,
    template: FlavorTemplate,
    name: str,
    *,
    meta: FlavorMeta | None = None,
) -> tuple[Flavor, ...]:
    """One flavor per template part, with ids ``<name>.<part>``.

    Raises :class:`FlavorError` (reason ``flavor.evidence_incomplete``) when the evidence lacks
    a PCR value a ``pcr_matches`` rule needs or an event's digest in the template's bank, and
    ``flavor.invalid`` when ``name`` is not an identifier or a part would have no rules.
    """
    check_id(name, "name")
    base = meta or FlavorMeta()
    meta = FlavorMeta(
        vendor=base.vendor,
        bios_name=base.bios_name,
        bios_version=base.bios_version,
        tboot_version=base.tboot_version,
        source=base.source,
        template=template.name,
    )
    return tuple(_flavor(evidence, template, part, name, meta) for part in template.parts)


def evidence_from_eventlog(
    log: EventLog, *, asset_tags: Mapping[str, str] | None = None
) -> Evidence:
    """Evidence from an event log alone: PCR values are the log's own replay.

    Nothing is verified: use it to make flavors from a known-good log file and in tests; the
    hub evaluates evidence whose PCR values came from a verified quote. Raises
    :class:`~trustcore.errors.TrustcoreError` when the log cannot be replayed.
    """
    return evidence_from_events(
        log.events, replay_eventlog(log), replay_ok=True, asset_tags=asset_tags
    )


def flavor_from_eventlog(
    log: EventLog,
    template: FlavorTemplate,
    name: str,
    *,
    meta: FlavorMeta | None = None,
    asset_tags: Mapping[str, str] | None = None,
) -> tuple[Flavor, ...]:
    """One flavor per template part from a known-good host's event log (see
    :func:`flavors_from_evidence`; the expected PCR values are the log's replay)."""
    evidence = evidence_from_eventlog(log, asset_tags=asset_tags)
    return flavors_from_evidence(evidence, template, name, meta=meta)


def _flavor(
    evidence: Evidence, template: FlavorTemplate, part: TemplatePart, name: str, meta: FlavorMeta
) -> Flavor:
    refs = tuple(_reference(evidence, template.bank, pcr) for pcr in part.pcrs)
    rules = tuple(rule for pcr in part.pcrs for rule in pcr.rules) + part.rules
    asset_tags = (
        dict(evidence.asset_tags)
        if any(r.kind is RuleKind.ASSET_TAG_MATCHES for r in rules)
        else {}
    )
    return Flavor(
        id=f"{name}.{part.part.value}",
        name=f"{name} {part.part.value}",
        part=part.part,
        bank=template.bank,
        pcrs=refs,
        rules=rules,
        description=part.description,
        meta=meta,
        asset_tags=asset_tags,
    )


def _reference(evidence: Evidence, bank: int, pcr: TemplatePcr) -> PcrReference:
    value = evidence.pcrs.get(bank, {}).get(pcr.index)
    kinds = {r.kind for r in pcr.rules}
    if value is None and RuleKind.PCR_MATCHES in kinds:
        raise FlavorError(
            f"evidence has no {HASH_ALGORITHMS[bank].name} value for PCR {pcr.index}",
            reason="flavor.evidence_incomplete",
        )
    selected = frozenset(pcr.select_tags)
    events = tuple(
        _expected(event, bank)
        for event in evidence.events_in(pcr.index)
        if not selected or event.carries_any(selected)
    )
    has_event_rule = bool(kinds - {RuleKind.PCR_MATCHES})
    return PcrReference(pcr.index, value, events if has_event_rule or value is None else None)


def _expected(event: MeasuredEvent, bank: int) -> ExpectedEvent:
    digest = event.digests.get(bank)
    if digest is None:
        raise FlavorError(
            f"event {event.index} has no {HASH_ALGORITHMS[bank].name} digest",
            reason="flavor.evidence_incomplete",
        )
    return ExpectedEvent(
        type_id=event.event_type,
        type_name=event.type_name,
        digest=digest,
        tags=event.tags,
        description=event.description,
    )
