"""The JSON documents of ``firmware_measurements/``: flavors, flavor groups, flavor templates.

Decoding is strict and bounded: a document is at most MAX_DOCUMENT_BYTES, duplicate keys, NaN,
unknown fields, wrong types and out-of-range values are refused with a :class:`FlavorError`
whose ``path`` names the field (``$.pcrs[2].events[5].digest``). Digests are lower-case hex,
banks are TCG names (``sha256``). Encoding is deterministic, so a generated document can be
compared byte for byte. ``firmware_measurements/flavor.schema.json`` describes the same shapes
for other tools; this module does not read it. No I/O here: callers pass text in and get text
out.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any, Final, TypeVar

from trustcore.algorithms import BY_NAME, HASH_ALGORITHMS
from trustcore.flavors.model import (
    MAX_ASSET_TAGS,
    MAX_EVENTS_PER_PCR,
    MAX_PCR_INDEX,
    MAX_TAGS,
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

FLAVOR_SCHEMA: Final = "trustplane.flavor/v1"
GROUP_SCHEMA: Final = "trustplane.flavor_group/v1"
TEMPLATE_SCHEMA: Final = "trustplane.flavor_template/v1"
MAX_DOCUMENT_BYTES: Final = 8 * 1024 * 1024
MAX_LIST: Final = 256

T = TypeVar("T")
Json = dict[str, Any]


# --- strict JSON -----------------------------------------------------------------------------


def _pairs(pairs: list[tuple[str, Any]]) -> Json:
    out: Json = {}
    for key, value in pairs:
        if key in out:
            raise FlavorError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _constant(name: str) -> Any:  # noqa: ANN401 - json hook signature
    raise FlavorError(f"{name} is not allowed")


def load_json(text: str | bytes) -> object:
    """Parse ``text`` as strict JSON; raises :class:`FlavorError` (reason ``flavor.malformed``)."""
    if len(text) > MAX_DOCUMENT_BYTES:
        raise FlavorError(f"document larger than {MAX_DOCUMENT_BYTES} bytes")
    try:
        return json.loads(text, object_pairs_hook=_pairs, parse_constant=_constant)
    except FlavorError as err:
        raise FlavorError(err.detail, reason="flavor.malformed") from None
    except (ValueError, RecursionError) as err:
        raise FlavorError(f"not JSON: {err}", reason="flavor.malformed") from None


# --- field readers ---------------------------------------------------------------------------


def _obj(value: object, path: str, required: set[str], optional: set[str]) -> Json:
    if not isinstance(value, dict):
        raise FlavorError("expected an object", path=path)
    for key in value:
        if key not in required and key not in optional:
            raise FlavorError("unknown field", path=f"{path}.{key}")
    for key in sorted(required):
        if key not in value:
            raise FlavorError("missing field", path=f"{path}.{key}")
    return value


def _str(obj: Json, key: str, path: str, default: str | None = None) -> str:
    value = obj.get(key, default)
    if not isinstance(value, str):
        raise FlavorError("expected a string", path=f"{path}.{key}")
    return value


def _int(obj: Json, key: str, path: str, lo: int, hi: int) -> int:
    value = obj.get(key)
    if type(value) is not int:
        raise FlavorError("expected an integer", path=f"{path}.{key}")
    if not lo <= value <= hi:
        raise FlavorError(f"{value} outside {lo}..{hi}", path=f"{path}.{key}")
    return value


def _list(obj: Json, key: str, path: str, limit: int = MAX_LIST) -> list[Any]:
    value = obj.get(key, [])
    if not isinstance(value, list):
        raise FlavorError("expected an array", path=f"{path}.{key}")
    if len(value) > limit:
        raise FlavorError(f"more than {limit} items", path=f"{path}.{key}")
    return value


def _strings(obj: Json, key: str, path: str, limit: int = MAX_TAGS) -> tuple[str, ...]:
    items = _list(obj, key, path, limit)
    for i, item in enumerate(items):
        if not isinstance(item, str):
            raise FlavorError("expected a string", path=f"{path}.{key}[{i}]")
    return tuple(items)


def _hex(obj: Json, key: str, path: str) -> bytes:
    text = _str(obj, key, path)
    if text != text.lower() or len(text) % 2:
        raise FlavorError("expected lower-case hex", path=f"{path}.{key}")
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise FlavorError("expected lower-case hex", path=f"{path}.{key}") from None


def _enum(
    obj: Json, key: str, path: str, enum: Callable[[str], T], default: str | None = None
) -> T:
    text = _str(obj, key, path, default)
    try:
        return enum(text)
    except ValueError:
        raise FlavorError(f"unknown value {text!r}", path=f"{path}.{key}") from None


def _bank(obj: Json, path: str) -> int:
    name = _str(obj, "bank", path)
    alg = BY_NAME.get(name)
    if alg is None:
        raise FlavorError(f"unknown PCR bank {name!r}", path=f"{path}.bank")
    return alg.alg_id


def _build(path: str, make: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:  # noqa: ANN401
    """Call a constructor on already decoded arguments; re-anchor its FlavorError's path at
    ``path`` (errors of the arguments' own decoding already carry their full path)."""
    try:
        return make(*args, **kwargs)
    except FlavorError as err:
        raise FlavorError(err.detail, path=path + err.path[1:], reason=err.reason) from None


def _schema(obj: object, expected: str) -> None:
    if isinstance(obj, dict) and obj.get("schema") != expected:
        raise FlavorError(f"expected schema {expected!r}", path="$.schema")


# --- flavors ---------------------------------------------------------------------------------

_FLAVOR_REQUIRED: Final = {"schema", "id", "name", "part", "bank", "pcrs", "rules"}
_FLAVOR_OPTIONAL: Final = {"description", "meta", "asset_tags"}
_META_FIELDS: Final = {"vendor", "bios_name", "bios_version", "tboot_version", "source", "template"}


def _event(value: object, path: str) -> ExpectedEvent:
    obj = _obj(value, path, {"type_id", "type_name", "digest"}, {"tags", "description"})
    return _build(
        path,
        ExpectedEvent,
        type_id=_int(obj, "type_id", path, 0, 0xFFFFFFFF),
        type_name=_str(obj, "type_name", path),
        digest=_hex(obj, "digest", path),
        tags=_strings(obj, "tags", path),
        description=_str(obj, "description", path, ""),
    )


def _pcr_reference(value: object, path: str) -> PcrReference:
    obj = _obj(value, path, {"index"}, {"value", "events"})
    index = _int(obj, "index", path, 0, MAX_PCR_INDEX)
    pcr_value = _hex(obj, "value", path) if "value" in obj else None
    events = None
    if "events" in obj:
        items = _list(obj, "events", path, MAX_EVENTS_PER_PCR)
        events = tuple(_event(e, f"{path}.events[{i}]") for i, e in enumerate(items))
    return _build(path, PcrReference, index, pcr_value, events)


def _rule(value: object, path: str, pcr: int | None = None) -> Rule:
    optional = {"excluding_tags"} if pcr is not None else {"pcr", "excluding_tags"}
    obj = _obj(value, path, {"rule"}, optional)
    kind = _enum(obj, "rule", path, RuleKind)
    if pcr is None and "pcr" in obj:
        pcr = _int(obj, "pcr", path, 0, MAX_PCR_INDEX)
    excluding = _strings(obj, "excluding_tags", path)
    return _build(path, Rule, kind, pcr, excluding)


def _meta(obj: Json, path: str) -> FlavorMeta:
    if "meta" not in obj:
        return FlavorMeta()
    meta = _obj(obj["meta"], f"{path}.meta", set(), _META_FIELDS)
    fields = {name: _str(meta, name, f"{path}.meta", "") for name in _META_FIELDS}
    return _build(path, FlavorMeta, **fields)


def _asset_tags(obj: Json, path: str) -> dict[str, str]:
    tags = obj.get("asset_tags", {})
    if not isinstance(tags, dict):
        raise FlavorError("expected an object", path=f"{path}.asset_tags")
    if len(tags) > MAX_ASSET_TAGS:
        raise FlavorError(f"more than {MAX_ASSET_TAGS} tags", path=f"{path}.asset_tags")
    for key in tags:
        _str(tags, key, f"{path}.asset_tags")
    return dict(tags)


def flavor_from_json(value: object, path: str = "$") -> Flavor:
    """A :class:`Flavor` from a decoded JSON value; raises :class:`FlavorError` with the path."""
    _schema(value, FLAVOR_SCHEMA)
    obj = _obj(value, path, _FLAVOR_REQUIRED, _FLAVOR_OPTIONAL)
    pcrs = _list(obj, "pcrs", path, MAX_PCR_INDEX + 1)
    rules = _list(obj, "rules", path)
    return _build(
        path,
        Flavor,
        id=_str(obj, "id", path),
        name=_str(obj, "name", path),
        part=_enum(obj, "part", path, FlavorPart),
        bank=_bank(obj, path),
        pcrs=tuple(_pcr_reference(p, f"{path}.pcrs[{i}]") for i, p in enumerate(pcrs)),
        rules=tuple(_rule(r, f"{path}.rules[{i}]") for i, r in enumerate(rules)),
        description=_str(obj, "description", path, ""),
        meta=_meta(obj, path),
        asset_tags=_asset_tags(obj, path),
    )


def parse_flavor(text: str | bytes) -> Flavor:
    """A :class:`Flavor` from JSON text; raises :class:`FlavorError`."""
    return flavor_from_json(load_json(text))


def _rule_json(rule: Rule, *, with_pcr: bool = True) -> Json:
    out: Json = {"rule": rule.kind.value}
    if with_pcr and rule.pcr is not None:
        out["pcr"] = rule.pcr
    if rule.excluding_tags:
        out["excluding_tags"] = list(rule.excluding_tags)
    return out


def _event_json(event: ExpectedEvent) -> Json:
    out: Json = {
        "type_id": event.type_id,
        "type_name": event.type_name,
        "digest": event.digest.hex(),
    }
    if event.tags:
        out["tags"] = list(event.tags)
    if event.description:
        out["description"] = event.description
    return out


def flavor_to_json(flavor: Flavor) -> Json:
    """The JSON value of ``flavor`` (inverse of :func:`flavor_from_json`)."""
    pcrs: list[Json] = []
    for ref in flavor.pcrs:
        entry: Json = {"index": ref.index}
        if ref.value is not None:
            entry["value"] = ref.value.hex()
        if ref.events is not None:
            entry["events"] = [_event_json(e) for e in ref.events]
        pcrs.append(entry)
    meta = {k: getattr(flavor.meta, k) for k in sorted(_META_FIELDS) if getattr(flavor.meta, k)}
    out: Json = {
        "schema": FLAVOR_SCHEMA,
        "id": flavor.id,
        "name": flavor.name,
        "part": flavor.part.value,
        "description": flavor.description,
        "meta": meta,
        "bank": HASH_ALGORITHMS[flavor.bank].name,
        "pcrs": pcrs,
        "rules": [_rule_json(r) for r in flavor.rules],
    }
    if flavor.asset_tags:
        out["asset_tags"] = dict(sorted(flavor.asset_tags.items()))
    return out


def dump_document(value: Mapping[str, Any]) -> str:
    """Deterministic JSON text for a document (two-space indent, trailing newline)."""
    return json.dumps(value, indent=2, ensure_ascii=True) + "\n"


def dump_flavor(flavor: Flavor) -> str:
    return dump_document(flavor_to_json(flavor))


# --- groups ----------------------------------------------------------------------------------


def group_from_json(value: object, path: str = "$") -> FlavorGroup:
    """A :class:`FlavorGroup` from a decoded JSON value; raises :class:`FlavorError`."""
    _schema(value, GROUP_SCHEMA)
    obj = _obj(value, path, {"schema", "name", "parts"}, {"description"})
    policies = []
    for i, item in enumerate(_list(obj, "parts", path, len(FlavorPart))):
        ppath = f"{path}.parts[{i}]"
        entry = _obj(item, ppath, {"part"}, {"match", "requirement"})
        policies.append(
            PartPolicy(
                part=_enum(entry, "part", ppath, FlavorPart),
                match=_enum(entry, "match", ppath, MatchPolicy, "any_of"),
                requirement=_enum(entry, "requirement", ppath, Requirement, "required"),
            )
        )
    return _build(
        path,
        FlavorGroup,
        name=_str(obj, "name", path),
        policies=tuple(policies),
        description=_str(obj, "description", path, ""),
    )


def parse_group(text: str | bytes) -> FlavorGroup:
    return group_from_json(load_json(text))


def group_to_json(group: FlavorGroup) -> Json:
    return {
        "schema": GROUP_SCHEMA,
        "name": group.name,
        "description": group.description,
        "parts": [
            {"part": p.part.value, "match": p.match.value, "requirement": p.requirement.value}
            for p in group.policies
        ],
    }


# --- templates -------------------------------------------------------------------------------


def _template_pcr(value: object, path: str) -> TemplatePcr:
    obj = _obj(value, path, {"index", "rules"}, {"select_tags", "description"})
    index = _int(obj, "index", path, 0, MAX_PCR_INDEX)
    rules = tuple(
        _rule(r, f"{path}.rules[{i}]", pcr=index) for i, r in enumerate(_list(obj, "rules", path))
    )
    return _build(
        path,
        TemplatePcr,
        index=index,
        rules=rules,
        select_tags=_strings(obj, "select_tags", path),
        description=_str(obj, "description", path, ""),
    )


def _template_part(value: object, path: str) -> TemplatePart:
    obj = _obj(value, path, {"part", "pcrs"}, {"rules", "description"})
    pcrs = _list(obj, "pcrs", path, MAX_PCR_INDEX + 1)
    rules = _list(obj, "rules", path)
    return _build(
        path,
        TemplatePart,
        part=_enum(obj, "part", path, FlavorPart),
        pcrs=tuple(_template_pcr(p, f"{path}.pcrs[{i}]") for i, p in enumerate(pcrs)),
        rules=tuple(_rule(r, f"{path}.rules[{i}]") for i, r in enumerate(rules)),
        description=_str(obj, "description", path, ""),
    )


def template_from_json(value: object, path: str = "$") -> FlavorTemplate:
    """A :class:`FlavorTemplate` from a decoded JSON value; raises :class:`FlavorError`."""
    _schema(value, TEMPLATE_SCHEMA)
    obj = _obj(value, path, {"schema", "name", "bank", "parts"}, {"description"})
    parts = _list(obj, "parts", path, len(FlavorPart))
    return _build(
        path,
        FlavorTemplate,
        name=_str(obj, "name", path),
        bank=_bank(obj, path),
        parts=tuple(_template_part(p, f"{path}.parts[{i}]") for i, p in enumerate(parts)),
        description=_str(obj, "description", path, ""),
    )


def parse_template(text: str | bytes) -> FlavorTemplate:
    return template_from_json(load_json(text))


def template_to_json(template: FlavorTemplate) -> Json:
    parts: list[Json] = []
    for part in template.parts:
        pcrs: list[Json] = []
        for pcr in part.pcrs:
            entry: Json = {"index": pcr.index}
            if pcr.description:
                entry["description"] = pcr.description
            if pcr.select_tags:
                entry["select_tags"] = list(pcr.select_tags)
            entry["rules"] = [_rule_json(r, with_pcr=False) for r in pcr.rules]
            pcrs.append(entry)
        parts.append(
            {
                "part": part.part.value,
                "description": part.description,
                "pcrs": pcrs,
                "rules": [_rule_json(r) for r in part.rules],
            }
        )
    return {
        "schema": TEMPLATE_SCHEMA,
        "name": template.name,
        "description": template.description,
        "bank": HASH_ALGORITHMS[template.bank].name,
        "parts": parts,
    }
