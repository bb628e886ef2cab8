"""The whole hub under load: N simulated hosts attesting over mTLS to a real hub process.

``python -m bench.hub --json --hosts 10000`` does what a fleet does, end to end:

1. ``trustplane-hub init`` makes a state directory; ``trustplane-hub run`` serves it on
   127.0.0.1 as a separate process (the load generator and the hub share the machine's cores).
   The config turns on ``attestation.require_flavor`` and accepts a registration token, and
   lifts the enrollment rate limit (a fleet enrolling at once is what is being simulated).
2. A few real ~100-event crypto-agile UEFI logs from tests/data/eventlogs are replayed; each log's
   SHA-256 PCRs are the PCR values of the hosts it is assigned to (round-robin), and the
   project's UEFI Secure Boot template makes three flavors from it (platform, os, host_unique),
   stored with the admin API.
3. Every host is a :class:`bench._simtpm.SimTpm` (software ECC EK and AK, real TPM structures)
   and enrolls through the real endpoints: ``POST /v1/enroll`` with its EK, AK, registration
   token and CSR; the hub's MakeCredential challenge is answered by a software
   ActivateCredential; ``POST /v1/enroll/activate`` returns its client certificate. The admin
   API then assigns the host its log's flavors. (Real enrollment rather than seeding the store:
   the hub ends in exactly the state enrollment leaves, with no second writer on its database
   and no reliance on store internals, and enrollment's own rate is measured on the way.)
4. Load: ``concurrency`` workers take hosts round-robin (a host is never used by two workers at
   once). Each report opens a new mTLS connection with the host's own certificate, as a real
   agent does (it reports every 60 s; its aiohttp client closes an idle connection after 15 s),
   resuming the host's last TLS session as the agent does (``--no-resumption``: full
   handshakes); ``--keep-alive``: each host keeps one connection for all its reports instead.
   ``new_connection_share`` is the share of steady-state reports sent on a new connection,
   ``resumed_share`` the share of those connections that resumed a session. A report is
   ``POST /v1/challenge`` then ``POST /v1/report`` with a quote over PCRs 0-9 and 14 whose
   extraData is ``report_qualifying_data(nonce, body)``. A host's first report carries its event
   log; later ones only its digest, as the agent does once the hub has it. The first round (TLS
   handshakes, log uploads) is measured apart; then the steady state runs for ``--duration``,
   as fast as the hub answers (closed loop), or at ``--rate`` reports per second (open loop).
   Any answer other than 200 and ``trusted`` is counted in ``errors``.
5. Baseline in the same run: the same workers and connections doing two ``GET /health`` per
   "report" (TLS, HTTP and aiohttp with no work behind them).

``--workers N`` runs the hub with ``server.workers = N`` (default 1: one process); the hub's
CPU time, RSS (``hub_rss_mb``, shared pages counted in each process) and PSS (``hub_pss_mb``)
are those of all its processes.

``--database postgresql`` runs the hub on a throw-away PostgreSQL server started for the run
(:mod:`trustplane.pgcluster`: initdb as an unprivileged user, unix socket, ``synchronous_commit``
off like the hub's SQLite ``synchronous = NORMAL``); the JSON then adds the server's CPU
(``database_cpu_ms_per_report``, and with the hub's, ``hub_and_database_cpu_ms_per_report``)
and memory (``database_pss_mb``).

CPU is read from /proc for the hub (and each of its threads), this process and the whole
machine, so ``hub_cpu_ms_per_report`` stays meaningful when other processes share the cores
(``other_processes_cpu_cores`` says how much they took). ``--profile FILE`` samples the hub with
py-spy during the steady state and adds ``hub_profile``: the share of each thread's samples per
category (:mod:`bench._profile`), and ``hub_profile_ms_per_report``: the hub's CPU time per
report divided among those categories. Prints one JSON line; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import hashlib
import json
import os
import re
import resource
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from bench._httpconn import HttpConnection, HttpError
from bench._profile import record, split_ms, summarize
from bench._simtpm import SimTpm
from nodeagent.tlssession import resuming_client_context
from trustcore.algorithms import HASH_ALGORITHMS, TPM_ALG_SHA256, digest
from trustcore.eventlog import parse_eventlog, replay_eventlog
from trustcore.flavors import flavor_from_eventlog, parse_template
from trustcore.flavors.document import flavor_to_json
from trustcore.flavors.model import FlavorTemplate
from trustcore.tpm.pcrs import PcrSelection
from trustcore.wire import (
    ActivateRequest,
    Challenge,
    EnrollChallenge,
    Enrollment,
    EnrollRequest,
    EventLogEvidence,
    MissingEvidence,
    Report,
    ReportBody,
    ReportResult,
    WireError,
    encode_report_body,
    report_qualifying_data,
)
from trustplane.pgcluster import PostgresCluster

REPO: Final = Path(__file__).resolve().parent.parent
SHARED: Final = Path(os.environ.get("TRUSTPLANE_SHARED", REPO / "tests" / "data"))
EVENTLOGS: Final = SHARED / "eventlogs"
TEMPLATE: Final = REPO / "firmware_measurements" / "templates" / "uefi-secure-boot.json"
# real crypto-agile UEFI logs of 95 to 106 events that the UEFI Secure Boot template fits
LOGS: Final = (
    "keylime-tests/binary_bios_measurements.bin",
    "keylime/binary_bios_measurements-secureboot.bin",
    "tpm2-tools/event-bootorder.bin",
    "go-attestation/ubuntu_2104_shielded_vm_no_secure_boot_eventlog.bin",
)
QUOTED_PCRS: Final = (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 14)
EV_EFI_GPT_EVENT: Final = 0x80000006
GPT_DISK_GUID: Final = slice(56, 72)  # DiskGUID in the UEFI_PARTITION_TABLE_HEADER
SELECTION: Final = PcrSelection.of({TPM_ALG_SHA256: QUOTED_PCRS})
REGISTRATION_TOKEN: Final = "bench-hub-registration-token"
SERVER_NAME: Final = "localhost"
TARGET_REPORTS_PER_S: Final = 1000
TARGET_P99_MS: Final = 250


class BenchError(Exception):
    """The benchmark could not run (hub did not start, enrollment refused, ...)."""


# --- boot logs and flavors --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BootLog:
    """A real event log, the SHA-256 PCR values its replay gives, and its flavor documents."""

    name: str
    data: bytes
    sha256: bytes
    values: dict[int, dict[int, bytes]]
    flavors: dict[str, dict[str, Any]]


@functools.cache
def _host_unique_template() -> FlavorTemplate:
    template = parse_template(TEMPLATE.read_text())
    return replace(template, parts=tuple(p for p in template.parts if p.part == "host_unique"))


def load_bootlogs(names: tuple[str, ...] = LOGS) -> list[BootLog]:
    """Read, replay and make flavors of ``names``; raises ``OSError`` or a TrustcoreError."""
    template = parse_template(TEMPLATE.read_text())
    out = []
    for i, name in enumerate(names):
        data = (EVENTLOGS / name).read_bytes()
        log = parse_eventlog(data)
        bank = replay_eventlog(log).get(TPM_ALG_SHA256, {})
        values = {TPM_ALG_SHA256: {pcr: bank.get(pcr, bytes(32)) for pcr in QUOTED_PCRS}}
        flavors = {f.id: flavor_to_json(f) for f in flavor_from_eventlog(log, template, f"log{i}")}
        out.append(BootLog(name, data, hashlib.sha256(data).digest(), values, flavors))
    return out


def host_bootlog(base: BootLog, index: int) -> BootLog:
    """``base`` as host ``index`` booted it: the same log but for its own GPT disk GUID (in the
    EV_EFI_GPT_EVENT of PCR 5, as on real hosts), so its PCR 5 and its log's digest are its own.

    The record's digests are recomputed over the new event data. Flavors: the base log's
    platform and os flavors (which exclude GPT events and do not compare PCR 5) and a
    host_unique flavor of its own, ``h<index>.host_unique``. Raises ``StopIteration`` for a log
    without a GPT event.
    """
    log = parse_eventlog(base.data)
    event = next(e for e in log.events if e.event_type == EV_EFI_GPT_EVENT)
    data = bytearray(event.data)
    data[GPT_DISK_GUID] = hashlib.sha256(b"disk %d" % index).digest()[:16]
    out = bytearray(base.data)
    pos = event.offset + 8  # TCG_PCR_EVENT2: pcrIndex, eventType, then TPML_DIGEST_VALUES
    count = int.from_bytes(out[pos : pos + 4], "little")
    pos += 4
    for _ in range(count):
        alg = int.from_bytes(out[pos : pos + 2], "little")
        size = HASH_ALGORITHMS[alg].digest_size
        out[pos + 2 : pos + 2 + size] = digest(alg, bytes(data))
        pos += 2 + size
    out[pos + 4 : pos + 4 + len(data)] = data  # eventSize is unchanged
    new = bytes(out)
    parsed = parse_eventlog(new)
    bank = replay_eventlog(parsed).get(TPM_ALG_SHA256, {})
    values = {TPM_ALG_SHA256: {pcr: bank.get(pcr, bytes(32)) for pcr in QUOTED_PCRS}}
    (unique,) = flavor_from_eventlog(parsed, _host_unique_template(), f"h{index}")
    shared = {k: v for k, v in base.flavors.items() if not k.endswith(".host_unique")}
    flavors = shared | {unique.id: flavor_to_json(unique)}
    name = f"{base.name} (disk {index})"
    return BootLog(name, new, hashlib.sha256(new).digest(), values, flavors)


# --- the hub process --------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# PostgreSQL as installed, but commits like the hub's SQLite (WAL, synchronous = NORMAL): a
# crash of the machine may lose the last commits, never corrupts (fsync stays on)
BENCH_POSTGRES_SETTINGS: Final = ("synchronous_commit=off",)


def _hub_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "hub.cli", *args]


@dataclass(slots=True)
class HubProcess:
    """``trustplane-hub run`` as a child process, with what ``init`` printed and made."""

    workdir: Path
    port: int
    admin_token: str
    ca_pem: str
    process: subprocess.Popen[bytes]
    postgres: PostgresCluster | None = None  # state.database on this throw-away server
    database_name: str = ""

    @property
    def state_dir(self) -> Path:
        return self.workdir / "state"

    def db_bytes(self) -> int:
        if self.postgres is not None:
            return self.postgres.database_bytes(self.database_name)
        return sum(
            (self.state_dir / f"hub.db{suffix}").stat().st_size
            for suffix in ("", "-wal", "-shm")
            if (self.state_dir / f"hub.db{suffix}").exists()
        )

    def pids(self) -> list[int]:
        """The hub's processes: ``trustplane-hub run`` and, with ``server.workers`` above 1,
        its workers."""
        pid = self.process.pid
        try:
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            children = []
        return [pid, *(int(c) for c in children)]

    def cpu_seconds(self) -> float:
        total = 0.0
        for pid in self.pids():
            with contextlib.suppress(OSError):
                total += _proc_cpu(f"/proc/{pid}/stat")
        return total

    def database_cpu_seconds(self) -> float:
        """The PostgreSQL server's CPU time (0 for SQLite, whose work is in the hub's)."""
        return 0.0 if self.postgres is None else self.postgres.cpu_seconds()

    def thread_cpu(self) -> dict[int, float]:
        out = {}
        for pid in self.pids():
            with contextlib.suppress(OSError):
                for task in Path(f"/proc/{pid}/task").iterdir():
                    with contextlib.suppress(OSError):
                        out[int(task.name)] = _proc_cpu(str(task / "stat"))
        return out

    def rss_mb(self) -> float:
        """The resident memory of all the hub's processes (pages the workers still share with
        the parent since the fork count in each)."""
        return round(sum(_status_kb(pid, "VmRSS:") for pid in self.pids()) / 1024, 1)

    def pss_mb(self) -> float:
        """Their proportional set size: shared pages divided among the processes sharing them
        (what the hub really adds to the machine)."""
        total = 0
        for pid in self.pids():
            with contextlib.suppress(OSError):
                for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                    if line.startswith("Pss:"):
                        total += int(line.split()[1])
        return round(total / 1024, 1)

    def log_tail(self, lines: int = 20) -> str:
        text = (self.workdir / "hub.log").read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _status_kb(pid: int, key: str) -> int:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1])
    return 0


def _proc_cpu(path: str) -> float:
    fields = Path(path).read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_hub(
    workdir: Path,
    *,
    history: int,
    require_flavor: bool,
    server_extra: str = "",
    postgres: PostgresCluster | None = None,
    extra: dict[str, str] | None = None,
) -> HubProcess:
    """Initialise a state directory, write the config, start the hub and wait for /health.
    ``server_extra`` holds more ``[server]`` lines (``key = value``); ``extra`` more lines for
    the ``state`` and ``attestation`` tables, and (``"tables"``) more tables; with
    ``postgres``, the hub's database is a new one there (``state.database``)."""
    more = extra or {}
    state = workdir / "state"
    database, database_name = "sqlite", ""
    if postgres is not None:
        database_name = "bench"
        database = postgres.create_database(database_name)
    (workdir / "init.toml").write_text(f'[state]\ndatabase = "{database}"\n')
    init = subprocess.run(
        _hub_command("init", "--state-dir", str(state), "--config", str(workdir / "init.toml")),
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO,
    )
    found = re.search(r"admin token[^:]*: (\S+)", init.stdout)
    if init.returncode != 0 or found is None:
        raise BenchError(f"trustplane-hub init failed: {init.stdout}{init.stderr}")
    port = _free_port()
    config = workdir / "hub.toml"
    config.write_text(
        f'[server]\nlisten = "127.0.0.1:{port}"\n{server_extra}\n'
        f'[state]\ndir = "{state}"\ndatabase = "{database}"\n{more.get("state", "")}\n'
        f"[attestation]\nrequire_flavor = {str(require_flavor).lower()}\n"
        f"{more.get('attestation', '')}\n"
        f'[enrollment]\ntokens = ["{REGISTRATION_TOKEN}"]\n'
        "rate_per_minute = 100000000\n\n"
        f"[reports]\nhistory = {history}\n"
        f"{more.get('tables', '')}\n"
    )
    with (workdir / "hub.log").open("wb") as log:
        process = subprocess.Popen(
            _hub_command("run", "--config", str(config)), stdout=log, stderr=log, cwd=REPO
        )
    hub = HubProcess(
        workdir,
        port,
        found.group(1),
        (state / "ca.pem").read_text(),
        process,
        postgres,
        database_name,
    )
    try:
        asyncio.run(_wait_healthy(hub))
    except BaseException:
        hub.stop()
        raise
    return hub


