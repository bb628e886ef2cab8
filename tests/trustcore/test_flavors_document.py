"""trustcore.flavors.document: strict decoding with exact error paths, and JSON round trips."""

from __future__ import annotations

import contextlib
import copy
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trustcore.algorithms import TPM_ALG_SHA256
from trustcore.flavors import (
    FlavorError,
    FlavorPart,
    MatchPolicy,
    Requirement,
    RuleKind,
    dump_flavor,
    flavor_to_json,
    group_to_json,
    parse_flavor,
    parse_group,
    parse_template,
    template_to_json,
)

DIGEST = "11" * 32


def good_flavor() -> dict[str, Any]:
    return {
        "schema": "trustplane.flavor/v1",
        "id": "host1.platform",
        "name": "host1 platform",
        "part": "platform",
        "description": "made by hand",
        "meta": {"vendor": "Acme", "bios_version": "1.2.3", "source": "test"},
        "bank": "sha256",
        "pcrs": [
            {
                "index": 0,
                "value": DIGEST,
                "events": [
                    {"type_id": 8, "type_name": "EV_S_CRTM_VERSION", "digest": "22" * 32},
                    {
                        "type_id": 4,
                        "type_name": "EV_SEPARATOR",
                        "digest": "33" * 32,
                        "tags": ["EV_SEPARATOR"],
                        "description": "separator",
                    },
                ],
            },
            {"index": 7, "value": "44" * 32},
        ],
        "rules": [
            {"rule": "pcr_matches", "pcr": 0},
            {"rule": "eventlog_equals", "pcr": 0, "excluding_tags": ["EV_POST_CODE"]},
            {"rule": "pcr_matches", "pcr": 7},
            {"rule": "eventlog_integrity"},
            {"rule": "asset_tag_matches"},
        ],
        "asset_tags": {"region": "EU"},
    }


def test_good_flavor_decodes_to_exact_values() -> None:
    flavor = parse_flavor(json.dumps(good_flavor()))
    assert flavor.id == "host1.platform"
    assert flavor.part is FlavorPart.PLATFORM
    assert flavor.bank == TPM_ALG_SHA256
    assert flavor.meta.vendor == "Acme"
    assert flavor.meta.bios_version == "1.2.3"
    assert flavor.pcrs[0].value == bytes.fromhex(DIGEST)
    assert flavor.pcrs[0].events is not None
    assert flavor.pcrs[0].events[1].tags == ("EV_SEPARATOR",)
    assert flavor.pcrs[1].events is None
    assert [(r.kind, r.pcr, r.excluding_tags) for r in flavor.rules] == [
        (RuleKind.PCR_MATCHES, 0, ()),
        (RuleKind.EVENTLOG_EQUALS, 0, ("EV_POST_CODE",)),
        (RuleKind.PCR_MATCHES, 7, ()),
        (RuleKind.EVENTLOG_INTEGRITY, None, ()),
        (RuleKind.ASSET_TAG_MATCHES, None, ()),
    ]
    assert dict(flavor.asset_tags) == {"region": "EU"}


def test_round_trip_is_identity_on_values_and_text() -> None:
    flavor = parse_flavor(json.dumps(good_flavor()))
    again = parse_flavor(dump_flavor(flavor))
    assert again == flavor
    assert dump_flavor(again) == dump_flavor(flavor)
    doc = flavor_to_json(flavor)
    assert doc["pcrs"][0]["events"][0] == {
        "type_id": 8,
        "type_name": "EV_S_CRTM_VERSION",
        "digest": "22" * 32,
    }
    assert doc["rules"][1] == {
        "rule": "eventlog_equals",
        "pcr": 0,
        "excluding_tags": ["EV_POST_CODE"],
    }


