"""Fixtures for the hub tests: a real hub on loopback TLS and real swtpm-backed agents."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import EVENTLOGS
from tests.hub.harness import Agent, FakeClock, HubProcess, make_state
from trustcore.algorithms import TPM_ALG_SHA256
from trustcore.eventlog import parse_eventlog
from trustplane.pgcluster import PostgresCluster
from trustplane.swtpm import SwtpmFactory

LOG = EVENTLOGS / "go-attestation" / "crypto_agile_eventlog.bin"
EV_NO_ACTION = 3


def ca_bundle(factory: SwtpmFactory, path: Path) -> Path:
    path.write_bytes(b"".join(p.read_bytes() for p in factory.ca_certificates))
    return path


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    """One throw-away PostgreSQL server for the session (initdb as an unprivileged user, a unix
    socket in its temporary directory); fails when PostgreSQL is not installed."""
    with PostgresCluster() as cluster:
        yield cluster


BACKENDS = ("sqlite", "postgresql")


@pytest.fixture(params=BACKENDS)
def store_target(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where a test's store lives, once per backend: a SQLite file in ``tmp_path``, or a fresh
    database on the session's PostgreSQL server."""
    if request.param == "sqlite":
        return str(tmp_path / "hub.db")
    cluster: PostgresCluster = request.getfixturevalue("postgres")
    return cluster.create_database()


def serving_hub(
    tmp_path_factory: pytest.TempPathFactory,
    swtpm_factory: SwtpmFactory,
    database: str = "sqlite",
) -> Iterator[HubProcess]:
    """A hub whose EK CA bundle is the swtpm factory's local CA (so agents enroll at once), on
    ``database`` (``state.database``), stopped afterwards (for fixtures)."""
    tmp = tmp_path_factory.mktemp("hub")
    bundle = ca_bundle(swtpm_factory, tmp / "ek-ca.pem")
    config = make_state(tmp, enrollment={"ek_ca_bundle": str(bundle)}, database=database)
    process = HubProcess(config, FakeClock())
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def hub(
    tmp_path_factory: pytest.TempPathFactory, swtpm_factory: SwtpmFactory
) -> Iterator[HubProcess]:
    """A hub whose EK CA bundle is the swtpm factory's local CA (so agents enroll at once)."""
    yield from serving_hub(tmp_path_factory, swtpm_factory)


@pytest.fixture(scope="module", params=BACKENDS)
def hub_on_each_backend(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    swtpm_factory: SwtpmFactory,
) -> Iterator[HubProcess]:
    """:func:`hub` once on SQLite, once on a fresh PostgreSQL database (a module that wants
    its tests on both overrides ``hub`` with this)."""
    database = "sqlite"
    if request.param == "postgresql":
        database = request.getfixturevalue("postgres").create_database()
    yield from serving_hub(tmp_path_factory, swtpm_factory, database)


def running_agent(
    hub: HubProcess,
    factory: SwtpmFactory,
    workdir: Path,
    *,
    enroll: str = "direct",
    booted: bool = False,
    unique: bool = False,
) -> Iterator[Agent]:
    """An agent on a fresh swtpm, enrolled in ``hub``, closed afterwards (for fixtures).

    ``enroll="full"`` goes through the EK certificate chain, MakeCredential and the client
    certificate; ``"direct"`` binds its keys in the store (attestation tests). ``booted`` first
    extends the TPM with exactly the events of ``LOG``; ``unique`` gives the TPM its own EK (its
    own host id) instead of the factory's shared one.
    """
    tpm = factory.start(unique=unique)
    agent = Agent(tpm, workdir)
    if unique:
        tag = hashlib.sha256(agent.ek.key.public).hexdigest()[:12]
        agent.names = (f"node-{tag}.test", f"node-{tag}", f"4c4c4544-0000-1000-8000-{tag}")
    try:
        if booted:
            for event in parse_eventlog(LOG.read_bytes()).events:
                if event.event_type != EV_NO_ACTION:
                    digest = event.digests[TPM_ALG_SHA256]
                    agent.device.pcr_extend(event.pcr, {TPM_ALG_SHA256: digest})
        if enroll == "full":
            agent.enroll(hub)
        else:
            agent.enroll_direct(hub)
        yield agent
    finally:
        agent.close()
        tpm.stop()


@pytest.fixture(scope="module")
def agent(
    hub: HubProcess, swtpm_factory: SwtpmFactory, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Agent]:
    """An agent enrolled in ``hub`` (EK certificate chain, MakeCredential, client cert)."""
    yield from running_agent(hub, swtpm_factory, tmp_path_factory.mktemp("agent"), enroll="full")


@pytest.fixture(scope="module")
def direct_agent(
    hub: HubProcess, swtpm_factory: SwtpmFactory, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Agent]:
    """An agent whose keys are bound in the store directly (attestation tests)."""
    yield from running_agent(hub, swtpm_factory, tmp_path_factory.mktemp("direct-agent"))


@pytest.fixture(scope="module")
def booted(
    hub: HubProcess, swtpm_factory: SwtpmFactory, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Agent]:
    """An agent whose TPM measured exactly the events of go-attestation's sample UEFI log."""
    yield from running_agent(hub, swtpm_factory, tmp_path_factory.mktemp("booted"), booted=True)
