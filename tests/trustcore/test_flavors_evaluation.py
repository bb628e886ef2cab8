"""trustcore.flavors evaluation on small hand-made evidence: each rule, event differences,
excluded tags, group policies, and the refusal of vacuous success."""

from __future__ import annotations

import hashlib

import pytest

from trustcore.algorithms import TPM_ALG_SHA1, TPM_ALG_SHA256
from trustcore.flavors import (
    DifferenceKind,
    EventDifference,
    Evidence,
    ExpectedEvent,
    Flavor,
    FlavorError,
    FlavorGroup,
    FlavorPart,
    FlavorTemplate,
    MatchPolicy,
    MeasuredEvent,
    PartPolicy,
    PcrReference,
    Requirement,
    Rule,
    RuleKind,
    TemplatePart,
    TemplatePcr,
    evaluate,
    event_tags,
    flavors_from_evidence,
)

EV_POST_CODE = 0x1
EV_SEPARATOR = 0x4
EV_EFI_VARIABLE_BOOT = 0x80000002


def h(label: str) -> bytes:
    return hashlib.sha256(label.encode()).digest()


def extend_all(labels: list[str]) -> bytes:
    pcr = bytes(32)
    for label in labels:
        pcr = hashlib.sha256(pcr + h(label)).digest()
    return pcr


# The known-good host: PCR 0 = post code A, post code B, separator; PCR 1 = a boot variable.
GOOD = [
    (1, 0, EV_POST_CODE, "EV_POST_CODE", "A"),
    (2, 0, EV_POST_CODE, "EV_POST_CODE", "B"),
    (3, 0, EV_SEPARATOR, "EV_SEPARATOR", "sep"),
    (4, 1, EV_EFI_VARIABLE_BOOT, "EV_EFI_VARIABLE_BOOT", "Boot0001-host1"),
    (5, 1, EV_SEPARATOR, "EV_SEPARATOR", "sep"),
]


def evidence(rows: list[tuple[int, int, int, str, str]], *, replay_ok: bool = True) -> Evidence:
    events = tuple(
        MeasuredEvent(i, pcr, t, name, {TPM_ALG_SHA256: h(label)})
        for i, pcr, t, name, label in rows
    )
    pcrs = {
        pcr: extend_all([label for _, p, _, _, label in rows if p == pcr])
        for pcr in {r[1] for r in rows}
    }
    return Evidence({TPM_ALG_SHA256: pcrs}, events, replay_ok, {"region": "EU"})


def expected_events(pcr: int) -> tuple[ExpectedEvent, ...]:
    return tuple(ExpectedEvent(t, name, h(label)) for _, p, t, name, label in GOOD if p == pcr)


def flavor(
    rules: tuple[Rule, ...],
    *,
    fid: str = "f1",
    part: FlavorPart = FlavorPart.PLATFORM,
    asset_tags: dict[str, str] | None = None,
) -> Flavor:
    refs = (
        PcrReference(0, extend_all(["A", "B", "sep"]), expected_events(0)),
        PcrReference(1, extend_all(["Boot0001-host1", "sep"]), expected_events(1)),
    )
    return Flavor(fid, fid, part, TPM_ALG_SHA256, refs, rules, asset_tags=asset_tags or {})


PCR0_RULES = (Rule(RuleKind.PCR_MATCHES, 0), Rule(RuleKind.EVENTLOG_EQUALS, 0))


def test_known_good_evidence_matches_every_rule() -> None:
    rules = (
        *PCR0_RULES,
        Rule(RuleKind.EVENTLOG_INCLUDES, 1),
        Rule(RuleKind.EVENTLOG_INTEGRITY),
        Rule(RuleKind.ASSET_TAG_MATCHES),
    )
    verdict = evaluate([flavor(rules, asset_tags={"region": "EU"})], evidence(GOOD))
    assert verdict.trusted is True
    assert verdict.reasons == ()
    assert verdict.matched_flavors == ("f1",)
    assert [r.rule_id for r in verdict.rule_results()] == [
        "pcr_matches:0",
        "eventlog_equals:0",
        "eventlog_includes:1",
        "eventlog_integrity",
        "asset_tag_matches",
    ]
    assert all(r.passed and r.reason is None for r in verdict.rule_results())


def test_changed_event_is_reported_with_both_digests() -> None:
    bad = [GOOD[0], (2, 0, EV_POST_CODE, "EV_POST_CODE", "B-new"), *GOOD[2:]]
    verdict = evaluate([flavor(PCR0_RULES)], evidence(bad))
    assert verdict.trusted is False
    assert verdict.reasons == (
        "flavor.none_matched",
        "flavor.platform.eventlog_mismatch",
        "flavor.platform.pcr_mismatch",
    )
    pcr_rule, log_rule = verdict.rule_results()
    assert pcr_rule.expected == f"sha256:0={extend_all(['A', 'B', 'sep']).hex()}"
    assert pcr_rule.actual == f"sha256:0={extend_all(['A', 'B-new', 'sep']).hex()}"
    assert log_rule.differences == (
        EventDifference(DifferenceKind.CHANGED, 0, "EV_POST_CODE", 2, 1, h("B"), h("B-new")),
    )