def mutate(path: list[Any], value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(good_flavor())
    target: Any = doc
    for key in path[:-1]:
        target = target[key]
    if value is DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return doc


DELETE = object()

BAD_FLAVORS = [
    ("not an object", [], None, "$", "expected an object"),
    ("wrong schema", ["schema"], "trustplane.flavor/v2", "$.schema", "expected schema"),
    ("missing id", ["id"], DELETE, "$.id", "missing field"),
    ("unknown field", ["colour"], "blue", "$.colour", "unknown field"),
    ("bad id", ["id"], "has space", "$.id", "not an identifier"),
    ("bad part", ["part"], "firmware", "$.part", "unknown value 'firmware'"),
    ("bad bank", ["bank"], "md5", "$.bank", "unknown PCR bank 'md5'"),
    ("pcr out of range", ["pcrs", 1, "index"], 24, "$.pcrs[1].index", "24 outside 0..23"),
    ("pcr index bool", ["pcrs", 1, "index"], True, "$.pcrs[1].index", "expected an integer"),
    ("short value", ["pcrs", 1, "value"], "44" * 20, "$.pcrs[1].value", "must be 32 bytes"),
    ("upper hex", ["pcrs", 1, "value"], "AB" * 32, "$.pcrs[1].value", "lower-case hex"),
    ("odd hex", ["pcrs", 1, "value"], "abc", "$.pcrs[1].value", "lower-case hex"),
    (
        "bad event digest",
        ["pcrs", 0, "events", 1, "digest"],
        "33" * 20,
        "$.pcrs[0].events[1].digest",
        "sha256 digest must be 32 bytes, got 20",
    ),
    (
        "event type too big",
        ["pcrs", 0, "events", 0, "type_id"],
        2**32,
        "$.pcrs[0].events[0].type_id",
        "outside 0..4294967295",
    ),
    (
        "event unknown field",
        ["pcrs", 0, "events", 0, "pcr"],
        0,
        "$.pcrs[0].events[0].pcr",
        "unknown field",
    ),
    (
        "empty tag",
        ["pcrs", 0, "events", 1, "tags"],
        [""],
        "$.pcrs[0].events[1].tags[0]",
        "empty tag",
    ),
    ("pcr without data", ["pcrs", 1], {"index": 7}, "$.pcrs[1]", "neither a value nor events"),
    ("pcr twice", ["pcrs", 1, "index"], 0, "$.pcrs[1].index", "PCR 0 listed twice"),
    ("no rules", ["rules"], [], "$.rules", "no rules would match anything"),
    ("unknown rule", ["rules", 2, "rule"], "pcr_close_enough", "$.rules[2].rule", "unknown value"),
    ("pcr rule without pcr", ["rules", 2], {"rule": "pcr_matches"}, "$.rules[2]", "needs a PCR"),
    (
        "flavor rule with pcr",
        ["rules", 3],
        {"rule": "eventlog_integrity", "pcr": 0},
        "$.rules[3]",
        "does not take a PCR",
    ),
    (
        "rule for unknown pcr",
        ["rules", 2],
        {"rule": "pcr_matches", "pcr": 9},
        "$.rules[2].pcr",
        "no reference for PCR 9",
    ),
    (
        "events rule without events",
        ["rules", 2],
        {"rule": "eventlog_equals", "pcr": 7},
        "$.rules[2]",
        "PCR 7 has no expected events",
    ),
    ("rule twice", ["rules", 2], {"rule": "pcr_matches", "pcr": 0}, "$.rules[2]", "listed twice"),
    (
        "excluding on pcr rule",
        ["rules", 0, "excluding_tags"],
        ["x"],
        "$.rules[0]",
        "does not take excluding_tags",
    ),
    ("asset rule without tags", ["asset_tags"], {}, "$.rules[4]", "needs asset_tags"),
    ("asset tag not text", ["asset_tags", "rack"], 7, "$.asset_tags.rack", "expected a string"),
    ("meta unknown", ["meta", "colour"], "x", "$.meta.colour", "unknown field"),
    ("meta not text", ["meta", "vendor"], 1, "$.meta.vendor", "expected a string"),
    ("long name", ["name"], "n" * 257, "$.name", "longer than 256"),
]


@pytest.mark.parametrize(
    ("path", "value", "where", "message"),
    [case[1:] for case in BAD_FLAVORS],
    ids=[case[0] for case in BAD_FLAVORS],
)
def test_bad_flavor_names_the_field(path: list[Any], value: Any, where: str, message: str) -> None:
    doc: Any = [] if path == [] else mutate(path, value)
    with pytest.raises(FlavorError) as err:
        parse_flavor(json.dumps(doc))
    assert err.value.path == where
    assert message in err.value.detail
    assert err.value.reason == "flavor.invalid"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"a": 1, "a": 2}', "duplicate key 'a'"),
        ('{"a": NaN}', "NaN is not allowed"),
        ("{", "not JSON"),
        ("[" * 100_000, "not JSON"),
        (b"\xff\xfe{", "not JSON"),
    ],
)
def test_malformed_json(text: str | bytes, message: str) -> None:
    with pytest.raises(FlavorError) as err:
        parse_flavor(text)
    assert err.value.reason == "flavor.malformed"
    assert message in err.value.detail


def test_oversized_document_is_refused_before_parsing() -> None:
    with pytest.raises(FlavorError, match="larger than"):
        parse_flavor(" " * (8 * 1024 * 1024 + 1))