async def _wait_healthy(hub: HubProcess) -> None:
    ctx = client_context(hub.ca_pem)
    deadline = time.monotonic() + 30
    while True:
        if hub.process.poll() is not None:
            raise BenchError(f"the hub exited with {hub.process.returncode}:\n{hub.log_tail()}")
        try:
            conn = await HttpConnection.open("127.0.0.1", hub.port, ctx, SERVER_NAME)
            status, _ = await conn.request("GET", "/health", b"")
            await conn.close()
            if status == 200:
                return
        except (OSError, HttpError):
            pass
        if time.monotonic() > deadline:
            raise BenchError("the hub did not answer /health within 30 s")
        await asyncio.sleep(0.1)


def client_context(
    ca_pem: str, cert_file: Path | None = None, *, resume: bool = False
) -> ssl.SSLContext:
    """A client context trusting the hub CA; ``resume``: one that resumes its last TLS session
    on the next connection, as the agent's (:mod:`nodeagent.tlssession`)."""
    if resume:
        ctx: ssl.SSLContext = resuming_client_context(cadata=ca_pem)
    else:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(cadata=ca_pem)
    if cert_file is not None:
        ctx.load_cert_chain(cert_file)
    return ctx


# --- simulated hosts --------------------------------------------------------------------------


@dataclass(slots=True)
class SimHost:
    """One simulated host: its TPM, boot log, identity, connection and report sequence."""

    index: int
    tpm: SimTpm
    log: BootLog
    host_id: str = ""
    cert_file: Path | None = None
    conn: HttpConnection | None = None
    sequence: int = 0
    log_acked: bool = False
    reported: bool = False
    next_nonce: bytes | None = None  # the hub's nonce for this host's next report
    tls: ssl.SSLContext | None = None  # its client context, made once (it keeps its session)

    def body(self, nonce: bytes) -> bytes:
        """The next report body's canonical bytes (the log's data until the hub acked it)."""
        self.sequence += 1
        ev = EventLogEvidence(self.log.sha256, None if self.log_acked else self.log.data)
        return encode_report_body(
            ReportBody(
                host_id=self.host_id,
                boot_id=f"{self.index:032x}",
                nonce=nonce,
                pcr_selection=SELECTION.as_dict(),
                pcr_values=self.log.values,
                eventlogs={"uefi": ev},
                missing_evidence=(MissingEvidence("txt", "no Intel TXT on this platform"),),
                facts={
                    "dmi_uuid": f"4c4c4544-0000-1000-8000-{self.index:012x}",
                    "hostname": f"bench-{self.index:05d}",
                    "kernel": "6.8.0-bench",
                    "observed_at": f"{time.time():.3f}",
                    "report_reason": "interval",
                },
                agent_version="bench",
                sequence=self.sequence,
            )
        )

    def report(self, nonce: bytes) -> bytes:
        """The next report, quoted and signed over ``nonce``, as the JSON bytes to post."""
        body = self.body(nonce)
        attest, signature = self.tpm.quote(
            SELECTION, self.log.values, report_qualifying_data(nonce, body)
        )
        return json.dumps(Report(body, attest, signature).to_json()).encode("ascii")


