"""The architecture's import rules hold: trustcore is pure; agent and hub stay independent."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_import_contracts_are_kept() -> None:
    lint_imports = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run(
        [str(lint_imports), "--no-cache"], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 kept, 0 broken" in result.stdout


def test_contract_catches_an_io_import(tmp_path: Path) -> None:
    """The contract is not vacuous: a trustcore module importing os breaks it."""
    probe = REPO / "trustcore" / "_contract_probe.py"
    probe.write_text("import os  # probe written by tests/test_contracts.py\n")
    try:
        lint_imports = Path(sys.executable).parent / "lint-imports"
        result = subprocess.run(
            [str(lint_imports), "--no-cache"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=False,
        )
    finally:
        probe.unlink()
    assert result.returncode != 0
    assert "trustcore._contract_probe -> os" in result.stdout