GROUP = {
    "schema": "trustplane.flavor_group/v1",
    "name": "fleet",
    "description": "",
    "parts": [
        {"part": "platform", "match": "any_of", "requirement": "required"},
        {"part": "os", "match": "all_of", "requirement": "required_if_defined"},
    ],
}


def test_group_round_trip_and_defaults() -> None:
    group = parse_group(json.dumps(GROUP))
    assert [(p.part, p.match, p.requirement) for p in group.policies] == [
        (FlavorPart.PLATFORM, MatchPolicy.ANY_OF, Requirement.REQUIRED),
        (FlavorPart.OS, MatchPolicy.ALL_OF, Requirement.REQUIRED_IF_DEFINED),
    ]
    assert group_to_json(group) == GROUP
    short = parse_group(
        '{"schema": "trustplane.flavor_group/v1", "name": "g", "parts": [{"part": "os"}]}'
    )
    assert (short.policies[0].match, short.policies[0].requirement) == (
        MatchPolicy.ANY_OF,
        Requirement.REQUIRED,
    )


@pytest.mark.parametrize(
    ("parts", "where", "message"),
    [
        ([], "$.parts", "no part policies"),
        ([{"part": "os"}, {"part": "os"}], "$.parts[1].part", "listed twice"),
        ([{"part": "os", "match": "most_of"}], "$.parts[0].match", "unknown value 'most_of'"),
        ([{"part": "os", "requirement": "optional"}], "$.parts[0].requirement", "unknown value"),
    ],
)
def test_bad_group(parts: list[Any], where: str, message: str) -> None:
    doc = dict(GROUP, parts=parts)
    with pytest.raises(FlavorError) as err:
        parse_group(json.dumps(doc))
    assert (err.value.path, message in err.value.detail) == (where, True)


TEMPLATE = {
    "schema": "trustplane.flavor_template/v1",
    "name": "t",
    "description": "",
    "bank": "sha256",
    "parts": [
        {
            "part": "platform",
            "description": "",
            "pcrs": [
                {
                    "index": 1,
                    "description": "config",
                    "select_tags": ["EV_SEPARATOR"],
                    "rules": [
                        {"rule": "pcr_matches"},
                        {"rule": "eventlog_equals", "excluding_tags": ["EV_EFI_VARIABLE_BOOT"]},
                    ],
                }
            ],
            "rules": [{"rule": "eventlog_integrity"}],
        }
    ],
}


def test_template_round_trip() -> None:
    template = parse_template(json.dumps(TEMPLATE))
    assert template.parts[0].pcrs[0].rules[1].pcr == 1
    assert template.parts[0].pcrs[0].rules[1].excluding_tags == ("EV_EFI_VARIABLE_BOOT",)
    assert template_to_json(template) == TEMPLATE


@pytest.mark.parametrize(
    ("mutation", "where", "message"),
    [
        (
            lambda t: t["parts"][0]["pcrs"][0].update(rules=[]),
            "$.parts[0].pcrs[0].rules",
            "no rules",
        ),
        (
            lambda t: t["parts"][0]["pcrs"][0]["rules"].append({"rule": "pcr_matches", "pcr": 2}),
            "$.parts[0].pcrs[0].rules[2].pcr",
            "unknown field",
        ),
        (
            lambda t: t["parts"][0]["rules"].append({"rule": "pcr_matches"}),
            "$.parts[0].rules[1]",
            "needs a PCR",
        ),
        (lambda t: t.update(parts=[]), "$.parts", "no parts"),
        (lambda t: t.update(bank="crc32"), "$.bank", "unknown PCR bank"),
    ],
)
def test_bad_template(mutation: Any, where: str, message: str) -> None:
    doc = copy.deepcopy(TEMPLATE)
    mutation(doc)
    with pytest.raises(FlavorError) as err:
        parse_template(json.dumps(doc))
    assert err.value.path == where
    assert message in err.value.detail


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(doc=json_values)
def test_arbitrary_json_raises_only_flavor_error(doc: Any) -> None:
    for parse in (parse_flavor, parse_group, parse_template):
        with contextlib.suppress(FlavorError):
            parse(json.dumps(doc))


@settings(max_examples=200, deadline=None)
@given(path=st.sampled_from([c[1] for c in BAD_FLAVORS if c[1]]), value=json_values)
def test_any_value_in_any_field_raises_only_flavor_error(path: list[Any], value: Any) -> None:
    with contextlib.suppress(FlavorError):
        parse_flavor(json.dumps(mutate(path, value)))