def _csr(key: ec.EllipticCurvePrivateKey) -> str:
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "agent")]))
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM).decode("ascii")


def _json(status: int, body: bytes, what: str) -> Any:  # noqa: ANN401 - a JSON value
    if status != 200:
        raise BenchError(f"{what}: HTTP {status}: {body[:300]!r}")
    return json.loads(body)


async def _put_flavors(hub: HubProcess, logs: list[BootLog]) -> None:
    conn = await HttpConnection.open("127.0.0.1", hub.port, client_context(hub.ca_pem), SERVER_NAME)
    try:
        for log in logs:
            for name, doc in log.flavors.items():
                status, body = await conn.request(
                    "PUT",
                    f"/v1/flavors/{name}",
                    json.dumps(doc).encode(),
                    authorization=f"Bearer {hub.admin_token}",
                )
                _json(status, body, f"PUT /v1/flavors/{name}")
    finally:
        await conn.close()


async def _enroll_one(
    hub: HubProcess, conn: HttpConnection, host: SimHost, certs: Path, *, flavors: bool
) -> None:
    tls_key = ec.generate_private_key(ec.SECP256R1())
    request = EnrollRequest(
        ek_public=host.tpm.ek_public,
        ak_public=host.tpm.ak_public,
        hostname=f"bench-{host.index:05d}",
        dmi_uuid=f"4c4c4544-0000-1000-8000-{host.index:012x}",
        node_name=f"node-{host.index:05d}",
        registration_token=REGISTRATION_TOKEN,
        csr=_csr(tls_key),
    )
    status, body = await conn.request("POST", "/v1/enroll", json.dumps(request.to_json()).encode())
    challenge = EnrollChallenge.from_json(_json(status, body, "POST /v1/enroll"))
    if challenge.credential_blob is None or challenge.encrypted_secret is None:
        raise BenchError(f"enrollment not challenged: {challenge.status}")
    secret = host.tpm.activate_credential(challenge.credential_blob, challenge.encrypted_secret)
    status, body = await conn.request(
        "POST",
        "/v1/enroll/activate",
        json.dumps(
            ActivateRequest(challenge.host_id, secret, challenge.handle or b"").to_json()
        ).encode(),
    )
    enrollment = Enrollment.from_json(_json(status, body, "POST /v1/enroll/activate"))
    if enrollment.client_certificate is None:
        raise BenchError(f"no client certificate: {enrollment.status}")
    host.host_id = enrollment.host_id
    host.cert_file = certs / f"{host.index}.pem"
    host.cert_file.write_bytes(
        enrollment.client_certificate.encode("ascii")
        + tls_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    if not flavors:
        return
    for name, doc in host.log.flavors.items():
        if name.startswith(f"h{host.index}."):  # its own host_unique flavor (--unique-logs)
            status, body = await conn.request(
                "PUT",
                f"/v1/flavors/{name}",
                json.dumps(doc).encode(),
                authorization=f"Bearer {hub.admin_token}",
            )
            _json(status, body, f"PUT /v1/flavors/{name}")
    status, body = await conn.request(
        "PUT",
        f"/v1/hosts/{host.host_id}/flavors",
        json.dumps({"flavors": sorted(host.log.flavors)}).encode(),
        authorization=f"Bearer {hub.admin_token}",
    )
    _json(status, body, "PUT /v1/hosts/{id}/flavors")


async def enroll_hosts(  # noqa: PLR0917
    hub: HubProcess,
    logs: list[BootLog],
    count: int,
    concurrency: int,
    certs: Path,
    flavors: bool,
    *,
    unique_logs: bool = False,
) -> list[SimHost]:
    """Make and enroll ``count`` hosts through the real endpoints (and assign each its log's
    flavors when ``flavors``); progress on stderr."""
    if flavors:
        await _put_flavors(hub, logs)
    hosts: list[SimHost] = []
    next_index = iter(range(count))
    start = time.perf_counter()

    async def worker() -> None:
        conn = await HttpConnection.open(
            "127.0.0.1", hub.port, client_context(hub.ca_pem), SERVER_NAME
        )
        try:
            for i in next_index:
                log = logs[i % len(logs)]
                host = SimHost(i, SimTpm(), host_bootlog(log, i) if unique_logs else log)
                await _enroll_one(hub, conn, host, certs, flavors=flavors)
                hosts.append(host)
                if len(hosts) % 1000 == 0:
                    rate = len(hosts) / (time.perf_counter() - start)
                    print(f"enrolled {len(hosts)}/{count} ({rate:.0f}/s)", file=sys.stderr)
        finally:
            await conn.close()

    await asyncio.gather(*(worker() for _ in range(min(concurrency, count))))
    hosts.sort(key=lambda h: h.index)
    return hosts


# --- load -------------------------------------------------------------------------------------


@dataclass(slots=True)
class Samples:
    """Latencies (seconds) of completed pairs, per step."""

    pair: list[float] = field(default_factory=list)
    challenge: list[float] = field(default_factory=list)
    report: list[float] = field(default_factory=list)
    started: float = 0.0
    ended: float = 0.0
    new_connections: int = 0  # completed pairs sent on a new connection
    resumed: int = 0  # of those, on a connection that resumed a TLS session

    def rate(self) -> float:
        return len(self.pair) / max(self.ended - self.started, 1e-9)


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) in milliseconds, nearest rank."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return round(1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)


