"""Regenerate firmware_measurements/examples/ from real event logs and the templates.

    python firmware_measurements/generate_examples.py           # write examples/
    python firmware_measurements/generate_examples.py --check   # exit 1 if examples/ differ

The logs are read from the event-log corpus ($TRUSTPLANE_SHARED/eventlogs, default
tests/data/eventlogs in the repository). Everything else is trustcore: parse the log,
replay it, make one flavor per template part, encode deterministically. The test suite runs
:func:`render` and compares with the committed files, so a change to trustcore that changes a
flavor shows up as a diff to review, not as a silent drift.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from trustcore.eventlog import parse_eventlog
from trustcore.flavors import (
    DEFAULT_GROUP,
    FlavorMeta,
    dump_document,
    dump_flavor,
    flavor_from_eventlog,
    group_to_json,
    parse_template,
)

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
EXAMPLES = HERE / "examples"


@dataclass(frozen=True)
class Example:
    name: str  # flavor id prefix and file name prefix
    log: str  # path under eventlogs/
    template: str  # file name under templates/
    vendor: str = ""


EXAMPLES_FROM_LOGS = (
    Example("guard-test-before", "guard-oss-evidence/test-before.bin", "uefi-secure-boot.json"),
    Example("intel-secl-txt", "intel-secl/txt_heap_eventlog.bin", "txt-tboot.json", "Intel"),
)


def shared_eventlogs() -> Path:
    shared = os.environ.get("TRUSTPLANE_SHARED")
    root = Path(shared) if shared else HERE.parent / "tests" / "data"
    return root.resolve() / "eventlogs"


def _source(eventlogs: Path, example: Example, data: bytes) -> str:
    """Provenance: the log file, its hash, and where the corpus says it came from."""
    text = f"{example.log} sha256:{hashlib.sha256(data).hexdigest()}"
    expected = eventlogs / example.log.replace(".bin", ".expected.json")
    if expected.is_file():
        origin = json.loads(expected.read_text()).get("source", {})
        if {"repo", "path", "commit"} <= origin.keys():
            text += f" from {origin['repo']}/{origin['path']}@{origin['commit'][:12]}"
    return text


def render(eventlogs: Path) -> dict[str, str]:
    """Every example file name and its exact text."""
    out: dict[str, str] = {"group-default.json": dump_document(group_to_json(DEFAULT_GROUP))}
    for example in EXAMPLES_FROM_LOGS:
        data = (eventlogs / example.log).read_bytes()
        template = parse_template((TEMPLATES / example.template).read_text())
        meta = FlavorMeta(vendor=example.vendor, source=_source(eventlogs, example, data))
        for flavor in flavor_from_eventlog(parse_eventlog(data), template, example.name, meta=meta):
            out[f"{flavor.id}.json"] = dump_flavor(flavor)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args(argv)
    files = render(shared_eventlogs())
    if args.check:
        present = {p.name for p in EXAMPLES.glob("*.json")}
        stale = sorted(
            name
            for name in present | files.keys()
            if name not in files
            or name not in present
            or (EXAMPLES / name).read_text() != files[name]
        )
        for name in stale:
            print(f"differs: examples/{name}", file=sys.stderr)
        return 1 if stale else 0
    EXAMPLES.mkdir(exist_ok=True)
    for old in EXAMPLES.glob("*.json"):
        if old.name not in files:
            old.unlink()
    for name, text in files.items():
        (EXAMPLES / name).write_text(text)
    print(f"wrote {len(files)} files to {EXAMPLES}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
