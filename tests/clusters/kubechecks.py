"""Checks of Kubernetes API server behaviour, run against the fake (tests/kubefake) and, when
`TRUSTPLANE_KUBECONFIG` names one, a real cluster, with the real `kubectl` and with
kubernetes_asyncio.

Every expected value here comes from the Kubernetes API documentation and the API server's
documented wording (apimachinery validation messages, Status reasons, server-side apply
ownership rules), never from the fake's own output. The checks create their own Node objects
(named `kubefake-check-<random>-...`) and delete them; they touch nothing else except Events
they create in the `default` namespace about those nodes.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import functools
import json
import re
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes_asyncio import client, config, watch

KUBECTL = "kubectl"
NOT_READY = {"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}
# apimachinery/pkg/util/validation: the texts a real API server answers
QNAME_ERR = (
    "a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start "
    "and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', "
    "regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an "
    "optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
)
VALUE_TOO_LONG = "must be no more than 63 characters"
STALE = (
    'Operation cannot be fulfilled on nodes "{name}": the object has been modified; please '
    "apply your changes to the latest version and try again"
)


@dataclass(frozen=True)
class Kubectl:
    """The real kubectl with one kubeconfig."""

    kubeconfig: Path

    def run(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                KUBECTL,
                "--kubeconfig",
                str(self.kubeconfig),
                "--cache-dir",
                str(cache_dir()),
                "--request-timeout=30s",
                *args,
            ],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
        )

    def ok(self, *args: str, stdin: str | None = None) -> str:
        done = self.run(*args, stdin=stdin)
        assert done.returncode == 0, f"kubectl {' '.join(args)}: {done.stderr.strip()}"
        return done.stdout

    def fails(self, *args: str, stdin: str | None = None) -> str:
        done = self.run(*args, stdin=stdin)
        assert done.returncode != 0, f"kubectl {' '.join(args)} succeeded: {done.stdout}"
        return done.stderr

    def node(self, name: str) -> dict[str, Any]:
        # kubectl 1.21 began hiding managedFields (and added the flag to show them)
        shown = ["--show-managed-fields"] if self.minor() >= 21 else []
        out: dict[str, Any] = json.loads(self.ok("get", "node", name, "-o", "json", *shown))
        return out

    def minor(self) -> int:
        """kubectl's minor version (32 for this machine's 1.32, 20 for Debian 12's)."""
        return kubectl_minor()


@functools.cache
def cache_dir() -> Path:
    """kubectl's discovery cache for this test run (not ~/.kube/cache), removed at exit."""
    path = Path(tempfile.mkdtemp(prefix="kubectl-cache-"))
    atexit.register(shutil.rmtree, path, True)
    return path


@functools.cache
def kubectl_minor() -> int:
    done = subprocess.run(
        [KUBECTL, "version", "--client", "-o", "json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return int(re.sub(r"\D.*", "", json.loads(done.stdout)["clientVersion"]["minor"]))


def node_name(what: str) -> str:
    return f"kubefake-check-{uuid.uuid4().hex[:8]}-{what}"


@contextlib.contextmanager
def made_node(k: Kubectl, what: str, labels: dict[str, str] | None = None) -> Iterator[str]:
    """A Node created through the API (no kubelet), deleted afterwards."""
    name = node_name(what)
    body = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels or {}}}
    k.ok("create", "-f", "-", stdin=json.dumps(body))
    try:
        yield name
    finally:
        k.run("delete", "node", name, "--wait=false")
        k.run(
            "delete", "events", "-n", "default", "--field-selector", f"involvedObject.name={name}"
        )


def taints(node: dict[str, Any]) -> list[dict[str, str]]:
    return [
        {k: v for k, v in t.items() if k != "timeAdded"} for t in node["spec"].get("taints") or []
    ]


def managers(node: dict[str, Any]) -> dict[tuple[str, str], Any]:
    return {
        (e["manager"], e["operation"]): e.get("fieldsV1")
        for e in node["metadata"].get("managedFields") or []
        if not e.get("subresource")
    }


def labels_fields(*keys: str) -> dict[str, Any]:
    return {"f:metadata": {"f:labels": {f"f:{key}": {} for key in keys}}}


# ---- kubectl ---------------------------------------------------------------------------------


