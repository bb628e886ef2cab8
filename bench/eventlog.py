"""Benchmark: event-log parse + replay in process, against ``tpm2_eventlog FILE`` as a process.

``python -m bench.eventlog --json`` measures, over every log in the shared eventlogs directory
that trustcore accepts, the median time to parse and replay it in process, and in the same run
the median wall time of Debian's ``tpm2_eventlog FILE`` (tpm2-tools) on the same files (it
also parses and replays, printing YAML). The headline (``logs``, both medians, ``speedup``) is
over the files both accept; files tpm2_eventlog rejects are listed, and our figures over every
file trustcore accepts are in the ``*_all_logs`` keys. Prints one JSON line; the target is a
speedup of at least 10.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from trustcore.errors import ParseError
from trustcore.eventlog import check_event_data, parse_eventlog, replay_eventlog

REPO = Path(__file__).resolve().parent.parent


def eventlogs_dir() -> Path:
    shared = os.environ.get("TRUSTPLANE_SHARED")
    return (Path(shared) if shared else REPO / "tests" / "data") / "eventlogs"


def accepted_logs(root: Path) -> list[tuple[Path, bytes]]:
    """Every ``*.bin`` under ``root`` that parses, sorted by path."""
    logs = []
    for path in sorted(root.rglob("*.bin")):
        data = path.read_bytes()
        try:
            parse_eventlog(data)
        except ParseError:
            continue
        logs.append((path, data))
    return logs


def time_ours(data: bytes, repeat: int, *, check_data: bool = False) -> float:
    """Median microseconds of parse + replay (+ the data check of every event, as the hub
    runs it when it turns a log into flavor evidence)."""
    samples = []
    for _ in range(repeat):
        start = time.perf_counter_ns()
        log = parse_eventlog(data)
        replay_eventlog(log)
        if check_data:
            for event in log.events:
                check_event_data(event)
        samples.append(time.perf_counter_ns() - start)
    return statistics.median(samples) / 1000


def time_tool(tool: str, path: Path, repeat: int) -> float | None:
    """Median microseconds of one ``tpm2_eventlog FILE`` process; None if it fails."""
    samples = []
    for _ in range(repeat):
        start = time.perf_counter_ns()
        done = subprocess.run(
            [tool, str(path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False
        )
        samples.append(time.perf_counter_ns() - start)
        if done.returncode != 0:
            return None
    return statistics.median(samples) / 1000


def summarize(
    root: Path, ours: dict[Path, float], theirs: dict[Path, float | None]
) -> dict[str, object]:
    """The headline figures over the SAME files (those tpm2_eventlog accepts): ``logs``,
    ``ours_median_us``, ``tpm2_eventlog_median_us``, ``speedup``; our figures over every log
    trustcore accepts are kept apart (``all_logs``, ``ours_median_us_all_logs``...)."""
    tool_ok = {p: t for p, t in theirs.items() if t is not None}
    if not tool_ok:
        raise SystemExit("bench.eventlog: tpm2_eventlog accepted none of the logs")
    failed = sorted(str(p.relative_to(root)) for p, t in theirs.items() if t is None)
    ours_same = statistics.median(ours[p] for p in tool_ok)
    tool_median = statistics.median(tool_ok.values())
    return {
        "logs": len(tool_ok),
        "ours_median_us": round(ours_same, 1),
        "tpm2_eventlog_median_us": round(tool_median, 1),
        "speedup": round(tool_median / ours_same, 1),
        "tpm2_eventlog_failed": failed,
        "all_logs": len(ours),
        "ours_median_us_all_logs": round(statistics.median(ours.values()), 1),
        "ours_max_us_all_logs": round(max(ours.values()), 1),
    }


def run(repeat: int, tool_repeat: int) -> dict[str, object]:
    root = eventlogs_dir()
    tool = shutil.which("tpm2_eventlog")
    if tool is None:
        raise SystemExit("bench.eventlog: tpm2_eventlog not found (install tpm2-tools)")
    logs = accepted_logs(root)
    ours = {path: time_ours(data, repeat) for path, data in logs}
    checked = {path: time_ours(data, repeat, check_data=True) for path, data in logs}
    theirs = {path: time_tool(tool, path, tool_repeat) for path, _ in logs}
    base = statistics.median(ours.values())
    with_check = statistics.median(checked.values())
    return {
        **summarize(root, ours, theirs),
        # the event-data digest check (trustcore.eventlog.datadigest) on top, all logs
        "ours_with_data_check_median_us_all_logs": round(with_check, 1),
        "data_check_cost_ratio": round(with_check / base, 3),
        "repeat": repeat,
        "tpm2_eventlog_repeat": tool_repeat,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.eventlog", description=__doc__)
    parser.add_argument("--json", action="store_true", help="print one JSON line (the default)")
    parser.add_argument("--repeat", type=int, default=50, help="in-process runs per log")
    parser.add_argument("--tool-repeat", type=int, default=5, help="tpm2_eventlog runs per log")
    args = parser.parse_args(argv)
    result = run(args.repeat, args.tool_repeat)
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
