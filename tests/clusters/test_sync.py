"""The cluster sync end to end: a real hub (tests/hub/harness.py) with real swtpm-backed agents
whose verdicts come from real reports, and Kubernetes API servers that are FAKES
(tests/kubefake: Debian 12 packages no Kubernetes API server and none can be installed on these
machines, so a faithful fake of the parts used stands in; test_real_cluster.py runs the same
story against a real cluster when TRUSTPLANE_KUBECONFIG names one). What the hub wrote is read
back with the real ``kubectl``, independent of the hub's own client.

No timing is asserted (speed is bench/clusters.py's business, where verdict-to-label p99 is
measured); each wait is bounded only so a broken sync cannot hang the run.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from hub import cli as hub_cli
from hub.attestation import sweep_stale
from hub.clusters import CLUSTER_SYNC
from hub.jws import verify_jws
from tests.clusters.kube import (
    TAINT,
    FakeCluster,
    P,
    ahead_clock,
    create_node,
    kubectl,
    node_events,
    node_json,
    our_labels,
    taints,
    wait_for,
)
from tests.hub.conftest import ca_bundle, running_agent
from tests.hub.harness import Agent, HubProcess, make_state
from trustplane.swtpm import SwtpmFactory

OTHER_TAINT = {"key": "example.com/maintenance", "value": "yes", "effect": "NoSchedule"}
# what the API server adds to a Node created without a kubelet (as a real one does)
NOT_READY = {"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}
OTHER_LABELS = {"team": "payments", "topology.kubernetes.io/zone": "z1"}


@pytest.fixture(scope="module")
def hub(
    tmp_path_factory: pytest.TempPathFactory, swtpm_factory: SwtpmFactory
) -> Iterator[HubProcess]:
    tmp = tmp_path_factory.mktemp("hub")
    bundle = ca_bundle(swtpm_factory, tmp / "ek-ca.pem")
    config = make_state(
        tmp,
        enrollment={"ek_ca_bundle": str(bundle)},
        # full resyncs only when a test runs one: what happens at once must not depend on them
        clusters={"resync_interval": 600, "request_timeout": 3},
    )
    process = HubProcess(config, ahead_clock())
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, hub: HubProcess) -> Iterator[FakeCluster]:
    fake = FakeCluster(tmp_path_factory.mktemp("kube-a"), "alpha")
    try:
        register(hub, fake)
        yield fake
    finally:
        fake.stop()


def register(hub: HubProcess, fake: FakeCluster) -> None:
    code = hub_cli.main(
        [
            "clusters",
            "add",
            fake.name,
            "--kubeconfig",
            str(fake.kubeconfig),
            "--config",
            str(hub.config.state.dir / "absent.toml"),
            "--state-dir",
            str(hub.config.state.dir),
        ]
    )
    assert code == 0


def new_agent(
    hub: HubProcess, factory: SwtpmFactory, tmp: pytest.TempPathFactory, name: str
) -> Iterator[Agent]:
    yield from running_agent(hub, factory, tmp.mktemp(name), enroll="full", unique=True)


@pytest.fixture(scope="module")
def host_a(
    hub: HubProcess, swtpm_factory: SwtpmFactory, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Agent]:
    yield from new_agent(hub, swtpm_factory, tmp_path_factory, "a")


@pytest.fixture(scope="module")
def host_b(
    hub: HubProcess, swtpm_factory: SwtpmFactory, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Agent]:
    yield from new_agent(hub, swtpm_factory, tmp_path_factory, "b")


@pytest.fixture(scope="module")
def host_c(
    hub: HubProcess, swtpm_factory: SwtpmFactory, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Agent]:
    yield from new_agent(hub, swtpm_factory, tmp_path_factory, "c")


def verdict(agent: Agent, hub: HubProcess, *, tamper: bool = False) -> str:
    resp = agent.attest(hub, tamper_values=tamper)
    assert resp.status == 200, resp.body
    return str(resp.body["verdict"])


def labelled(kubeconfig: Path, node: str, trusted: str) -> dict[str, object] | None:
    current = node_json(kubeconfig, node)
    return current if our_labels(current).get(P + "trusted") == trusted else None


def test_trusted_host_gets_labels_and_a_signed_report_and_nothing_else_changes(
    hub: HubProcess, cluster: FakeCluster, host_a: Agent
) -> None:
    node = host_a.names[1]
    create_node(
        cluster.kubeconfig, node, host_a.names[2], labels=OTHER_LABELS, taints=[OTHER_TAINT]
    )
    assert verdict(host_a, hub) == "trusted"
    current = wait_for("trusted=true", lambda: labelled(cluster.kubeconfig, node, "true"))
    valid_until = int(hub.clock() + hub.config.attestation.report_validity)
    assert our_labels(current) == {P + "trusted": "true", P + "valid-until": str(valid_until)}
    labels = current["metadata"]["labels"]  # type: ignore[index]
    assert {k: labels[k] for k in OTHER_LABELS} == OTHER_LABELS
    assert TAINT not in {t["key"] for t in taints(current)}  # type: ignore[arg-type]
    assert OTHER_TAINT in taints(current)  # type: ignore[arg-type]
    report = current["metadata"]["annotations"][P + "trust-report"]  # type: ignore[index]
    payload = verify_jws(report, hub.state.keys.jws_key.public_key())
    assert (payload["host_id"], payload["node_name"], payload["verdict"]) == (
        host_a.host_id,
        node,
        "trusted",
    )
    assert payload["cluster"] == "alpha"
    managed = node_json(cluster.kubeconfig, node, managed_fields=True)["metadata"]["managedFields"]
    ours = [m for m in managed if m["manager"] == "trustplane-hub"]
    # labels and annotation by server-side apply; the taint (set while the host was still
    # pending, removed when it turned trusted) by a guarded update of spec.taints only
    applied = [m for m in ours if m["operation"] == "Apply"]
    assert len(applied) == 1
    for update in (m for m in ours if m["operation"] != "Apply"):
        assert update["operation"] == "Update"
        assert set(update["fieldsV1"]) <= {"f:spec"}
    owned = applied[0]["fieldsV1"]["f:metadata"]
    assert set(owned["f:labels"]) == {f"f:{P}trusted", f"f:{P}valid-until"}
    assert set(owned["f:annotations"]) == {f"f:{P}trust-report"}
    assert node_events(cluster.kubeconfig, node) == []  # first seen trusted: nothing to tell


def test_trust_lost_taints_and_tells_then_restored_removes_only_our_taint(
    hub: HubProcess, cluster: FakeCluster, host_a: Agent
) -> None:
    node = host_a.names[1]
    wait_for("trusted=true", lambda: labelled(cluster.kubeconfig, node, "true"))
    assert verdict(host_a, hub, tamper=True) == "untrusted"

    def tainted() -> dict[str, object] | None:
        current = labelled(cluster.kubeconfig, node, "false")
        if current is None or not node_events(cluster.kubeconfig, node):
            return None
        return current if TAINT in {t["key"] for t in taints(current)} else None  # type: ignore[arg-type]

    current = wait_for("trusted=false, the taint and an Event", tainted)
    assert our_labels(current) == {P + "trusted": "false"}
    assert taints(current) == [  # type: ignore[arg-type]
        OTHER_TAINT,
        NOT_READY,
        {"key": TAINT, "value": "true", "effect": "NoExecute"},
    ]
    [lost] = node_events(cluster.kubeconfig, node)
    assert (lost["reason"], lost["type"]) == ("TrustLost", "Warning")
    assert "quote.pcr_digest_mismatch" in lost["message"]
    assert lost["involvedObject"]["kind"] == "Node"
    assert lost["involvedObject"]["uid"] == current["metadata"]["uid"]  # type: ignore[index]

    assert verdict(host_a, hub) == "trusted"

    def restored() -> dict[str, object] | None:
        current = labelled(cluster.kubeconfig, node, "true")
        if current is None or TAINT in {t["key"] for t in taints(current)}:  # type: ignore[arg-type]
            return None
        return current if len(node_events(cluster.kubeconfig, node)) == 2 else None

    current = wait_for("the taint removed and TrustRestored", restored)
    assert taints(current) == [OTHER_TAINT, NOT_READY]  # type: ignore[arg-type]
    labels = current["metadata"]["labels"]  # type: ignore[index]
    assert {k: labels[k] for k in OTHER_LABELS} == OTHER_LABELS
    reasons = [(e["reason"], e["type"]) for e in node_events(cluster.kubeconfig, node)]
    assert reasons == [("TrustLost", "Warning"), ("TrustRestored", "Normal")]


def test_a_409_on_the_node_is_retried(hub: HubProcess, cluster: FakeCluster, host_a: Agent) -> None:
    node = host_a.names[1]
    wait_for("trusted=true", lambda: labelled(cluster.kubeconfig, node, "true"))
    before = hub.app[CLUSTER_SYNC].counters.conflicts
    cluster.fail_next_write(node, 409)
    assert verdict(host_a, hub, tamper=True) == "untrusted"

    def tainted() -> dict[str, object] | None:
        current = labelled(cluster.kubeconfig, node, "false")
        if current is None:
            return None
        return current if TAINT in {t["key"] for t in taints(current)} else None  # type: ignore[arg-type]

    wait_for("the taint after a 409", tainted)
    assert hub.app[CLUSTER_SYNC].counters.conflicts == before + 1
    assert verdict(host_a, hub) == "trusted"
    wait_for("trusted again", lambda: labelled(cluster.kubeconfig, node, "true"))


def test_someone_removing_our_taint_gets_it_back(
    hub: HubProcess, cluster: FakeCluster, host_a: Agent
) -> None:
    node = host_a.names[1]
    assert verdict(host_a, hub, tamper=True) == "untrusted"

    def has_taint() -> bool | None:
        current = node_json(cluster.kubeconfig, node)
        return True if TAINT in {t["key"] for t in taints(current)} else None

    wait_for("the taint", has_taint)
    counters = hub.app[CLUSTER_SYNC].counters
    patches = counters.taint_patches
    out = kubectl(cluster.kubeconfig, "taint", "node", node, f"{TAINT}:NoExecute-")
    assert out.strip() == f"node/{node} untainted"  # gone (the watch repairs it at once)
    wait_for("the taint put back", lambda: True if counters.taint_patches > patches else None)
    wait_for("the taint on the node", has_taint)
    assert OTHER_TAINT in taints(node_json(cluster.kubeconfig, node))
    assert verdict(host_a, hub) == "trusted"
    wait_for("trusted again", lambda: labelled(cluster.kubeconfig, node, "true"))


def test_a_node_that_joins_later_is_labelled(
    hub: HubProcess, cluster: FakeCluster, host_b: Agent
) -> None:
    assert verdict(host_b, hub) == "trusted"
    node = host_b.names[1]
    create_node(cluster.kubeconfig, node, host_b.names[2].upper())  # UUID case does not matter
    current = wait_for(
        "the joining node labelled", lambda: labelled(cluster.kubeconfig, node, "true")
    )
    assert TAINT not in {t["key"] for t in taints(current)}  # type: ignore[arg-type]


def test_stale_host_is_tainted_with_trust_stale(
    hub: HubProcess, cluster: FakeCluster, host_b: Agent
) -> None:
    node = host_b.names[1]
    wait_for("trusted", lambda: labelled(cluster.kubeconfig, node, "true"))
    hub.clock.advance(hub.config.attestation.report_validity + 1)
    try:
        hub.call(sweep_stale(hub.state))

        def stale() -> list[dict[str, object]] | None:
            events = node_events(cluster.kubeconfig, node)
            return events if events and labelled(cluster.kubeconfig, node, "false") else None

        [event] = wait_for("TrustStale", stale)
        assert (event["reason"], event["type"]) == ("TrustStale", "Warning")
        assert "report.expired" in str(event["message"])
        current = node_json(cluster.kubeconfig, node)
        assert TAINT in {t["key"] for t in taints(current)}
    finally:
        assert verdict(host_b, hub) == "trusted"
        # back: certificates the hub issues later must be valid by the real clock (TLS)
        hub.clock.advance(-(hub.config.attestation.report_validity + 1))
    wait_for("trusted again", lambda: labelled(cluster.kubeconfig, node, "true"))


def test_uuid_mismatch_alerts_once_and_labels_nothing(
    hub: HubProcess, cluster: FakeCluster, host_c: Agent
) -> None:
    node = host_c.names[1]
    create_node(cluster.kubeconfig, node, "00000000-0000-0000-0000-0000000000aa")
    assert verdict(host_c, hub) == "trusted"

    def alerted() -> list[object] | None:
        found = [
            a
            for a in hub.call(hub.state.store.list_alerts())
            if a.host_id == host_c.host_id and a.kind == "cluster.node_uuid_mismatch"
        ]
        return found or None

    [alert] = wait_for("the mismatch alert", alerted)
    assert alert.reasons == (  # type: ignore[attr-defined]
        "cluster:alpha",
        f"node:{node}",
        "node_uuid:00000000-0000-0000-0000-0000000000aa",
        f"attested_uuid:{host_c.names[2]}",
    )

    def unmatched_tainted() -> dict[str, object] | None:
        current = node_json(cluster.kubeconfig, node)
        return current if TAINT in {t["key"] for t in taints(current)} else None

    current = wait_for("the taint on the unmatched node", unmatched_tainted)
    assert our_labels(current) == {}
    assert P + "trust-report" not in (current["metadata"].get("annotations") or {})
    # more reconciles (a verdict change, full resyncs) raise no second alert
    assert verdict(host_c, hub, tamper=True) == "untrusted"
    assert verdict(host_c, hub) == "trusted"
    worker = hub.app[CLUSTER_SYNC].workers["alpha"]
    for _ in range(2):  # two full reconciles
        hub.call(worker.full_reconcile(relist=False))
    assert len(alerted() or []) == 1
    assert our_labels(node_json(cluster.kubeconfig, node)) == {}


def test_api_page_and_metrics_show_the_cluster_never_its_kubeconfig(
    hub: HubProcess, cluster: FakeCluster, host_a: Agent, host_b: Agent, host_c: Agent
) -> None:
    token = hub.token("viewer", "clusters-viewer")
    client = hub.client(token=token)

    def synced() -> dict[str, object] | None:
        body = client.get("/v1/clusters").body
        [entry] = body["clusters"]
        return entry if entry["connected"] and entry["last_sync"] else None

    entry = wait_for("a synced cluster", synced)
    assert (entry["name"], entry["source"], entry["context"]) == ("alpha", "kubeconfig", "kubefake")
    assert entry["nodes"] == 3  # host_a's, host_b's and host_c's nodes
    assert entry["nodes_matched"] == 2  # host_c's node has another system UUID
    assert entry["last_error"] is None
    page = client.request("GET", "/clusters")
    assert page.status == 200
    html = page.body.decode() if isinstance(page.body, bytes) else str(page.body)
    assert "<code>alpha</code>" in html
    listed = str(client.get("/v1/clusters").body)
    for secret in (
        str(cluster.api.admin_cert.key),
        str(cluster.api.admin_cert.cert),
        "kubefake-cert",
    ):
        assert secret in cluster.kubeconfig.read_text()
        assert secret not in listed
        assert secret not in html
    wait_for(
        "the cluster's metrics",
        lambda: (
            True
            if 'trustplane_hub_cluster_connected{cluster="alpha"} 1.0' in _metrics(hub, token)
            else None
        ),
    )
    wait_for(
        "the matched nodes in the metrics",
        lambda: (
            True
            if 'trustplane_hub_cluster_nodes_matched{cluster="alpha"} 2.0' in _metrics(hub, token)
            else None
        ),
    )
    text = _metrics(hub, token)
    events = sum(len(node_events(cluster.kubeconfig, h.names[1])) for h in (host_a, host_b, host_c))
    assert events >= 2
    assert f"trustplane_hub_cluster_events_total {float(events)}" in text
    # (the hub's clock stands still in these tests: every delay is observed as 0 s)
    [count] = [
        float(line.split()[-1])
        for line in text.splitlines()
        if line.startswith("trustplane_hub_cluster_verdict_to_label_seconds_count")
    ]
    assert count >= 8  # the verdict changes of host_a, host_b and host_c so far
    assert f'trustplane_hub_cluster_verdict_to_label_seconds_bucket{{le="0.01"}} {count}' in text


def _metrics(hub: HubProcess, token: str) -> str:
    body = hub.client(token=token).get("/metrics").body
    return body.decode() if isinstance(body, bytes) else str(body)


def test_two_clusters_one_down_never_delays_the_other(
    hub: HubProcess,
    cluster: FakeCluster,
    host_a: Agent,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    second = FakeCluster(tmp_path_factory.mktemp("kube-b"), "beta", user="token")
    try:
        node = host_a.names[1]
        assert verdict(host_a, hub) == "trusted"  # (the stale test's sweep made it stale)
        create_node(second.kubeconfig, node, host_a.names[2])
        register(hub, second)
        wait_for("beta labelled", lambda: labelled(second.kubeconfig, node, "true"))
        second.go_down()
        assert verdict(host_a, hub, tamper=True) == "untrusted"
        wait_for("alpha follows", lambda: labelled(cluster.kubeconfig, node, "false"))
        token = hub.token("viewer", "two-clusters")

        def beta_down() -> dict[str, object] | None:
            for entry in hub.client(token=token).get("/v1/clusters").body["clusters"]:
                error = str(entry["last_error"])
                # (first the open watch breaks, then reconnecting is refused)
                if entry["name"] == "beta" and not entry["connected"] and "reach" in error:
                    return entry
            return None

        down = wait_for("beta reported down", beta_down)
        assert "cannot reach the API server" in str(down["last_error"])
        second.come_up()
        wait_for("beta converges", lambda: labelled(second.kubeconfig, node, "false"), 60)
        assert verdict(host_a, hub) == "trusted"
        wait_for("alpha trusted", lambda: labelled(cluster.kubeconfig, node, "true"))
        wait_for("beta trusted", lambda: labelled(second.kubeconfig, node, "true"))
        # slow: every answer of beta takes longer than clusters.request_timeout (3 s)
        second.loop.call_soon_threadsafe(setattr, second.api.faults, "latency", 5.0)
        errors = hub.app[CLUSTER_SYNC].counters.errors
        assert verdict(host_a, hub, tamper=True) == "untrusted"
        wait_for(
            "alpha follows beside a slow beta", lambda: labelled(cluster.kubeconfig, node, "false")
        )
        wait_for(
            "beta's timeout counted",
            lambda: True if hub.app[CLUSTER_SYNC].counters.errors > errors else None,
        )
        second.loop.call_soon_threadsafe(setattr, second.api.faults, "latency", 0.0)
        wait_for("beta converges after", lambda: labelled(second.kubeconfig, node, "false"), 60)
        assert verdict(host_a, hub) == "trusted"
        wait_for("alpha trusted again", lambda: labelled(cluster.kubeconfig, node, "true"))
    finally:
        hub_cli.main(
            [
                "clusters",
                "remove",
                "beta",
                "--config",
                str(hub.config.state.dir / "absent.toml"),
                "--state-dir",
                str(hub.config.state.dir),
            ]
        )
        second.stop()


def test_a_deregistered_host_loses_our_labels_and_taint(
    hub: HubProcess, cluster: FakeCluster, host_b: Agent
) -> None:
    node = host_b.names[1]
    wait_for("trusted", lambda: labelled(cluster.kubeconfig, node, "true"))
    admin = hub.client(token=hub.token("admin", "revoker"))
    assert admin.post(f"/v1/hosts/{host_b.host_id}/revoke").status == 200

    def cleaned() -> dict[str, object] | None:
        current = node_json(cluster.kubeconfig, node)
        annotations = current["metadata"].get("annotations") or {}
        if our_labels(current) or P + "trust-report" in annotations:
            return None
        return current if TAINT not in {t["key"] for t in taints(current)} else None

    current = wait_for("the node cleaned", cleaned)
    assert current["metadata"]["name"] == node


def test_a_cluster_reached_through_an_exec_credential_plugin(
    hub: HubProcess, host_a: Agent, tmp_path_factory: pytest.TempPathFactory
) -> None:
    third = FakeCluster(tmp_path_factory.mktemp("kube-c"), "gamma", user="exec")
    try:
        assert "exec" in third.kubeconfig.read_text()
        node = host_a.names[1]
        create_node(third.kubeconfig, node, host_a.names[2])  # (kubectl runs the plugin too)
        assert verdict(host_a, hub) == "trusted"
        register(hub, third)
        wait_for("gamma labelled", lambda: labelled(third.kubeconfig, node, "true"))
    finally:
        hub_cli.main(
            [
                "clusters",
                "remove",
                "gamma",
                "--config",
                str(hub.config.state.dir / "absent.toml"),
                "--state-dir",
                str(hub.config.state.dir),
            ]
        )
        third.stop()
