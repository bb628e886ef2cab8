"""``trustplane-agent``: run the daemon, enroll, show status, dump evidence, inspect the TPM.

This is the only place where errors become exit codes:

====  ==========================================================================
code  meaning
====  ==========================================================================
0     success (``enroll``: enrolled; ``status``: a status file was found)
1     any other agent error (state directory unusable, evidence, ...)
2     bad command line (argparse)
3     bad configuration (the message names the file, key and problem)
4     the hub could not be reached, or refused the request
5     the TPM failed (the message carries the TPM response code)
6     not enrolled yet: enrollment is pending approval on the hub, or
      ``status`` found no status file (the daemon never ran)
      (``hook`` exits 0 or 1 only: 1 refuses the container, with one stderr line)
130   interrupted (Ctrl-C)
====  ==========================================================================
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nodeagent import __version__
from nodeagent.config import DEFAULT_CONFIG, AgentConfig, ConfigError, load_config
from nodeagent.errors import NodeAgentError, TpmError

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_CONFIG = 3
EXIT_HUB = 4
EXIT_TPM = 5
EXIT_NOT_ENROLLED = 6
EXIT_INTERRUPTED = 130


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="trustplane-agent",
        description="trustplane node agent: TPM attestation of this host to the hub.",
        epilog="exit codes: 0 ok, 1 error, 2 usage, 3 config, 4 hub, 5 TPM, 6 not enrolled, "
        "130 interrupted",
    )
    p.add_argument("--version", action="version", version=f"trustplane-agent {__version__}")
    p.add_argument(
        "--config",
        type=Path,
        default=DEFAULT_CONFIG,
        help=f"main config file (default {DEFAULT_CONFIG}; drop-ins in its .d directory)",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("run", help="run the daemon (enroll if needed, then attest on schedule)")
    sub.add_parser("enroll", help="enroll this host with the hub once and exit")
    st = sub.add_parser("status", help="identity, last verdict and next attestation")
    st.add_argument("--json", action="store_true", help="machine-readable output")
    ev = sub.add_parser(
        "evidence",
        help="show the evidence a report would carry, TPM facts and PCRs included "
        "(read-only: creates no AK, writes no state)",
    )
    ev.add_argument("--dump", action="store_true", required=True, help="collect and print it")
    ev.add_argument("--json", action="store_true", help="machine-readable output")
    tpm = sub.add_parser("tpm", help="TPM commands")
    tpm_sub = tpm.add_subparsers(dest="tpm_command", required=True, metavar="TPM_COMMAND")
    info = tpm_sub.add_parser(
        "info",
        help="EK, AK and PCR values of the configured TPM (read-only: creates no AK, writes "
        "no state; the AK shows as none before the first run or enroll)",
    )
    info.add_argument("--json", action="store_true", help="machine-readable output")
    sub.add_parser(
        "hook",
        help="OCI hook (createRuntime): exit 1 with one stderr line unless this host's signed "
        "trust report verifies, says trusted and is current (OCI state JSON on stdin)",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``trustplane-agent``; returns the exit code."""
    args = _parser().parse_args(argv)
    if args.command == "hook":
        return _hook(args.config)
    os.environ.setdefault("TSS2_LOG", "all+NONE")  # TPM errors are reported as TpmError
    try:
        cfg = load_config(args.config)
        return _dispatch(args, cfg)
    except ConfigError as e:
        _err(f"configuration error: {e}")
        return EXIT_CONFIG
    except TpmError as e:
        _err(f"TPM error: {e.describe()}")
        return EXIT_TPM
    except NodeAgentError as e:
        from nodeagent.hubclient import HubRejected, HubUnavailable  # noqa: PLC0415

        _err(e.describe())
        return EXIT_HUB if isinstance(e, HubUnavailable | HubRejected) else EXIT_ERROR
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


def _hook(config: Path) -> int:
    """The OCI hook: 0 lets the container start; 1 and one stderr line refuse it."""
    from nodeagent.hook import check_host, read_oci_state  # noqa: PLC0415
    from nodeagent.state import StateDir  # noqa: PLC0415

    try:
        read_oci_state(sys.stdin.buffer)
        check_host(StateDir(load_config(config).state_dir))
    except NodeAgentError as e:  # ConfigError and TrustReportRefused alike
        line = "".join(c if c.isprintable() else " " for c in e.message)[:480]
        print(f"trustplane: container refused: {line} [{e.reason}]", file=sys.stderr)
        return EXIT_ERROR
    return EXIT_OK


