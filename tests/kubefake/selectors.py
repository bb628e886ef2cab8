"""Label selectors and field selectors as the API server parses them (query parameters).

Label selectors: `k=v`, `k==v`, `k!=v`, `k`, `!k`, `k in (a,b)`, `k notin (a,b)`, joined by
commas. Field selectors: `f=v`, `f==v`, `f!=v` over the fields a resource supports; any other
field is refused with 400 "field label not supported", as the API server does.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from .status import ApiError
from .validation import label_value_errors, qualified_name_errors


@dataclass(frozen=True)
class Requirement:
    key: str
    op: str  # "=", "!=", "in", "notin", "exists", "!"
    values: tuple[str, ...]

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        if self.op == "exists":
            return present
        if self.op == "!":
            return not present
        if self.op in ("=", "in"):
            return present and labels[self.key] in self.values
        return not present or labels[self.key] not in self.values


_SPLIT = re.compile(r",(?![^()]*\))")
_SET = re.compile(r"^\s*(\S+)\s+(in|notin)\s+\(([^()]*)\)\s*$")
_EQ = re.compile(r"^\s*([^=!\s]+)\s*(==|=|!=)\s*(\S*)\s*$")


def _check(key: str, values: tuple[str, ...], raw: str) -> None:
    errs = qualified_name_errors(key)
    for v in values:
        errs += label_value_errors(v)
    if errs:
        raise ApiError(
            400,
            "BadRequest",
            f"unable to parse requirement: {errs[0]}"
            if len(errs) == 1
            else f"unable to parse requirement: [{', '.join(errs)}]",
        )
    if len(raw) > 4096:
        raise ApiError(400, "BadRequest", "label selector too long")


def parse_label_selector(text: str) -> list[Requirement]:
    reqs: list[Requirement] = []
    if not text.strip():
        return reqs
    for part in _SPLIT.split(text):
        m = _SET.match(part)
        if m:
            values = tuple(sorted({v.strip() for v in m.group(3).split(",") if v.strip()}))
            _check(m.group(1), values, text)
            reqs.append(Requirement(m.group(1), m.group(2), values))
            continue
        m = _EQ.match(part)
        if m:
            _check(m.group(1), (m.group(3),), text)
            op = "!=" if m.group(2) == "!=" else "="
            reqs.append(Requirement(m.group(1), op, (m.group(3),)))
            continue
        stripped = part.strip()
        if stripped.startswith("!"):
            _check(stripped[1:].strip(), (), text)
            reqs.append(Requirement(stripped[1:].strip(), "!", ()))
        elif stripped and " " not in stripped:
            _check(stripped, (), text)
            reqs.append(Requirement(stripped, "exists", ()))
        else:
            raise ApiError(400, "BadRequest", f"unable to parse requirement: found '{part}'")
    return reqs


def labels_match(reqs: list[Requirement], labels: Mapping[str, str]) -> bool:
    return all(r.matches(labels) for r in reqs)


FieldGetter = Callable[[dict[str, object]], str]


def parse_field_selector(
    text: str, fields: Mapping[str, FieldGetter]
) -> list[tuple[FieldGetter, bool, str]]:
    """[(getter, equal?, value)]; unknown fields are a 400 like the API server's."""
    out: list[tuple[FieldGetter, bool, str]] = []
    if not text.strip():
        return out
    for part in text.split(","):
        m = re.match(r"^\s*([^=!\s]+)\s*(==|=|!=)\s*(.*?)\s*$", part)
        if not m:
            raise ApiError(
                400, "BadRequest", f"invalid selector: '{text}'; can't understand '{part}'"
            )
        name, op, value = m.groups()
        getter = fields.get(name)
        if getter is None:
            raise ApiError(400, "BadRequest", f"field label not supported: {name}")
        out.append((getter, op != "!=", value))
    return out


def fields_match(sel: list[tuple[FieldGetter, bool, str]], obj: dict[str, object]) -> bool:
    return all((getter(obj) == value) == equal for getter, equal, value in sel)
