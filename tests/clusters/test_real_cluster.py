"""The cluster sync against a REAL Kubernetes API server, when ``TRUSTPLANE_KUBECONFIG`` names
a kubeconfig for one (kind, minikube, OpenShift...; its user needs nodes create/delete/get/list/
watch/patch, nodes/status patch and events list/create). Debian 12 packages no API server, so
without it these tests skip; the same story runs against the fake in test_sync.py.

The test creates its own Node objects (no kubelet behind them: the API server adds its
not-ready taint, which must stay untouched) and deletes them afterwards; it writes nothing only
the fake would accept (systemUUID goes through the status subresource).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from hub import cli as hub_cli
from tests.clusters.kube import (
    TAINT,
    ahead_clock,
    create_node,
    kubectl,
    node_events,
    node_json,
    our_labels,
    taints,
    wait_for,
)
from tests.clusters.test_sync import labelled, verdict
from tests.hub.conftest import ca_bundle, running_agent
from tests.hub.harness import Agent, HubProcess, make_state
from trustplane.swtpm import SwtpmFactory

KUBECONFIG = os.environ.get("TRUSTPLANE_KUBECONFIG", "")
OTHER_TAINT = {"key": "example.com/maintenance", "value": "yes", "effect": "NoSchedule"}


def foreign(node: dict[str, object]) -> list[dict[str, object]]:
    """Taints neither ours nor the node controllers' (``node.kubernetes.io/*`` come and go on
    a node without a kubelet)."""
    return [
        t
        for t in taints(node)  # type: ignore[arg-type]
        if t["key"] != TAINT and not str(t["key"]).startswith("node.kubernetes.io/")
    ]


pytestmark = pytest.mark.skipif(
    not KUBECONFIG,
    reason="no real Kubernetes API server: set TRUSTPLANE_KUBECONFIG to a kubeconfig file",
)


@pytest.fixture(scope="module")
def hub(
    tmp_path_factory: pytest.TempPathFactory, swtpm_factory: SwtpmFactory
) -> Iterator[HubProcess]:
    tmp = tmp_path_factory.mktemp("hub")
    bundle = ca_bundle(swtpm_factory, tmp / "ek-ca.pem")
    config = make_state(
        tmp, enrollment={"ek_ca_bundle": str(bundle)}, clusters={"resync_interval": 2}
    )
    process = HubProcess(config, ahead_clock())
    try:
        state_dir = str(config.state.dir)
        code = hub_cli.main(
            [
                "clusters",
                "add",
                "real",
                "--kubeconfig",
                KUBECONFIG,
                "--config",
                f"{state_dir}/absent.toml",
                "--state-dir",
                state_dir,
            ]
        )
        assert code == 0
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def agent(
    hub: HubProcess, swtpm_factory: SwtpmFactory, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Agent]:
    yield from running_agent(
        hub, swtpm_factory, tmp_path_factory.mktemp("agent"), enroll="full", unique=True
    )


@pytest.fixture(scope="module")
def node(agent: Agent) -> Iterator[str]:
    kubeconfig = Path(KUBECONFIG)
    name = agent.names[1]
    create_node(
        kubeconfig,
        name,
        agent.names[2],
        labels={"trustplane-test": str(uuid.uuid4())[:8]},
        taints=[OTHER_TAINT],
    )
    try:
        yield name
    finally:
        kubectl(kubeconfig, "delete", "node", name, "--wait=false")


def test_trust_lost_and_restored_on_a_real_cluster(
    hub: HubProcess, agent: Agent, node: str
) -> None:
    kubeconfig = Path(KUBECONFIG)
    assert OTHER_TAINT in taints(node_json(kubeconfig, node))
    assert verdict(agent, hub) == "trusted"
    wait_for("trusted=true", lambda: labelled(kubeconfig, node, "true"), 60)
    assert verdict(agent, hub, tamper=True) == "untrusted"

    def lost() -> dict[str, object] | None:
        current = labelled(kubeconfig, node, "false")
        if current is None or TAINT not in {t["key"] for t in taints(current)}:  # type: ignore[arg-type]
            return None
        return current if node_events(kubeconfig, node) else None

    current = wait_for("trusted=false, taint, Event", lost, 60)
    assert our_labels(current) == {"trustplane.node-restriction.kubernetes.io/trusted": "false"}
    assert foreign(current) == [OTHER_TAINT]
    assert [e["reason"] for e in node_events(kubeconfig, node)] == ["TrustLost"]
    assert verdict(agent, hub) == "trusted"

    def restored() -> dict[str, object] | None:
        current = labelled(kubeconfig, node, "true")
        if current is None or TAINT in {t["key"] for t in taints(current)}:  # type: ignore[arg-type]
            return None
        return current

    current = wait_for("the taint removed", restored, 60)
    assert foreign(current) == [OTHER_TAINT]
    wait_for("TrustRestored", lambda: True if len(node_events(kubeconfig, node)) == 2 else None, 60)
