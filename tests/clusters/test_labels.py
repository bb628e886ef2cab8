"""hub.clusters.labels, the sync's mapping of nodes to hosts, and hub.clusters.sealing: what a
node should carry, tags as labels, the taint list, the Event a change calls for, name and
attested-UUID matching (duplicates, revoked hosts, a hostile systemUUID), and kubeconfigs sealed
with the master key. Pure functions and real AES-GCM: no API server involved."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hub.clusters.errors import KubeconfigError
from hub.clusters.labels import (
    TAINT_KEY,
    asset_label,
    desired_for,
    event_for,
    taints_with,
)
from hub.clusters.nodeview import HostIndex
from hub.clusters.sealing import seal, unseal
from hub.clusters.settings import SyncCounters, SyncSettings
from hub.clusters.sync import ClusterWorker
from hub.config import ClustersConfig, ConfigError, load_config
from hub.store import Cluster, ClusterHost

P = "trustplane.node-restriction.kubernetes.io/"
STAMP = "2026-12-04T06:00:00Z"


def test_trusted_host_gets_trusted_valid_until_and_its_tags() -> None:
    d = desired_for("trusted", (), {"region": "EU", "rack": "r-7"}, 1764828000.9)
    assert d.labels == {
        P + "trusted": "true",
        P + "valid-until": "1764828000",
        P + "asset-rack": "r-7",
        P + "asset-region": "EU",
    }
    assert d.tainted is False
    assert d.state == "trusted"


@pytest.mark.parametrize(
    ("verdict", "state"),
    [("untrusted", "untrusted"), ("stale", "stale"), ("pending", "pending")],
)
def test_a_host_that_is_not_trusted_gets_false_and_the_taint_and_no_tags(
    verdict: str, state: str
) -> None:
    d = desired_for(verdict, ("pcr.mismatch",), {"region": "EU"}, 1764828000.0)
    assert d.labels == {P + "trusted": "false"}
    assert d.tainted is True
    assert (d.state, d.reasons) == (state, ("pcr.mismatch",))


def test_uuid_mismatch_means_no_labels_but_the_taint() -> None:
    d = desired_for("trusted", ("node_uuid:a",), {"region": "EU"}, 1.0, mismatch=True)
    assert (d.labels, d.tainted, d.state) == ({}, True, "mismatch")


def test_no_host_means_nothing_of_ours() -> None:
    d = desired_for(None, (), {}, None)
    assert (d.labels, d.tainted, d.state) == ({}, False, "none")


def test_tags_label_syntax_cannot_hold_are_left_out_and_counted() -> None:
    tags = {"ok": "v", "Upper": "v", "sp": "has space", "long": "x" * 64, "k" * 58: "v"}
    d = desired_for("trusted", (), tags, None)
    assert d.labels == {P + "trusted": "true", P + "asset-ok": "v", P + "asset-Upper": "v"}
    assert d.skipped_tags == 3  # "Upper" is a valid label name: mapped as is
    assert asset_label("Upper", "v") == (P + "asset-Upper", "v")
    assert asset_label("a", "") == (P + "asset-a", "")  # an empty value is a valid label value
    assert asset_label("a", "-x") is None
    assert asset_label("k" * 57, "v") is not None  # asset- + 57 = 63 characters
    assert asset_label("k" * 58, "v") is None


OTHER = {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}
OURS_NS = {"key": TAINT_KEY, "value": "true", "effect": "NoSchedule"}


def test_taint_added_after_the_others_and_removed_leaving_them() -> None:
    added = taints_with([OTHER], tainted=True, effect="NoExecute", now_rfc3339=STAMP)
    assert added == [
        OTHER,
        {"key": TAINT_KEY, "value": "true", "effect": "NoExecute", "timeAdded": STAMP},
    ]
    assert taints_with([OURS_NS, OTHER], tainted=False, effect="NoExecute", now_rfc3339=STAMP) == [
        OTHER
    ]
    assert taints_with([OTHER], tainted=False, effect="NoExecute", now_rfc3339=STAMP) is None
    assert (
        taints_with([OTHER, OURS_NS], tainted=True, effect="NoSchedule", now_rfc3339=STAMP) is None
    )
    changed = taints_with([OURS_NS, OTHER], tainted=True, effect="NoExecute", now_rfc3339=STAMP)
    assert changed == [
        OTHER,
        {"key": TAINT_KEY, "value": "true", "effect": "NoExecute", "timeAdded": STAMP},
    ]


@pytest.mark.parametrize(
    ("previous", "state", "event"),
    [
        ("", "trusted", None),
        ("", "untrusted", ("TrustLost", "Warning")),
        ("trusted", "untrusted", ("TrustLost", "Warning")),
        ("trusted", "stale", ("TrustStale", "Warning")),
        ("stale", "untrusted", ("TrustLost", "Warning")),
        ("untrusted", "trusted", ("TrustRestored", "Normal")),
        ("stale", "trusted", ("TrustRestored", "Normal")),
        ("trusted", "mismatch", ("TrustLost", "Warning")),
        ("untrusted", "untrusted", None),
        ("pending", "trusted", None),
        ("trusted", "pending", None),
    ],
)
def test_event_for_each_change(previous: str, state: str, event: tuple[str, str] | None) -> None:
    assert event_for(previous, state) == event


def test_sealed_kubeconfig_opens_only_with_its_key_and_cluster_name() -> None:
    key = os.urandom(32)
    text = b"apiVersion: v1\nkind: Config\n"
    sealed = seal(key, "prod", text)
    assert text not in sealed
    assert unseal(key, "prod", sealed) == text
    with pytest.raises(KubeconfigError) as wrong_key:
        unseal(os.urandom(32), "prod", sealed)
    assert wrong_key.value.reason == "cluster.kubeconfig_sealed"
    with pytest.raises(KubeconfigError) as other_cluster:
        unseal(key, "staging", sealed)
    assert other_cluster.value.reason == "cluster.kubeconfig_sealed"
    with pytest.raises(KubeconfigError):
        unseal(key, "prod", text)
    assert seal(key, "prod", text) != sealed  # a fresh nonce each time


def test_taint_effect_and_intervals_are_checked_when_the_config_is_loaded(tmp_path: Path) -> None:
    config = load_config(tmp_path / "absent.toml", overrides={"clusters": {"taint_effect": "none"}})
    assert config.clusters.taint_effect == "none"
    assert load_config(tmp_path / "absent.toml").clusters == ClustersConfig(
        sync=True, taint_effect="NoExecute", resync_interval=60.0, request_timeout=10.0
    )
    for key, value, problem in (
        ("taint_effect", "PreferNoSchedule", "expected one of NoExecute, NoSchedule, none"),
        ("resync_interval", 0, "must be greater than 0"),
        ("request_timeout", "10", "expected a number of seconds"),
        ("sync", 1, "expected true or false"),
    ):
        with pytest.raises(ConfigError) as refused:
            load_config(tmp_path / "absent.toml", overrides={"clusters": {key: value}})
        assert f"clusters.{key}" in str(refused.value)
        assert problem in str(refused.value)


def _host(host_id: str, node: str, dmi: str | None, verdict: str = "trusted") -> ClusterHost:
    return ClusterHost(host_id, "enrolled", node, dmi, verdict, (), {"region": "EU"}, 1000.0)


def _worker(hosts: list[ClusterHost]) -> ClusterWorker:
    """A worker that never connects: only its mapping of nodes to hosts is exercised."""
    worker = ClusterWorker(
        Cluster("c", None, None, 0.0),
        store=None,  # type: ignore[arg-type]
        connect=None,  # type: ignore[arg-type]
        settings=SyncSettings(),
        clock=lambda: 0.0,
        jws_key=None,  # type: ignore[arg-type]
        alert=None,  # type: ignore[arg-type]
        counters=SyncCounters(),
    )
    worker._index = HostIndex(hosts)
    return worker


def _node(name: str, system_uuid: str) -> dict[str, object]:
    return {"metadata": {"name": name}, "status": {"nodeInfo": {"systemUUID": system_uuid}}}


def test_node_mapping_by_name_and_attested_uuid() -> None:
    uuid = "4C4C4544-0042-3510-8052-B4C04F4A4E32"
    worker = _worker(
        [
            _host("a" * 64, "n1", uuid),
            _host("b" * 64, "n2", None),
            _host("c" * 64, "dup", uuid),
            _host("d" * 64, "dup", uuid),
            ClusterHost("e" * 64, "revoked", "gone", uuid, "trusted", (), {}, None),
        ]
    )
    desired, host, alert = worker._desired(_node("n1", uuid.lower()))
    assert (desired.state, desired.labels[P + "asset-region"], host.id, alert) == (  # type: ignore[union-attr]
        "trusted",
        "EU",
        "a" * 64,
        "",
    )
    desired, _, alert = worker._desired(_node("n2", uuid))
    assert (desired.state, desired.labels, desired.tainted, alert) == (
        "mismatch",
        {},
        True,
        "cluster.node_uuid_mismatch",
    )
    assert desired.reasons == (f"node_uuid:{uuid.lower()}", "attested_uuid:none")
    desired, _, alert = worker._desired(_node("dup", uuid))
    assert (desired.state, desired.labels, desired.tainted, alert) == (
        "mismatch",
        {},
        True,
        "cluster.node_ambiguous",
    )
    assert desired.reasons == ("c" * 64, "d" * 64)
    desired, host, alert = worker._desired(_node("gone", uuid))  # a revoked host maps to nothing
    assert (desired.state, desired.labels, desired.tainted, host, alert) == (
        "none",
        {},
        False,
        None,
        "",
    )
    # a kubelet-written systemUUID is reduced to UUID characters before it reaches reasons
    desired, _, _ = worker._desired(_node("n1", "X\n" * 20 + "ab-\u00e9"))
    assert desired.reasons[0] == "node_uuid:ab-"


def test_host_index_follows_a_host_to_another_node_and_away() -> None:
    index = HostIndex([_host("a" * 64, "n1", None)])
    assert [h.id for h in index.hosts("n1")] == ["a" * 64]
    index.put(_host("a" * 64, "n2", None))  # enrolled again under another node name
    assert (index.hosts("n1"), [h.id for h in index.hosts("n2")]) == ([], ["a" * 64])
    assert index.node_of("a" * 64) == "n2"
    index.put(ClusterHost("a" * 64, "revoked", "n2", None, "trusted", (), {}, None))
    assert (index.hosts("n2"), index.node_of("a" * 64)) == ([], None)
    index.put(_host("a" * 64, "n2", None))
    index.remove("a" * 64)
    assert (index.hosts("n2"), index.node_of("a" * 64)) == ([], None)
