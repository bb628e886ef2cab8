"""The checks of `kubechecks` against a REAL Kubernetes API server, when TRUSTPLANE_KUBECONFIG
names a kubeconfig of a cluster (kind, minikube, OpenShift...) whose user may create, patch and
delete Node objects and create Events in `default`.

They are the same checks the fake passes (test_kubefake_kubectl.py): what the fake does is what
a real API server does. They create their own Node objects (`kubefake-check-<random>-...`, no
kubelet behind them) and Events about them, and delete them again.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from tests.clusters import kubechecks
from tests.clusters.kubechecks import Kubectl

KUBECONFIG = os.environ.get("TRUSTPLANE_KUBECONFIG", "")
if not KUBECONFIG:
    pytest.skip(
        "TRUSTPLANE_KUBECONFIG is not set: no real Kubernetes API server to check the fake "
        "against (set it to a kubeconfig of a test cluster: kind, minikube, OpenShift)",
        allow_module_level=True,
    )


def _id(check: Callable[..., Any]) -> str:
    return check.__name__.removeprefix("check_").removeprefix("acheck_")


@pytest.mark.parametrize("check", kubechecks.KUBECTL_CHECKS, ids=_id)
def test_kubectl(check: Callable[[Kubectl], None]) -> None:
    check(Kubectl(Path(KUBECONFIG)))


@pytest.mark.parametrize("check", kubechecks.API_CHECKS, ids=_id)
def test_kubernetes_asyncio(check: Callable[[Path], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(check(Path(KUBECONFIG)))
