"""Flavor evaluation throughput against the cost of parsing and replaying the same log, one core.

``python -m bench.flavors --json`` makes the UEFI Secure Boot flavors (platform, host_unique,
os: 23 rules over 10 PCRs and 104 events) from guard-oss-evidence/test-before.bin and measures:

- evaluate_match: :func:`trustcore.flavors.evaluate` of those flavors against the same log's
  evidence (every rule passes: the common case);
- evaluate_update: the same flavors against test-update.bin (3 PCRs differ: event diffs made);
- baseline_parse_replay: :func:`parse_eventlog` + :func:`replay_eventlog` of test-before.bin,
  the work the hub does anyway for a new log (it caches by the log's hash).

Best of several interleaved rounds; prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

from trustcore.eventlog import parse_eventlog, replay_eventlog
from trustcore.flavors import evaluate, evidence_from_eventlog, flavor_from_eventlog, parse_template

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("TRUSTPLANE_SHARED", REPO / "tests" / "data"))
LOGS = SHARED / "eventlogs" / "guard-oss-evidence"
TEMPLATE = REPO / "firmware_measurements" / "templates" / "uefi-secure-boot.json"


def per_second(run: Callable[[], object], seconds: float) -> float:
    done = 0
    start = time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        run()
        done += 1
    return done / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--json", action="store_true", help="print one JSON line")
    parser.add_argument("--seconds", type=float, default=0.5, help="per round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    before_bytes = (LOGS / "test-before.bin").read_bytes()
    before = parse_eventlog(before_bytes)
    flavors = flavor_from_eventlog(before, parse_template(TEMPLATE.read_text()), "bench")
    good = evidence_from_eventlog(before)
    updated = evidence_from_eventlog(parse_eventlog((LOGS / "test-update.bin").read_bytes()))
    runs: dict[str, Callable[[], object]] = {
        "evaluate_match": lambda: evaluate(flavors, good),
        "evaluate_update": lambda: evaluate(flavors, updated),
        "baseline_parse_replay": lambda: replay_eventlog(parse_eventlog(before_bytes)),
    }
    best = dict.fromkeys(runs, 0.0)
    for _ in range(args.rounds):
        for name, run in runs.items():
            best[name] = max(best[name], per_second(run, args.seconds))
    result = {name: round(value, 1) for name, value in best.items()}
    result["match_vs_baseline"] = round(best["evaluate_match"] / best["baseline_parse_replay"], 2)
    if args.json:
        print(json.dumps(result, sort_keys=True))
    else:
        for name, value in result.items():
            print(f"{name:24} {value}")


if __name__ == "__main__":
    main()
