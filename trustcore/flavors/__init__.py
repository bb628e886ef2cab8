"""Flavors: reference measurements, the rules that compare a host's evidence with them, groups.

The package is pure: JSON text in, JSON text out (``document``), objects that check their own
invariants (``model``), evaluation that returns a verdict value with stable reason ids and the
exact differences (``evaluation``), and making flavors from evidence with a template
(``build``). Reading the files in ``firmware_measurements/``, storing flavors and deciding the
host's overall trust are the hub's.
"""

from trustcore.flavors.build import (
    evidence_from_eventlog,
    flavor_from_eventlog,
    flavors_from_evidence,
)
from trustcore.flavors.document import (
    dump_document,
    dump_flavor,
    flavor_from_json,
    flavor_to_json,
    group_from_json,
    group_to_json,
    load_json,
    parse_flavor,
    parse_group,
    parse_template,
    template_from_json,
    template_to_json,
)
from trustcore.flavors.evaluation import (
    DifferenceKind,
    EventDifference,
    FlavorResult,
    FlavorVerdict,
    PartResult,
    RuleResult,
    diff_events,
    evaluate,
    evaluate_flavor,
    evaluate_rule,
)
from trustcore.flavors.evidence import Evidence, MeasuredEvent, event_tags, evidence_from_events
from trustcore.flavors.model import (
    DEFAULT_GROUP,
    ExpectedEvent,
    Flavor,
    FlavorError,
    FlavorGroup,
    FlavorMeta,
    FlavorPart,
    FlavorTemplate,
    MatchPolicy,
    PartPolicy,
    PcrReference,
    Requirement,
    Rule,
    RuleKind,
    TemplatePart,
    TemplatePcr,
)

__all__ = [
    "DEFAULT_GROUP",
    "DifferenceKind",
    "EventDifference",
    "Evidence",
    "ExpectedEvent",
    "Flavor",
    "FlavorError",
    "FlavorGroup",
    "FlavorMeta",
    "FlavorPart",
    "FlavorResult",
    "FlavorTemplate",
    "FlavorVerdict",
    "MatchPolicy",
    "MeasuredEvent",
    "PartPolicy",
    "PartResult",
    "PcrReference",
    "Requirement",
    "Rule",
    "RuleKind",
    "RuleResult",
    "TemplatePart",
    "TemplatePcr",
    "diff_events",
    "dump_document",
    "dump_flavor",
    "evaluate",
    "evaluate_flavor",
    "evaluate_rule",
    "event_tags",
    "evidence_from_eventlog",
    "evidence_from_events",
    "flavor_from_eventlog",
    "flavor_from_json",
    "flavor_to_json",
    "flavors_from_evidence",
    "group_from_json",
    "group_to_json",
    "load_json",
    "parse_flavor",
    "parse_group",
    "parse_template",
    "template_from_json",
    "template_to_json",
]
