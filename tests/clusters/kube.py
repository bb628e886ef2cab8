"""Helpers for the cluster tests: the fake API server on its own event-loop thread, and
``kubectl`` (Debian's kubernetes-client, a real client independent of the hub's) to create
nodes and read what the hub wrote."""

from __future__ import annotations

import asyncio
import json
import subprocess
import threading
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

from tests.clusters.kubechecks import kubectl_minor
from tests.hub.harness import FakeClock
from tests.kubefake import FakeApiServer

T = TypeVar("T")
KUBECTL = "kubectl"  # from PATH, as tests/clusters/kubechecks.py
P = "trustplane.node-restriction.kubernetes.io/"
TAINT = "trustplane.io/untrusted"


def ahead_clock() -> FakeClock:
    """The hub's clock, two minutes ahead: the EK certificates of TPMs made later in the test
    (``unique=True``) are then already valid by the hub's clock (it does not move by itself)."""
    clock = FakeClock()
    clock.advance(120)
    return clock


class FakeCluster:
    """A :class:`FakeApiServer` (a fake, see tests/kubefake) served from a private loop thread."""

    def __init__(self, workdir: Path, name: str, user: str = "cert") -> None:
        """``user``: how the kubeconfig authenticates: ``cert`` (client certificate), ``token``
        (bearer token) or ``exec`` (an exec credential plugin, a script printing the token)."""
        workdir.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.api = FakeApiServer(bookmark_interval=0.5)
        self.call(self.api.__aenter__())
        path = workdir / f"{name}.kubeconfig"
        self.kubeconfig = self.api.write_kubeconfig(path, user="token" if user == "exec" else user)
        if user == "exec":
            plugin = workdir / f"{name}-credential"
            credential = {
                "apiVersion": "client.authentication.k8s.io/v1beta1",
                "kind": "ExecCredential",
                "status": {"token": self.api.issue_token("admin")},
            }
            plugin.write_text(f"#!/bin/sh\necho '{json.dumps(credential)}'\n")
            plugin.chmod(0o700)
            config = json.loads(path.read_text())
            config["users"][0]["user"] = {
                "exec": {
                    "apiVersion": "client.authentication.k8s.io/v1beta1",
                    "command": str(plugin),
                    "interactiveMode": "Never",
                }
            }
            path.write_text(json.dumps(config))

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=60)

    def go_down(self) -> None:
        self.call(self.api.go_down())

    def come_up(self) -> None:
        self.call(self.api.come_up())

    def fail_next_write(self, node: str, code: int = 409) -> None:
        self.loop.call_soon_threadsafe(self.api.faults.fail_next_write, node, code)

    def stop(self) -> None:
        self.call(self.api.__aexit__(None, None, None))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


def kubectl(kubeconfig: Path, *args: str, stdin: str | None = None) -> str:
    done = subprocess.run(
        [KUBECTL, "--kubeconfig", str(kubeconfig), "--request-timeout=20s", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, f"kubectl {' '.join(args)}: {done.stderr.strip()}"
    return done.stdout


def create_node(
    kubeconfig: Path,
    name: str,
    system_uuid: str,
    *,
    labels: dict[str, str] | None = None,
    taints: list[dict[str, str]] | None = None,
) -> None:
    """A Node object without a kubelet, with ``status.nodeInfo.systemUUID``: set on creation
    (the fake keeps it) or, where the API server drops status on create (a real one), through
    the status subresource."""
    body = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {"taints": taints or []},
        "status": {"nodeInfo": {"systemUUID": system_uuid}},
    }
    kubectl(kubeconfig, "create", "-f", "-", stdin=json.dumps(body))
    if node_json(kubeconfig, name).get("status", {}).get("nodeInfo", {}).get("systemUUID") != (
        system_uuid
    ):
        status = {"status": {"nodeInfo": {"systemUUID": system_uuid}}}
        kubectl(
            kubeconfig,
            "patch",
            "node",
            name,
            "--subresource=status",
            "--type=merge",
            "-p",
            json.dumps(status),
        )


def node_json(kubeconfig: Path, name: str, *, managed_fields: bool = False) -> dict[str, Any]:
    # kubectl 1.21 began hiding managedFields (and added the flag to show them)
    extra = ["--show-managed-fields"] if managed_fields and kubectl_minor() >= 21 else []
    out: dict[str, Any] = json.loads(kubectl(kubeconfig, "get", "node", name, "-o", "json", *extra))
    return out


def our_labels(node: dict[str, Any]) -> dict[str, str]:
    labels = node["metadata"].get("labels") or {}
    return {k: v for k, v in labels.items() if k.startswith(P)}


def taints(node: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {k: v for k, v in t.items() if k != "timeAdded"} for t in node["spec"].get("taints") or []
    ]


def node_events(kubeconfig: Path, name: str) -> list[dict[str, Any]]:
    """The node's Events from trustplane, oldest first."""
    out = kubectl(
        kubeconfig,
        "get",
        "events",
        "--all-namespaces",
        "--field-selector",
        f"involvedObject.kind=Node,involvedObject.name={name}",
        "-o",
        "json",
    )
    items = [
        e
        for e in json.loads(out)["items"]
        if e.get("source", {}).get("component") == ("trustplane-hub")
    ]
    # creation order: resourceVersions are etcd revisions (integers) on real servers and the fake
    return sorted(items, key=lambda e: int(e["metadata"]["resourceVersion"]))


def wait_for(what: str, check: Callable[[], T | None], timeout: float = 20.0) -> T:
    """Poll ``check`` until it returns something other than ``None`` (no timing is asserted:
    the bound only keeps a broken sync from hanging the test)."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
        except AssertionError as e:
            value, last = None, e
        if value is not None:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}" + (f" (last: {last})" if last else ""))
