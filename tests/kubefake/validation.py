"""Validation of Node objects the way the API server's core validation words it.

Label keys (qualified names), label values, annotation keys and total size, the node name (a
DNS-1123 subdomain) and taints (key, value, effect, unique by key and effect). Each refusal is a
cause (reason, field, body) for a 422 Invalid Status; the texts are those of
k8s.io/apimachinery/pkg/util/validation and pkg/apis/core/validation.
"""

from __future__ import annotations

import json
import re
from typing import Any

Cause = tuple[str, str, str]

_QNAME_FMT = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_QNAME_RE = re.compile(f"^{_QNAME_FMT}$")
_QNAME_MSG = (
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
    "alphanumeric character"
)
_LABEL_VALUE_FMT = f"({_QNAME_FMT})?"
_LABEL_VALUE_RE = re.compile(f"^{_LABEL_VALUE_FMT}$")
_LABEL_VALUE_MSG = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or "
    "'.', and must start and end with an alphanumeric character"
)
_DNS_LABEL_FMT = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS_SUBDOMAIN_FMT = _DNS_LABEL_FMT + "(\\." + _DNS_LABEL_FMT + ")*"
_DNS_SUBDOMAIN_RE = re.compile(f"^{_DNS_SUBDOMAIN_FMT}$")
_DNS_SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or "
    "'.', and must start and end with an alphanumeric character"
)
TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
ANNOTATIONS_MAX_BYTES = 256 * 1024


def _regex_error(msg: str, fmt: str, *examples: str) -> str:
    shown = " or ".join(f"'{e}', " for e in examples)
    return f"{msg} (e.g. {shown}regex used for validation is '{fmt}')"


