"""The flavor data model: reference measurements, the rules that check them, groups, templates.

A *flavor* is one part (platform, os, host_unique, asset_tag) of what a known-good host measured:
for one PCR bank, the expected value and/or the expected events of some PCRs, and the rules that
compare them with a host's evidence. A *flavor group* says how the flavors of each part combine
(any of them / all of them must match; the part is required, or required only if defined). A
*flavor template* names, per platform kind, which PCRs and rules a flavor made from evidence gets.

Every object checks its invariants when built and raises :class:`FlavorError` (with the JSON
path of the bad field when it came from a document). Decoding and encoding JSON is
:mod:`trustcore.flavors.document`; evaluation is :mod:`trustcore.flavors.evaluation`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final

from trustcore.algorithms import HASH_ALGORITHMS
from trustcore.errors import TrustcoreError

MAX_PCR_INDEX: Final = 23
MAX_EVENTS_PER_PCR: Final = 4096
MAX_TAGS: Final = 64
MAX_TEXT: Final = 1024
MAX_ASSET_TAGS: Final = 64
MAX_FLAVORS: Final = 4096

_ID_RE: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")


class FlavorError(TrustcoreError):
    """A flavor, group or template that is malformed or cannot be evaluated.

    ``path`` is the JSON path of the offending field (``$.pcrs[2].events[5].digest``) when the
    object came from a document, else ``$``.
    """

    reason = "flavor.invalid"

    def __init__(self, message: str, *, path: str = "$", reason: str | None = None) -> None:
        super().__init__(f"{path}: {message}", reason=reason)
        self.path = path
        self.detail = message


class FlavorPart(StrEnum):
    PLATFORM = "platform"
    OS = "os"
    HOST_UNIQUE = "host_unique"
    ASSET_TAG = "asset_tag"


class RuleKind(StrEnum):
    """What a rule checks. PCR rules name a PCR; flavor-wide rules do not."""

    PCR_MATCHES = "pcr_matches"
    EVENTLOG_EQUALS = "eventlog_equals"
    EVENTLOG_INCLUDES = "eventlog_includes"
    EVENTLOG_INTEGRITY = "eventlog_integrity"
    ASSET_TAG_MATCHES = "asset_tag_matches"
    EVENTLOG_DATA_VERIFIED = "eventlog_data_verified"


PCR_RULES: Final = frozenset(
    {RuleKind.PCR_MATCHES, RuleKind.EVENTLOG_EQUALS, RuleKind.EVENTLOG_INCLUDES}
)
FLAVOR_RULES: Final = frozenset(
    {RuleKind.EVENTLOG_INTEGRITY, RuleKind.ASSET_TAG_MATCHES, RuleKind.EVENTLOG_DATA_VERIFIED}
)


class MatchPolicy(StrEnum):
    ANY_OF = "any_of"
    ALL_OF = "all_of"


class Requirement(StrEnum):
    REQUIRED = "required"
    REQUIRED_IF_DEFINED = "required_if_defined"


def check_id(value: str, path: str) -> None:
    """Raise :class:`FlavorError` unless ``value`` is a short identifier (letters, digits, ._:-)."""
    if not _ID_RE.match(value):
        raise FlavorError(f"not an identifier (1-128 of A-Z a-z 0-9 . _ : -): {value!r}", path=path)


def check_text(value: str, path: str, *, limit: int = MAX_TEXT) -> None:
    if len(value) > limit:
        raise FlavorError(f"longer than {limit} characters", path=path)


def check_pcr(index: int, path: str) -> None:
    if not 0 <= index <= MAX_PCR_INDEX:
        raise FlavorError(f"PCR index {index} outside 0..{MAX_PCR_INDEX}", path=path)


def check_bank(alg_id: int, path: str) -> None:
    if alg_id not in HASH_ALGORITHMS:
        raise FlavorError(f"unknown PCR bank 0x{alg_id:04x}", path=path)


def check_digest(alg_id: int, value: bytes, path: str) -> None:
    size = HASH_ALGORITHMS[alg_id].digest_size
    if len(value) != size:
        raise FlavorError(
            f"{HASH_ALGORITHMS[alg_id].name} digest must be {size} bytes, got {len(value)}",
            path=path,
        )


def _check_tags(tags: tuple[str, ...], path: str) -> None:
    if len(tags) > MAX_TAGS:
        raise FlavorError(f"more than {MAX_TAGS} tags", path=path)
    for i, tag in enumerate(tags):
        if not tag:
            raise FlavorError("empty tag", path=f"{path}[{i}]")
        check_text(tag, f"{path}[{i}]", limit=256)


@dataclass(frozen=True, slots=True)
class ExpectedEvent:
    """One event a flavor expects in a PCR: its type, its digest in the flavor's bank, its tags.

    ``tags`` are names the event carries besides its type name (``BootOrder``, ``vmlinuz``);
    rules select and exclude events by type name or tag.
    """

    type_id: int
    type_name: str
    digest: bytes
    tags: tuple[str, ...] = ()
    description: str = ""

    def __post_init__(self) -> None:
        if not 0 <= self.type_id <= 0xFFFFFFFF:
            raise FlavorError(f"event type {self.type_id} is not a uint32")
        if not self.type_name:
            raise FlavorError("empty event type name")
        check_text(self.type_name, "$.type_name", limit=256)
        _check_tags(self.tags, "$.tags")
        check_text(self.description, "$.description")

    def carries_any(self, tags: frozenset[str]) -> bool:
        """Whether this event has its type name or one of its tags in ``tags``."""
        return self.type_name in tags or not tags.isdisjoint(self.tags)


@dataclass(frozen=True, slots=True)
class Rule:
    """One check. PCR rules carry ``pcr``; ``excluding_tags`` applies to the event-log rules."""

    kind: RuleKind
    pcr: int | None = None
    excluding_tags: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.kind in PCR_RULES:
            if self.pcr is None:
                raise FlavorError(f"rule {self.kind} needs a PCR")
            check_pcr(self.pcr, "$.pcr")
        elif self.pcr is not None:
            raise FlavorError(f"rule {self.kind} does not take a PCR")
        if self.excluding_tags and self.kind not in (
            RuleKind.EVENTLOG_EQUALS,
            RuleKind.EVENTLOG_INCLUDES,
        ):
            raise FlavorError(f"rule {self.kind} does not take excluding_tags")
        _check_tags(self.excluding_tags, "$.excluding_tags")

    @property
    def rule_id(self) -> str:
        """``pcr_matches:7``, ``eventlog_integrity``: unique within one flavor."""
        return self.kind.value if self.pcr is None else f"{self.kind.value}:{self.pcr}"


@dataclass(frozen=True, slots=True)
class PcrReference:
    """What a flavor knows about one PCR: its value and/or its events (in measurement order)."""

    index: int
    value: bytes | None = None
    events: tuple[ExpectedEvent, ...] | None = None

    def __post_init__(self) -> None:
        check_pcr(self.index, "$.index")
        if self.value is None and self.events is None:
            raise FlavorError(f"PCR {self.index} has neither a value nor events")
        if self.events is not None and len(self.events) > MAX_EVENTS_PER_PCR:
            raise FlavorError(f"PCR {self.index} has more than {MAX_EVENTS_PER_PCR} events")


@dataclass(frozen=True, slots=True)
class FlavorMeta:
    """Where a flavor came from; informational, never evaluated."""

    vendor: str = ""
    bios_name: str = ""
    bios_version: str = ""
    tboot_version: str = ""
    source: str = ""
    template: str = ""

    def __post_init__(self) -> None:
        for name in ("vendor", "bios_name", "bios_version", "tboot_version", "source", "template"):
            check_text(getattr(self, name), f"$.meta.{name}")


@dataclass(frozen=True, slots=True)
class Flavor:
    """One flavor part. Build it here or through :func:`trustcore.flavors.parse_flavor`.

    Invariants: at least one rule; every PCR rule names a PCR the flavor has a reference for,
    with a value (``pcr_matches``) or events (event-log rules); no rule twice; digests have the
    bank's size; ``asset_tag_matches`` needs asset tags.
    """

    id: str
    name: str
    part: FlavorPart
    bank: int
    pcrs: tuple[PcrReference, ...]
    rules: tuple[Rule, ...]
    description: str = ""
    meta: FlavorMeta = field(default_factory=FlavorMeta)
    asset_tags: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_id(self.id, "$.id")
        if not self.name:
            raise FlavorError("empty name", path="$.name")
        check_text(self.name, "$.name", limit=256)
        check_text(self.description, "$.description")
        check_bank(self.bank, "$.bank")
        self._check_pcrs()
        self._check_rules()
        if len(self.asset_tags) > MAX_ASSET_TAGS:
            raise FlavorError(f"more than {MAX_ASSET_TAGS} asset tags", path="$.asset_tags")

    def _check_pcrs(self) -> None:
        seen: set[int] = set()
        for i, ref in enumerate(self.pcrs):
            if ref.index in seen:
                raise FlavorError(f"PCR {ref.index} listed twice", path=f"$.pcrs[{i}].index")
            seen.add(ref.index)
            if ref.value is not None:
                check_digest(self.bank, ref.value, f"$.pcrs[{i}].value")
            for j, event in enumerate(ref.events or ()):
                check_digest(self.bank, event.digest, f"$.pcrs[{i}].events[{j}].digest")

    def _check_rules(self) -> None:
        if not self.rules:
            raise FlavorError("a flavor with no rules would match anything", path="$.rules")
        refs = {ref.index: ref for ref in self.pcrs}
        ids: set[str] = set()
        for i, rule in enumerate(self.rules):
            path = f"$.rules[{i}]"
            if rule.rule_id in ids:
                raise FlavorError(f"rule {rule.rule_id} listed twice", path=path)
            ids.add(rule.rule_id)
            if rule.kind is RuleKind.ASSET_TAG_MATCHES and not self.asset_tags:
                raise FlavorError("asset_tag_matches needs asset_tags", path=path)
            if rule.pcr is None:
                continue
            ref = refs.get(rule.pcr)
            if ref is None:
                raise FlavorError(f"no reference for PCR {rule.pcr}", path=f"{path}.pcr")
            if rule.kind is RuleKind.PCR_MATCHES and ref.value is None:
                raise FlavorError(f"PCR {rule.pcr} has no expected value", path=path)
            if rule.kind is not RuleKind.PCR_MATCHES and ref.events is None:
                raise FlavorError(f"PCR {rule.pcr} has no expected events", path=path)

    def reference(self, pcr: int) -> PcrReference:
        """The reference for ``pcr``; raises :class:`FlavorError` if the flavor has none."""
        for ref in self.pcrs:
            if ref.index == pcr:
                return ref
        raise FlavorError(f"flavor {self.id} has no reference for PCR {pcr}")


@dataclass(frozen=True, slots=True)
class PartPolicy:
    """How the flavors of one part combine."""

    part: FlavorPart
    match: MatchPolicy = MatchPolicy.ANY_OF
    requirement: Requirement = Requirement.REQUIRED


@dataclass(frozen=True, slots=True)
class FlavorGroup:
    """A named set of part policies; each part appears at most once, at least one part."""

    name: str
    policies: tuple[PartPolicy, ...]
    description: str = ""

    def __post_init__(self) -> None:
        check_id(self.name, "$.name")
        check_text(self.description, "$.description")
        if not self.policies:
            raise FlavorError("a group with no part policies would match anything", path="$.parts")
        seen: set[FlavorPart] = set()
        for i, policy in enumerate(self.policies):
            if policy.part in seen:
                raise FlavorError(f"part {policy.part} listed twice", path=f"$.parts[{i}].part")
            seen.add(policy.part)

    def policy(self, part: FlavorPart) -> PartPolicy | None:
        return next((p for p in self.policies if p.part is part), None)


DEFAULT_GROUP: Final = FlavorGroup(
    name="automatic",
    description="platform required; os, host_unique and asset_tag required if defined; any of",
    policies=(
        PartPolicy(FlavorPart.PLATFORM, MatchPolicy.ANY_OF, Requirement.REQUIRED),
        PartPolicy(FlavorPart.OS, MatchPolicy.ANY_OF, Requirement.REQUIRED_IF_DEFINED),
        PartPolicy(FlavorPart.HOST_UNIQUE, MatchPolicy.ANY_OF, Requirement.REQUIRED_IF_DEFINED),
        PartPolicy(FlavorPart.ASSET_TAG, MatchPolicy.ALL_OF, Requirement.REQUIRED_IF_DEFINED),
    ),
)


@dataclass(frozen=True, slots=True)
class TemplatePcr:
    """A PCR a template takes from evidence: which events to keep (all, or those with
    ``select_tags``) and which rules the flavor gets for it."""

    index: int
    rules: tuple[Rule, ...]
    select_tags: tuple[str, ...] = ()
    description: str = ""

    def __post_init__(self) -> None:
        check_pcr(self.index, "$.index")
        check_text(self.description, "$.description")
        if not self.rules:
            raise FlavorError(f"template PCR {self.index} has no rules", path="$.rules")
        for rule in self.rules:
            if rule.pcr != self.index:
                raise FlavorError(f"rule {rule.rule_id} is not about PCR {self.index}")
        _check_tags(self.select_tags, "$.select_tags")


@dataclass(frozen=True, slots=True)
class TemplatePart:
    part: FlavorPart
    pcrs: tuple[TemplatePcr, ...]
    rules: tuple[Rule, ...] = ()
    description: str = ""

    def __post_init__(self) -> None:
        if not self.pcrs and not self.rules:
            raise FlavorError(f"template part {self.part} has no rules", path="$.rules")
        for rule in self.rules:
            if rule.kind not in FLAVOR_RULES:
                raise FlavorError(f"rule {rule.kind} belongs to a PCR", path="$.rules")
        check_text(self.description, "$.description")


@dataclass(frozen=True, slots=True)
class FlavorTemplate:
    """Per platform kind: the PCR bank and, per part, the PCRs and rules of flavors made from
    evidence."""

    name: str
    bank: int
    parts: tuple[TemplatePart, ...]
    description: str = ""

    def __post_init__(self) -> None:
        check_id(self.name, "$.name")
        check_bank(self.bank, "$.bank")
        check_text(self.description, "$.description")
        if not self.parts:
            raise FlavorError("a template with no parts", path="$.parts")
        seen: set[FlavorPart] = set()
        for i, part in enumerate(self.parts):
            if part.part in seen:
                raise FlavorError(f"part {part.part} listed twice", path=f"$.parts[{i}].part")
            seen.add(part.part)
