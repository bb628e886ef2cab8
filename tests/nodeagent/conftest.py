"""Fixtures for the agent tests: swtpm with PCRs from a real log, the real hub on loopback TLS.

The hub is the real application (:func:`hub.app.create_app` served by
:func:`hub.server.start_hub` on its own event-loop thread, state made as ``trustplane-hub init``
makes it, through the hub tests' harness); it can be stopped and started again on the same port
and state, which is how the hub-outage tests work. The agent runs in-process
(:class:`nodeagent.daemon.Daemon` on the test's event loop) or as a subprocess.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import pytest

from hub.app import create_app
from hub.config import HubConfig
from hub.server import RunningHub, start_hub
from hub.state import STATE, HubState
from nodeagent.config import (
    AgentConfig,
    AttestationConfig,
    EvidenceConfig,
    TpmConfig,
)
from nodeagent.config import (
    HubConfig as AgentHubConfig,
)
from nodeagent.daemon import Daemon
from tests.conftest import EVENTLOGS
from tests.hub.conftest import ca_bundle
from tests.hub.harness import make_state
from trustplane.swtpm import Swtpm, SwtpmFactory
from trustplane.tpmboot import boot_from_eventlog

T = TypeVar("T")

# A real crypto-agile log (SHA-1 and SHA-256, no StartupLocality event, so PCR 0 starts at 0).
BOOT_LOG = EVENTLOGS / "tpm2-tools" / "event-arch-linux.bin"
BOOT_LOG_EXPECTED = EVENTLOGS / "tpm2-tools" / "event-arch-linux.expected.json"


def expected_sha256_pcrs() -> dict[int, str]:
    """PCR values after replaying BOOT_LOG, from its expected.json (computed by tpm2-tools)."""
    raw = json.loads(BOOT_LOG_EXPECTED.read_text())["expected_pcrs"]["sha256"]
    return {int(k): v.lower().removeprefix("0x") for k, v in raw.items()}


def extend_from_log(tpm: Swtpm, log: Path = BOOT_LOG) -> None:
    """Extend the swtpm's PCRs with every measured record of ``log`` (as firmware would)."""
    boot_from_eventlog(tpm, log)


class LoopbackHub:
    """The real hub app on a private event-loop thread, TLS on 127.0.0.1; restartable."""

    def __init__(self, config: HubConfig, port: int = 0) -> None:
        self.config = config
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.app = create_app(config)
        self.running: RunningHub = self.call(start_hub(self.app, config, port=port))
        self.port = self.running.port

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=60)

    @property
    def state(self) -> HubState:
        return self.app[STATE]

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def ca_file(self) -> Path:
        return self.config.state.dir / "ca.pem"

    def sequences(self, host_id: str) -> list[int]:
        """The sequence numbers of every report the hub recorded for ``host_id``, oldest first."""
        reports = self.call(self.state.store.list_reports(host_id))
        return sorted(r.sequence for r in reports)

    def stop(self) -> None:
        """Stop serving and end the loop thread (a second call does nothing)."""
        if self.loop.is_closed():
            return
        self.call(self.running.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


@pytest.fixture
def hub_config(tmp_path: Path, swtpm_factory: SwtpmFactory) -> HubConfig:
    """A fresh hub state whose EK CA bundle is the swtpm factory's CA (agents enroll at once)."""
    tmp = tmp_path / "hub"
    tmp.mkdir()
    bundle = ca_bundle(swtpm_factory, tmp / "ek-ca.pem")
    return make_state(tmp, enrollment={"ek_ca_bundle": str(bundle)})


@pytest.fixture
def hub(hub_config: HubConfig) -> Iterator[LoopbackHub]:
    running = LoopbackHub(hub_config)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def booted_tpm(swtpm: Swtpm) -> Swtpm:
    """A swtpm whose PCRs hold BOOT_LOG's measurements."""
    extend_from_log(swtpm)
    return swtpm


def agent_config(
    tmp_path: Path, tpm: Swtpm, hub_url: str, ca_file: Path | None, **attestation: Any
) -> AgentConfig:
    """An agent config for tests: fast backoff, the real boot log, no TXT memory."""
    facts = tmp_path / "facts"
    facts.mkdir(exist_ok=True)
    (facts / "product_uuid").write_text("4C4C4544-0042-3510-8052-B4C04F564433\n")
    (facts / "boot_id").write_text("0b3a7a5e-7b1e-4d0c-9d38-6d2c1f7e9a11\n")
    att = replace(
        AttestationConfig(backoff_initial=0.05, backoff_max=0.2, interval=3600), **attestation
    )
    return AgentConfig(
        state_dir=tmp_path / "agent-state",
        hub=AgentHubConfig(url=hub_url, ca_file=ca_file, timeout=5.0),
        tpm=TpmConfig(tcti=tpm.tcti, watch_devices=False),
        evidence=EvidenceConfig(
            uefi_log=BOOT_LOG,
            txt_memory=tmp_path / "no-dev-mem",
            dmi_uuid=facts / "product_uuid",
            boot_id=facts / "boot_id",
        ),
        attestation=att,
    )


async def wait_for(predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


class RunningDaemon:
    """A Daemon running as a task on the current loop."""

    def __init__(self, cfg: AgentConfig) -> None:
        self.daemon = Daemon(cfg, environ={})
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Daemon:
        self.task = asyncio.create_task(self.daemon.run())
        return self.daemon

    async def __aexit__(self, *exc: object) -> None:
        self.daemon.stop()
        assert self.task is not None
        await asyncio.wait_for(self.task, 30)
