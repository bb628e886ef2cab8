"""The agent against the real hub: enrollment, activation, attestation, restarts, outages."""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import json
import ssl
import stat
import time
from dataclasses import replace
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from hub.statedir import new_token
from nodeagent.config import AgentConfig
from nodeagent.state import EnrollmentState, ReportLedger, StateDir
from nodeagent.tpm import TpmDevice
from tests.hub.harness import make_state
from tests.nodeagent.conftest import (
    BOOT_LOG,
    LoopbackHub,
    RunningDaemon,
    agent_config,
    expected_sha256_pcrs,
    extend_from_log,
    wait_for,
)
from trustcore.algorithms import TPM_ALG_SHA256
from trustcore.tpm.pcrs import PcrSelection
from trustplane.swtpm import Swtpm

BOOT_LOG_SHA256 = hashlib.sha256(BOOT_LOG.read_bytes()).hexdigest()


def _ek_public(tpm: Swtpm) -> bytes:
    with TpmDevice(tpm.tcti) as device:
        ek = device.create_ek("rsa2048")
        device.flush(ek.key)
    return ek.key.public


def _ek_host_id(tpm: Swtpm) -> str:
    return hashlib.sha256(_ek_public(tpm)).hexdigest()


def test_enroll_activate_attest_trusted(
    tmp_path: Path, booted_tpm: Swtpm, hub: LoopbackHub
) -> None:
    host_id = _ek_host_id(booted_tpm)
    cfg = agent_config(tmp_path, booted_tpm, hub.url, hub.ca_file)

    async def scenario() -> None:
        async with RunningDaemon(cfg) as daemon:
            await wait_for(lambda: daemon.last is not None)
            assert daemon.enrollment is not None
            assert daemon.enrollment.host_id == host_id
            assert daemon.last is not None
            assert daemon.last.sequence == 1
            assert daemon.last.result.verdict == "trusted"
            assert daemon.last.result.reasons == ()

    asyncio.run(scenario())
    host = hub.call(hub.state.store.get_host(host_id))
    assert host is not None
    assert (host.state, host.verdict, host.hostname) == ("enrolled", "trusted", host.hostname)
    assert host.dmi_uuid == "4c4c4544-0042-3510-8052-b4c04f564433"
    assert hub.sequences(host_id) == [1]
    assert hub.call(hub.state.store.get_eventlog(BOOT_LOG_SHA256)) == BOOT_LOG.read_bytes()

    state = cfg.state_dir
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    for name in ("ak.json", "client.key", "client.crt", "hub-ca.pem", "enrollment.json"):
        assert stat.S_IMODE((state / name).stat().st_mode) == 0o600, name
    status = json.loads((state / "status.json").read_text())
    assert status["phase"] == "stopped"
    assert status["host_id"] == host_id
    assert status["last_report"]["verdict"] == "trusted"
    assert status["last_acked_sequence"] == 1
    assert StateDir(state).load_ledger().acked_logs == {BOOT_LOG_SHA256}


def test_reported_pcrs_are_the_logs_replay(tmp_path: Path, booted_tpm: Swtpm) -> None:
    """The swtpm really holds the log's PCRs (what the hub's replay check relies on)."""
    with TpmDevice(booted_tpm.tcti) as device:
        values = device.pcr_read(PcrSelection.of({TPM_ALG_SHA256: range(8)}))
    expected = expected_sha256_pcrs()
    assert {p: v.hex() for p, v in values[TPM_ALG_SHA256].items()} == {
        p: expected[p] for p in range(8)
    }


def test_identity_survives_restart_and_logs_go_digest_only(
    tmp_path: Path, booted_tpm: Swtpm, hub: LoopbackHub
) -> None:
    cfg = agent_config(tmp_path, booted_tpm, hub.url, hub.ca_file)

    async def one_run() -> str:
        async with RunningDaemon(cfg) as daemon:
            await wait_for(lambda: daemon.last is not None)
            assert daemon.last is not None
            assert daemon.last.result.verdict == "trusted"
            assert daemon.enrollment is not None
            return daemon.enrollment.host_id

    first = asyncio.run(one_run())
    ak_blob = (cfg.state_dir / "ak.json").read_bytes()
    cert = (cfg.state_dir / "client.crt").read_bytes()
    second = asyncio.run(one_run())
    assert second == first
    assert (cfg.state_dir / "ak.json").read_bytes() == ak_blob
    assert (cfg.state_dir / "client.crt").read_bytes() == cert  # no second enrollment
    assert hub.sequences(first) == [1, 2]
    assert len(hub.call(hub.state.store.list_hosts())) == 1


