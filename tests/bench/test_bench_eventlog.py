"""bench.eventlog: the headline speedup compares medians over the same files."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.eventlog import summarize

ROOT = Path("/logs")


def test_headline_is_over_the_files_tpm2_eventlog_accepts() -> None:
    ours = {ROOT / "a.bin": 10.0, ROOT / "b.bin": 30.0, ROOT / "c.bin": 1000.0}
    theirs = {ROOT / "a.bin": 500.0, ROOT / "b.bin": 700.0, ROOT / "c.bin": None}
    assert summarize(ROOT, ours, theirs) == {
        "logs": 2,
        "ours_median_us": 20.0,  # median of a and b only
        "tpm2_eventlog_median_us": 600.0,
        "speedup": 30.0,
        "tpm2_eventlog_failed": ["c.bin"],
        "all_logs": 3,
        "ours_median_us_all_logs": 30.0,
        "ours_max_us_all_logs": 1000.0,
    }


def test_no_file_accepted_by_the_tool_is_an_error() -> None:
    with pytest.raises(SystemExit, match="accepted none"):
        summarize(ROOT, {ROOT / "a.bin": 1.0}, {ROOT / "a.bin": None})
