"""trustcore.keypolicy: the asset-tag predicate language of key transfer policies."""

from __future__ import annotations

import pytest

from trustcore.keypolicy import (
    MAX_DEPTH,
    MAX_LIST,
    MAX_PREDICATE_CHARS,
    MAX_TERMS,
    KeyPolicyError,
    parse_predicate,
)

EU7 = {"region": "EU", "rack": "7"}
CH3 = {"region": "CH", "rack": "3"}
US7 = {"region": "US", "rack": "7"}


@pytest.mark.parametrize(
    ("text", "holds"),
    [
        ("", (True, True, True, True)),
        ("region = EU", (True, False, False, False)),
        ("region=EU", (True, False, False, False)),
        ("region != EU", (False, True, True, True)),
        ("region in [EU, CH]", (True, True, False, False)),
        ("region in [EU,CH] and rack = 7", (True, False, False, False)),
        ("region = US or rack = 3", (False, True, True, False)),
        ("region = EU or region = CH and rack = 7", (True, False, False, False)),
        ("(region = EU or region = CH) and rack = 3", (False, True, False, False)),
        ("not region = US", (True, True, False, True)),
        ("not (region in [EU] or rack = 3)", (False, False, True, True)),
        ("rack = 7 and not region = US", (True, False, False, False)),
        ("tier = test", (False, False, False, False)),
    ],
)
def test_evaluation(text: str, holds: tuple[bool, bool, bool, bool]) -> None:
    predicate = parse_predicate(text)
    assert tuple(predicate.holds(t) for t in (EU7, CH3, US7, {})) == holds


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("  region   in [EU,CH]\tand rack=7 ", "region in [EU, CH] and rack = 7"),
        ("   ", ""),
        ("((a = b))", "a = b"),
        ("(a = b or c = d) and e != f", "(a = b or c = d) and e != f"),
        ("a = b or (c = d and e = f)", "a = b or c = d and e = f"),
        ("not (a = b and c in [x])", "not (a = b and c in [x])"),
        ("not (not a = b)", "not not a = b"),
    ],
)
def test_canonical_text(text: str, canonical: str) -> None:
    predicate = parse_predicate(text)
    assert predicate.text == canonical
    again = parse_predicate(canonical)
    assert again.text == canonical
    for tags in (EU7, CH3, US7, {}, {"a": "b", "c": "d", "e": "f"}, {"a": "b", "c": "x"}):
        assert again.holds(tags) == predicate.holds(tags)


def test_comparison_is_case_sensitive() -> None:
    assert not parse_predicate("region = eu").holds(EU7)


@pytest.mark.parametrize(
    ("text", "column", "message"),
    [
        ("region", 7, "expected '=', '!=' or 'in', found the end"),
        ("region =", 9, "expected a tag value, found the end"),
        ("= EU", 1, "expected a tag key, found '='"),
        ("Region = EU", 1, "'Region' is not a tag key"),
        ("region = EU and", 16, "expected a tag key, found the end"),
        ("region = EU rack = 7", 13, "unexpected 'rack'"),
        ("(region = EU", 13, "expected ')', found the end"),
        ("region = EU)", 12, "unexpected ')'"),
        ("region in EU", 11, "expected '[', found 'EU'"),
        ("region in [EU CH]", 15, "expected ']', found 'CH'"),
        ("region in []", 12, "expected a tag value, found ']'"),
        ("region = -EU", 10, "'-EU' is not a tag value"),
        ("region = 'EU'", 10, 'unexpected character "\'"'),
        ("region = E\u00dc", 11, "unexpected character '\u00dc'"),
        ("region = EU\n", 12, "unexpected character '\\n'"),
        ("and = EU", 1, "expected a tag key, found 'and'"),
    ],
)
def test_errors_name_their_column(text: str, column: int, message: str) -> None:
    with pytest.raises(KeyPolicyError) as err:
        parse_predicate(text)
    assert err.value.reason == "keys.policy_invalid"
    assert err.value.column == column
    assert err.value.message == f"{message} at column {column}"


def test_bounds() -> None:
    deep_ok = "(" * MAX_DEPTH + "a = b" + ")" * MAX_DEPTH
    assert parse_predicate(deep_ok).holds({"a": "b"})
    with pytest.raises(KeyPolicyError) as err:
        parse_predicate("(" * (MAX_DEPTH + 1) + "a = b" + ")" * (MAX_DEPTH + 1))
    assert err.value.message == f"nested more than {MAX_DEPTH} deep at column {MAX_DEPTH + 1}"
    with pytest.raises(KeyPolicyError):
        parse_predicate("not " * (MAX_DEPTH + 1) + "a = b")
    terms = " and ".join(["a = b"] * MAX_TERMS)
    assert parse_predicate(terms).holds({"a": "b"})
    with pytest.raises(KeyPolicyError) as err:
        parse_predicate(terms + " and a = b")
    assert err.value.message.startswith(f"more than {MAX_TERMS} comparisons")
    values = ", ".join(f"v{i}" for i in range(MAX_LIST))
    assert parse_predicate(f"a in [{values}]").holds({"a": f"v{MAX_LIST - 1}"})
    with pytest.raises(KeyPolicyError) as err:
        parse_predicate(f"a in [{values}, more]")
    assert err.value.message.startswith(f"more than {MAX_LIST} values in a list")
    with pytest.raises(KeyPolicyError) as err:
        parse_predicate("a = b" + " " * MAX_PREDICATE_CHARS)
    assert err.value.column == MAX_PREDICATE_CHARS + 1