def test_log_resent_with_data_when_hub_lacks_it(
    tmp_path: Path, booted_tpm: Swtpm, hub: LoopbackHub
) -> None:
    """The agent believes the hub holds the log (digest only); the hub says it does not; the
    same report (same sequence) is resent with the data and recorded once."""
    cfg = agent_config(tmp_path, booted_tpm, hub.url, hub.ca_file)
    state = StateDir(cfg.state_dir)
    state.ensure()
    state.save_ledger(ReportLedger(acked_logs={BOOT_LOG_SHA256}))

    async def scenario() -> str:
        async with RunningDaemon(cfg) as daemon:
            await wait_for(lambda: daemon.last is not None)
            assert daemon.last is not None
            assert daemon.last.result.verdict == "trusted"
            assert daemon.enrollment is not None
            return daemon.enrollment.host_id

    host_id = asyncio.run(scenario())
    assert hub.sequences(host_id) == [1]
    assert hub.call(hub.state.store.get_eventlog(BOOT_LOG_SHA256)) == BOOT_LOG.read_bytes()


def test_hub_down_then_up_queued_reports_arrive_once(
    tmp_path: Path, booted_tpm: Swtpm, hub: LoopbackHub
) -> None:
    cfg = agent_config(tmp_path, booted_tpm, hub.url, hub.ca_file)
    port, config = hub.port, hub.config
    revived: list[LoopbackHub] = []

    async def scenario() -> str:
        async with RunningDaemon(cfg) as daemon:
            await wait_for(lambda: daemon.last is not None)
            assert daemon.attestor is not None
            ledger = daemon.attestor.ledger
            await asyncio.to_thread(hub.stop)
            for owed in (1, 2):
                daemon.attest_now("requested")
                await wait_for(lambda owed=owed: len(ledger.queue) == owed and daemon.hub_problem)
            assert [q.sequence for q in ledger.queue] == [2, 3]
            assert daemon.notifier.last_status.startswith("hub unreachable, retrying in ")
            status = json.loads((cfg.state_dir / "status.json").read_text())
            assert status["queued_reports"] == 2
            # the queue is on disk before anything is sent
            assert [q.sequence for q in StateDir(cfg.state_dir).load_ledger().queue] == [2, 3]
            revived.append(await asyncio.to_thread(LoopbackHub, config, port))
            await wait_for(lambda: not ledger.queue and ledger.last_acked == 3)
            assert daemon.last is not None
            assert (daemon.last.sequence, daemon.last.result.verdict) == (3, "trusted")
            assert daemon.enrollment is not None
            return daemon.enrollment.host_id

    try:
        host_id = asyncio.run(scenario())
        assert revived[0].sequences(host_id) == [1, 2, 3]
    finally:
        for h in revived:
            h.stop()


def test_swtpm_killed_mid_run_reports_fault_and_recovers(
    tmp_path: Path, booted_tpm: Swtpm, hub: LoopbackHub
) -> None:
    cfg = agent_config(
        tmp_path, booted_tpm, hub.url, hub.ca_file, backoff_initial=1.0, backoff_max=1.0
    )

    async def scenario() -> str:
        async with RunningDaemon(cfg) as daemon:
            await wait_for(lambda: daemon.last is not None)
            await asyncio.to_thread(booted_tpm.stop)
            daemon.attest_now("requested")
            await wait_for(lambda: bool(daemon.tpm_problem))
            assert daemon.tpm_problem.startswith("TPM ")
            assert "(rc 0x000a000a)" in daemon.tpm_problem  # TSS2_TCTI_RC_IO_ERROR
            assert daemon.notifier.last_status.startswith("TPM fault, retrying in ")
            await wait_for(
                lambda: json.loads((cfg.state_dir / "status.json").read_text())["tpm"] == "fault"
            )
            # swtpm back on the same state and ports; its PCRs restart from zero, so measure
            # the boot log again before the agent's next try (backoff 0.5..1 s)
            await asyncio.to_thread(booted_tpm.start)
            await asyncio.to_thread(extend_from_log, booted_tpm)
            await wait_for(lambda: daemon.last is not None and daemon.last.sequence == 2)
            assert daemon.last is not None
            assert daemon.last.result.verdict == "trusted"
            assert daemon.tpm_problem == ""
            assert daemon.enrollment is not None
            return daemon.enrollment.host_id

    host_id = asyncio.run(scenario())
    assert hub.sequences(host_id) == [1, 2]
    status = json.loads((cfg.state_dir / "status.json").read_text())
    assert (status["tpm"], status["last_acked_sequence"]) == ("ok", 2)


def test_pending_until_an_operator_approves(tmp_path: Path, booted_tpm: Swtpm) -> None:
    """A hub without the EK vendor CA bundle keeps the host pending; the agent retries (and
    says so) until an admin approves it through the hub API, then enrolls and attests."""
    config = make_state(tmp_path / "hub")
    hub = LoopbackHub(config)
    cfg = agent_config(
        tmp_path, booted_tpm, hub.url, hub.ca_file, backoff_initial=0.3, backoff_max=0.6
    )
    host_id = _ek_host_id(booted_tpm)
    token, digest = new_token()
    hub.call(hub.state.store.add_token(digest, "admin", "test", time.time()))

    def approve() -> int:
        ctx = ssl.create_default_context(cafile=str(hub.ca_file))
        conn = http.client.HTTPSConnection("127.0.0.1", hub.port, context=ctx, timeout=10)
        try:
            conn.request(
                "POST",
                f"/v1/hosts/{host_id}/approve",
                body=b"{}",
                headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            )
            return conn.getresponse().status
        finally:
            conn.close()

    async def scenario() -> None:
        async with RunningDaemon(cfg) as daemon:
            await wait_for(lambda: daemon.enrollment is not None)
            assert daemon.enrollment == EnrollmentState(host_id, "pending")
            assert daemon.notifier.last_status == (
                f"enrollment of {host_id} pending approval on the hub"
            )
            assert not (cfg.state_dir / "client.crt").exists()
            assert await asyncio.to_thread(approve) == 200
            await wait_for(lambda: daemon.last is not None)
            assert daemon.last is not None
            assert (daemon.last.sequence, daemon.last.result.verdict) == (1, "trusted")

    try:
        asyncio.run(scenario())
        assert hub.sequences(host_id) == [1]
        assert StateDir(cfg.state_dir).load_enrollment() == EnrollmentState(host_id, "enrolled")
    finally:
        hub.stop()


