"""firmware_measurements/: every template and example obeys flavor.schema.json and decodes in
trustcore; the committed examples are exactly what generate_examples.py makes today; the
schema and trustcore refuse the same bad documents."""

from __future__ import annotations

import copy
import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import jsonschema
import pytest

from tests.conftest import EVENTLOGS, REPO
from trustcore.eventlog import parse_eventlog
from trustcore.flavors import (
    FlavorError,
    evaluate,
    evidence_from_eventlog,
    group_from_json,
    parse_flavor,
    parse_template,
)

MEASUREMENTS = REPO / "firmware_measurements"
SCHEMA = json.loads((MEASUREMENTS / "flavor.schema.json").read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)
TEMPLATES = sorted((MEASUREMENTS / "templates").glob("*.json"))
EXAMPLES = sorted((MEASUREMENTS / "examples").glob("*.json"))


def load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "generate_examples", MEASUREMENTS / "generate_examples.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_schema_is_a_valid_draft_2020_12_schema() -> None:
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


def test_the_directory_has_both_templates_and_examples() -> None:
    assert [p.name for p in TEMPLATES] == ["txt-tboot.json", "uefi-secure-boot.json"]
    assert [p.name for p in EXAMPLES] == [
        "group-default.json",
        "guard-test-before.host_unique.json",
        "guard-test-before.os.json",
        "guard-test-before.platform.json",
        "intel-secl-txt.host_unique.json",
        "intel-secl-txt.os.json",
        "intel-secl-txt.platform.json",
    ]


@pytest.mark.parametrize("path", TEMPLATES + EXAMPLES, ids=lambda p: p.name)
def test_every_document_validates_against_the_schema(path: Path) -> None:
    errors = [e.message for e in VALIDATOR.iter_errors(json.loads(path.read_text()))]
    assert errors == []


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.name)
def test_every_template_decodes(path: Path) -> None:
    template = parse_template(path.read_text())
    assert template.name == path.stem


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_decodes(path: Path) -> None:
    doc = json.loads(path.read_text())
    if doc["schema"] == "trustplane.flavor_group/v1":
        assert group_from_json(doc).name == "automatic"
    else:
        assert parse_flavor(path.read_text()).id == path.stem


def test_committed_examples_are_what_the_generator_makes() -> None:
    generator = load_generator()
    rendered = generator.render(EVENTLOGS)
    assert sorted(rendered) == [p.name for p in EXAMPLES]
    for path in EXAMPLES:
        assert path.read_text() == rendered[path.name], f"regenerate {path.name}"


def test_example_flavors_trust_their_source_log() -> None:
    flavors = [parse_flavor(p.read_text()) for p in EXAMPLES if p.name.startswith("guard-")]
    log = parse_eventlog((EVENTLOGS / "guard-oss-evidence/test-before.bin").read_bytes())
    assert evaluate(flavors, evidence_from_eventlog(log)).trusted is True
    update = parse_eventlog((EVENTLOGS / "guard-oss-evidence/test-update.bin").read_bytes())
    assert evaluate(flavors, evidence_from_eventlog(update)).trusted is False


def example(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((MEASUREMENTS / "examples" / name).read_text())
    return doc


BAD = [
    ("no rules", lambda d: d.update(rules=[])),
    ("unknown part", lambda d: d.update(part="firmware")),
    ("unknown field", lambda d: d.update(colour="blue")),
    ("pcr 24", lambda d: d["pcrs"][0].update(index=24)),
    ("upper-case hex", lambda d: d["pcrs"][0].update(value=d["pcrs"][0]["value"].upper())),
    ("unknown rule", lambda d: d["rules"].append({"rule": "pcr_close_enough", "pcr": 0})),
    ("pcr rule without pcr", lambda d: d["rules"].append({"rule": "pcr_matches"})),
    ("event without digest", lambda d: d["pcrs"][0]["events"][0].pop("digest")),
    ("pcr with nothing", lambda d: d["pcrs"].append({"index": 20})),
]


@pytest.mark.parametrize("mutation", [m for _, m in BAD], ids=[n for n, _ in BAD])
def test_schema_and_trustcore_refuse_the_same_bad_flavors(mutation: Any) -> None:
    doc = copy.deepcopy(example("intel-secl-txt.platform.json"))
    mutation(doc)
    assert list(VALIDATOR.iter_errors(doc)) != []
    with pytest.raises(FlavorError):
        parse_flavor(json.dumps(doc))
