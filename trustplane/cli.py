"""The ``trustplane`` command: event-log analysis, encrypted images and the demo.

``trustplane eventlog show|replay|txt-heap FILE`` reads a file and hands the bytes to
:mod:`trustcore.eventlog`; ``trustplane image check|encrypt|decrypt`` is
:mod:`trustplane.imagecli`; ``trustplane demo`` runs the local demo (:mod:`trustplane.demo`).
This is the only place where errors become exit codes: 0 success,
1 runtime failure, 2 bad input or usage, always with one line on stderr saying why.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TextIO

from trustcore import __version__
from trustcore.algorithms import HASH_ALGORITHMS
from trustcore.errors import TrustcoreError
from trustcore.eventlog import (
    PCR_INDEX_NONE,
    EventLog,
    TxtLogLocation,
    locate_txt_eventlog_in_image,
    parse_eventlog,
    read_txt_eventlog_from_image,
    replay_eventlog,
)
from trustplane.errors import TrustplaneError
from trustplane.imagecli import add_image_commands

EXIT_OK: Final = 0
EXIT_FAILURE: Final = 1
EXIT_BAD_INPUT: Final = 2
MAX_LOG_FILE: Final = 16 * 1024 * 1024
MAX_IMAGE_FILE: Final = 256 * 1024 * 1024
DESCRIPTION_WIDTH: Final = 120
DEMO_LOG: Final = Path("guard-oss-evidence", "test-before.bin")
DEMO_TXT_IMAGE: Final = Path("intel-secl", "txt_heap_info.bin")


class InputError(Exception):
    """A file that cannot be read as asked (missing, unreadable, too large)."""


@dataclass(frozen=True, slots=True)
class Analysis:
    """A parsed and replayed log, ready to print."""

    log: EventLog
    pcrs: dict[int, dict[int, bytes]]


def read_input(path: Path, limit: int) -> bytes:
    """The bytes of ``path``, at most ``limit``; raises InputError."""
    try:
        with path.open("rb") as f:
            data = f.read(limit + 1)
    except OSError as e:
        raise InputError(f"{path}: {e.strerror or e}") from None
    if len(data) > limit:
        raise InputError(f"{path}: larger than {limit} bytes")
    return data


def analyse(data: bytes) -> Analysis:
    """Parse and replay; raises TrustcoreError."""
    log = parse_eventlog(data)
    return Analysis(log, replay_eventlog(log))


def bank_name(alg_id: int) -> str:
    known = HASH_ALGORITHMS.get(alg_id)
    return known.name if known is not None else f"0x{alg_id:04x}"


def pcrs_json(pcrs: dict[int, dict[int, bytes]]) -> dict[str, dict[str, str]]:
    """``{"sha256": {"0": "hex"}}`` with banks in algorithm-id order and PCRs in number order."""
    return {
        bank_name(alg): {str(pcr): bank[pcr].hex() for pcr in sorted(bank)}
        for alg, bank in sorted(pcrs.items())
    }


def replay_json(result: Analysis) -> dict[str, Any]:
    return {
        "format": result.log.format,
        "events": len(result.log.events),
        "pcrs": pcrs_json(result.pcrs),
    }


def events_json(log: EventLog) -> dict[str, Any]:
    return {
        "format": log.format,
        "algorithms": [bank_name(a) for a in log.algorithms],
        "trailing_bytes": log.trailing_bytes,
        "events": [
            {
                "index": e.index,
                "pcr": -1 if e.pcr == PCR_INDEX_NONE else e.pcr,
                "type": e.event_type,
                "type_name": e.type_name,
                "digests": {bank_name(a): d.hex() for a, d in e.digests.items()},
                "offset": e.offset,
                "size": len(e.data),
                "description": e.description,
            }
            for e in log.events
        ],
    }


def write_table(log: EventLog, out: TextIO) -> None:
    banks = ", ".join(bank_name(a) for a in log.algorithms)
    out.write(
        f"format {log.format}, {len(log.events)} events, banks {banks}, "
        f"{log.trailing_bytes} trailing bytes\n"
    )
    out.write(f"{'#':>4} {'PCR':>3}  {'type':<34} {'digests':<34} description\n")
    for e in log.events:
        pcr = "-1" if e.pcr == PCR_INDEX_NONE else str(e.pcr)
        digests = " ".join(f"{bank_name(a)}:{d.hex()[:8]}" for a, d in e.digests.items())
        text = e.description
        if len(text) > DESCRIPTION_WIDTH:
            text = text[: DESCRIPTION_WIDTH - 3] + "..."
        out.write(f"{e.index:>4} {pcr:>3}  {e.type_name:<34} {digests:<34} {text}\n")


def write_pcrs(pcrs: dict[int, dict[int, bytes]], out: TextIO) -> None:
    for bank, values in pcrs_json(pcrs).items():
        for pcr, value in values.items():
            out.write(f"{bank:<8} PCR {pcr:>2}: {value}\n")


def write_json(value: object, out: TextIO) -> None:
    out.write(json.dumps(value) + "\n")


# --- commands ----------------------------------------------------------------------------------


def cmd_show(args: argparse.Namespace) -> int:
    log = parse_eventlog(read_input(args.file, MAX_LOG_FILE))
    if args.json:
        write_json(events_json(log), sys.stdout)
    else:
        write_table(log, sys.stdout)
    return EXIT_OK


def cmd_replay(args: argparse.Namespace) -> int:
    result = analyse(read_input(args.file, MAX_LOG_FILE))
    if args.json:
        write_json(replay_json(result), sys.stdout)
    else:
        sys.stdout.write(f"format {result.log.format}, {len(result.log.events)} events\n")
        write_pcrs(result.pcrs, sys.stdout)
    return EXIT_OK


def location_json(where: TxtLogLocation) -> dict[str, Any]:
    return {
        "address": where.address,
        "size": where.size,
        "offset": where.offset,
        "container_address": where.container_address,
        "container_size": where.container_size,
        "os_sinit_version": where.os_sinit_version,
    }


def cmd_txt_heap(args: argparse.Namespace) -> int:
    image = read_input(args.file, MAX_IMAGE_FILE)
    where = locate_txt_eventlog_in_image(image)
    log_bytes = read_txt_eventlog_from_image(image)
    if args.replay:
        return _print_replay(analyse(log_bytes), json_out=args.json)
    if args.show:
        log = parse_eventlog(log_bytes)
        if args.json:
            write_json(events_json(log), sys.stdout)
        else:
            write_table(log, sys.stdout)
        return EXIT_OK
    if args.json:
        write_json(location_json(where), sys.stdout)
    else:
        sys.stdout.write(
            f"TXT event log at physical address 0x{where.address:x}, {where.size} bytes "
            f"(container {where.container_size} bytes, OsSinitData v{where.os_sinit_version}), "
            f"image offset 0x{where.offset or 0:x}\n"
        )
    return EXIT_OK


def _print_replay(result: Analysis, *, json_out: bool) -> int:
    if json_out:
        write_json(replay_json(result), sys.stdout)
    else:
        sys.stdout.write(f"format {result.log.format}, {len(result.log.events)} events\n")
        write_pcrs(result.pcrs, sys.stdout)
    return EXIT_OK


def default_eventlogs_dir() -> Path:
    """``$TRUSTPLANE_SHARED/eventlogs``, else the corpus the repository carries (tests/data)."""
    shared = os.environ.get("TRUSTPLANE_SHARED")
    if shared:
        return Path(shared) / "eventlogs"
    return Path(__file__).resolve().parent.parent / "tests" / "data" / "eventlogs"


def cmd_demo(args: argparse.Namespace) -> int:
    """Run the local demo: a hub and three attested hosts, one of which goes bad."""
    from trustplane.demo import DemoOptions, run_demo  # noqa: PLC0415 - needs hub and agent

    options = DemoOptions(
        once=args.once,
        json=args.json,
        eventlogs=default_eventlogs_dir(),
        step_timeout=args.timeout,
        kubeconfig=args.kubeconfig,
        skopeo=args.skopeo,
    )
    return run_demo(options)


# --- argument parsing and the one error boundary ----------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trustplane",
        description="Analyse TPM event logs (UEFI, legacy SHA-1, Intel TXT), check, encrypt and "
        "decrypt OCI images, and run the demo.",
        epilog="Exit codes: 0 success, 1 runtime failure, 2 bad input or usage.",
    )
    parser.add_argument("--version", action="version", version=f"trustplane {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    eventlog = commands.add_parser("eventlog", help="parse, show and replay an event log")
    sub = eventlog.add_subparsers(dest="eventlog_command", required=True, metavar="ACTION")
    show = sub.add_parser("show", help="print every event: index, PCR, type, digests, meaning")
    show.add_argument("file", type=Path, metavar="FILE", help="a binary event log")
    show.add_argument("--json", action="store_true", help="print the events as one JSON line")
    show.set_defaults(handler=cmd_show)
    replay = sub.add_parser("replay", help="replay the log into the PCR values it implies")
    replay.add_argument("file", type=Path, metavar="FILE", help="a binary event log")
    replay.add_argument(
        "--json", action="store_true", help='print {"format", "events", "pcrs"} as JSON'
    )
    replay.set_defaults(handler=cmd_replay)
    heap = sub.add_parser(
        "txt-heap", help="find the TXT event log in a TXT heap memory image (fake /dev/mem)"
    )
    heap.add_argument(
        "file", type=Path, metavar="FILE", help="image: u64 heap base, u64 heap size, memory"
    )
    what = heap.add_mutually_exclusive_group()
    what.add_argument("--show", action="store_true", help="print the events of the found log")
    what.add_argument("--replay", action="store_true", help="replay the found log")
    heap.add_argument("--json", action="store_true", help="print JSON")
    heap.set_defaults(handler=cmd_txt_heap)

    add_image_commands(commands)

    demo = commands.add_parser(
        "demo",
        help="run a hub and three TPM-attested hosts on 127.0.0.1; one reboots into a change",
        description="Starts a hub and three agents with their own swtpm (booted from a real "
        "event log), imports flavors from host-1, assigns them to all, reboots host-3 into a "
        "kernel update and shows it turn untrusted with an alert. Progress goes to stderr; "
        "then the status page URL and admin token; Ctrl-C stops everything.",
    )
    demo.add_argument(
        "--once", action="store_true", help="run the scenario to the end and exit (no waiting)"
    )
    demo.add_argument(
        "--json",
        action="store_true",
        help='print one JSON line: {"hosts": [{"name", "verdict", "reasons"}], "alerts": N, '
        '"images": {"encrypted_by", "image", "hosts": {NAME: {"decrypted", "reason"}}}}',
    )
    demo.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="longest wait for any one step (default 60)",
    )
    demo.add_argument(
        "--kubeconfig",
        type=Path,
        metavar="FILE",
        help="register this cluster and map host-1..3 to its nodes of the same names",
    )
    demo.add_argument(
        "--skopeo",
        metavar="PATH",
        help="encrypt and decrypt the demo image with this skopeo (>= 1.11, key providers) "
        "instead of trustplane image",
    )
    demo.set_defaults(handler=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except (TrustcoreError, InputError) as e:
        text = e.describe() if isinstance(e, TrustcoreError) else str(e)
        where = f"{args.file}: " if isinstance(e, TrustcoreError) and "file" in args else ""
        sys.stderr.write(f"trustplane: {where}{_one_line(text)}\n")
        return EXIT_BAD_INPUT
    except TrustplaneError as e:
        sys.stderr.write(f"trustplane: {_one_line(e.message)}\n")
        return EXIT_FAILURE
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_OK
    except OSError as e:
        sys.stderr.write(f"trustplane: {_one_line(str(e))}\n")
        return EXIT_FAILURE


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _silence_stdout() -> None:
    """After the reader of our output went away, keep Python from complaining at exit."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