def test_client_certificate_renewed_by_enrolling_again(
    tmp_path: Path, booted_tpm: Swtpm, hub: LoopbackHub
) -> None:
    cfg = agent_config(tmp_path, booted_tpm, hub.url, hub.ca_file)

    async def one_run(config: AgentConfig) -> int:
        async with RunningDaemon(config) as daemon:
            await wait_for(lambda: daemon.last is not None)
            assert daemon.last is not None
            assert daemon.last.result.verdict == "trusted"
            return daemon.renewals

    assert asyncio.run(one_run(cfg)) == 0
    old_cert = (cfg.state_dir / "client.crt").read_bytes()
    old_key = (cfg.state_dir / "client.key").read_bytes()
    # renew_fraction 1: the certificate is always "in the last part of its life"
    assert asyncio.run(one_run(replace(cfg, hub=replace(cfg.hub, renew_fraction=1.0)))) == 1
    new_cert = x509.load_pem_x509_certificate((cfg.state_dir / "client.crt").read_bytes())
    new_key = serialization.load_pem_private_key(
        (cfg.state_dir / "client.key").read_bytes(), password=None
    )
    assert (cfg.state_dir / "client.crt").read_bytes() != old_cert
    assert (cfg.state_dir / "client.key").read_bytes() != old_key
    assert new_cert.public_key() == new_key.public_key()
    assert stat.S_IMODE((cfg.state_dir / "client.key").stat().st_mode) == 0o600
    host_id = hashlib.sha256(_ek_public(booted_tpm)).hexdigest()
    cn = new_cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    assert [a.value for a in cn] == [host_id]
    assert hub.sequences(host_id) == [1, 2]


def test_a_ledger_behind_the_hub_is_renumbered_after_its_last_report(
    tmp_path: Path, booted_tpm: Swtpm, hub: LoopbackHub
) -> None:
    """The agent crashed after the hub recorded report 1 and before it wrote the
    acknowledgement (or its state came back from a backup): report 1 is owed again. The hub
    refuses the old number (409 report.sequence_old, last_sequence 1), the agent renumbers its
    owed reports after it, and delivers."""
    host_id = _ek_host_id(booted_tpm)
    cfg = agent_config(tmp_path, booted_tpm, hub.url, hub.ca_file)

    async def first() -> None:
        async with RunningDaemon(cfg) as daemon:
            await wait_for(lambda: daemon.last is not None)

    asyncio.run(first())
    assert hub.sequences(host_id) == [1]
    state = StateDir(cfg.state_dir)
    ledger = state.load_ledger()
    assert (ledger.next_sequence, ledger.queue) == (2, [])
    owed = json.loads((cfg.state_dir / "reports.json").read_text())
    owed["next_sequence"] = 2
    owed["last_acked"] = 0
    owed["queue"] = [
        {"sequence": 1, "observed_at": time.time(), "boot_id": "", "reason": "interval"}
    ]
    (cfg.state_dir / "reports.json").write_text(json.dumps(owed))

    async def again() -> None:
        async with RunningDaemon(cfg) as daemon:
            await wait_for(lambda: daemon.last is not None)
            assert daemon.last is not None
            assert daemon.last.result.verdict == "trusted"

    asyncio.run(again())
    # the owed report became 2, the start-up report 3: nothing recorded twice under one number
    assert hub.sequences(host_id) == [1, 2, 3]
    assert state.load_ledger().next_sequence == 4


def test_the_configured_hostname_is_what_the_hub_shows(
    tmp_path: Path, booted_tpm: Swtpm, hub: LoopbackHub
) -> None:
    # several agents on one machine (the demo) each report their own name, not the machine's
    host_id = _ek_host_id(booted_tpm)
    base = agent_config(tmp_path, booted_tpm, hub.url, hub.ca_file)
    cfg = replace(base, hub=replace(base.hub, hostname="host-7"))

    async def scenario() -> None:
        async with RunningDaemon(cfg) as daemon:
            await wait_for(lambda: daemon.last is not None)

    asyncio.run(scenario())
    host = hub.call(hub.state.store.get_host(host_id))
    assert host is not None
    assert host.hostname == "host-7"
