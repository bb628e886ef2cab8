"""``trustplane-hub clusters``: register, list and remove the clusters the hub labels.

Commands::

    trustplane-hub clusters add NAME --kubeconfig FILE [--context C]   register (kubeconfig sealed)
    trustplane-hub clusters add NAME --in-cluster                      the pod's service account
    trustplane-hub clusters list                                       name, source, state
    trustplane-hub clusters remove NAME                                forget it (labels stay)

The kubeconfig is read once, checked (YAML, the context exists), reduced to that context with
every file it names inlined (:func:`hub.clusters.kubeconfig.self_contained`), sealed with the
hub's master key (:mod:`hub.clusters.sealing`) and stored; the files are not needed afterwards
and their content is never printed or logged. A running hub picks a change up within a few seconds.
Exit codes are :mod:`hub.cli`'s: bad input is a usage error (2), an unknown cluster or an
unreadable file a runtime error (1).
"""

from __future__ import annotations

import argparse
import re
import time
from pathlib import Path
from typing import Any, Final

from hub.clusters.errors import ClusterError, KubeconfigError
from hub.clusters.kubeconfig import parse_kubeconfig, self_contained
from hub.clusters.sealing import MAX_KUBECONFIG_BYTES, seal
from hub.statedir import load_hub_keys
from hub.store import Store

NAME: Final = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")


class ClusterInputError(ClusterError):
    """Arguments or a kubeconfig that cannot be used (exit code 2)."""

    reason = "cluster.input_invalid"


class ClusterLookupError(ClusterError):
    """No such cluster, or a kubeconfig file that cannot be read (exit code 1)."""

    reason = "cluster.unknown"


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:  # noqa: ANN401 - argparse
    clusters = sub.add_parser("clusters", help="Kubernetes clusters the hub labels")
    csub = clusters.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = csub.add_parser("add", parents=[common], help="register a cluster")
    add.add_argument("name", help="a DNS label: a-z, 0-9, '-' (at most 63)")
    source = add.add_mutually_exclusive_group(required=True)
    source.add_argument("--kubeconfig", type=Path, help="kubeconfig file (read once, sealed)")
    source.add_argument(
        "--in-cluster", action="store_true", help="the service account of the hub's pod"
    )
    add.add_argument("--context", help="kubeconfig context (default: its current-context)")
    csub.add_parser("list", parents=[common], help="registered clusters and their sync state")
    remove = csub.add_parser("remove", parents=[common], help="forget a cluster")
    remove.add_argument("name")


def _check_name(name: str) -> str:
    if NAME.fullmatch(name) is None:
        raise ClusterInputError(f"cluster name {name[:80]!r} is not a DNS label (a-z, 0-9, -)")
    return name


def _read(path: Path) -> bytes:
    try:
        with path.open("rb") as f:
            data = f.read(MAX_KUBECONFIG_BYTES + 1)
    except OSError as e:
        raise ClusterLookupError(f"{path}: cannot read: {e.strerror}") from None
    if len(data) > MAX_KUBECONFIG_BYTES:
        raise ClusterInputError(f"{path}: larger than {MAX_KUBECONFIG_BYTES} bytes")
    return data


async def run(
    args: argparse.Namespace, store: Store, state_dir: Path, credentials_dir: Path | None = None
) -> int:
    """Run one ``clusters`` action; raises :class:`ClusterInputError`,
    :class:`ClusterLookupError`."""
    now = time.time()
    if args.action == "list":
        states = await store.cluster_states()
        for c in await store.list_clusters():
            st = states.get(c.name)
            source = "in-cluster" if c.sealed_kubeconfig is None else f"context={c.context or '-'}"
            state = "connected" if st and st.connected else "not connected"
            matched = f"{st.nodes_matched}/{st.nodes} nodes matched" if st else "never synced"
            error = (st.last_error or "") if st else ""
            print("\t".join([c.name, source, state, matched, error]))
        return 0
    name = _check_name(args.name)
    if args.action == "remove":
        if not await store.remove_cluster(name):
            raise ClusterLookupError(f"no such cluster: {name}")
        await store.audit(at=now, actor="cli", action="cluster.remove", subject=name, details={})
        print(f"removed {name}")
        return 0
    if args.in_cluster:
        if args.context:
            raise ClusterInputError("--context goes with --kubeconfig")
        sealed, context = None, None
    else:
        text = _read(args.kubeconfig)
        try:
            data = parse_kubeconfig(text, args.context)
            stored, context = self_contained(data, args.context, args.kubeconfig.resolve().parent)
        except KubeconfigError as e:
            raise ClusterInputError(f"{args.kubeconfig}: {e}") from None
        sealed = seal(load_hub_keys(state_dir, credentials_dir).master_key, name, stored)
    if not await store.add_cluster(name, sealed, context, now):
        raise ClusterInputError(f"cluster {name} is already registered (remove it first)")
    await store.audit(
        at=now,
        actor="cli",
        action="cluster.add",
        subject=name,
        details={"source": "in-cluster" if sealed is None else "kubeconfig", "context": context},
    )
    print(f"added {name}")
    return 0
