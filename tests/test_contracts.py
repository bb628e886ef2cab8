"""The architecture's import rules hold: trustcore is pure; agent and hub stay independent."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def run_lint_imports(cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(cwd)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--config", str(cwd / "setup.cfg")],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def test_import_contracts_are_kept() -> None:
    result = run_lint_imports(REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 kept, 0 broken" in result.stdout


def test_contract_catches_forbidden_imports(tmp_path: Path) -> None:
    """The contracts are not vacuous: on a copy of the tree, an I/O import in trustcore and an
    agent -> hub import each break one."""
    for pkg in ("trustcore", "nodeagent", "hub", "trustplane"):
        shutil.copytree(REPO / pkg, tmp_path / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "setup.cfg", tmp_path / "setup.cfg")
    (tmp_path / "trustcore" / "probe.py").write_text("import os\n")
    (tmp_path / "nodeagent" / "probe.py").write_text("import hub\n")
    result = run_lint_imports(tmp_path)
    assert result.returncode != 0
    assert "trustcore.probe -> os" in result.stdout
    assert "nodeagent.probe -> hub" in result.stdout
    assert "0 kept, 2 broken" in result.stdout