@dataclass(slots=True)
class LoadState:
    """Counters the workers share."""

    errors: Counter[str] = field(default_factory=Counter)
    verdicts: Counter[str] = field(default_factory=Counter)
    handshakes: int = 0
    resumed: int = 0  # of the handshakes, those that resumed a TLS session
    reconnects: int = 0
    unreported: int = 0
    log_bytes: int = 0
    challenges: int = 0
    reports: int = 0
    steady_from: tuple[int, int] = (0, 0)  # (challenges, reports) when the steady state began
    resume: bool = True  # hosts keep a TLS context and resume their session


Step = Callable[[SimHost, HttpConnection, LoadState], Awaitable[tuple[float, float]]]


async def attest_step(host: SimHost, conn: HttpConnection, st: LoadState) -> tuple[float, float]:
    """One report: under the nonce the hub's last answer carried, else after a challenge;
    returns (challenge, report) seconds (challenge 0 when none was needed)."""
    t0 = time.perf_counter()
    nonce, host.next_nonce = host.next_nonce, None
    if nonce is None:
        status, body = await conn.request("POST", "/v1/challenge", b"{}")
        st.challenges += 1
        if status != 200:
            raise BenchError(f"challenge.http_{status}")
        nonce = Challenge.from_json(json.loads(body)).nonce
    t1 = time.perf_counter()
    payload = host.report(nonce)
    t2 = time.perf_counter()
    status, body = await conn.request("POST", "/v1/report", payload)
    t3 = time.perf_counter()
    if status != 200:
        code = json.loads(body).get("error", {}).get("code", "?") if body else "?"
        raise BenchError(f"report.http_{status}.{code}")
    st.reports += 1
    result = ReportResult.from_json(json.loads(body))
    if result.next_challenge is not None:
        host.next_nonce = result.next_challenge.nonce
    if result.missing_eventlogs:
        host.log_acked = False
        raise BenchError("report.missing_eventlogs")
    st.verdicts[result.verdict] += 1
    if result.verdict != "trusted":
        raise BenchError(f"verdict.{result.verdict}.{','.join(result.reasons)}")
    if not host.log_acked:
        st.log_bytes += len(host.log.data)
        host.log_acked = True
    return t1 - t0, t3 - t2


