"""Benchmark: key release through the hub on 127.0.0.1 with a real swtpm agent.

``python -m bench.keys --json`` starts a swtpm whose PCRs hold a real boot log, the real hub
(:func:`hub.app.create_app` served over TLS on 127.0.0.1, in this process on its own thread)
and the real agent daemon (:class:`nodeagent.daemon.Daemon`: it enrolls with a PolicyAuthorize
binding key and attests), wraps layer secrets under a key policy, and measures
:meth:`nodeagent.keys.release.KeyReleaser.release`, which is what the daemon's key socket calls
on a cache miss (challenge, PCR read + quote, one release request, TPM decryption of each
secret):

- ``unwrap_hub_p50_ms``: median wall time of a release of 1 blob;
- ``ten_layers_hub_p50_ms`` and ``ten_layers_hub_round_trips``: a 10-layer image's blobs in
  one call (release requests sent, target 1);
- ``cpu_ms_per_release``: CPU time of this process (agent and hub together; swtpm not counted)
  per 1-blob release;
- against the same-run baseline ``report_p50_ms`` (one plain attestation report: challenge,
  quote, ``POST /v1/report``) as ``ratio_vs_report``.

Prints one JSON line. Targets: unwrap via hub <= 50 ms, one round trip for ten layers.
(keys-host adds the cached and provider-process numbers to this file.)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Coroutine
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

REPO = Path(__file__).resolve().parent.parent
BOOT_LOG = REPO / "tests" / "data" / "eventlogs" / "tpm2-tools" / "event-arch-linux.bin"
SECRET = b'{"symkey":"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=","digest":"sha256:00"}'


class _HubThread:
    """The hub app on its own event loop thread (TLS on 127.0.0.1)."""

    def __init__(self, tmp: Path, ca_bundle: Path) -> None:
        from hub.app import create_app  # noqa: PLC0415
        from hub.config import load_config  # noqa: PLC0415
        from hub.server import start_hub  # noqa: PLC0415
        from hub.statedir import create_state_dir  # noqa: PLC0415

        state = tmp / "hub-state"
        create_state_dir(state, ["localhost"], time.time())
        self.config = load_config(
            tmp / "absent.toml",
            overrides={
                "server": {"listen": "127.0.0.1:0"},
                "state": {"dir": str(state)},
                "enrollment": {"ek_ca_bundle": str(ca_bundle)},
                "attestation": {"interval": 3600.0},
                "keys": {"release_rate_per_minute": 1_000_000},
            },
        )
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.app = create_app(self.config)
        self.running = self.call(start_hub(self.app, self.config, port=0))
        self.url = f"https://127.0.0.1:{self.running.port}"
        self.ca_file = state / "ca.pem"

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=120)

    def blobs(self, count: int) -> list[bytes]:
        """``count`` blobs of one policy's key, wrapped by the hub's broker."""
        from hub.keys.routes import BROKER, hub_url  # noqa: PLC0415
        from hub.state import STATE  # noqa: PLC0415

        st = self.app[STATE]
        broker = self.app[BROKER]
        now = time.time()
        self.call(st.store.put_key_policy("bench", "", 300.0, now))
        key = self.call(st.store.current_key("bench", broker.new_key("bench"), now))
        assert key is not None
        return [
            broker.wrap(key.id, key.material, "bench", hub_url(st), SECRET + b"%d" % i).encode()
            for i in range(count)
        ]

    def stop(self) -> None:
        self.call(self.running.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)


def _extend(tcti: str) -> None:
    from nodeagent.tpm import TpmDevice  # noqa: PLC0415
    from trustcore.eventlog import parse_eventlog  # noqa: PLC0415
    from trustcore.eventlog.eventtypes import EV_NO_ACTION  # noqa: PLC0415

    with TpmDevice(tcti) as device:
        for event in parse_eventlog(BOOT_LOG.read_bytes()).events:
            if event.event_type != EV_NO_ACTION and 0 <= event.pcr <= 23:
                device.pcr_extend(event.pcr, dict(event.digests))


def _agent_config(tmp: Path, tcti: str, hub: _HubThread) -> Any:  # noqa: ANN401
    from nodeagent.config import (  # noqa: PLC0415
        AgentConfig,
        AttestationConfig,
        EvidenceConfig,
        HubConfig,
        TpmConfig,
    )

    (tmp / "boot_id").write_text("0b3a7a5e-7b1e-4d0c-9d38-6d2c1f7e9a11\n")
    (tmp / "product_uuid").write_text("4C4C4544-0042-3510-8052-B4C04F564433\n")
    return AgentConfig(
        state_dir=tmp / "agent-state",
        hub=HubConfig(url=hub.url, ca_file=hub.ca_file, timeout=30.0),
        tpm=TpmConfig(tcti=tcti, watch_devices=False),
        evidence=EvidenceConfig(
            uefi_log=BOOT_LOG,
            txt_memory=tmp / "no-dev-mem",
            dmi_uuid=tmp / "product_uuid",
            boot_id=tmp / "boot_id",
        ),
        attestation=replace(AttestationConfig(), interval=3600.0),
    )


def _ms(samples: list[float]) -> float:
    return round(statistics.median(samples) * 1000, 2)


async def _measure(cfg: Any, hub: _HubThread, iterations: int) -> dict[str, Any]:  # noqa: ANN401
    from nodeagent.daemon import Daemon  # noqa: PLC0415
    from nodeagent.keys.release import ReleasedSecret  # noqa: PLC0415

    daemon = Daemon(cfg, environ={})
    task = asyncio.create_task(daemon.run())
    try:
        deadline = time.monotonic() + 60
        while daemon.last is None:
            if time.monotonic() > deadline or task.done():
                problem = daemon.hub_problem or daemon.tpm_problem or daemon.agent_problem
                raise SystemExit(f"bench.keys: the agent did not attest: {problem}")
            await asyncio.sleep(0.01)
        one, ten = hub.blobs(1), hub.blobs(10)
        releaser = daemon.key_releaser
        attestor = daemon.attestor
        assert attestor is not None
        client = daemon._hub_client()
        for _ in range(2):  # warm up connections and caches
            await releaser.release(one)
        single: list[float] = []
        cpu0 = time.process_time()
        for _ in range(iterations):
            t0 = time.perf_counter()
            got = await releaser.release(one)
            single.append(time.perf_counter() - t0)
            if not isinstance(got[0], ReleasedSecret):
                raise SystemExit(f"bench.keys: release refused: {got[0].describe()}")
        cpu = (time.process_time() - cpu0) / iterations
        multi: list[float] = []
        trips_before = releaser.round_trips
        for _ in range(iterations):
            t0 = time.perf_counter()
            got = await releaser.release(ten)
            multi.append(time.perf_counter() - t0)
            if not all(isinstance(g, ReleasedSecret) for g in got):
                raise SystemExit("bench.keys: a ten-layer release was refused")
        ten_trips = (releaser.round_trips - trips_before) / iterations
        reports: list[float] = []
        for _ in range(iterations):
            attestor.enqueue("bench")
            t0 = time.perf_counter()
            await attestor.drain(client)
            reports.append(time.perf_counter() - t0)
        return {
            "iterations": iterations,
            "unwrap_hub_p50_ms": _ms(single),
            "ten_layers_hub_p50_ms": _ms(multi),
            "ten_layers_hub_round_trips": ten_trips,
            "cpu_ms_per_release": round(cpu * 1000, 2),
            "report_p50_ms": _ms(reports),
            "ratio_vs_report": round(statistics.median(single) / statistics.median(reports), 2),
            "baseline": "report_p50_ms: one plain attestation report (challenge, quote, POST "
            "/v1/report) in the same run",
        }
    finally:
        daemon.stop()
        await asyncio.wait_for(task, 30)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON line")
    parser.add_argument("--iterations", type=int, default=30)
    args = parser.parse_args()
    from trustplane.swtpm import SwtpmFactory  # noqa: PLC0415

    os.environ.setdefault("TSS2_LOG", "all+NONE")
    with tempfile.TemporaryDirectory(prefix="bench-keys-") as d, SwtpmFactory() as factory:
        tmp = Path(d)
        tpm = factory.start()
        _extend(tpm.tcti)
        bundle = tmp / "ek-ca.pem"
        bundle.write_bytes(b"".join(p.read_bytes() for p in factory.ca_certificates))
        hub = _HubThread(tmp, bundle)
        try:
            result = asyncio.run(_measure(_agent_config(tmp, tpm.tcti, hub), hub, args.iterations))
        finally:
            hub.stop()
            tpm.stop()
    if args.json:
        print(json.dumps(result, sort_keys=True))
    else:
        for key, value in sorted(result.items()):
            print(f"{key}: {value}")


if __name__ == "__main__":
    main()