def _quote(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


def _invalid(field: str, value: str, detail: str) -> Cause:
    return ("FieldValueInvalid", field, f"Invalid value: {_quote(value)}: {detail}")


def dns1123_subdomain_errors(value: str) -> list[str]:
    errs = []
    if len(value) > 253:
        errs.append("must be no more than 253 characters")
    if not _DNS_SUBDOMAIN_RE.match(value):
        errs.append(_regex_error(_DNS_SUBDOMAIN_MSG, _DNS_SUBDOMAIN_FMT, "example.com"))
    return errs


def qualified_name_errors(value: str) -> list[str]:
    """validation.IsQualifiedName: an optional DNS-subdomain prefix and '/', a name of <= 63."""
    errs: list[str] = []
    parts = value.split("/")
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            errs.append("prefix part must be non-empty")
        else:
            errs.extend("prefix part " + m for m in dns1123_subdomain_errors(prefix))
    else:
        return [
            "a qualified name "
            + _regex_error(_QNAME_MSG, _QNAME_FMT, "MyName", "my.name", "123-abc")
            + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
        ]
    if not name:
        errs.append("name part must be non-empty")
    elif len(name) > 63:
        errs.append("name part must be no more than 63 characters")
    if not _QNAME_RE.match(name):
        errs.append(
            "name part " + _regex_error(_QNAME_MSG, _QNAME_FMT, "MyName", "my.name", "123-abc")
        )
    return errs


def label_value_errors(value: str) -> list[str]:
    errs = []
    if len(value) > 63:
        errs.append("must be no more than 63 characters")
    if not _LABEL_VALUE_RE.match(value):
        errs.append(
            _regex_error(_LABEL_VALUE_MSG, _LABEL_VALUE_FMT, "MyValue", "my_value", "12345")
        )
    return errs


def _type_error(field: str, value: Any, want: str) -> Cause:
    return ("FieldValueTypeInvalid", field, f"Invalid value: {json.dumps(value)}: must be {want}")


def _validate_labels(labels: Any, field: str) -> list[Cause]:
    if labels is None:
        return []
    if not isinstance(labels, dict):
        return [_type_error(field, labels, "an object")]
    causes: list[Cause] = []
    for key in sorted(labels):
        value = labels[key]
        causes += [_invalid(field, key, m) for m in qualified_name_errors(key)]
        if not isinstance(value, str):
            causes.append(_type_error(f"{field}[{key}]", value, "a string"))
            continue
        causes += [_invalid(field, value, m) for m in label_value_errors(value)]
    return causes


def _validate_annotations(annotations: Any, field: str) -> list[Cause]:
    if annotations is None:
        return []
    if not isinstance(annotations, dict):
        return [_type_error(field, annotations, "an object")]
    causes: list[Cause] = []
    total = 0
    for key in sorted(annotations):
        value = annotations[key]
        causes += [_invalid(field, key, m) for m in qualified_name_errors(key.lower())]
        if not isinstance(value, str):
            causes.append(_type_error(f"{field}[{key}]", value, "a string"))
            continue
        total += len(key.encode()) + len(value.encode())
    if total > ANNOTATIONS_MAX_BYTES:
        causes.append(
            (
                "FieldValueTooLong",
                field,
                f"Too long: must have at most {ANNOTATIONS_MAX_BYTES} bytes",
            )
        )
    return causes


def _validate_taints(taints: Any, field: str) -> list[Cause]:
    if taints is None:
        return []
    if not isinstance(taints, list):
        return [_type_error(field, taints, "an array")]
    causes: list[Cause] = []
    seen: set[tuple[str, str]] = set()
    for i, taint in enumerate(taints):
        path = f"{field}[{i}]"
        if not isinstance(taint, dict):
            causes.append(_type_error(path, taint, "an object"))
            continue
        key = taint.get("key", "")
        value = taint.get("value", "")
        effect = taint.get("effect", "")
        if not all(isinstance(v, str) for v in (key, value, effect)):
            causes.append(_type_error(path, taint, "key, value and effect strings"))
            continue
        causes += [_invalid(f"{path}.key", key, m) for m in qualified_name_errors(key)]
        causes += [_invalid(f"{path}.value", value, m) for m in label_value_errors(value)]
        if not effect:
            causes.append(("FieldValueRequired", f"{path}.effect", "Required value"))
        elif effect not in TAINT_EFFECTS:
            supported = ", ".join(f'"{e}"' for e in TAINT_EFFECTS)
            causes.append(
                (
                    "FieldValueNotSupported",
                    f"{path}.effect",
                    f"Unsupported value: {_quote(effect)}: supported values: {supported}",
                )
            )
        if (key, effect) in seen:
            added = (
                "(*v1.Time)(nil)" if taint.get("timeAdded") is None else "(*v1.Time)(0xc000000000)"
            )
            # field.Duplicate prints the internal core.Taint with Go's %#v
            shown = (
                f"core.Taint{{Key:{_quote(key)}, Value:{_quote(value)}, "
                f"Effect:{_quote(effect)}, TimeAdded:{added}}}"
            )
            causes.append(
                (
                    "FieldValueDuplicate",
                    path,
                    f"Duplicate value: {shown}: taints must be unique by key and effect pair",
                )
            )
        seen.add((key, effect))
    return causes


def validate_node(node: dict[str, Any]) -> list[Cause]:
    """Every cause that makes `node` invalid (an empty list when it is valid)."""
    meta = node.get("metadata")
    if not isinstance(meta, dict):
        return [("FieldValueRequired", "metadata.name", "Required value: name is required")]
    causes: list[Cause] = []
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        causes.append(
            (
                "FieldValueRequired",
                "metadata.name",
                "Required value: name or generateName is required",
            )
        )
    else:
        causes += [_invalid("metadata.name", name, m) for m in dns1123_subdomain_errors(name)]
    causes += _validate_labels(meta.get("labels"), "metadata.labels")
    causes += _validate_annotations(meta.get("annotations"), "metadata.annotations")
    spec = node.get("spec")
    if spec is not None and not isinstance(spec, dict):
        causes.append(_type_error("spec", spec, "an object"))
    elif isinstance(spec, dict):
        causes += _validate_taints(spec.get("taints"), "spec.taints")
        unsched = spec.get("unschedulable")
        if unsched is not None and not isinstance(unsched, bool):
            causes.append(_type_error("spec.unschedulable", unsched, "a boolean"))
    return causes


def event_causes(ev: dict[str, Any], namespace: str) -> list[tuple[str, str, str]]:
    """core/v1 Event validation as the API server's legacyValidateEvent: only the namespace
    rule for events without eventTime; the reporting fields too for those with one."""
    causes: list[tuple[str, str, str]] = []
    name = ev["metadata"].get("name")
    if not isinstance(name, str) or not name:
        return [
            (
                "FieldValueRequired",
                "metadata.name",
                "Required value: name or generateName is required",
            )
        ]
    causes += [
        ("FieldValueInvalid", "metadata.name", f"Invalid value: {json.dumps(name)}: {m}")
        for m in dns1123_subdomain_errors(name)
    ]
    involved = ev.get("involvedObject")
    if not isinstance(involved, dict):
        involved = {}
    inv_ns = str(involved.get("namespace") or "")
    mismatch = (
        "FieldValueInvalid",
        "involvedObject.namespace",
        f"Invalid value: {json.dumps(inv_ns)}: does not match event.namespace",
    )
    if not ev.get("eventTime"):
        if (not inv_ns and namespace not in ("", "default")) or (inv_ns and inv_ns != namespace):
            causes.append(mismatch)
        return causes
    if not inv_ns and namespace not in ("default", "kube-system"):
        causes.append(mismatch)
    for key, field_name, limit in (
        ("reportingComponent", "reportingComponent", 0),
        ("reportingInstance", "reportingInstance", 128),
        ("action", "action", 128),
        ("reason", "reason", 128),
    ):
        value = ev.get(key)
        if not isinstance(value, str) or not value:
            causes.append(("FieldValueRequired", field_name, "Required value"))
        elif limit and len(value) > limit:
            causes.append(
                (
                    "FieldValueInvalid",
                    field_name,
                    f'Invalid value: "": can have at most {limit} characters',
                )
            )
    message = ev.get("message")
    if isinstance(message, str) and len(message) > 1024:
        causes.append(
            ("FieldValueInvalid", "message", 'Invalid value: "": can have at most 1024 characters')
        )
    return causes
