"""Fixtures shared by every test package: paths to tests/data and real swtpm TPMs."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from trustplane.swtpm import Swtpm, SwtpmFactory

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("TRUSTPLANE_SHARED", REPO / "tests" / "data")).resolve()
EVENTLOGS = SHARED / "eventlogs"


def expected_logs() -> list[tuple[Path, dict[str, Any]]]:
    """Every (log, expected.json) pair in the event-log corpus, sorted by path."""
    if not EVENTLOGS.is_dir():
        raise RuntimeError(
            f"event logs not found at {EVENTLOGS} (tests/data/eventlogs, or set TRUSTPLANE_SHARED)"
        )
    pairs = []
    for exp in sorted(EVENTLOGS.rglob("*.expected.json")):
        data = json.loads(exp.read_text())
        pairs.append((exp.parent / exp.name.replace(".expected.json", ".bin"), data))
    return pairs


@pytest.fixture(scope="session")
def swtpm_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SwtpmFactory]:
    """One manufactured TPM state (EK certs from a local CA) per test run."""
    with SwtpmFactory(tmp_path_factory.mktemp("swtpm")) as factory:
        yield factory


@pytest.fixture
def swtpm(swtpm_factory: SwtpmFactory) -> Iterator[Swtpm]:
    """A fresh, running swtpm for one test (its own state copy and ports)."""
    tpm = swtpm_factory.start()
    try:
        yield tpm
    finally:
        tpm.stop()
