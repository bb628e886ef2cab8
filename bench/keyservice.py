"""Benchmark: the host side of image-key unwrapping (the agent's key socket and the provider).

``python -m bench.keyservice --json`` runs everything for real on 127.0.0.1: a swtpm whose PCRs
hold a real boot log, the hub (state made as ``trustplane-hub init`` makes it, served on its own
event-loop thread in this process, so that releases can be counted in its store), and the agent
daemon ``trustplane-agent run`` as a subprocess with its key socket and TPM-sealed cache. Key
blobs come from the hub's wrap API with a pipeline token. It measures:

- ``unwrap_cached_p50_ms``: one unwrap over the daemon's socket with a warm cache (the secret
  unsealed locally, no hub), against the baseline ``socket_status_p50_ms`` (a status request
  over the same socket: what the socket round trip itself costs); ``unwrap_cached_cpu_ms`` is
  the daemon's CPU time per unwrap (from /proc), ``client`` time excluded;
- ``unwrap_hub_p50_ms``: one unwrap of a blob not cached, so the daemon asks the hub (a fresh
  quote, one release) and seals the answer; ``unwrap_hub_cpu_ms`` the daemon's CPU per unwrap;
- ``provider_process_p50_ms``: ``trustplane-keyprovider`` end to end as ocicrypt runs it (a
  process, the recorded keyunwrap request shape on stdin, a cached key), against the baseline
  ``python_startup_p50_ms`` (``python -I -c pass``); ``provider_cpu_ms`` its CPU (user + sys);
- ``ten_layers_hub_round_trips``: a 10-layer image's unwraps issued as containers/image issues
  them (a provider process per layer, at most 6 at once, the next layer when one finishes),
  counted at the hub as the reports its release requests recorded; and
  ``ten_layers_at_once_hub_round_trips`` with all 10 processes started together.

Prints one JSON line. Targets: unwrap_cached_p50_ms <= 5, unwrap_hub_p50_ms <= 50,
provider_process_p50_ms <= 80, ten_layers_hub_round_trips = 1.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import http.client
import json
import os
import resource
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
T = TypeVar("T")


def _shared() -> Path:
    shared = os.environ.get("TRUSTPLANE_SHARED")
    return Path(shared) if shared else REPO / "tests" / "data"


BOOT_LOG = _shared() / "eventlogs" / "tpm2-tools" / "event-arch-linux.bin"
UNWRAP_REQUEST = _shared() / "fixtures" / "ocicrypt" / "keyunwrap-request-layer1.json"
POLICY = "bench-keys"


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _p50_ms(samples: list[float]) -> float:
    return round(statistics.median(samples) * 1000, 2)


def _extend(tcti: str) -> None:
    from nodeagent.tpm import TpmDevice  # noqa: PLC0415
    from trustcore.eventlog import parse_eventlog  # noqa: PLC0415
    from trustcore.eventlog.eventtypes import EV_NO_ACTION  # noqa: PLC0415

    with TpmDevice(tcti) as device:
        for event in parse_eventlog(BOOT_LOG.read_bytes()).events:
            if event.event_type != EV_NO_ACTION and 0 <= event.pcr <= 23:
                device.pcr_extend(event.pcr, dict(event.digests))


class _Hub:
    """The real hub app on a private event-loop thread (TLS on 127.0.0.1)."""

    def __init__(self, tmp: Path, ca_bundle: Path) -> None:
        from hub.app import create_app  # noqa: PLC0415
        from hub.config import StateConfig, load_config  # noqa: PLC0415
        from hub.server import start_hub  # noqa: PLC0415
        from hub.statedir import DB_FILE, create_state_dir  # noqa: PLC0415
        from hub.store import Store  # noqa: PLC0415

        state_dir = tmp / "hub-state"
        create_state_dir(state_dir, ["bench.invalid"], time.time())

        async def migrate() -> None:
            store = await Store.open(state_dir / DB_FILE)
            await store.close()

        asyncio.run(migrate())
        config = load_config(
            tmp / "absent.toml",
            overrides={
                "server": {"listen": "127.0.0.1:0"},
                "enrollment": {"ek_ca_bundle": str(ca_bundle)},
                "attestation": {"interval": 3600},
            },
        )
        from dataclasses import replace  # noqa: PLC0415

        self.config = replace(config, state=StateConfig(dir=state_dir))
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.app = create_app(self.config)
        self.running = self.call(start_hub(self.app, self.config, port=0))
        self.url = f"https://127.0.0.1:{self.running.port}"
        self.ca_file = state_dir / "ca.pem"

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=120)

    @property
    def store(self) -> Any:  # noqa: ANN401
        from hub.state import STATE  # noqa: PLC0415

        return self.app[STATE].store

    def reports(self, host_id: str) -> int:
        return len(self.call(self.store.list_reports(host_id)))

    def stop(self) -> None:
        self.call(self.running.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)


def _pipeline_token(hub: _Hub) -> str:
    from hub.statedir import new_token  # noqa: PLC0415

    token, digest = new_token()
    hub.call(hub.store.add_token(digest, "pipeline", "bench", time.time()))
    hub.call(hub.store.put_key_policy(POLICY, "", 3600.0, time.time()))
    return token


def _wrap(hub: _Hub, token: str, count: int) -> list[str]:
    ctx = ssl.create_default_context(cafile=str(hub.ca_file))
    out = []
    for i in range(count):
        optsdata = base64.b64encode(
            json.dumps({"symkey": base64.b64encode(os.urandom(32)).decode(), "n": i}).encode()
        ).decode()
        conn = http.client.HTTPSConnection("127.0.0.1", hub.running.port, context=ctx, timeout=30)
        conn.request(
            "POST",
            "/v1/keys/wrap",
            body=json.dumps({"policy": POLICY, "optsdata": optsdata}),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        resp = conn.getresponse()
        body = json.loads(resp.read())
        conn.close()
        if resp.status != 200:
            raise RuntimeError(f"wrap refused: {body}")
        out.append(body["annotation"])
    return out


def _agent_config(tmp: Path, tcti: str, hub: _Hub, sock: Path, window: float | None) -> Path:
    (tmp / "boot_id").write_text("0b3a7a5e-7b1e-4d0c-9d38-6d2c1f7e9a11\n")
    cfg = tmp / "agent.toml"
    cfg.write_text(
        f'state_dir = "{tmp / "agent-state"}"\nlog_level = "warning"\n'
        f'[hub]\nurl = "{hub.url}"\nca_file = "{hub.ca_file}"\n'
        f'[tpm]\ntcti = "{tcti}"\nwatch_devices = false\n'
        f'[evidence]\nuefi_log = "{BOOT_LOG}"\ntxt = false\nboot_id = "{tmp / "boot_id"}"\n'
        "[attestation]\ninterval = 3600\nbackoff_initial = 0.05\nbackoff_max = 0.5\n"
        f'[keys]\nsocket = "{sock}"\n' + ("" if window is None else f"batch_window = {window}\n")
    )
    return cfg


def _ask(sock: Path, line: bytes) -> dict[str, Any]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(60)
        s.connect(str(sock))
        s.sendall(line)
        s.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    value = json.loads(data)
    assert isinstance(value, dict)
    return value


def _unwrap_line(annotation: str) -> bytes:
    return json.dumps({"op": "unwrap", "annotation": annotation}).encode() + b"\n"


def _timed(fn: Callable[[], object], n: int) -> list[float]:
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return samples


def _provider(config: Path, annotation: str) -> None:
    request = json.loads(UNWRAP_REQUEST.read_bytes())
    request["keyunwrapparams"]["annotation"] = annotation
    done = subprocess.run(
        [str(BIN / "trustplane-keyprovider")],
        input=json.dumps(request).encode(),
        capture_output=True,
        env={"TRUSTPLANE_KEYPROVIDER_CONFIG": str(config), "PATH": os.environ.get("PATH", "")},
        timeout=60,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"provider failed: {done.stderr.decode().strip()}")


def _wait(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return False


def _status(state_dir: Path) -> dict[str, Any]:
    try:
        return dict(json.loads((state_dir / "status.json").read_text()))
    except (OSError, ValueError):
        return {}


def measure(samples: int, provider_samples: int, window: float | None = None) -> dict[str, Any]:
    from trustplane.swtpm import SwtpmFactory  # noqa: PLC0415

    with (
        tempfile.TemporaryDirectory(prefix="tpbk-") as tmp_name,
        SwtpmFactory(Path(tmp_name) / "swtpm") as factory,
    ):
        tmp = Path(tmp_name)
        tpm = factory.start()
        hub = None
        agent = None
        try:
            _extend(tpm.tcti)
            bundle = tmp / "ek-ca.pem"
            bundle.write_bytes(b"".join(p.read_bytes() for p in factory.ca_certificates))
            hub = _Hub(tmp, bundle)
            token = _pipeline_token(hub)
            sock = tmp / "run" / "keys.sock"
            cfg = _agent_config(tmp, tpm.tcti, hub, sock, window)
            agent = subprocess.Popen(
                [str(BIN / "trustplane-agent"), "--config", str(cfg), "run"],
                env=dict(os.environ, TSS2_LOG="all+NONE"),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            state = tmp / "agent-state"
            if not _wait(lambda: _status(state).get("cycles", 0) >= 1 and sock.exists(), 90):
                raise RuntimeError(f"the agent did not attest: {_status(state)}")
            host_id = str(_status(state)["host_id"])
            return _run(hub, token, agent.pid, sock, host_id, tmp, samples, provider_samples)
        finally:
            if agent is not None:
                agent.terminate()
                agent.wait(timeout=30)
            if hub is not None:
                hub.stop()
            tpm.stop()


def _run(  # noqa: PLR0917
    hub: _Hub,
    token: str,
    agent_pid: int,
    sock: Path,
    host_id: str,
    tmp: Path,
    samples: int,
    provider_samples: int,
) -> dict[str, Any]:
    hub_n = max(5, samples // 10)
    fresh = _wrap(hub, token, hub_n + 1 + 10 + 10)
    warm, via_hub = fresh[0], fresh[1 : 1 + hub_n]
    ten, ten_at_once = fresh[1 + hub_n : 11 + hub_n], fresh[11 + hub_n :]
    if _ask(sock, _unwrap_line(warm)).get("ok") is not True:
        raise RuntimeError("the first unwrap failed")

    status = _timed(lambda: _ask(sock, b'{"op":"status"}\n'), samples)
    cpu0 = _cpu_s(agent_pid)
    cached = _timed(lambda: _ask(sock, _unwrap_line(warm)), samples)
    cached_cpu = (_cpu_s(agent_pid) - cpu0) / samples

    cpu0 = _cpu_s(agent_pid)
    hub_samples = []
    for annotation in via_hub:
        t0 = time.perf_counter()
        _ask(sock, _unwrap_line(annotation))
        hub_samples.append(time.perf_counter() - t0)
    hub_cpu = (_cpu_s(agent_pid) - cpu0) / len(via_hub)

    pcfg = tmp / "keyprovider.toml"
    pcfg.write_text(f'socket = "{sock}"\n')
    py = _timed(
        lambda: subprocess.run([sys.executable, "-I", "-c", "pass"], check=True), provider_samples
    )
    cpu0 = _children_cpu_s()
    provider = _timed(lambda: _provider(pcfg, warm), provider_samples)
    provider_cpu = (_children_cpu_s() - cpu0) / provider_samples

    def layers(annotations: list[str], workers: int) -> int:
        before = hub.reports(host_id)
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(lambda a: _provider(pcfg, a), annotations))
        return hub.reports(host_id) - before

    cached_p50 = _p50_ms(cached)
    provider_p50 = _p50_ms(provider)
    return {
        "unwrap_cached_p50_ms": cached_p50,
        "unwrap_cached_cpu_ms": round(cached_cpu * 1000, 2),
        "socket_status_p50_ms": _p50_ms(status),
        "unwrap_cached_vs_status": round(cached_p50 / max(_p50_ms(status), 0.001), 2),
        "unwrap_hub_p50_ms": _p50_ms(hub_samples),
        "unwrap_hub_cpu_ms": round(hub_cpu * 1000, 2),
        "provider_process_p50_ms": provider_p50,
        "provider_cpu_ms": round(provider_cpu * 1000, 2),
        "python_startup_p50_ms": _p50_ms(py),
        "provider_vs_python_startup": round(provider_p50 / max(_p50_ms(py), 0.001), 2),
        "ten_layers_hub_round_trips": layers(ten, 6),
        "ten_layers_at_once_hub_round_trips": layers(ten_at_once, 10),
        "samples": samples,
        "provider_samples": provider_samples,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.keyservice", description=__doc__)
    p.add_argument("--json", action="store_true", help="one JSON line (the default output)")
    p.add_argument("--samples", type=int, default=200, help="socket unwraps to time")
    p.add_argument("--provider-samples", type=int, default=30, help="provider processes to time")
    p.add_argument(
        "--batch-window", type=float, default=None, help="the agent's [keys] batch_window"
    )
    args = p.parse_args(argv)
    result = measure(args.samples, args.provider_samples, args.batch_window)
    print(json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