def check_get_nodes_json(k: Kubectl) -> None:
    """A node created through the API gets the not-ready taint from the API server; `kubectl
    get -o json` wraps items in a List; the table has NAME STATUS ROLES AGE VERSION."""
    with made_node(k, "get", {"node-role.kubernetes.io/worker": ""}) as name:
        listed = json.loads(
            k.ok("get", "nodes", "-o", "json", "--field-selector", f"metadata.name={name}")
        )
        assert listed["kind"] == "List"
        assert [i["metadata"]["name"] for i in listed["items"]] == [name]
        node = listed["items"][0]
        assert (node["kind"], node["apiVersion"]) == ("Node", "v1")
        assert NOT_READY in taints(node)
        assert re.fullmatch(r"[0-9a-f-]{36}", node["metadata"]["uid"])
        assert node["metadata"]["resourceVersion"].isdigit()
        table = k.ok("get", "node", name).splitlines()
        assert table[0].split() == ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]
        cells = table[1].split()
        assert cells[0] == name
        assert cells[1] in ("Unknown", "NotReady")  # no kubelet: no Ready condition, or Unknown
        assert cells[2] == "worker"


def check_label(k: Kubectl) -> None:
    """label, label without --overwrite (refused by kubectl), --overwrite, key- removal."""
    with made_node(k, "label", {"team": "a"}) as name:
        assert k.ok("label", "node", name, "tp.example/zone=z1").strip() == f"node/{name} labeled"
        assert k.node(name)["metadata"]["labels"] == {"team": "a", "tp.example/zone": "z1"}
        err = k.fails("label", "node", name, "tp.example/zone=z2")
        assert "'tp.example/zone' already has a value (z1), and --overwrite is false" in err
        k.ok("label", "node", name, "tp.example/zone=z2", "--overwrite")
        assert k.node(name)["metadata"]["labels"]["tp.example/zone"] == "z2"
        k.ok("label", "node", name, "tp.example/zone-")
        assert k.node(name)["metadata"]["labels"] == {"team": "a"}


def check_label_invalid(k: Kubectl) -> None:
    """The API server refuses label keys and values that are not label syntax (422)."""
    with made_node(k, "badlabel") as name:
        patch = {"metadata": {"labels": {"bad/key/x": "v", "ok": "v" * 64}}}
        err = k.fails("patch", "node", name, "--type", "merge", "-p", json.dumps(patch))
        assert f'The Node "{name}" is invalid' in err
        assert f'metadata.labels: Invalid value: "bad/key/x": {QNAME_ERR}' in err
        assert f'metadata.labels: Invalid value: "{"v" * 64}": {VALUE_TOO_LONG}' in err
        assert "bad/key/x" not in (k.node(name)["metadata"].get("labels") or {})


def check_taint(k: Kubectl) -> None:
    """taint adds to spec.taints, leaving the others; KEY:EFFECT- removes only that one."""
    with made_node(k, "taint") as name:
        k.ok("taint", "node", name, "tp.example/t=v:NoExecute")
        k.ok("taint", "node", name, "other.example/x:PreferNoSchedule")
        got = taints(k.node(name))
        assert {"key": "tp.example/t", "value": "v", "effect": "NoExecute"} in got
        assert {"key": "other.example/x", "effect": "PreferNoSchedule"} in got
        assert NOT_READY in got
        k.ok("taint", "node", name, "tp.example/t:NoExecute-")
        got = taints(k.node(name))
        assert [t for t in got if t["key"] == "tp.example/t"] == []
        assert {"key": "other.example/x", "effect": "PreferNoSchedule"} in got
        assert NOT_READY in got


def check_taint_invalid(k: Kubectl) -> None:
    """An unsupported taint effect is refused by the API server with its supported values."""
    with made_node(k, "badtaint") as name:
        patch = {"spec": {"taints": [{"key": "tp.example/t", "effect": "Sometimes"}]}}
        err = k.fails("patch", "node", name, "--type", "strategic", "-p", json.dumps(patch))
        assert (
            'spec.taints[0].effect: Unsupported value: "Sometimes": supported values: '
            '"NoSchedule", "PreferNoSchedule", "NoExecute"'
        ) in err


def check_cordon(k: Kubectl) -> None:
    with made_node(k, "cordon") as name:
        k.ok("cordon", name)
        assert k.node(name)["spec"]["unschedulable"] is True
        status = k.ok("get", "node", name, "--no-headers").split()[1]
        assert status in ("Unknown,SchedulingDisabled", "NotReady,SchedulingDisabled")
        k.ok("uncordon", name)
        assert "unschedulable" not in k.node(name)["spec"]