async def health_step(host: SimHost, conn: HttpConnection, st: LoadState) -> tuple[float, float]:
    """The baseline: two GET /health on the host's connection."""
    times = []
    for _ in range(2):
        t0 = time.perf_counter()
        status, _ = await conn.request("GET", "/health", b"")
        times.append(time.perf_counter() - t0)
        if status != 200:
            raise BenchError(f"health.http_{status}")
    return times[0], times[1]


async def _connection(hub: HubProcess, host: SimHost, st: LoadState) -> HttpConnection:
    """The host's keep-alive connection; a new one (a TLS handshake) when the hub closed it."""
    if host.conn is not None and host.conn.closed:
        await host.conn.close()
        host.conn = None
        st.reconnects += 1
    if host.conn is None:
        if host.tls is None or not st.resume:
            host.tls = client_context(hub.ca_pem, host.cert_file, resume=st.resume)
        host.conn = await HttpConnection.open("127.0.0.1", hub.port, host.tls, SERVER_NAME)
        st.handshakes += 1
        st.resumed += host.conn.resumed
    return host.conn


@dataclass(slots=True)
class LoadRun:
    """Workers that take hosts round-robin (a host is never used by two at once) and run
    ``step`` on each. With ``first_round``, every host first steps once (measured there), then
    the steady state runs ``duration`` seconds. Without ``keep_alive`` each host closes its
    connection after each step (a TLS handshake per step)."""

    hub: HubProcess
    hosts: list[SimHost]
    step: Step
    st: LoadState
    duration: float
    first_round: Samples | None = None
    on_steady: Callable[[], None] | None = None
    keep_alive: bool = True
    rate: float | None = None
    steady: Samples = field(default_factory=Samples)
    next_at: float = 0.0
    queue: deque[SimHost] = field(default_factory=deque)
    deadline: float = float("inf")

    async def run(self, concurrency: int) -> Samples:
        """Run to the end of the steady state and return its samples."""
        self.queue = deque(self.hosts)
        self.st.unreported = sum(not h.reported for h in self.hosts)
        if self.first_round is not None and self.st.unreported:
            self.first_round.started = time.perf_counter()
        else:
            self._start_steady()
        await asyncio.gather(*(self._worker() for _ in range(min(concurrency, len(self.hosts)))))
        self.steady.ended = time.perf_counter()
        return self.steady

    def _start_steady(self) -> None:
        self.st.steady_from = (self.st.challenges, self.st.reports)
        self.steady.started = self.next_at = time.perf_counter()
        self.deadline = self.steady.started + self.duration
        if self.on_steady is not None:
            self.on_steady()

    async def _paced(self) -> None:
        """With a ``rate``, wait for this step's start time in the steady state (open loop:
        a slow hub delays the schedule only through the bounded concurrency)."""
        if self.rate is None or not self.steady.started:
            return
        at = self.next_at
        self.next_at += 1 / self.rate
        await asyncio.sleep(max(0.0, at - time.perf_counter()))

    async def _worker(self) -> None:
        while time.perf_counter() < self.deadline:
            await self._paced()
            if time.perf_counter() >= self.deadline:
                return
            host = self.queue.popleft()
            try:
                await self._one(host)
            finally:
                self.queue.append(host)

    async def _one(self, host: SimHost) -> None:
        started = time.perf_counter()
        samples = self.steady if self.steady.started else self.first_round
        try:
            fresh = host.conn is None or host.conn.closed
            conn = await _connection(self.hub, host, self.st)
            challenge, report = await self.step(host, conn, self.st)
        except (BenchError, HttpError, WireError, OSError, ValueError) as exc:
            self.st.errors[str(exc).split(":")[0][:80]] += 1
            if host.conn is not None and not isinstance(exc, BenchError):
                await host.conn.close()
                host.conn = None
            return
        if samples is not None:
            samples.new_connections += fresh
            samples.resumed += fresh and conn.resumed
            samples.pair.append(time.perf_counter() - started)
            samples.challenge.append(challenge)
            samples.report.append(report)
        if not self.keep_alive and host.conn is not None:
            await host.conn.close()
            host.conn = None
        if not host.reported:
            host.reported = True
            self._first_report_done()

    def _first_report_done(self) -> None:
        self.st.unreported -= 1
        done = len(self.hosts) - self.st.unreported
        if done % 1000 == 0 and self.st.unreported:
            print(f"first round: {done} hosts reported", file=sys.stderr)
        if self.st.unreported == 0 and self.first_round is not None:
            self._start_steady()
            self.first_round.ended = self.steady.started
            took = self.steady.started - self.first_round.started
            print(f"first round done in {took:.1f} s", file=sys.stderr)