def _err(text: str) -> None:
    print(f"trustplane-agent: {text}", file=sys.stderr)


def _dispatch(args: argparse.Namespace, cfg: AgentConfig) -> int:
    if args.command == "run":
        return _run(cfg)
    if args.command == "enroll":
        return asyncio.run(_enroll(cfg))
    if args.command == "status":
        return _status(cfg, as_json=args.json)
    if args.command == "evidence":
        return asyncio.run(_evidence(cfg, as_json=args.json))
    return asyncio.run(_tpm_info(cfg, as_json=args.json))


def _run(cfg: AgentConfig) -> int:
    from nodeagent.daemon import Daemon  # noqa: PLC0415
    from nodeagent.notify import setup_logging  # noqa: PLC0415

    setup_logging(cfg.log_level)
    asyncio.run(Daemon(cfg).run())
    return EXIT_OK


async def _enroll(cfg: AgentConfig) -> int:
    from nodeagent.enrollment import enroll  # noqa: PLC0415
    from nodeagent.hubclient import HubClient  # noqa: PLC0415
    from nodeagent.state import StateDir  # noqa: PLC0415

    state = StateDir(cfg.state_dir)
    state.ensure()
    async with _worker(cfg, read_only=False) as tpm, HubClient(cfg.hub) as hub:
        outcome = await enroll(cfg, state, tpm, hub)
    print(f"host {outcome.host_id}: {outcome.status}")
    return EXIT_OK if outcome.status == "enrolled" else EXIT_NOT_ENROLLED


def _status(cfg: AgentConfig, *, as_json: bool) -> int:
    from nodeagent.state import StateDir  # noqa: PLC0415

    status = StateDir(cfg.state_dir).load_status()
    if status is None:
        _err(f"no status file in {cfg.state_dir}: the daemon has not run")
        return EXIT_NOT_ENROLLED
    if as_json:
        print(json.dumps(status, indent=1, sort_keys=True))
        return EXIT_OK
    print(_format_status(status, time.time()))
    return EXIT_OK


def _format_status(s: dict[str, Any], now: float) -> str:
    lines = [
        f"host id:          {s.get('host_id') or '-'}",
        f"enrollment:       {s.get('enrollment')}",
        f"daemon:           {s.get('phase')} (pid {s.get('pid')}, agent {s.get('agent_version')})",
        f"TPM:              {s.get('tpm')}"
        + (f" ({s['tpm_problem']})" if s.get("tpm_problem") else ""),
        f"hub:              {'problem: ' + s['hub_problem'] if s.get('hub_problem') else 'ok'}",
    ]
    if s.get("agent_problem"):
        lines.append(f"agent:            internal error, retrying: {s['agent_problem']}")
    last = s.get("last_report")
    if last:
        reasons = ", ".join(last.get("reasons") or []) or "none"
        lines.append(
            f"last verdict:     {last['verdict']} (report {last['sequence']}, "
            f"{now - last['at']:.0f}s ago; reasons: {reasons})"
        )
    else:
        lines.append("last verdict:     none yet")
    nxt = s.get("next_attestation_at")
    lines.append(
        "next attestation: "
        + ("-" if nxt is None or s.get("phase") != "running" else f"in {max(0, nxt - now):.0f}s")
    )
    lines.append(f"queued reports:   {s.get('queued_reports', 0)}")
    return "\n".join(lines)


class _worker:  # used as ``async with _worker(cfg, read_only=...) as tpm``
    def __init__(self, cfg: AgentConfig, *, read_only: bool) -> None:
        """``read_only``: the state directory is neither created nor written; a missing AK is
        not created (the session's ``has_ak`` says so)."""
        from nodeagent.state import StateDir  # noqa: PLC0415
        from nodeagent.tpm_worker import TpmWorker  # noqa: PLC0415
        from nodeagent.tpmsession import TpmSession  # noqa: PLC0415

        state = StateDir(cfg.state_dir)
        if not read_only:
            state.ensure()  # the AK is created and stored on first use
        self.worker = TpmWorker(lambda: TpmSession(cfg.tpm, state, create_ak=not read_only))

    async def __aenter__(self) -> Any:  # noqa: ANN401
        return self.worker

    async def __aexit__(self, *exc: object) -> None:
        await self.worker.close()