def _apply(k: Kubectl, name: str, manager: str, labels: dict[str, str], *extra: str) -> str:
    body = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels}}
    args = ["apply", "--server-side", f"--field-manager={manager}", *extra, "-f", "-"]
    return k.ok(*args, stdin=json.dumps(body))


def check_server_side_apply(k: Kubectl) -> None:
    """Ownership per manager, shared ownership of equal values, a conflict (409) on another
    manager's field, --force-conflicts taking it over, and removal of what a manager applied
    before and leaves out now (unless another manager owns it)."""
    with made_node(k, "ssa") as name:
        _apply(k, name, "tp-a", {"tp.example/a": "1", "tp.example/b": "2"})
        node = k.node(name)
        assert node["metadata"]["labels"] == {"tp.example/a": "1", "tp.example/b": "2"}
        assert managers(node)[("tp-a", "Apply")] == labels_fields("tp.example/a", "tp.example/b")
        # the same value: shared, no conflict
        _apply(k, name, "tp-c", {"tp.example/b": "2"})
        # another value: a conflict naming the owner and the field
        body = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": name, "labels": {"tp.example/a": "9"}},
        }
        err = k.fails(
            "apply", "--server-side", "--field-manager=tp-b", "-f", "-", stdin=json.dumps(body)
        )
        assert (
            'Apply failed with 1 conflict: conflict with "tp-a": .metadata.labels.tp.example/a'
            in err
        )
        assert k.node(name)["metadata"]["labels"]["tp.example/a"] == "1"
        _apply(k, name, "tp-b", {"tp.example/a": "9"}, "--force-conflicts")
        node = k.node(name)
        assert node["metadata"]["labels"] == {"tp.example/a": "9", "tp.example/b": "2"}
        assert managers(node)[("tp-a", "Apply")] == labels_fields("tp.example/b")
        assert managers(node)[("tp-b", "Apply")] == labels_fields("tp.example/a")
        # tp-a leaves b out: tp-c still owns it, so it stays
        _apply(k, name, "tp-a", {"tp.example/c": "3"})
        want = {"tp.example/a": "9", "tp.example/b": "2", "tp.example/c": "3"}
        assert k.node(name)["metadata"]["labels"] == want
        # tp-c leaves it out too: nobody owns it any more, it is removed
        _apply(k, name, "tp-c", {"tp.example/d": "4"})
        node = k.node(name)
        assert node["metadata"]["labels"] == {
            "tp.example/a": "9",
            "tp.example/c": "3",
            "tp.example/d": "4",
        }
        assert managers(node)[("tp-a", "Apply")] == labels_fields("tp.example/c")
        assert managers(node)[("tp-c", "Apply")] == labels_fields("tp.example/d")


def _csa(k: Kubectl, name: str, labels: dict[str, str]) -> None:
    body = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels}}
    k.ok("apply", "-f", "-", stdin=json.dumps(body))


def check_client_side_apply(k: Kubectl) -> None:
    """Client-side apply: the last-applied annotation, and a label dropped from the manifest is
    removed by the three-way merge; a label set by someone else stays."""
    name = node_name("csa")
    try:
        _csa(k, name, {"tp.example/x": "1", "tp.example/y": "2"})
        node = k.node(name)
        last = json.loads(
            node["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
        )
        assert last["metadata"]["labels"] == {"tp.example/x": "1", "tp.example/y": "2"}
        k.ok("label", "node", name, "other.example/z=3")
        _csa(k, name, {"tp.example/x": "1"})
        assert k.node(name)["metadata"]["labels"] == {"tp.example/x": "1", "other.example/z": "3"}
    finally:
        k.run("delete", "node", name, "--wait=false")


def check_client_then_server_side_apply(k: Kubectl) -> None:
    """Server-side apply after a client-side apply: kubectl >= 1.26 moves the client-side
    apply's ownership to its server-side manager first, so a label the new manifest leaves out
    vanishes (as observed on a real API server); older kubectl does not, and the label stays
    (owned by kubectl-client-side-apply)."""
    name = node_name("csa2ssa")
    try:
        _csa(k, name, {"tp.example/x": "1", "tp.example/y": "2"})
        body = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": name, "labels": {"tp.example/x": "1"}},
        }
        k.ok("apply", "--server-side", "-f", "-", stdin=json.dumps(body))
        labels = k.node(name)["metadata"]["labels"]
        if k.minor() >= 26:
            assert labels == {"tp.example/x": "1"}
        else:
            assert labels == {"tp.example/x": "1", "tp.example/y": "2"}
    finally:
        k.run("delete", "node", name, "--wait=false")


