"""Asset-tag predicates of key transfer policies: a small boolean language over a host's tags.

A key's transfer policy names the asset tags a host must carry (the tags its TPM vouched for in
a trusted report, :mod:`trustcore.assettag`). The syntax (docs/keys.md)::

    predicate  := "" | or
    or         := and ("or" and)*
    and        := term ("and" term)*
    term       := "(" or ")" | "not" term | KEY "=" VALUE | KEY "!=" VALUE
                | KEY "in" "[" VALUE ("," VALUE)* "]"

``KEY`` is a tag key (``region``, ``rack``: lower-case letters, digits, ``_.-``), ``VALUE`` a
tag value (letters, digits, ``_.-``); comparisons are exact and case-sensitive. ``and`` binds
tighter than ``or``. The empty predicate admits every host. A tag the host does not carry
satisfies ``!=`` and fails ``=`` and ``in``. Examples: ``region in [EU, CH] and rack = 7``,
``(region = EU or region = CH) and not tier = test``.

Parsing is bounded: at most :data:`MAX_PREDICATE_CHARS` characters, :data:`MAX_DEPTH` nested
parentheses or ``not``, :data:`MAX_TERMS` comparisons and :data:`MAX_LIST` values in one list.
Every error is a :class:`KeyPolicyError` (reason ``keys.policy_invalid``) naming the 1-based
column where it was found. Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from trustcore.errors import TrustcoreError

__all__ = [
    "MAX_DEPTH",
    "MAX_LIST",
    "MAX_PREDICATE_CHARS",
    "MAX_TERMS",
    "KeyPolicyError",
    "Predicate",
    "parse_predicate",
]

MAX_PREDICATE_CHARS: Final = 1024
MAX_DEPTH: Final = 16
MAX_TERMS: Final = 64
MAX_LIST: Final = 64

_TOKEN: Final = re.compile(r"\s*(?:(?P<op>!=|=|\(|\)|\[|\]|,)|(?P<word>[A-Za-z0-9_.-]+))")
_KEY: Final = re.compile(r"[a-z0-9]([a-z0-9_.-]{0,45}[a-z0-9])?")
_VALUE: Final = re.compile(r"[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?")
_KEYWORDS: Final = frozenset({"and", "or", "not", "in"})


class KeyPolicyError(TrustcoreError):
    """A predicate that cannot be parsed; ``column`` is 1-based."""

    reason = "keys.policy_invalid"

    def __init__(self, message: str, column: int) -> None:
        super().__init__(f"{message} at column {column}")
        self.column = column


@dataclass(frozen=True, slots=True)
class _Cmp:
    key: str
    values: tuple[str, ...]
    negated: bool  # "!=": the tag is absent or has another value
    listed: bool = False  # written as "in [...]"


@dataclass(frozen=True, slots=True)
class _Not:
    inner: _Node


@dataclass(frozen=True, slots=True)
class _All:
    parts: tuple[_Node, ...]


@dataclass(frozen=True, slots=True)
class _Any:
    parts: tuple[_Node, ...]


_Node = _Cmp | _Not | _All | _Any


def _holds(node: _Node, tags: Mapping[str, str]) -> bool:
    if isinstance(node, _Cmp):
        found = tags.get(node.key)
        inside = found is not None and found in node.values
        return not inside if node.negated else inside
    if isinstance(node, _Not):
        return not _holds(node.inner, tags)
    if isinstance(node, _All):
        return all(_holds(p, tags) for p in node.parts)
    return any(_holds(p, tags) for p in node.parts)


def _render(node: _Node) -> str:
    """The canonical text: single spaces, ``, `` in lists, parentheses only where needed
    (``not`` binds tighter than ``and``, ``and`` tighter than ``or``)."""
    if isinstance(node, _Cmp):
        if node.listed:
            return f"{node.key} in [{', '.join(node.values)}]"
        return f"{node.key} {'!=' if node.negated else '='} {node.values[0]}"
    if isinstance(node, _Not):
        inner = _render(node.inner)
        return f"not ({inner})" if isinstance(node.inner, _All | _Any) else f"not {inner}"
    if isinstance(node, _All):
        return " and ".join(
            f"({_render(p)})" if isinstance(p, _Any) else _render(p) for p in node.parts
        )
    return " or ".join(_render(p) for p in node.parts)


@dataclass(frozen=True, slots=True)
class Predicate:
    """A parsed predicate; ``text`` is its canonical form (what policies store and show)."""

    text: str
    _root: _Node | None

    def holds(self, tags: Mapping[str, str]) -> bool:
        """Whether a host with ``tags`` satisfies the predicate (the empty one: always)."""
        return self._root is None or _holds(self._root, tags)


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # "op", "word", "end"
    text: str
    column: int


def _tokens(text: str) -> list[_Token]:
    out: list[_Token] = []
    pos = 0
    while True:
        while pos < len(text) and text[pos] in " \t":
            pos += 1
        if pos >= len(text):
            out.append(_Token("end", "", pos + 1))
            return out
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise KeyPolicyError(f"unexpected character {text[pos]!r}", pos + 1)
        kind = "op" if m.group("op") else "word"
        value = m.group(kind)
        out.append(_Token(kind, value, m.start(kind) + 1))
        pos = m.end()


class _Parser:
    def __init__(self, tokens: list[_Token]) -> None:
        self._tokens = tokens
        self._i = 0
        self._terms = 0

    def _peek(self) -> _Token:
        return self._tokens[self._i]

    def _next(self) -> _Token:
        tok = self._tokens[self._i]
        if tok.kind != "end":
            self._i += 1
        return tok

    def _expect(self, text: str) -> None:
        tok = self._next()
        if tok.text != text or tok.kind == "end":
            raise KeyPolicyError(f"expected {text!r}, found {_shown(tok)}", tok.column)

    def parse_or(self, depth: int) -> _Node:
        parts = [self.parse_and(depth)]
        while self._peek().kind == "word" and self._peek().text == "or":
            self._next()
            parts.append(self.parse_and(depth))
        return parts[0] if len(parts) == 1 else _Any(tuple(parts))

    def parse_and(self, depth: int) -> _Node:
        parts = [self.parse_term(depth)]
        while self._peek().kind == "word" and self._peek().text == "and":
            self._next()
            parts.append(self.parse_term(depth))
        return parts[0] if len(parts) == 1 else _All(tuple(parts))

    def parse_term(self, depth: int) -> _Node:
        tok = self._peek()
        if tok.kind == "op" and tok.text == "(":
            self._deeper(depth, tok)
            self._next()
            inner = self.parse_or(depth + 1)
            self._expect(")")
            return inner
        if tok.kind == "word" and tok.text == "not":
            self._deeper(depth, tok)
            self._next()
            return _Not(self.parse_term(depth + 1))
        return self.parse_comparison()

    @staticmethod
    def _deeper(depth: int, tok: _Token) -> None:
        if depth >= MAX_DEPTH:
            raise KeyPolicyError(f"nested more than {MAX_DEPTH} deep", tok.column)

    def parse_comparison(self) -> _Node:
        key = self._next()
        if key.kind != "word" or key.text in _KEYWORDS:
            raise KeyPolicyError(f"expected a tag key, found {_shown(key)}", key.column)
        if not _KEY.fullmatch(key.text):
            raise KeyPolicyError(f"{key.text[:48]!r} is not a tag key", key.column)
        self._terms += 1
        if self._terms > MAX_TERMS:
            raise KeyPolicyError(f"more than {MAX_TERMS} comparisons", key.column)
        op = self._next()
        if op.kind == "op" and op.text in ("=", "!="):
            return _Cmp(key.text, (self._value(),), negated=op.text == "!=")
        if op.kind == "word" and op.text == "in":
            self._expect("[")
            values = [self._value()]
            while self._peek().kind == "op" and self._peek().text == ",":
                comma = self._next()
                if len(values) >= MAX_LIST:
                    raise KeyPolicyError(f"more than {MAX_LIST} values in a list", comma.column)
                values.append(self._value())
            self._expect("]")
            return _Cmp(key.text, tuple(values), negated=False, listed=True)
        raise KeyPolicyError(f"expected '=', '!=' or 'in', found {_shown(op)}", op.column)

    def _value(self) -> str:
        tok = self._next()
        if tok.kind != "word":
            raise KeyPolicyError(f"expected a tag value, found {_shown(tok)}", tok.column)
        if not _VALUE.fullmatch(tok.text):
            raise KeyPolicyError(f"{tok.text[:64]!r} is not a tag value", tok.column)
        return tok.text


def _shown(tok: _Token) -> str:
    return "the end" if tok.kind == "end" else repr(tok.text[:48])


def parse_predicate(text: str) -> Predicate:
    """Parse ``text``; raises :class:`KeyPolicyError` (reason ``keys.policy_invalid``)."""
    if len(text) > MAX_PREDICATE_CHARS:
        raise KeyPolicyError(
            f"a predicate has at most {MAX_PREDICATE_CHARS} characters", MAX_PREDICATE_CHARS + 1
        )
    for i, ch in enumerate(text):
        if not (ch.isascii() and (ch.isprintable() or ch == "\t")):
            raise KeyPolicyError(f"unexpected character {ch!r}", i + 1)
    tokens = _tokens(text)
    if tokens[0].kind == "end":
        return Predicate("", None)
    parser = _Parser(tokens)
    root = parser.parse_or(0)
    end = parser._peek()
    if end.kind != "end":
        raise KeyPolicyError(f"unexpected {_shown(end)}", end.column)
    return Predicate(_render(root), root)
