"""Helpers for the status page, alert, metrics and OpenAPI tests: a real hub on loopback TLS,
hosts and verdicts written through the store API and the core's transition function, browser
logins through the real login form, and a real aiohttp webhook receiver on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from aiohttp import web

from hub.attestation import ALERTING, record_transition
from tests.hub.harness import FakeClock, HubProcess, make_state


def start_hub(tmp: Path, **sections: Any) -> HubProcess:
    return HubProcess(make_state(tmp, **sections), FakeClock())


def base_url(hub: HubProcess) -> str:
    return f"https://127.0.0.1:{hub.port}"


def http(hub: HubProcess) -> requests.Session:
    """A requests session that trusts only the hub's CA (no environment CA bundles)."""
    s = requests.Session()
    s.trust_env = False
    s.verify = str(hub.ca_file)
    return s


def login(hub: HubProcess, token: str) -> requests.Session:
    """Log in through the form, as a browser does; the session holds the cookie."""
    s = http(hub)
    form = s.get(base_url(hub) + "/login")
    assert form.status_code == 200
    resp = s.post(
        base_url(hub) + "/login",
        data={"token": token, "csrf": form_csrf(form.text), "next": "/"},
        allow_redirects=False,
    )
    assert resp.status_code == 303, resp.text
    return s


def form_csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "no CSRF field in the page"
    return found.group(1)


_SEQUENCES = itertools.count(1)


@dataclass
class Seeded:
    host_id: str
    at: float
    alert_id: int | None


def seed_host(
    hub: HubProcess,
    host_id: str,
    *,
    hostname: str = "node-1.test",
    node_name: str | None = "node-1",
    tags: dict[str, str] | None = None,
    flavors: list[str] | None = None,
) -> None:
    """An enrolled host with no report yet (verdict pending)."""

    async def run() -> None:
        store = hub.state.store
        await store.register_host(
            host_id=host_id,
            state="approved",
            hostname=hostname,
            node_name=node_name,
            dmi_uuid=None,
            now=hub.clock(),
        )
        await store.set_host_state(host_id, "enrolled")
        if tags:
            await store.set_host_tags(host_id, tags)
        if flavors:
            await store.set_host_flavors(host_id, flavors)

    hub.call(run())


def report_verdict(
    hub: HubProcess,
    host_id: str,
    verdict: str,
    reasons: tuple[str, ...] = (),
    rules: list[dict[str, Any]] | None = None,
) -> Seeded:
    """Record a report outcome as the attestation handler does, then the core's transition
    (alert row on a change to untrusted/stale, verdict bus event)."""

    async def run() -> Seeded:
        st = hub.state
        now = hub.clock()
        recorded = await st.store.record_report(
            host_id=host_id,
            received=now,
            verdict=verdict,
            reasons=reasons,
            sequence=next(_SEQUENCES),  # only grows, as an agent's do
            body_sha256="00" * 32,
            valid_until=now + st.config.attestation.report_validity,
            rule_results=rules or [],
            history=st.config.reports.history,
            alert_on=ALERTING,
        )
        await record_transition(st, recorded.transition)
        alerts = [a for a in await st.store.list_alerts() if a.host_id == host_id]
        fresh = [a.id for a in alerts if a.at == now and a.kind == verdict]
        return Seeded(host_id, now, fresh[0] if fresh else None)

    return hub.call(run())


@dataclass
class Receiver:
    """A webhook receiver on 127.0.0.1: answers ``statuses`` in turn, then 200."""

    statuses: list[int] = field(default_factory=list)
    bodies: list[Any] = field(default_factory=list)
    answered: list[int] = field(default_factory=list)
    port: int = 0
    got: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.runner = asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)

    async def _handle(self, request: web.Request) -> web.Response:
        self.bodies.append(json.loads(await request.read()))
        status = self.statuses.pop(0) if self.statuses else 200
        self.answered.append(status)
        if status == 200:
            self.got.set()
        return web.Response(status=status, text="ok" if status == 200 else "no")

    async def _start(self) -> web.AppRunner:
        app = web.Application()
        app.router.add_post("/hook", self._handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self.port = runner.addresses[0][1]
        return runner

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def wait_for(self, count: int, timeout: float = 10.0) -> None:
        """Wait until ``count`` requests arrived (bounded; fails the test on timeout)."""
        deadline = threading.Event()
        for _ in range(int(timeout / 0.02)):
            if len(self.answered) >= count:
                return
            deadline.wait(0.02)
        raise AssertionError(f"{len(self.answered)} webhook requests, expected {count}")

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()