def check_server_side_apply_takes_over_client_side_values(k: Kubectl) -> None:
    """`kubectl apply --server-side` (manager `kubectl`) may change, without
    --force-conflicts, a value an earlier `kubectl apply` set: the API server forgives
    conflicts on fields in the last-applied-configuration annotation for that manager."""
    name = node_name("csa2ssa-value")
    try:
        _csa(k, name, {"tp.example/x": "1", "tp.example/y": "2"})
        body = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": name, "labels": {"tp.example/x": "9", "tp.example/y": "2"}},
        }
        k.ok("apply", "--server-side", "-f", "-", stdin=json.dumps(body))
        assert k.node(name)["metadata"]["labels"] == {"tp.example/x": "9", "tp.example/y": "2"}
        # another manager gets no such pass
        body["metadata"]["labels"] = {"tp.example/x": "7"}
        err = k.fails(
            "apply", "--server-side", "--field-manager=tp-other", "-f", "-", stdin=json.dumps(body)
        )
        assert 'Apply failed with 1 conflict: conflict with "kubectl"' in err
    finally:
        k.run("delete", "node", name, "--wait=false")


def check_replace_stale(k: Kubectl) -> None:
    """PUT with a stale resourceVersion: 409 Conflict with the API server's message."""
    with made_node(k, "stale") as name:
        stale = k.node(name)
        stale["metadata"].pop("managedFields", None)
        k.ok("label", "node", name, "tp.example/bump=1")
        stale["metadata"]["labels"] = {"tp.example/mine": "1"}
        err = k.fails("replace", "-f", "-", stdin=json.dumps(stale))
        assert STALE.format(name=name) in err
        assert k.node(name)["metadata"]["labels"] == {"tp.example/bump": "1"}


