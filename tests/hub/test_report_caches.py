"""The report path's caches never serve stale or foreign data: flavor documents (cached by the
store, invalidated by its own writes and by other connections' commits), flavor verdicts (keyed
by content revision) and AKs (keyed by host). Real hub, real swtpm agents."""

from __future__ import annotations

import asyncio
import copy
import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hub.store import Store
from tests.hub.conftest import LOG, ca_bundle, running_agent
from tests.hub.harness import Agent, FakeClock, HubProcess, make_state
from tests.hub.test_flavors import platform_flavor
from trustcore.quote import AttestationKey
from trustcore.wire import EventLogEvidence, ReportResult
from trustplane.swtpm import SwtpmFactory

FLAVOR = "cache.platform"
# the platform part is any-of: a mismatching PCR 0 also leaves no platform flavor matched
MISMATCH = ("untrusted", ("flavor.none_matched", "flavor.platform.pcr_mismatch"))


@pytest.fixture(scope="module")
def hub(
    tmp_path_factory: pytest.TempPathFactory, swtpm_factory: SwtpmFactory
) -> Iterator[HubProcess]:
    tmp = tmp_path_factory.mktemp("cache-hub")
    bundle = ca_bundle(swtpm_factory, tmp / "ek-ca.pem")
    config = make_state(
        tmp, enrollment={"ek_ca_bundle": str(bundle)}, attestation={"require_flavor": True}
    )
    process = HubProcess(config, FakeClock())
    try:
        yield process
    finally:
        process.stop()


def _booted(hub: HubProcess, factory: SwtpmFactory, workdir: Path) -> Iterator[Agent]:
    yield from running_agent(hub, factory, workdir, booted=True, unique=True)


@pytest.fixture(scope="module")
def booted(
    hub: HubProcess, swtpm_factory: SwtpmFactory, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Agent]:
    yield from _booted(hub, swtpm_factory, tmp_path_factory.mktemp("booted-a"))


@pytest.fixture(scope="module")
def other(
    hub: HubProcess, swtpm_factory: SwtpmFactory, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Agent]:
    yield from _booted(hub, swtpm_factory, tmp_path_factory.mktemp("booted-b"))


def report(hub: HubProcess, agent: Agent, **kw: Any) -> ReportResult:
    data = LOG.read_bytes()
    logs = {"uefi": EventLogEvidence(hashlib.sha256(data).digest(), data)}
    resp = agent.attest(hub, eventlogs=logs, **kw)
    assert resp.status == 200, resp.body
    return ReportResult.from_json(resp.body)


def wrong_pcr0(doc: dict[str, Any]) -> dict[str, Any]:
    changed = copy.deepcopy(doc)
    next(p for p in changed["pcrs"] if p["index"] == 0)["value"] = "00" * 32
    return changed


def put(hub: HubProcess, doc: dict[str, Any]) -> None:
    hub.call(hub.state.store.put_flavor(FLAVOR, {**doc, "id": FLAVOR}, hub.clock()))


def assign(hub: HubProcess, agent: Agent, names: list[str]) -> None:
    admin = hub.client(token=hub.token("admin"))
    resp = admin.request("PUT", f"/v1/hosts/{agent.host_id}/flavors", {"flavors": names})
    assert resp.status == 200, resp.body


def test_identical_evidence_reuses_the_verdict(hub: HubProcess, booted: Agent) -> None:
    put(hub, platform_flavor())
    assign(hub, booted, [FLAVOR])
    assert report(hub, booted).verdict == "trusted"
    cached = len(hub.state.verifier.verdicts)
    assert cached >= 1
    assert report(hub, booted).verdict == "trusted"
    assert len(hub.state.verifier.verdicts) == cached


def test_a_flavor_changed_with_put_flavor_changes_the_verdict(
    hub: HubProcess, booted: Agent
) -> None:
    doc = platform_flavor()
    put(hub, doc)
    assign(hub, booted, [FLAVOR])
    assert report(hub, booted).verdict == "trusted"
    put(hub, wrong_pcr0(doc))
    res = report(hub, booted)
    assert (res.verdict, res.reasons) == MISMATCH
    put(hub, doc)
    assert (report(hub, booted).verdict, report(hub, booted).reasons) == ("trusted", ())


def test_a_flavor_changed_by_another_connection_changes_the_verdict(
    hub: HubProcess, booted: Agent
) -> None:
    """The CLI writes the database from its own process while the hub runs."""
    doc = platform_flavor()
    put(hub, doc)
    assign(hub, booted, [FLAVOR])
    assert report(hub, booted).verdict == "trusted"

    async def cli_put(document: dict[str, Any]) -> None:
        cli = await Store.open(hub.config.state.dir / "hub.db")
        try:
            await cli.put_flavor(FLAVOR, {**document, "id": FLAVOR}, 5.0)
        finally:
            await cli.close()

    asyncio.run(cli_put(wrong_pcr0(doc)))
    res = report(hub, booted)
    assert (res.verdict, res.reasons) == MISMATCH
    asyncio.run(cli_put(doc))
    assert report(hub, booted).verdict == "trusted"


def test_unassigned_or_deleted_flavor_is_not_used_from_the_cache(
    hub: HubProcess, booted: Agent
) -> None:
    put(hub, platform_flavor())
    assign(hub, booted, [FLAVOR])
    assert report(hub, booted).verdict == "trusted"
    assign(hub, booted, [])
    res = report(hub, booted)
    assert (res.verdict, res.reasons) == ("untrusted", ("flavor.none_assigned",))
    assign(hub, booted, [FLAVOR])
    assert report(hub, booted).verdict == "trusted"
    assert hub.call(hub.state.store.delete_flavor(FLAVOR)) is True
    res = report(hub, booted)  # the host still names it; a deleted flavor is left out
    assert (res.verdict, res.reasons) == ("untrusted", ("flavor.none_assigned",))


def test_the_ak_cache_never_serves_another_hosts_key(
    hub: HubProcess, booted: Agent, other: Agent
) -> None:
    put(hub, platform_flavor())
    assign(hub, booted, [FLAVOR])
    assign(hub, other, [FLAVOR])
    assert (report(hub, booted).reasons, report(hub, other).reasons) == ((), ())
    aks = hub.state.verifier.aks
    for agent in (booted, other):
        host = hub.call(hub.state.store.get_host(agent.host_id))
        assert host is not None
        cached = aks.get(f"{agent.host_id}:{host.cert_serial or ''}")
        assert cached is not None
        assert cached.name == AttestationKey.from_tpmt_public(agent.ak.public).name
    assert booted.ak.public != other.ak.public
    # both AKs cached: a report for one host quoted by the other host's AK (over the same PCR
    # values) is refused
    nonce = other.challenge(hub)
    own_id = booted.host_id
    booted.host_id = other.host_id
    try:
        forged = booted.build_report(nonce)
    finally:
        booted.host_id = own_id
    resp = other.send(hub, forged)
    assert resp.status == 200, resp.body
    res = ReportResult.from_json(resp.body)
    assert (res.verdict, res.reasons) == ("untrusted", ("quote.signature_invalid",))
