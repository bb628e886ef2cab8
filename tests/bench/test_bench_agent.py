"""bench.agent: a failing benchmark subprocess ends the run with its stderr and one clear line."""

from __future__ import annotations

import sys

import pytest

from bench.agent import run_step


def test_failing_step_prints_its_stderr_and_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    failing = [sys.executable, "-c", "import sys; sys.stderr.write('swtpm gone'); sys.exit(3)"]
    with pytest.raises(SystemExit) as info:
        run_step("cycle worker", failing)
    assert info.value.code == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == "swtpm gone\nbench.agent: cycle worker failed with exit status 3\n"
    assert "Traceback" not in err


def test_step_output_is_returned() -> None:
    assert run_step("echo", [sys.executable, "-c", "print('{\"x\": 1}')"]) == '{"x": 1}\n'