async def _evidence(cfg: AgentConfig, *, as_json: bool) -> int:
    from nodeagent.evidence import collect_evidence  # noqa: PLC0415
    from trustcore.wire import encode_pcr_values  # noqa: PLC0415

    ev = await asyncio.to_thread(collect_evidence, cfg.evidence)
    pcrs: dict[str, dict[str, str]] | None = None
    tpm_facts: dict[str, str] = {}
    tpm_problem = None
    try:
        async with _worker(cfg, read_only=True) as tpm:
            tpm_facts = await tpm.call(lambda s: s.facts())
            pcrs = encode_pcr_values(await tpm.call(lambda s: s.pcr_read()))
    except TpmError as e:
        tpm_problem = e.describe()
    out: dict[str, Any] = {
        "boot_id": ev.boot_id,
        "facts": {**ev.facts, **tpm_facts},  # as a report carries them
        "eventlogs": {
            name: {"size": len(data), "sha256": _sha256(data)}
            for name, data in sorted(ev.eventlogs.items())
        },
        "missing_evidence": [m.to_json() for m in ev.missing],
        "pcr_values": pcrs,
        "tpm_problem": tpm_problem,
    }
    if as_json:
        for name, data in ev.eventlogs.items():
            out["eventlogs"][name]["data"] = base64.b64encode(data).decode("ascii")
        print(json.dumps(out, indent=1, sort_keys=True))
        return EXIT_OK
    print(f"boot id: {ev.boot_id}")
    for key, value in sorted(out["facts"].items()):
        print(f"fact {key}: {value}")
    for name, info in out["eventlogs"].items():
        print(f"event log {name}: {info['size']} bytes, sha256 {info['sha256']}")
    for m in ev.missing:
        print(f"missing {m.source}: {m.reason}")
    if pcrs is None:
        print(f"PCRs: unavailable ({tpm_problem})")
    else:
        for bank, values in pcrs.items():
            for pcr, value in values.items():
                print(f"PCR {bank}:{pcr}: {value}")
    return EXIT_OK


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def _tpm_info(cfg: AgentConfig, *, as_json: bool) -> int:
    from trustcore.wire import encode_pcr_values, host_id_from_ek  # noqa: PLC0415

    async with _worker(cfg, read_only=True) as tpm:
        ek = await tpm.call(lambda s: s.endorsement())
        ak_public = await tpm.call(lambda s: s.ak_public if s.has_ak else None)
        tpm_facts = await tpm.call(lambda s: s.facts())
        pcrs = encode_pcr_values(await tpm.call(lambda s: s.pcr_read()))
    info = {
        "tcti": cfg.tpm.tcti,
        "host_id": host_id_from_ek(ek.public),
        "ek_algorithm": cfg.tpm.ek_algorithm,
        "ek_certificate": ek.certificate is not None,
        "ak_algorithm": cfg.tpm.ak_algorithm,
        "ak_public_sha256": None if ak_public is None else _sha256(ak_public),
        "pcr_values": pcrs,
        **tpm_facts,
    }
    if as_json:
        print(json.dumps(info, indent=1, sort_keys=True))
        return EXIT_OK
    print(f"TCTI:           {info['tcti']}")
    print(
        f"TPM:            {tpm_facts['tpm_manufacturer']} ({tpm_facts['tpm_vendor']}), "
        f"firmware {tpm_facts['tpm_firmware']}, spec {tpm_facts['tpm_spec_revision']}"
    )
    print(f"host id:        {info['host_id']} (SHA-256 of the EK public area)")
    cert = "present" if ek.certificate else "absent"
    print(f"EK:             {info['ek_algorithm']}, certificate {cert}")
    if ak_public is None:
        print("AK:             none yet (`run` or `enroll` creates and stores it)")
    else:
        print(f"AK:             {info['ak_algorithm']}, public sha256 {info['ak_public_sha256']}")
    for bank, values in pcrs.items():
        for pcr, value in values.items():
            print(f"PCR {bank}:{pcr}: {value}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