def _raise_fd_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed <= hard or (soft < needed and hard == resource.RLIM_INFINITY):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    elif soft < needed:
        raise BenchError(f"need {needed} file descriptors; the hard limit is {hard}")


# --- the run ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CpuSnapshot:
    """CPU seconds used so far by the hub (and each of its threads), by this process, and by
    the whole machine."""

    at: float
    hub: float
    own: float
    machine: float
    threads: dict[int, float]

    @classmethod
    def take(cls, hub: HubProcess) -> CpuSnapshot:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
        user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
        machine = (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")
        return cls(
            time.perf_counter(), hub.cpu_seconds(), time.process_time(), machine, hub.thread_cpu()
        )

    def until(self, later: CpuSnapshot, reports: int) -> dict[str, Any]:
        """Cores used between the two snapshots, and CPU milliseconds per report."""
        wall = max(later.at - self.at, 1e-9)
        hub = (later.hub - self.hub) / wall
        own = (later.own - self.own) / wall
        threads = sorted(
            ((later.threads[t] - self.threads.get(t, 0.0)) / wall for t in later.threads),
            reverse=True,
        )
        per = 1000 * wall / max(reports, 1)
        return {
            "hub_cpu_cores": round(hub, 2),
            "hub_threads_cpu_cores": [round(t, 2) for t in threads[:3]],
            "loadgen_cpu_cores": round(own, 2),
            "other_processes_cpu_cores": round(
                (later.machine - self.machine) / wall - hub - own, 2
            ),
            "hub_cpu_ms_per_report": round(hub * per, 3),
            "loadgen_cpu_ms_per_report": round(own * per, 3),
        }


def _latencies(s: Samples) -> dict[str, Any]:
    return {
        "reports": len(s.pair),
        "seconds": round(s.ended - s.started, 2),
        "reports_per_s": round(s.rate(), 1),
        "p50_ms": percentile(s.pair, 0.5),
        "p90_ms": percentile(s.pair, 0.9),
        "p99_ms": percentile(s.pair, 0.99),
        "max_ms": percentile(s.pair, 1.0),
    }


@dataclass(slots=True)
class SteadyWatch:
    """What happens when the steady state starts: a CPU snapshot and, if asked, py-spy."""

    hub: HubProcess
    profile: Path | None
    seconds: float
    snapshot: CpuSnapshot | None = None
    profiler: subprocess.Popen[bytes] | None = None
    database_cpu: float = 0.0  # the PostgreSQL server's CPU seconds at the start

    def start(self) -> None:
        self.snapshot = CpuSnapshot.take(self.hub)
        self.database_cpu = self.hub.database_cpu_seconds()
        if self.profile is not None:
            self.profiler = record(
                self.hub.process.pid,
                self.seconds - 1,
                self.profile,
                subprocesses=len(self.hub.pids()) > 1,
            )

    def profile_summary(self) -> dict[str, object] | None:
        if self.profiler is None or self.profile is None:
            return None
        self.profiler.wait()
        return summarize(self.profile) if self.profile.exists() else None


def _connection_shares(s: Samples) -> dict[str, float]:
    """The share of the reports sent on a new TLS connection, and the share of those
    connections that resumed a session."""
    return {
        "new_connection_share": round(s.new_connections / max(len(s.pair), 1), 3),
        "resumed_share": round(s.resumed / max(s.new_connections, 1), 3),
    }


def _requests_per_report(st: LoadState) -> float:
    """HTTPS requests per report in the steady state: 1 while every report uses the nonce the
    hub's previous answer carried, 2 with a challenge each."""
    challenges = st.challenges - st.steady_from[0]
    reports = st.reports - st.steady_from[1]
    return round((challenges + reports) / max(reports, 1), 3)


async def _run(args: argparse.Namespace, hub: HubProcess, workdir: Path) -> dict[str, Any]:
    setup_start = time.perf_counter()
    logs = load_bootlogs()
    certs = workdir / "certs"
    certs.mkdir()
    enroll_start = time.perf_counter()
    hosts = await enroll_hosts(
        hub,
        logs,
        args.hosts,
        args.enroll_concurrency,
        certs,
        args.flavors,
        unique_logs=args.unique_logs,
    )
    enroll_s = time.perf_counter() - enroll_start
    print(f"{len(hosts)} hosts enrolled in {enroll_s:.1f} s", file=sys.stderr)
    st = LoadState(resume=not args.no_resumption)
    first = Samples()
    watch = SteadyWatch(hub, args.profile, args.duration)
    first_cpu = CpuSnapshot.take(hub)
    steady = await LoadRun(
        hub,
        hosts,
        attest_step,
        st,
        args.duration,
        first_round=first,
        on_steady=watch.start,
        keep_alive=args.keep_alive,
        rate=args.rate,
    ).run(args.concurrency)
    steady_cpu = CpuSnapshot.take(hub)
    database_cpu = (watch.database_cpu, hub.database_cpu_seconds())
    if watch.snapshot is None:
        raise BenchError("the steady state never started (did every host report once?)")
    base_state = LoadState()
    base_cpu = CpuSnapshot.take(hub)
    baseline = await LoadRun(
        hub,
        hosts,
        health_step,
        base_state,
        args.baseline_duration,
        keep_alive=args.keep_alive,
    ).run(args.concurrency)
    base_end = CpuSnapshot.take(hub)
    for host in hosts:
        if host.conn is not None:
            await host.conn.close()
    s = steady
    result: dict[str, Any] = {
        "benchmark": "hub",
        "database": args.database,
        "hosts": len(hosts),
        "concurrency": min(args.concurrency, len(hosts)),
        "flavors": args.flavors,
        "workers": args.workers,
        "keep_alive": args.keep_alive,
        "tls_resumption": not args.no_resumption,
        "offered_rate": args.rate,
        "unique_logs": args.unique_logs,
        **_latencies(s),
        "requests_per_report": _requests_per_report(st),
        "requests_per_s": round(_requests_per_report(st) * s.rate(), 1),
        "challenge_p50_ms": percentile(s.challenge, 0.5),
        "challenge_p99_ms": percentile(s.challenge, 0.99),
        "report_p50_ms": percentile(s.report, 0.5),
        "report_p99_ms": percentile(s.report, 0.99),
        "errors": dict(st.errors),
        "error_count": sum(st.errors.values()),
        "verdicts": dict(st.verdicts),
        "tls_handshakes": st.handshakes,
        "reconnects_after_idle_close": st.reconnects,
        **_connection_shares(s),
        **watch.snapshot.until(steady_cpu, len(s.pair)),
        "hub_rss_mb": hub.rss_mb(),
        "hub_pss_mb": hub.pss_mb(),
        "hub_processes": len(hub.pids()),
        "loadgen_max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "db_mb": round(hub.db_bytes() / 1e6, 1),
        "first_round": _latencies(first)
        | first_cpu.until(watch.snapshot, len(first.pair))
        | {"eventlog_mb_sent": round(st.log_bytes / 1e6, 1)},
        "enroll": {"seconds": round(enroll_s, 1), "hosts_per_s": round(len(hosts) / enroll_s, 1)},
        "setup_s": round(enroll_start - setup_start + enroll_s, 1),
        "baseline_health_pairs": _latencies(baseline)
        | base_cpu.until(base_end, len(baseline.pair))
        | {"errors": dict(base_state.errors)},
        "eventlogs": [f"{log.name} ({len(log.data)} B)" for log in logs],
    }
    if hub.postgres is not None:
        # the database's work happens in the server's processes, not the hub's
        db_ms = 1000 * (database_cpu[1] - database_cpu[0]) / max(len(s.pair), 1)
        result["database_cpu_ms_per_report"] = round(db_ms, 3)
        result["hub_and_database_cpu_ms_per_report"] = round(
            result["hub_cpu_ms_per_report"] + db_ms, 3
        )
        result["database_settings"] = list(BENCH_POSTGRES_SETTINGS)
        result["database_pss_mb"] = hub.postgres.pss_mb()
    result["vs_baseline"] = round(s.rate() / max(baseline.rate(), 1e-9), 3)
    result["target"] = {
        "reports_per_s": TARGET_REPORTS_PER_S,
        "p99_ms": TARGET_P99_MS,
        "met": s.rate() >= TARGET_REPORTS_PER_S and result["p99_ms"] <= TARGET_P99_MS,
    }
    profile = watch.profile_summary()
    if profile is not None:
        result["hub_profile"] = profile
        result["hub_profile_ms_per_report"] = split_ms(profile, result["hub_cpu_ms_per_report"])
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.hub", description=__doc__)
    parser.add_argument("--json", action="store_true", help="print one JSON line")
    parser.add_argument("--hosts", type=int, default=1000)
    parser.add_argument("--duration", type=float, default=20.0, help="steady-state seconds")
    parser.add_argument("--baseline-duration", type=float, default=3.0)
    parser.add_argument("--concurrency", type=int, default=64, help="reports in flight")
    parser.add_argument(
        "--rate",
        type=float,
        help="start steady-state reports at this rate (per second) instead of as fast as the "
        "hub answers; e.g. 167 = 10000 hosts at a 60 s interval",
    )
    parser.add_argument("--enroll-concurrency", type=int, default=16)
    parser.add_argument("--history", type=int, default=20, help="reports.history of the hub")
    parser.add_argument(
        "--no-flavors",
        dest="flavors",
        action="store_false",
        help="assign no flavors and do not require them (the hub without flavor evaluation)",
    )
    parser.add_argument(
        "--profile", type=Path, help="py-spy the hub in the steady state (raw stacks to this file)"
    )
    parser.add_argument(
        "--unique-logs",
        action="store_true",
        help="give every host its own log (its own GPT disk GUID) and host_unique flavor, as in "
        "a real fleet, instead of sharing the few real logs' exact bytes",
    )
    parser.add_argument(
        "--keep-alive",
        action="store_true",
        help="each host keeps one connection open for all its reports; by default every report "
        "opens a new one, as a real agent does: it reports every 60 s and its aiohttp client "
        "closes an idle connection after 15 s",
    )
    parser.add_argument(
        "--no-resumption",
        action="store_true",
        help="full TLS handshakes on new connections (by default a host resumes its last TLS "
        "session, as the agent does)",
    )
    parser.add_argument(
        "--workers", type=int, default=1, help="server.workers of the hub (1: one process)"
    )
    parser.add_argument("--keep", type=Path, help="keep the hub's state in this new directory")
    parser.add_argument(
        "--database",
        choices=("sqlite", "postgresql"),
        default="sqlite",
        help="the hub's database: hub.db (SQLite), or a throw-away PostgreSQL server started "
        "for the run (initdb as an unprivileged user, unix socket; trustplane.pgcluster)",
    )
    parser.add_argument(
        "--idle-connections",
        type=int,
        default=2000,
        help="afterwards, measure idle_tls_conn_kb with this many idle TLS connections to a "
        "fresh hub (bench.idle_connections; 0 = skip)",
    )
    args = parser.parse_args(argv)
    _raise_fd_limit(args.hosts + 1024)
    with contextlib.ExitStack() as stack:
        if args.keep is not None:
            args.keep.mkdir(parents=True)
            workdir = args.keep
        else:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-hub-")))
        postgres = None
        if args.database == "postgresql":
            postgres = stack.enter_context(PostgresCluster(settings=BENCH_POSTGRES_SETTINGS))
        hub = start_hub(
            workdir,
            postgres=postgres,
            history=args.history,
            require_flavor=args.flavors,
            # every simulated host connects from 127.0.0.1
            server_extra=(
                f"max_connections = {args.hosts + 1024}\nmax_connections_per_address = 0\n"
                f"workers = {args.workers}\n"
            ),
        )
        stack.callback(hub.stop)
        result = asyncio.run(_run(args, hub, workdir))
        hub.stop()
    if args.idle_connections > 0:
        from bench.idle_connections import measure_idle_tls  # noqa: PLC0415 - imports this module

        idle = measure_idle_tls(args.idle_connections)
        result["idle_tls_conn_kb"] = idle["idle_tls_conn_kb"]
        result["idle_rss_returned"] = idle["rss_returned"]
    print(json.dumps(result) if args.json else json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
