"""A restarted hub converges without repeating Events, and only the lease holder syncs: a real
hub (tests/hub/harness.py) and a real swtpm-backed agent against a FAKE Kubernetes API server
(tests/kubefake; Debian 12 packages no API server, so a faithful fake stands in; see
test_real_cluster.py for a real one)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest

from hub import cli as hub_cli
from hub.clusters import CLUSTER_SYNC, LEASE
from tests.clusters.kube import (
    TAINT,
    FakeCluster,
    ahead_clock,
    create_node,
    node_events,
    node_json,
    taints,
    wait_for,
)
from tests.clusters.test_sync import labelled, verdict
from tests.hub.conftest import ca_bundle, running_agent
from tests.hub.harness import HubProcess, make_state
from trustplane.swtpm import SwtpmFactory


@pytest.fixture
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeCluster]:
    fake = FakeCluster(tmp_path_factory.mktemp("kube"), "restart")
    try:
        yield fake
    finally:
        fake.stop()


def test_restarted_hub_converges_without_duplicate_events(
    tmp_path_factory: pytest.TempPathFactory, swtpm_factory: SwtpmFactory, cluster: FakeCluster
) -> None:
    tmp = tmp_path_factory.mktemp("hub")
    bundle = ca_bundle(swtpm_factory, tmp / "ek-ca.pem")
    config = make_state(
        tmp, enrollment={"ek_ca_bundle": str(bundle)}, clusters={"resync_interval": 1.0}
    )
    clock = ahead_clock()
    first = HubProcess(config, clock)
    state_dir = str(config.state.dir)
    agents = running_agent(first, swtpm_factory, tmp / "agent", enroll="full", unique=True)
    agent = next(agents)
    running = [first]
    try:
        node = agent.names[1]
        create_node(cluster.kubeconfig, node, agent.names[2])
        args = ["--config", f"{state_dir}/absent.toml", "--state-dir", state_dir]
        assert (
            hub_cli.main(
                ["clusters", "add", "restart", "--kubeconfig", str(cluster.kubeconfig), *args]
            )
            == 0
        )
        assert verdict(agent, first, tamper=True) == "untrusted"
        wait_for("TrustLost", lambda: node_events(cluster.kubeconfig, node) or None)
        first.stop()
        running.remove(first)

        second = HubProcess(config, clock)
        try:
            worker = wait_for(
                "the new hub's worker", lambda: second.app[CLUSTER_SYNC].workers.get("restart")
            )
            wait_for("two full reconciles", lambda: True if worker.full_reconciles >= 2 else None)
            holder = second.call(second.state.store.lease_holder(LEASE, clock()))
            assert holder is not None
            [lost] = node_events(cluster.kubeconfig, node)
            assert lost["reason"] == "TrustLost"
            current = node_json(cluster.kubeconfig, node)
            assert TAINT in {t["key"] for t in taints(current)}
            assert labelled(cluster.kubeconfig, node, "false") is not None
            # (the agent's mTLS works against the new hub: same state directory)
            assert verdict(agent, second) == "trusted"
            wait_for("trusted", lambda: labelled(cluster.kubeconfig, node, "true"))
            wait_for(
                "TrustRestored",
                lambda: True if len(node_events(cluster.kubeconfig, node)) == 2 else None,
            )
            reasons = [e["reason"] for e in node_events(cluster.kubeconfig, node)]
            assert reasons == ["TrustLost", "TrustRestored"]
        finally:
            second.stop()
    finally:
        agents.close()
        for hub in running:
            hub.stop()


def test_only_the_lease_holder_syncs_and_another_hub_takes_over(
    tmp_path_factory: pytest.TempPathFactory, swtpm_factory: SwtpmFactory, cluster: FakeCluster
) -> None:
    tmp = tmp_path_factory.mktemp("hubs")
    bundle = ca_bundle(swtpm_factory, tmp / "ek-ca.pem")
    config = make_state(
        tmp, enrollment={"ek_ca_bundle": str(bundle)}, clusters={"resync_interval": 1.0}
    )
    config = replace(config, state=replace(config.state, lease_ttl=1.5))
    clock = ahead_clock()
    hubs = [HubProcess(config, clock), HubProcess(config, clock)]
    state_dir = str(config.state.dir)
    args = ["--config", f"{state_dir}/absent.toml", "--state-dir", state_dir]
    assert (
        hub_cli.main(["clusters", "add", "restart", "--kubeconfig", str(cluster.kubeconfig), *args])
        == 0
    )
    stopped: list[HubProcess] = []
    try:

        def syncing() -> list[HubProcess] | None:
            active = [h for h in hubs if "restart" in h.app[CLUSTER_SYNC].workers]
            return active if active else None

        [leader] = wait_for("one hub syncing", syncing)
        [other] = [h for h in hubs if h is not leader]
        holder = leader.call(leader.state.store.lease_holder(LEASE, clock()))
        assert holder is not None
        wait_for(
            "a full reconcile",
            lambda: True if leader.app[CLUSTER_SYNC].workers["restart"].full_reconciles else None,
        )
        assert other.app[CLUSTER_SYNC].workers == {}  # (it follows the bus but does not sync)
        leader.stop()
        stopped.append(leader)
        worker = wait_for(
            "the other hub taking over", lambda: other.app[CLUSTER_SYNC].workers.get("restart")
        )
        wait_for("its full reconcile", lambda: True if worker.full_reconciles else None)
        assert other.call(other.state.store.lease_holder(LEASE, clock())) not in (None, holder)
    finally:
        for h in hubs:
            if h not in stopped:
                h.stop()
