"""Benchmark: the node agent's attestation cycle and the running daemon's footprint, on swtpm.

``python -m bench.agent --json`` starts a swtpm whose PCRs hold a real boot log and measures:

- ``cycle_ms``: median wall time of one cycle excluding the hub, in a process that has loaded
  everything the daemon loads: collect evidence (the UEFI log, host facts), read the PCRs,
  encode the report body, quote (:meth:`nodeagent.attestation.Attestor.build_report` through
  the TPM worker thread);
- against the baseline ``tpm_only_ms``: the same PCR read + quote straight on
  :class:`nodeagent.tpm.TpmDevice` (the floor the TPM sets), measured in the same process;
- ``rss_mb`` and ``cpu_ms_per_cycle`` of the real daemon (``trustplane-agent run``) after
  ``--cycles`` (100) attestations against a real hub (``trustplane-hub init`` + ``run`` as
  subprocesses; each cycle triggered with SIGUSR1 and counted in the daemon's status file),
  against the baseline ``python_rss_mb`` (a bare interpreter). When the hub cannot be started
  or enrollment fails, ``hub`` says why and the two come from the cycle process instead
  (``rss_source`` tells which).

Prints one JSON line. Targets: rss_mb <= 60, cycle_ms <= 30.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def _shared() -> Path:
    shared = os.environ.get("TRUSTPLANE_SHARED")
    return Path(shared) if shared else REPO / "tests" / "data"


BOOT_LOG = _shared() / "eventlogs" / "tpm2-tools" / "event-arch-linux.bin"


def _rss_mb(pid: int | str = "self") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _extend(tcti: str) -> None:
    from nodeagent.tpm import TpmDevice  # noqa: PLC0415
    from trustcore.eventlog import parse_eventlog  # noqa: PLC0415
    from trustcore.eventlog.eventtypes import EV_NO_ACTION  # noqa: PLC0415

    with TpmDevice(tcti) as device:
        for event in parse_eventlog(BOOT_LOG.read_bytes()).events:
            if event.event_type != EV_NO_ACTION and 0 <= event.pcr <= 23:
                device.pcr_extend(event.pcr, dict(event.digests))


def _config(tmp: Path, tcti: str, hub_url: str, ca: Path | None) -> Path:
    (tmp / "boot_id").write_text("0b3a7a5e-7b1e-4d0c-9d38-6d2c1f7e9a11\n")
    cfg = tmp / "agent.toml"
    cfg.write_text(
        f'state_dir = "{tmp / "agent-state"}"\nlog_level = "warning"\n'
        f'[hub]\nurl = "{hub_url}"\n'
        + (f'ca_file = "{ca}"\n' if ca else "")
        + f'[tpm]\ntcti = "{tcti}"\n'
        f'[evidence]\nuefi_log = "{BOOT_LOG}"\ntxt = false\nboot_id = "{tmp / "boot_id"}"\n'
        "[attestation]\ninterval = 3600\nbackoff_initial = 0.05\nbackoff_max = 0.5\n"
    )
    return cfg


# --- the cycle process ----------------------------------------------------------------------


def worker(config: Path, cycles: int) -> dict[str, Any]:
    """Run in a fresh process: ``cycles`` cycles excluding the hub, and the TPM-only floor."""
    import asyncio  # noqa: PLC0415

    import nodeagent.daemon  # noqa: F401, PLC0415 - load what the daemon loads
    from nodeagent.attestation import Attestor  # noqa: PLC0415
    from nodeagent.config import load_config  # noqa: PLC0415
    from nodeagent.evidence import collect_evidence  # noqa: PLC0415
    from nodeagent.state import QueuedReport, StateDir  # noqa: PLC0415
    from nodeagent.tpm import TpmDevice  # noqa: PLC0415
    from nodeagent.tpm_worker import TpmWorker  # noqa: PLC0415
    from nodeagent.tpmsession import TpmSession  # noqa: PLC0415
    from trustcore.tpm.pcrs import PcrSelection  # noqa: PLC0415

    cfg = load_config(config)
    state = StateDir(cfg.state_dir)
    state.ensure()

    async def cycles_run() -> tuple[list[float], float, PcrSelection]:
        tpm = TpmWorker(lambda: TpmSession(cfg.tpm, state))
        attestor = Attestor(cfg, state, tpm, "00" * 32)
        entry = QueuedReport(1, time.time(), "", "bench")
        samples = []
        cpu0 = time.process_time()
        for _ in range(cycles):
            t0 = time.perf_counter()
            ev = await asyncio.to_thread(collect_evidence, cfg.evidence)
            await attestor.build_report(os.urandom(32), entry, ev)
            samples.append(time.perf_counter() - t0)
        cpu = time.process_time() - cpu0
        selection = await tpm.call(lambda s: s.selection())
        await tpm.close()
        return samples, cpu / cycles, selection

    samples, cpu_per_cycle, selection = asyncio.run(cycles_run())
    rss = _rss_mb()
    tpm_only = []
    with TpmDevice(cfg.tpm.tcti) as device:
        ak, _ = device.create_ak("ecc256")
        for _ in range(cycles):
            t0 = time.perf_counter()
            device.pcr_read(selection)
            device.quote(ak, selection, os.urandom(32))
            tpm_only.append(time.perf_counter() - t0)
        device.flush(ak)
    return {
        "cycle_ms": round(statistics.median(samples) * 1000, 2),
        "tpm_only_ms": round(statistics.median(tpm_only) * 1000, 2),
        "cpu_ms_per_cycle": round(cpu_per_cycle * 1000, 2),
        "rss_mb": round(rss, 1),
    }


# --- the real daemon against the real hub ---------------------------------------------------


def _start_hub(tmp: Path, ca_bundle: Path) -> tuple[subprocess.Popen[bytes], str, Path]:
    from trustplane.swtpm import free_port  # noqa: PLC0415

    hub_cfg = tmp / "hub.toml"
    state = tmp / "hub-state"
    hub_cfg.write_text(
        f'[state]\ndir = "{state}"\n[enrollment]\nek_ca_bundle = "{ca_bundle}"\n'
        "[attestation]\ninterval = 3600\n"
    )
    hub = str(BIN / "trustplane-hub")
    subprocess.run(
        [hub, "init", "--config", str(hub_cfg)], check=True, capture_output=True, timeout=120
    )
    port = free_port()
    proc = subprocess.Popen(
        [hub, "run", "--config", str(hub_cfg), "--listen", f"127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return proc, f"https://127.0.0.1:{port}", state / "ca.pem"


def _status(state_dir: Path) -> dict[str, Any]:
    try:
        return dict(json.loads((state_dir / "status.json").read_text()))
    except (OSError, ValueError):
        return {}


def _wait(predicate: Any, timeout: float) -> bool:  # noqa: ANN401
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.005)
    return False


def daemon_with_hub(tmp: Path, tcti: str, ca_bundle: Path, cycles: int) -> dict[str, Any]:
    """RSS and CPU per cycle of ``trustplane-agent run`` after ``cycles`` hub round trips."""
    hub, url, ca = _start_hub(tmp, ca_bundle)
    agent = None
    try:
        cfg = _config(tmp, tcti, url, ca)
        state = tmp / "agent-state"
        env = dict(os.environ, TSS2_LOG="all+NONE")
        agent = subprocess.Popen(
            [str(BIN / "trustplane-agent"), "--config", str(cfg), "run"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        if not _wait(lambda: _status(state).get("cycles", 0) >= 1, 60):
            return {"hub": f"no first attestation: {_status(state).get('hub_problem')}"}
        verdict = _status(state)["last_report"]["verdict"]
        cpu0 = _cpu_s(agent.pid)
        t0 = time.perf_counter()
        for n in range(2, cycles + 1):
            agent.send_signal(signal.SIGUSR1)
            if not _wait(lambda n=n: _status(state).get("cycles", 0) >= n, 30):
                return {"hub": f"cycle {n} did not complete: {_status(state).get('hub_problem')}"}
        wall = (time.perf_counter() - t0) / (cycles - 1)
        cpu = (_cpu_s(agent.pid) - cpu0) / (cycles - 1)
        return {
            "hub": True,
            "verdict": verdict,
            "rss_mb": round(_rss_mb(agent.pid), 1),
            "cpu_ms_per_cycle": round(cpu * 1000, 2),
            "cycle_with_hub_ms": round(wall * 1000, 2),
        }
    finally:
        for proc in (agent, hub):
            if proc is not None:
                proc.terminate()
                proc.wait(timeout=30)


def run_step(what: str, command: list[str]) -> str:
    """Run one benchmark subprocess and return its stdout; when it fails, print its stderr and
    then one line naming the step and exit status, and exit 1 (no traceback)."""
    done = subprocess.run(command, capture_output=True, text=True, check=False, cwd=REPO)
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
        if done.stderr and not done.stderr.endswith("\n"):
            sys.stderr.write("\n")
        print(f"bench.agent: {what} failed with exit status {done.returncode}", file=sys.stderr)
        raise SystemExit(1)
    return done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON line")
    parser.add_argument("--cycles", type=int, default=100)
    parser.add_argument("--worker", nargs=2, metavar=("CONFIG", "CYCLES"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(Path(args.worker[0]), int(args.worker[1]))))
        return
    from trustplane.swtpm import SwtpmFactory  # noqa: PLC0415

    os.environ.setdefault("TSS2_LOG", "all+NONE")
    with tempfile.TemporaryDirectory(prefix="bench-agent-") as d, SwtpmFactory() as factory:
        tmp = Path(d)
        tpm = factory.start()
        _extend(tpm.tcti)
        bare = run_step(
            "bare python", [sys.executable, "-c", "print(open('/proc/self/status').read())"]
        )
        python_rss = int(next(x for x in bare.splitlines() if x.startswith("VmRSS:")).split()[1])
        cycle_dir = tmp / "cycle"
        cycle_dir.mkdir()
        out = run_step(
            "cycle worker",
            [
                *(sys.executable, "-m", "bench.agent", "--worker"),
                str(_config(cycle_dir, tpm.tcti, "https://127.0.0.1:9", None)),
                str(args.cycles),
            ],
        )
        cycle = json.loads(out)
        bundle = tmp / "ek-ca.pem"
        bundle.write_bytes(b"".join(p.read_bytes() for p in factory.ca_certificates))
        hub_dir = tmp / "hub"
        hub_dir.mkdir()
        try:
            live = daemon_with_hub(hub_dir, tpm.tcti, bundle, args.cycles)
        except (OSError, subprocess.SubprocessError) as e:
            live = {"hub": f"could not start: {e}"}
    result: dict[str, Any] = {
        "rss_mb": live.get("rss_mb", cycle["rss_mb"]),
        "cycle_ms": cycle["cycle_ms"],
        "cpu_ms_per_cycle": live.get("cpu_ms_per_cycle", cycle["cpu_ms_per_cycle"]),
        "rss_source": "daemon after hub cycles" if live.get("hub") is True else "cycle process",
        "baseline_python_rss_mb": round(python_rss / 1024, 1),
        "baseline_tpm_only_ms": cycle["tpm_only_ms"],
        "cycle_process_rss_mb": cycle["rss_mb"],
        "cycle_process_cpu_ms": cycle["cpu_ms_per_cycle"],
        "cycles": args.cycles,
        **{k: v for k, v in live.items() if k not in ("rss_mb", "cpu_ms_per_cycle")},
    }
    print(json.dumps(result) if args.json else json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