def check_describe_events(k: Kubectl) -> None:
    """`kubectl describe node` lists the node's Events (core/v1, in `default`, involvedObject
    kind Node, name and uid the node's name, as the kubelet reports them; kubectl 1.20 looks
    them up by uid = name, 1.32 by the node's uid and then by its name); `kubectl get events`
    shows them in the API server's event table."""
    with made_node(k, "describe") as name:
        now = k.ok("get", "node", name, "-o", "jsonpath={.metadata.creationTimestamp}")
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": f"{name}.trust", "namespace": "default"},
            "involvedObject": {"kind": "Node", "name": name, "uid": name},
            "reason": "TrustLost",
            "message": "host is untrusted: pcr.mismatch",
            "type": "Warning",
            "source": {"component": "trustplane-hub"},
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        k.ok("create", "-f", "-", stdin=json.dumps(event))
        out = k.ok("describe", "node", name)
        events = out[out.index("\nEvents:") + 1 :].splitlines()
        assert events[1].split() == ["Type", "Reason", "Age", "From", "Message"]
        row = events[3].split(None, 4)
        assert (row[0], row[1], row[3], row[4]) == (
            "Warning",
            "TrustLost",
            "trustplane-hub",
            "host is untrusted: pcr.mismatch",
        )
        # and `kubectl get events` prints the server's event table
        listed = k.ok(
            "get", "events", "-n", "default", "--field-selector", f"involvedObject.name={name}"
        ).splitlines()
        assert listed[0].split() == ["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
        assert listed[1].split(None, 4)[1:] == [
            "Warning",
            "TrustLost",
            f"node/{name}",
            "host is untrusted: pcr.mismatch",
        ]


def check_get_watch(k: Kubectl) -> None:
    """`kubectl get node -w --output-watch-events`: the server's Table rows, event by event
    (ADDED, MODIFIED with the new STATUS, DELETED)."""
    name = node_name("watch")
    body = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}}
    k.ok("create", "-f", "-", stdin=json.dumps(body))
    args = [
        "get",
        "nodes",
        "-w",
        "--output-watch-events",
        "--field-selector",
        f"metadata.name={name}",
    ]
    proc = subprocess.Popen(
        [KUBECTL, "--kubeconfig", str(k.kubeconfig), "--cache-dir", str(cache_dir()), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    rows: list[list[str]] = []
    try:
        assert proc.stdout is not None

        def next_row() -> list[str]:
            line = proc.stdout.readline() if proc.stdout else ""
            assert line, proc.stderr.read() if proc.stderr else "kubectl ended"
            return line.split()

        assert next_row()[:4] == ["EVENT", "NAME", "STATUS", "ROLES"]
        rows.append(next_row())
        k.ok("cordon", name)
        while not rows[-1][2].endswith(",SchedulingDisabled"):
            rows.append(next_row())
        k.ok("delete", "node", name, "--wait=false")
        while rows[-1][0] != "DELETED":
            rows.append(next_row())
    finally:
        proc.kill()
        proc.wait(timeout=20)
        k.run("delete", "node", name, "--wait=false")
    # (a real cluster's node controller may add MODIFIED rows of its own in between)
    assert rows[0][:2] == ["ADDED", name]
    assert rows[0][2] in ("Unknown", "NotReady")
    assert rows[-1][:2] == ["DELETED", name]
    assert {r[1] for r in rows} == {name}
    assert {r[0] for r in rows[1:-1]} == {"MODIFIED"}
    assert rows[-2][2] in ("Unknown,SchedulingDisabled", "NotReady,SchedulingDisabled")


KUBECTL_CHECKS = [
    check_get_nodes_json,
    check_label,
    check_label_invalid,
    check_taint,
    check_taint_invalid,
    check_cordon,
    check_server_side_apply,
    check_client_side_apply,
    check_client_then_server_side_apply,
    check_server_side_apply_takes_over_client_side_values,
    check_replace_stale,
    check_describe_events,
    check_get_watch,
]


# ---- kubernetes_asyncio ----------------------------------------------------------------------


async def api_client(kubeconfig: Path) -> client.ApiClient:
    cfg = client.Configuration()
    await config.load_kube_config(config_file=str(kubeconfig), client_configuration=cfg)
    return client.ApiClient(cfg)


def _node(name: str, labels: dict[str, str] | None = None) -> client.V1Node:
    return client.V1Node(metadata=client.V1ObjectMeta(name=name, labels=labels or {}))


async def _status_of(call: Any) -> dict[str, Any]:
    """The Status body of a refused request (its `code` is the HTTP status)."""
    try:
        await call
    except client.ApiException as exc:
        status, body = exc.status, json.loads(exc.body)
    else:
        raise AssertionError("the request succeeded")
    assert body["code"] == status
    return dict(body)


async def acheck_apply_and_conflicts(kubeconfig: Path) -> None:
    """kubernetes_asyncio: server-side apply by `trustplane-hub` (force) of our labels only,
    a stale PUT (409 Status), a 422 Status with causes, and an apply conflict's Status."""
    async with await api_client(kubeconfig) as ac:
        v1 = client.CoreV1Api(ac)
        name = node_name("api")
        await v1.create_node(_node(name, {"team": "a"}))
        try:
            body = {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {"name": name, "labels": {"tp.example/trusted": "true"}},
            }
            node = await v1.patch_node(
                name,
                body,
                field_manager="trustplane-hub",
                force=True,
                _content_type="application/apply-patch+yaml",
            )
            assert node.metadata.labels == {"team": "a", "tp.example/trusted": "true"}
            ours = [m for m in node.metadata.managed_fields if m.manager == "trustplane-hub"]
            assert [(m.operation, m.fields_v1) for m in ours] == [
                ("Apply", labels_fields("tp.example/trusted"))
            ]
            stale = await v1.read_node(name)
            await v1.patch_node(name, {"metadata": {"labels": {"tp.example/other": "x"}}})
            stale.metadata.labels["tp.example/mine"] = "1"
            status = await _status_of(v1.replace_node(name, stale))
            assert status == {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Failure",
                "message": STALE.format(name=name),
                "reason": "Conflict",
                "details": {"name": name, "kind": "nodes"},
                "code": 409,
            }
            bad = {"metadata": {"labels": {"-x": "v"}}}
            status = await _status_of(v1.patch_node(name, bad))
            assert (status["code"], status["reason"]) == (422, "Invalid")
            assert status["details"]["name"] == name
            assert status["details"]["kind"] == "Node"
            assert status["details"]["causes"] == [
                {
                    "reason": "FieldValueInvalid",
                    "message": 'Invalid value: "-x": name part must consist of alphanumeric '
                    "characters, '-', '_' or '.', and must start and end with an alphanumeric "
                    "character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for "
                    "validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')",
                    "field": "metadata.labels",
                }
            ]
            other = {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {"name": name, "labels": {"tp.example/trusted": "false"}},
            }
            status = await _status_of(
                v1.patch_node(
                    name,
                    other,
                    field_manager="someone-else",
                    _content_type="application/apply-patch+yaml",
                )
            )
            assert (status["code"], status["reason"]) == (409, "Conflict")
            assert status["message"] == (
                'Apply failed with 1 conflict: conflict with "trustplane-hub": '
                ".metadata.labels.tp.example/trusted"
            )
            assert status["details"]["causes"] == [
                {
                    "reason": "FieldManagerConflict",
                    "message": 'conflict with "trustplane-hub"',
                    "field": ".metadata.labels.tp.example/trusted",
                }
            ]
        finally:
            await v1.delete_node(name)


async def acheck_watch_resume(kubeconfig: Path) -> None:
    """A watch from a list's resourceVersion sees ADDED, MODIFIED and DELETED of our node in
    order, each with a newer resourceVersion; a label selector narrows it."""
    async with await api_client(kubeconfig) as ac:
        v1 = client.CoreV1Api(ac)
        tag = uuid.uuid4().hex[:8]
        start = (
            await v1.list_node(label_selector=f"tp.example/run={tag}")
        ).metadata.resource_version
        name = node_name("watch")
        await v1.create_node(_node(name, {"tp.example/run": tag}))
        await v1.patch_node(name, {"metadata": {"labels": {"tp.example/step": "2"}}})
        await v1.delete_node(name)
        seen: list[tuple[str, str, int]] = []
        w = watch.Watch()
        async with asyncio.timeout(30):
            async for ev in w.stream(
                v1.list_node,
                label_selector=f"tp.example/run={tag}",
                resource_version=start,
                timeout_seconds=10,
            ):
                obj = ev["object"]
                seen.append((ev["type"], obj.metadata.name, int(obj.metadata.resource_version)))
                if ev["type"] == "DELETED":
                    break
        assert [(t, n) for t, n, _ in seen] == [
            ("ADDED", name),
            ("MODIFIED", name),
            ("DELETED", name),
        ]
        rvs = [rv for _, _, rv in seen]
        assert rvs == sorted(rvs)
        assert len(set(rvs)) == 3
        assert rvs[0] > int(start)


async def acheck_events(kubeconfig: Path) -> None:
    """core/v1 Events about a node: created in `default`, listed by involvedObject.name."""
    async with await api_client(kubeconfig) as ac:
        v1 = client.CoreV1Api(ac)
        name = node_name("events")
        await v1.create_node(_node(name))
        try:
            ev = client.CoreV1Event(
                metadata=client.V1ObjectMeta(generate_name=f"{name}."),
                involved_object=client.V1ObjectReference(kind="Node", name=name, uid=name),
                reason="TrustRestored",
                message="trusted again",
                type="Normal",
                source=client.V1EventSource(component="trustplane-hub"),
            )
            made = await v1.create_namespaced_event("default", ev)
            assert made.metadata.name.startswith(f"{name}.")
            assert len(made.metadata.name) == len(name) + 1 + 5
            found = await v1.list_namespaced_event(
                "default", field_selector=f"involvedObject.name={name}"
            )
            assert [(e.reason, e.message, e.involved_object.kind) for e in found.items] == [
                ("TrustRestored", "trusted again", "Node")
            ]
            bad = await _status_of(
                v1.list_namespaced_event("default", field_selector="nosuch.field=1")
            )
            assert (bad["code"], bad["reason"]) == (400, "BadRequest")
            assert bad["message"] == "field label not supported: nosuch.field"
        finally:
            await v1.delete_node(name)
            for e in (
                await v1.list_namespaced_event(
                    "default", field_selector=f"involvedObject.name={name}"
                )
            ).items:
                await v1.delete_namespaced_event(e.metadata.name, "default")


API_CHECKS = [acheck_apply_and_conflicts, acheck_watch_resume, acheck_events]