def test_unexpected_and_changed_events_are_aligned_by_type() -> None:
    # A new event of another type inserted, B replaced by C.
    bad = [
        GOOD[0],
        (2, 0, 0x7, "EV_S_CRTM_CONTENTS", "X"),
        (3, 0, EV_POST_CODE, "EV_POST_CODE", "C"),
        GOOD[2],
    ]
    result = evaluate([flavor(PCR0_RULES)], evidence(bad)).rule_results()[1]
    assert result.passed is False
    assert result.differences == (
        EventDifference(DifferenceKind.UNEXPECTED, 0, "EV_S_CRTM_CONTENTS", 2, None, None, h("X")),
        EventDifference(DifferenceKind.CHANGED, 0, "EV_POST_CODE", 3, 1, h("B"), h("C")),
    )
    assert result.expected == "3 events"
    assert result.actual == "4 events"


def test_excluded_tags_are_left_out_on_both_sides() -> None:
    other_host = [
        *GOOD[:3],
        (4, 1, EV_EFI_VARIABLE_BOOT, "EV_EFI_VARIABLE_BOOT", "Boot0003-host2"),
        GOOD[4],
    ]
    strict = flavor((Rule(RuleKind.EVENTLOG_EQUALS, 1),))
    lenient = flavor((Rule(RuleKind.EVENTLOG_EQUALS, 1, ("EV_EFI_VARIABLE_BOOT",)),))
    strict_result = evaluate([strict], evidence(other_host)).rule_results()[0]
    assert strict_result.differences == (
        EventDifference(
            DifferenceKind.CHANGED,
            1,
            "EV_EFI_VARIABLE_BOOT",
            4,
            0,
            h("Boot0001-host1"),
            h("Boot0003-host2"),
        ),
    )
    verdict = evaluate([lenient], evidence(other_host))
    assert verdict.trusted is True
    assert verdict.rule_results()[0].expected == "1 events excluding EV_EFI_VARIABLE_BOOT"


def test_exclusion_by_a_non_type_tag() -> None:
    ev = evidence(GOOD)
    tagged = Evidence(
        ev.pcrs,
        tuple(
            MeasuredEvent(e.index, e.pcr, e.event_type, e.type_name, e.digests, ("BootOrder",))
            if e.index == 4
            else e
            for e in ev.events
        ),
        True,
    )
    f = Flavor(
        "f1",
        "f1",
        FlavorPart.PLATFORM,
        TPM_ALG_SHA256,
        (PcrReference(1, None, (ExpectedEvent(EV_SEPARATOR, "EV_SEPARATOR", h("sep")),)),),
        (Rule(RuleKind.EVENTLOG_EQUALS, 1, ("BootOrder",)),),
    )
    assert evaluate([f], tagged).trusted is True
    assert evaluate([f], ev).trusted is False


def test_includes_reports_only_missing_events() -> None:
    extra = [*GOOD, (6, 1, EV_EFI_VARIABLE_BOOT, "EV_EFI_VARIABLE_BOOT", "Boot0002")]
    f = flavor((Rule(RuleKind.EVENTLOG_INCLUDES, 1),))
    assert evaluate([f], evidence(extra)).trusted is True
    without_sep = GOOD[:4]
    verdict = evaluate([f], evidence(without_sep))
    assert verdict.reasons == ("flavor.none_matched", "flavor.platform.eventlog_missing")
    assert verdict.rule_results()[0].differences == (
        EventDifference(DifferenceKind.MISSING, 1, "EV_SEPARATOR", None, 1, h("sep"), None),
    )


def test_missing_bank_is_a_mismatch_with_no_actual_value() -> None:
    ev = evidence(GOOD)
    sha1_only = Evidence({TPM_ALG_SHA1: {0: bytes(20)}}, ev.events, True)
    result = evaluate([flavor(PCR0_RULES[:1])], sha1_only).rule_results()[0]
    assert (result.passed, result.reason, result.actual) == (
        False,
        "flavor.platform.pcr_mismatch",
        None,
    )


