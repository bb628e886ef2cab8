"""``server.workers = 2`` (hub.supervisor): a real ``trustplane-hub run`` with two workers.

Each test picks a connection served by a given worker (the ``X-Trustplane-Worker`` header says
which; new connections go to whichever worker accepts first, so a test opens connections until
it has one on each). Checked across the two workers: the verdict bus feeds the live stream of a
worker that did not write the change; ``/metrics`` on either worker shows the sum of both, and
keeps a killed worker's counts; the caches stay right when another worker changes a flavor,
re-enrolls a host with a new AK, or revokes it; the parent restarts a killed worker and stops
both on SIGTERM. Hosts are bench.hub's simulated TPMs (software EK/AK producing real TPM
structures) enrolled through the real endpoints.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from bench._httpconn import HttpConnection
from bench.hub import (
    SERVER_NAME,
    HubProcess,
    LoadState,
    SimHost,
    _enroll_one,
    attest_step,
    client_context,
    enroll_hosts,
    load_bootlogs,
    start_hub,
)
from bench.hub import BenchError as _BenchError
from hub.store import Store
from tests.conftest import REPO
from trustplane.swtpm import free_port

WORKERS = ("0", "1")


def children(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return sorted(int(p) for p in text.split())


async def on_worker(
    hub: HubProcess, worker: str, ctx: ssl.SSLContext, tries: int = 300
) -> HttpConnection:
    """A keep-alive connection that ``worker`` serves (asked with GET /health)."""
    for _ in range(tries):
        conn = await HttpConnection.open("127.0.0.1", hub.port, ctx, SERVER_NAME)
        status, _ = await conn.request("GET", "/health", b"")
        assert status == 200
        if conn.worker == worker:
            return conn
        await conn.close()
    raise AssertionError(f"no connection reached worker {worker} in {tries} tries")


HOOK_PORT = free_port()


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[HubProcess]:
    running = start_hub(
        tmp_path,
        history=5,
        require_flavor=True,
        server_extra="workers = 2",
        extra={
            "state": "lease_ttl = 3",
            "attestation": "stale_check_interval = 0.2",
            # a receiver some tests run (a refused POST is retried, not an error of the hub)
            "tables": f'[alerts]\nwebhooks = ["http://127.0.0.1:{HOOK_PORT}/hook"]\n'
            "webhook_retries = 1\n",
        },
    )
    try:
        yield running
    finally:
        running.stop()


def test_two_workers_serve_one_port_and_the_parent_restarts_and_stops_them(
    hub: HubProcess,
) -> None:
    workers = children(hub.process.pid)
    assert len(workers) == 2

    async def both() -> set[str]:
        ctx = client_context(hub.ca_pem)
        seen = set()
        for worker in WORKERS:
            conn = await on_worker(hub, worker, ctx)
            seen.add(conn.worker or "")
            await conn.close()
        return seen

    assert asyncio.run(both()) == {"0", "1"}
    os.kill(workers[0], signal.SIGKILL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        now = children(hub.process.pid)
        if len(now) == 2 and workers[0] not in now:
            break
        time.sleep(0.1)
    now = children(hub.process.pid)
    assert len(now) == 2
    assert workers[0] not in now
    assert workers[1] in now
    assert asyncio.run(both()) == {"0", "1"}  # the new worker serves too
    hub.process.send_signal(signal.SIGTERM)
    assert hub.process.wait(30) == 0
    for pid in now:
        assert (
            not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
        )
    log = hub.log_tail(200)
    assert "hub worker 0 (exit -9) is started again in 0.5 s" in log or (
        "hub worker 1 (exit -9) is started again in 0.5 s" in log
    ), log


async def read_event(stream: asyncio.StreamReader, kind: str, timeout: float) -> dict[str, Any]:
    """The data of the next ``kind`` event on a raw SSE stream."""

    async def read() -> dict[str, Any]:
        current = ""
        while True:
            raw = await stream.readline()
            if not raw:
                raise AssertionError(f"the stream ended before a {kind} event")
            line = raw.decode().rstrip("\r\n")
            if line.startswith("event: "):
                current = line[len("event: ") :]
            elif line.startswith("data: ") and current == kind:
                data: dict[str, Any] = json.loads(line[len("data: ") :])
                return data

    return await asyncio.wait_for(read(), timeout)


async def open_stream(hub: HubProcess, worker: str) -> HttpConnection:
    """``GET /v1/events`` on a connection ``worker`` serves (read its ``_reader`` then)."""
    conn = await on_worker(hub, worker, client_context(hub.ca_pem))
    conn._writer.write(
        f"GET /v1/events HTTP/1.1\r\nHost: {SERVER_NAME}\r\n"
        f"Authorization: Bearer {hub.admin_token}\r\n\r\n".encode()
    )
    reader = conn._reader
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    assert head.startswith(b"HTTP/1.1 200")
    assert f"X-Trustplane-Worker: {worker}".encode() in head
    return conn


def test_a_verdict_written_by_one_worker_reaches_the_live_stream_of_both_and_one_webhook(
    hub: HubProcess,
) -> None:
    """Both workers see the change (both streams get it, both alert centers make its notice);
    only the one holding the webhook-delivery lease sends it."""
    host_id = "cd" * 32
    hooks: list[dict[str, Any]] = []

    async def receive(request: web.Request) -> web.Response:
        hooks.append(await request.json())
        return web.Response(text="ok")

    async def go() -> list[dict[str, Any]]:
        app = web.Application()
        app.router.add_post("/hook", receive)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", HOOK_PORT).start()
        streams = [await open_stream(hub, w) for w in WORKERS]
        # a trusted host whose report validity has passed: the stale sweep (one worker, under
        # its lease) turns it stale and publishes the change
        store = await Store.open(hub.state_dir / "hub.db")
        await store.register_host(
            host_id=host_id, state="enrolled", hostname="w1", node_name="n1", dmi_uuid=None, now=1.0
        )
        await store.execute_raw(
            "UPDATE hosts SET verdict = 'trusted', valid_until = ? WHERE id = ?",
            [time.time() - 1, host_id],
        )
        await store.close()
        events = [await read_event(s._reader, "verdict", 15) for s in streams]
        for stream in streams:
            await stream.close()
        await asyncio.sleep(2.0)  # time for a second delivery, if there were one
        await runner.cleanup()
        return events

    events = asyncio.run(go())
    for event in events:
        assert (event["host_id"], event["previous"], event["verdict"]) == (
            host_id,
            "trusted",
            "stale",
        )
        assert [r["id"] for r in event["reasons"]] == ["report.expired"]
        assert isinstance(event["alert_id"], int)
    assert events[0] == events[1]
    assert len(hooks) == 1, hooks
    (alert,) = hooks[0]["alerts"]
    assert (hooks[0]["status"], alert["labels"]["alertname"], alert["labels"]["host"]) == (
        "firing",
        "TrustplaneHostStale",
        host_id,
    )


def metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{name} not in\n{text}")


async def scrape(hub: HubProcess, worker: str) -> str:
    conn = await on_worker(hub, worker, client_context(hub.ca_pem))
    status, body = await conn.request(
        "GET", "/metrics", b"", authorization=f"Bearer {hub.admin_token}"
    )
    await conn.close()
    assert status == 200
    return body.decode()


def test_metrics_on_either_worker_are_the_sum_of_both(hub: HubProcess) -> None:
    refused = 'trustplane_hub_reports_total{result="refused"}'
    count = "trustplane_hub_report_duration_seconds_count"

    async def go() -> dict[str, int]:
        ctx = client_context(hub.ca_pem)
        per_worker = {"0": 0, "1": 0}
        # reports without a client certificate: refused (401) by whichever worker gets them
        while min(per_worker.values()) < 3 or sum(per_worker.values()) < 10:
            conn = await HttpConnection.open("127.0.0.1", hub.port, ctx, SERVER_NAME)
            status, _ = await conn.request("POST", "/v1/report", b"{}")
            assert status == 401
            per_worker[conn.worker or ""] += 1
            await conn.close()
        return per_worker

    per_worker = asyncio.run(go())
    total = sum(per_worker.values())
    for worker in WORKERS:
        text = asyncio.run(scrape(hub, worker))
        assert metric(text, refused) == total
        assert metric(text, count) == total
    # a killed worker's counts stay in the sum (its restart does not reset the counter)
    os.kill(children(hub.process.pid)[0], signal.SIGKILL)
    time.sleep(1.5)
    deadline = time.monotonic() + 20
    while len(children(hub.process.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    for worker in WORKERS:
        text = asyncio.run(scrape(hub, worker))
        assert metric(text, refused) == total


def test_caches_follow_changes_made_through_the_other_worker(hub: HubProcess) -> None:
    """Worker 0 changes things; worker 1, which verified this host before (its AK, flavor and
    verdict caches are warm), must see each change at the next report."""
    logs = load_bootlogs()

    async def go() -> None:
        certs = hub.workdir / "certs"
        certs.mkdir()
        (host,) = await enroll_hosts(hub, logs, 1, 1, certs, True)
        st = LoadState()

        async def agent(worker: str) -> HttpConnection:
            return await on_worker(hub, worker, client_context(hub.ca_pem, host.cert_file))

        async def report(worker: str) -> str:
            conn = await agent(worker)
            host.next_nonce = None
            try:
                await attest_step(host, conn, st)
            except _BenchError as e:
                return str(e)
            finally:
                await conn.close()
            return "trusted"

        admin = await on_worker(hub, "0", client_context(hub.ca_pem))
        auth = f"Bearer {hub.admin_token}"
        assert await report("1") == "trusted"
        assert await report("0") == "trusted"

        # 1. a new AK: the host enrolls again (same EK) through worker 0; its new certificate
        # and AK must be used by worker 1, which cached the old AK
        new = SimHost(host.index, host.tpm, host.log)
        new.tpm.new_ak()
        await _enroll_one(hub, admin, new, certs, flavors=False)
        assert new.host_id == host.host_id
        assert new.cert_file == host.cert_file  # the same file, rewritten
        new.sequence = host.sequence
        new.log_acked = True
        host.tpm, host.sequence = new.tpm, new.sequence
        assert await report("1") == "trusted"

        # 2. a flavor changed through worker 0 (PCR 0's expected value): worker 1 sees it
        doc = json.loads(json.dumps(logs[0].flavors["log0.platform"]))
        for pcr in doc["pcrs"]:
            if pcr["index"] == 0:
                pcr["value"] = "00" * 32
        status, body = await admin.request(
            "PUT", "/v1/flavors/log0.platform", json.dumps(doc).encode(), authorization=auth
        )
        assert status == 200, body
        # its one platform flavor no longer matches: none matched, and why (PCR 0)
        assert await report("1") == (
            "verdict.untrusted.flavor.none_matched,flavor.platform.pcr_mismatch"
        )

        # 3. revoked through worker 0: worker 1 refuses the host at once
        status, body = await admin.request(
            "POST", f"/v1/hosts/{host.host_id}/revoke", b"{}", authorization=auth
        )
        assert status == 200, body
        conn = await agent("1")
        status, body = await conn.request("POST", "/v1/challenge", b"{}")
        assert status == 403
        assert json.loads(body)["error"]["code"] == "host.unknown"
        await conn.close()
        await admin.close()

    asyncio.run(go())


async def raw(conn: HttpConnection, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """One raw HTTP/1.1 exchange on ``conn`` (the answer framed by Content-Length)."""
    writer, reader = conn._writer, conn._reader
    writer.write(request)
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
    lines = head.split("\r\n")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name:
            headers.setdefault(name.strip().lower(), value.strip())
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return int(lines[0].split()[1]), headers, body


def test_a_browser_logged_in_through_one_worker_is_logged_in_on_the_other(
    hub: HubProcess,
) -> None:
    async def go() -> None:
        ctx = client_context(hub.ca_pem)
        w0, w1 = await on_worker(hub, "0", ctx), await on_worker(hub, "1", ctx)
        form = f"csrf=abc123&next=%2F&token={hub.admin_token}".encode()
        status, headers, _ = await raw(
            w0,
            b"POST /login HTTP/1.1\r\nHost: localhost\r\nCookie: trustplane_login=abc123\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\n"
            + f"Content-Length: {len(form)}\r\n\r\n".encode()
            + form,
        )
        assert (status, headers["location"]) == (303, "/")
        assert headers["x-trustplane-worker"] == "0"
        sid = headers["set-cookie"].split(";")[0].removeprefix("trustplane_session=")
        page = f"GET / HTTP/1.1\r\nHost: localhost\r\nCookie: trustplane_session={sid}\r\n\r\n"
        status, headers, body = await raw(w1, page.encode())
        assert (status, headers["x-trustplane-worker"]) == (200, "1")
        csrf = body.decode().split('name="csrf" value="', 1)[1].split('"', 1)[0]
        # logged out through worker 1: worker 0 sends the browser to the login page
        logout = f"csrf={csrf}".encode()
        status, headers, _ = await raw(
            w1,
            b"POST /logout HTTP/1.1\r\nHost: localhost\r\n"
            + f"Cookie: trustplane_session={sid}\r\n".encode()
            + b"Content-Type: application/x-www-form-urlencoded\r\n"
            + f"Content-Length: {len(logout)}\r\n\r\n".encode()
            + logout,
        )
        assert (status, headers["location"]) == (303, "/login")
        status, headers, _ = await raw(w0, page.encode())
        assert (status, headers["location"]) == (303, "/login?next=/")
        await w0.close()
        await w1.close()

    asyncio.run(go())


def test_the_parent_gives_up_when_the_workers_never_start(tmp_path: Path) -> None:
    """A state directory the workers cannot use (the JWS key is gone): after five failed starts
    of one worker the parent stops and exits 1 instead of restarting it for ever."""
    state = tmp_path / "state"
    init = subprocess.run(
        [sys.executable, "-m", "hub.cli", "init", "--state-dir", str(state), "--config",
         str(tmp_path / "none.toml")],
        capture_output=True, text=True, check=False, cwd=REPO,
    )  # fmt: skip
    assert init.returncode == 0, init.stderr
    (state / "jws.key").unlink()
    config = tmp_path / "hub.toml"
    config.write_text(
        f'[server]\nlisten = "127.0.0.1:{free_port()}"\nworkers = 2\n[state]\ndir = "{state}"\n'
    )
    run = subprocess.run(
        [sys.executable, "-m", "hub.cli", "run", "--config", str(config)],
        capture_output=True, text=True, check=False, cwd=REPO, timeout=60,
    )  # fmt: skip
    assert run.returncode == 1, run.stderr
    assert "failed 5 times before the hub ever served: giving up" in run.stderr
    assert "is started again in 4.0 s" in run.stderr  # the back-off doubled: 0.5, 1, 2, 4


def test_systemd_hears_ready_status_and_watchdog_only_while_every_worker_beats(
    tmp_path: Path,
) -> None:
    """The parent notifies through NOTIFY_SOCKET (a real datagram socket here): READY=1 once
    both workers serve, STATUS, and WATCHDOG=1 every half WATCHDOG_USEC while both send
    heartbeats; a stopped worker (SIGSTOP: alive, silent) stops the pings until it goes on."""
    state = tmp_path / "state"
    init = subprocess.run(
        [sys.executable, "-m", "hub.cli", "init", "--state-dir", str(state), "--config",
         str(tmp_path / "none.toml")],
        capture_output=True, text=True, check=False, cwd=REPO,
    )  # fmt: skip
    assert init.returncode == 0, init.stderr
    port = free_port()
    config = tmp_path / "hub.toml"
    config.write_text(
        f'[server]\nlisten = "127.0.0.1:{port}"\nworkers = 2\n[state]\ndir = "{state}"\n'
    )
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify.sock"))
    notify.settimeout(0.2)
    messages: list[tuple[float, str]] = []

    def drain(seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            with contextlib.suppress(TimeoutError):
                messages.append((time.monotonic(), notify.recv(4096).decode()))

    proc = subprocess.Popen(
        [sys.executable, "-m", "hub.cli", "run", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        cwd=REPO,
        env={
            **os.environ,
            "NOTIFY_SOCKET": str(tmp_path / "notify.sock"),
            "WATCHDOG_USEC": "1000000",  # pings every 0.5 s
        },
    )
    try:
        drain(6.0)
        texts = [m for _, m in messages]
        assert "READY=1" in texts
        assert f"STATUS=2 of 2 workers serving on 127.0.0.1:{port}" in texts
        ready_at = texts.index("READY=1")
        pings = [t for t, m in messages[ready_at:] if m == "WATCHDOG=1"]
        assert len(pings) >= 4
        worker = children(proc.pid)[0]
        os.kill(worker, signal.SIGSTOP)
        stopped_at = time.monotonic()
        drain(9.0)
        # heard 5 s ago at most: pings go on for about 5 s, then none
        late = [t for t, m in messages if m == "WATCHDOG=1" and t > stopped_at + 6.5]
        assert late == []
        os.kill(worker, signal.SIGCONT)
        resumed_at = time.monotonic()
        drain(3.0)
        assert [t for t, m in messages if m == "WATCHDOG=1" and t > resumed_at] != []
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        drain(0.5)
        assert messages[-1][1] == "STOPPING=1"
    finally:
        proc.kill()
        proc.wait()
        notify.close()
