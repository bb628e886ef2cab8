"""Two hub replicas (real ``trustplane-hub run`` processes on two ports, two workers each) over
one PostgreSQL database, real swtpm agents split between them: enrollment started at one and
finished at the other, verdicts, alerts and live events visible through both, each trust loss
alerted and sent to the webhook once, the stale sweep done by one worker of one replica,
counters that sum."""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import json
import os
import queue
import shutil
import signal
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

from hub.statedir import new_token
from hub.store import Store
from tests.conftest import REPO
from tests.hub.conftest import ca_bundle
from tests.hub.harness import Agent, Client, make_state
from trustcore.wire import ActivateRequest, EnrollChallenge, Enrollment
from trustplane.pgcluster import PostgresCluster
from trustplane.swtpm import SwtpmFactory, free_port

VALIDITY = 6.0  # attestation.report_validity: a host goes stale this long after its report


@dataclass
class Replica:
    """One ``trustplane-hub run`` process (what :class:`Agent` needs of a hub: ``client``)."""

    name: str
    port: int
    ca_file: Path
    process: subprocess.Popen[bytes]

    def client(self, **kw: Any) -> Client:
        return Client(self.port, self.ca_file, **kw)


class Webhooks(BaseHTTPRequestHandler):
    received: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        Webhooks.received.append(json.loads(self.rfile.read(length)))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def wait_for(what: str, check: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def start_replica(name: str, state_dir: Path, url: str, bundle: Path, hook: str) -> Replica:
    port = free_port()
    config = state_dir.parent / f"{name}.toml"
    config.write_text(
        f'[server]\nlisten = "127.0.0.1:{port}"\nworkers = 2\n'
        f'[state]\ndir = "{state_dir}"\ndatabase = "{url}"\nlease_ttl = 1.5\n'
        f"[attestation]\nreport_validity = {VALIDITY}\nstale_check_interval = 0.5\n"
        f'[enrollment]\nek_ca_bundle = "{bundle}"\n'
        f'[alerts]\nwebhooks = ["{hook}"]\nwebhook_retries = 1\n'
    )
    log = (state_dir.parent / f"{name}.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-c", "from hub.cli import main; main()", "run", "--config", str(config)],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    replica = Replica(name, port, state_dir / "ca.pem", process)

    def answers() -> bool:
        assert process.poll() is None, f"replica {name} exited: see {log.name}"
        try:
            return replica.client().get("/health").status == 200
        except OSError:
            return False

    wait_for(f"replica {name}", answers)
    return replica


@pytest.fixture
def replicas(
    tmp_path: Path, postgres: PostgresCluster, swtpm_factory: SwtpmFactory
) -> Iterator[tuple[Replica, Replica, str]]:
    url = postgres.create_database()
    bundle = ca_bundle(swtpm_factory, tmp_path / "ek-ca.pem")
    config = make_state(tmp_path / "a", database=url)  # keys + the migrated database
    # each replica (machine) holds a copy of the same state directory: the same CA and keys
    shutil.copytree(config.state.dir, tmp_path / "b" / "hub-state")
    Webhooks.received = []
    receiver = ThreadingHTTPServer(("127.0.0.1", 0), Webhooks)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    hook = f"http://127.0.0.1:{receiver.server_address[1]}/hook"
    started: list[Replica] = []
    try:
        for name in ("a", "b"):
            started.append(start_replica(name, tmp_path / name / "hub-state", url, bundle, hook))
        yield started[0], started[1], url
    finally:
        for replica in started:
            replica.process.send_signal(signal.SIGTERM)
        for replica in started:
            try:
                replica.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                replica.process.kill()
                replica.process.wait()
        receiver.shutdown()
        receiver.server_close()


def enroll_across(agent: Agent, first: Replica, second: Replica) -> None:
    """Enrollment request at ``first``, credential activation at ``second``."""
    resp = first.client().post("/v1/enroll", agent.enroll_request().to_json())
    assert resp.status == 200, resp.body
    challenge = EnrollChallenge.from_json(resp.body)
    assert challenge.status == "challenge", resp.body
    secret = agent.activate(challenge)
    resp = second.client().post(
        "/v1/enroll/activate",
        ActivateRequest(challenge.host_id, secret, challenge.handle or b"").to_json(),
    )
    assert resp.status == 200, resp.body
    enrollment = Enrollment.from_json(resp.body)
    assert enrollment.client_certificate is not None
    agent._store_certificate(enrollment.host_id, enrollment.client_certificate)


class EventStream:
    """The SSE stream of a replica, read on a thread into a queue of (event, data)."""

    def __init__(self, replica: Replica, token: str) -> None:
        ctx = ssl.create_default_context(cafile=str(replica.ca_file))
        self.conn = http.client.HTTPSConnection("127.0.0.1", replica.port, context=ctx)
        self.conn.request("GET", "/v1/events", headers={"Authorization": f"Bearer {token}"})
        resp = self.conn.getresponse()
        assert resp.status == 200
        self.events: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue()
        threading.Thread(target=self._read, args=(resp,), daemon=True).start()

    def _read(self, resp: http.client.HTTPResponse) -> None:
        event = ""
        try:
            for raw in resp:
                line = raw.decode().rstrip("\n")
                if line.startswith("event: "):
                    event = line.removeprefix("event: ")
                elif line.startswith("data: "):
                    self.events.put((event, json.loads(line.removeprefix("data: "))))
        except (OSError, ValueError, AttributeError):  # closed under it at the end
            return

    def next_verdict(self, host_id: str, timeout: float = 15.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            event, data = self.events.get(timeout=max(0.1, deadline - time.monotonic()))
            if event == "verdict" and data.get("host_id") == host_id:
                return data

    def close(self) -> None:
        self.conn.close()


def verdict_changes(replica: Replica, token: str) -> dict[str, float]:
    """``trustplane_hub_verdict_changes_total`` by verdict, as this replica counts them."""
    resp = replica.client(token=token).get("/metrics")
    assert resp.status == 200
    text = resp.body.decode() if isinstance(resp.body, bytes) else str(resp.body)
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("trustplane_hub_verdict_changes_total{"):
            labels, value = line.rsplit(" ", 1)
            out[labels.split('verdict="')[1].split('"')[0]] = float(value)
    return out


def test_two_replicas_over_one_postgresql(
    replicas: tuple[Replica, Replica, str],
    swtpm_factory: SwtpmFactory,
    tmp_path: Path,
) -> None:
    a, b, url = replicas
    token, digest = new_token()

    async def add_token() -> None:
        store = await Store.open(url)
        await store.add_token(digest, "viewer", "replica-test", time.time())
        await store.close()

    asyncio.run(add_token())
    tpms = [swtpm_factory.start(unique=True) for _ in range(2)]
    agents = [Agent(tpm, tmp_path / f"agent{i}") for i, tpm in enumerate(tpms)]
    stream_b = EventStream(b, token)
    try:
        for agent in agents:
            tag = hashlib.sha256(agent.ek.key.public).hexdigest()[:12]
            agent.names = (f"node-{tag}.test", f"node-{tag}", f"4c4c4544-0000-1000-8000-{tag}")
        enroll_across(agents[0], a, b)
        enroll_across(agents[1], b, a)
        one, two = agents

        # agent one reports to replica a: trusted, seen through b (API and live stream)
        res = one.attest(a)
        assert (res.status, res.body["verdict"]) == (200, "trusted")
        seen = stream_b.next_verdict(one.host_id)
        assert (seen["previous"], seen["verdict"]) == ("pending", "trusted")
        for replica in (a, b):
            host = replica.client(token=token).get(f"/v1/hosts/{one.host_id}").body
            assert (host["verdict"], host["state"]) == ("trusted", "enrolled")

        # agent two reports to replica b with PCR values that do not match the quote
        res = two.attest(b, tamper_values=True)
        assert (res.status, res.body["verdict"]) == (200, "untrusted")
        assert res.body["reasons"] == ["quote.pcr_digest_mismatch"]
        for replica in (a, b):
            alerts = replica.client(token=token).get("/v1/alerts").body["alerts"]
            assert [(x["host_id"], x["kind"]) for x in alerts] == [(two.host_id, "untrusted")]

        # nobody reports again: the one sweep holder marks both stale, one alert each
        wait_for(
            "both hosts stale",
            lambda: all(
                a.client(token=token).get(f"/v1/hosts/{ag.host_id}").body["verdict"] == "stale"
                for ag in agents
            ),
            timeout=VALIDITY + 20,
        )
        time.sleep(2.0)  # any second sweep (there must be none) would have run by now
        for replica in (a, b):
            alerts = replica.client(token=token).get("/v1/alerts").body["alerts"]
            assert sorted((x["host_id"], x["kind"]) for x in alerts) == sorted(
                [(two.host_id, "untrusted"), (one.host_id, "stale"), (two.host_id, "stale")]
            )
        assert stream_b.next_verdict(one.host_id)["verdict"] == "stale"

        # each trust loss reached the webhook once (from the delivery lease's holder)
        wait_for(
            "webhooks", lambda: len([m for m in Webhooks.received if m["status"] == "firing"]) >= 3
        )
        time.sleep(1.0)
        firing = sorted(
            (m["alerts"][0]["labels"]["alertname"], m["alerts"][0]["labels"]["host"])
            for m in Webhooks.received
            if m["status"] == "firing"
        )
        assert firing == sorted(
            [
                ("TrustplaneHostUntrusted", two.host_id),
                ("TrustplaneHostStale", one.host_id),
                ("TrustplaneHostStale", two.host_id),
            ]
        )

        # the sweep ran under one lease holder: one of the replicas, the only one that started it
        async def sweep_holder() -> str | None:
            store = await Store.open(url)
            try:
                return await store.lease_holder("stale-sweep", time.time())
            finally:
                await store.close()

        holder = asyncio.run(sweep_holder())
        assert holder is not None
        holder_pid = int(holder.split(":")[1])  # a worker of one replica
        status = Path(f"/proc/{holder_pid}/status").read_text()
        parent = int(status.split("PPid:")[1].split()[0])
        assert parent in {a.process.pid, b.process.pid}
        started = [
            (tmp_path / r.name / f"{r.name}.log").read_text().count("lease stale-sweep taken by")
            for r in (a, b)
        ]
        assert sorted(started) == [0, 1]
        # the parents migrated the shared database, not a SQLite file of their own
        assert not (tmp_path / "a" / "hub-state" / "hub.db").exists()
        assert not (tmp_path / "b" / "hub-state" / "hub.db").exists()

        # the counters of the two replicas sum to the fleet's changes
        counts = [verdict_changes(r, token) for r in (a, b)]
        total = {v: sum(c.get(v, 0.0) for c in counts) for v in ("trusted", "untrusted", "stale")}
        assert total == {"trusted": 1.0, "untrusted": 1.0, "stale": 2.0}
    finally:
        stream_b.close()
        for agent in agents:
            agent.close()
        for tpm in tpms:
            tpm.stop()