def test_replay_failure_and_asset_tag_mismatch() -> None:
    f = flavor(
        (Rule(RuleKind.EVENTLOG_INTEGRITY), Rule(RuleKind.ASSET_TAG_MATCHES)),
        part=FlavorPart.ASSET_TAG,
        asset_tags={"region": "US", "rack": "7"},
    )
    group = FlavorGroup("tags", (PartPolicy(FlavorPart.ASSET_TAG, MatchPolicy.ALL_OF),))
    verdict = evaluate([f], evidence(GOOD, replay_ok=False), group)
    assert verdict.reasons == ("assettag.mismatch", "flavor.replay_integrity")
    integrity, tags = verdict.rule_results()
    assert (integrity.expected, integrity.actual) == ("replay ok", "replay failed")
    assert tags.expected == "rack=7, region=US"
    assert tags.actual == "rack=<absent>, region=EU"
    assert [r.id for r in verdict.verdict_reasons()] == [
        "flavor.replay_integrity",
        "assettag.mismatch",
    ]


# --- groups ----------------------------------------------------------------------------------

GOOD_PLATFORM = flavor(PCR0_RULES, fid="good")
OTHER_PLATFORM = Flavor(
    "other",
    "other",
    FlavorPart.PLATFORM,
    TPM_ALG_SHA256,
    (PcrReference(0, h("another firmware")),),
    (Rule(RuleKind.PCR_MATCHES, 0),),
)
OS_GOOD = flavor((Rule(RuleKind.PCR_MATCHES, 1),), fid="os-good", part=FlavorPart.OS)


def group(*policies: PartPolicy) -> FlavorGroup:
    return FlavorGroup("g", policies)


def test_any_of_needs_one_match() -> None:
    g = group(PartPolicy(FlavorPart.PLATFORM, MatchPolicy.ANY_OF))
    verdict = evaluate([OTHER_PLATFORM, GOOD_PLATFORM], evidence(GOOD), g)
    assert verdict.trusted is True
    assert verdict.matched_flavors == ("good",)
    assert evaluate([OTHER_PLATFORM], evidence(GOOD), g).reasons == (
        "flavor.none_matched",
        "flavor.platform.pcr_mismatch",
    )


def test_all_of_needs_every_match() -> None:
    g = group(PartPolicy(FlavorPart.PLATFORM, MatchPolicy.ALL_OF))
    verdict = evaluate([OTHER_PLATFORM, GOOD_PLATFORM], evidence(GOOD), g)
    assert verdict.trusted is False
    assert verdict.reasons == ("flavor.platform.pcr_mismatch",)
    assert verdict.matched_flavors == ("good",)
    assert evaluate([GOOD_PLATFORM], evidence(GOOD), g).trusted is True


def test_required_part_without_flavors_fails() -> None:
    g = group(
        PartPolicy(FlavorPart.PLATFORM),
        PartPolicy(FlavorPart.OS, requirement=Requirement.REQUIRED),
    )
    verdict = evaluate([GOOD_PLATFORM], evidence(GOOD), g)
    assert verdict.trusted is False
    assert verdict.reasons == ("flavor.os.missing",)


def test_required_if_defined_skips_absent_parts_but_checks_present_ones() -> None:
    g = group(
        PartPolicy(FlavorPart.PLATFORM),
        PartPolicy(FlavorPart.OS, requirement=Requirement.REQUIRED_IF_DEFINED),
    )
    assert evaluate([GOOD_PLATFORM], evidence(GOOD), g).trusted is True
    assert [p.part for p in evaluate([GOOD_PLATFORM], evidence(GOOD), g).parts] == [
        FlavorPart.PLATFORM
    ]
    bad_os = Flavor(
        "os-bad",
        "os-bad",
        FlavorPart.OS,
        TPM_ALG_SHA256,
        (PcrReference(1, h("other kernel")),),
        (Rule(RuleKind.PCR_MATCHES, 1),),
    )
    verdict = evaluate([GOOD_PLATFORM, bad_os], evidence(GOOD), g)
    assert verdict.reasons == ("flavor.none_matched", "flavor.os.pcr_mismatch")
    assert evaluate([GOOD_PLATFORM, OS_GOOD], evidence(GOOD), g).trusted is True


def test_flavors_of_parts_outside_the_group_are_not_evaluated() -> None:
    g = group(PartPolicy(FlavorPart.PLATFORM))
    bad_os = Flavor(
        "os-bad",
        "os-bad",
        FlavorPart.OS,
        TPM_ALG_SHA256,
        (PcrReference(1, h("other kernel")),),
        (Rule(RuleKind.PCR_MATCHES, 1),),
    )
    verdict = evaluate([GOOD_PLATFORM, bad_os], evidence(GOOD), g)
    assert verdict.trusted is True
    assert verdict.matched_flavors == ("good",)


# --- vacuous success -------------------------------------------------------------------------


def test_empty_flavor_set_is_an_error() -> None:
    with pytest.raises(FlavorError) as err:
        evaluate([], evidence(GOOD))
    assert err.value.reason == "flavor.vacuous"


def test_group_that_evaluates_nothing_is_an_error() -> None:
    g = group(PartPolicy(FlavorPart.OS, requirement=Requirement.REQUIRED_IF_DEFINED))
    with pytest.raises(FlavorError) as err:
        evaluate([GOOD_PLATFORM], evidence(GOOD), g)
    assert err.value.reason == "flavor.vacuous"


def test_flavor_without_rules_cannot_be_built() -> None:
    with pytest.raises(FlavorError) as err:
        Flavor("f", "f", FlavorPart.PLATFORM, TPM_ALG_SHA256, (PcrReference(0, bytes(32)),), ())
    assert err.value.path == "$.rules"
    assert err.value.reason == "flavor.invalid"


def test_group_without_policies_cannot_be_built() -> None:
    with pytest.raises(FlavorError) as err:
        FlavorGroup("g", ())
    assert err.value.path == "$.parts"


def test_duplicate_flavor_ids_are_refused() -> None:
    with pytest.raises(FlavorError, match="share an id"):
        evaluate([GOOD_PLATFORM, GOOD_PLATFORM], evidence(GOOD))


# --- event tags ------------------------------------------------------------------------------


def efi_variable(name: str, data: bytes = b"\x01") -> bytes:
    raw = name.encode("utf-16-le")
    return (
        bytes(16) + len(name).to_bytes(8, "little") + len(data).to_bytes(8, "little") + raw + data
    )


def test_event_tags_name_efi_variables_and_tboot_modules() -> None:
    assert event_tags(0x80000002, efi_variable("BootOrder")) == ("BootOrder",)
    assert event_tags(0x501, b"vmlinuz\x00") == ("vmlinuz",)
    assert event_tags(0x501, b"") == ()
    assert event_tags(0x501, b"\x01\x02") == ()
    assert event_tags(0x80000003, efi_variable("BootOrder")) == ()


@pytest.mark.parametrize(
    "data",
    [
        b"",
        bytes(31),
        efi_variable("BootOrder")[:40],  # name cut short
        bytes(16) + (2**63).to_bytes(8, "little") + bytes(8),  # absurd name length
        bytes(16) + (1).to_bytes(8, "little") + bytes(8) + b"\x00\xd8",  # lone surrogate
    ],
)
def test_event_tags_never_fail_on_bad_variable_data(data: bytes) -> None:
    assert event_tags(0x80000001, data) == ()


def test_missing_event() -> None:
    bad = [GOOD[0], GOOD[2]]
    result = evaluate([flavor(PCR0_RULES)], evidence(bad)).rule_results()[1]
    assert result.differences == (
        EventDifference(DifferenceKind.MISSING, 0, "EV_POST_CODE", None, 1, h("B"), None),
    )


def test_difference_position_counts_excluded_events_of_the_flavor() -> None:
    changed_sep = [*GOOD[:4], (5, 1, EV_SEPARATOR, "EV_SEPARATOR", "sep-new")]
    f = flavor((Rule(RuleKind.EVENTLOG_EQUALS, 1, ("EV_EFI_VARIABLE_BOOT",)),))
    (diff,) = evaluate([f], evidence(changed_sep)).rule_results()[0].differences
    assert (diff.kind, diff.index, diff.position) == (DifferenceKind.CHANGED, 5, 1)


ASSET_TEMPLATE = FlavorTemplate(
    "tags",
    TPM_ALG_SHA256,
    (TemplatePart(FlavorPart.ASSET_TAG, (), (Rule(RuleKind.ASSET_TAG_MATCHES),)),),
)


def test_asset_tag_flavor_from_evidence() -> None:
    (f,) = flavors_from_evidence(evidence(GOOD), ASSET_TEMPLATE, "host1")
    assert (f.id, f.part, dict(f.asset_tags)) == (
        "host1.asset_tag",
        FlavorPart.ASSET_TAG,
        {"region": "EU"},
    )
    assert f.meta.template == "tags"
    group = FlavorGroup("g", (PartPolicy(FlavorPart.ASSET_TAG),))
    assert evaluate([f], evidence(GOOD), group).trusted is True


def test_asset_tag_flavor_needs_tags_in_the_evidence() -> None:
    untagged = Evidence(evidence(GOOD).pcrs, evidence(GOOD).events, True)
    with pytest.raises(FlavorError) as err:
        flavors_from_evidence(untagged, ASSET_TEMPLATE, "host1")
    assert err.value.path == "$.rules[0]"


def test_template_pcr_without_value_for_pcr_matches_is_incomplete_evidence() -> None:
    template = FlavorTemplate(
        "t",
        TPM_ALG_SHA256,
        (TemplatePart(FlavorPart.PLATFORM, (TemplatePcr(9, (Rule(RuleKind.PCR_MATCHES, 9),)),)),),
    )
    with pytest.raises(FlavorError) as err:
        flavors_from_evidence(evidence(GOOD), template, "host1")
    assert err.value.reason == "flavor.evidence_incomplete"
    assert "PCR 9" in err.value.detail
