"""The fake API server (tests/kubefake) driven by the real kubectl and by kubernetes_asyncio:
the checks of `kubechecks`, whose expectations come from the Kubernetes documentation and the
API server's wording, pass against it (and, in test_kubefake_real.py, against a real cluster).

The fake runs as `python -m tests.kubefake` in a subprocess, as kubectl's peer would.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.clusters import kubechecks
from tests.clusters.kubechecks import Kubectl

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def fake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """(certificate kubeconfig, token kubeconfig) of a fake API server subprocess."""
    work = tmp_path_factory.mktemp("kubefake")
    cert, token = work / "cert.kubeconfig", work / "token.kubeconfig"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.kubefake",
            "--port",
            str(_free_port()),
            "--kubeconfig",
            str(cert),
            "--token-kubeconfig",
            str(token),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("kubefake: serving https://127.0.0.1:"), line + (
            proc.stderr.read() if proc.stderr else ""
        )
        yield cert, token
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def _id(check: Callable[..., Any]) -> str:
    return check.__name__.removeprefix("check_").removeprefix("acheck_")


@pytest.mark.parametrize("check", kubechecks.KUBECTL_CHECKS, ids=_id)
def test_kubectl(fake: tuple[Path, Path], check: Callable[[Kubectl], None]) -> None:
    check(Kubectl(fake[0]))


@pytest.mark.parametrize("check", kubechecks.API_CHECKS, ids=_id)
def test_kubernetes_asyncio(
    fake: tuple[Path, Path], check: Callable[[Path], Coroutine[Any, Any, None]]
) -> None:
    asyncio.run(check(fake[0]))


def test_token_and_certificate_kubeconfigs(fake: tuple[Path, Path]) -> None:
    """Both kubeconfigs authenticate; a kubeconfig with a token the server never issued gets
    the API server's 401 (kubectl: "You must be logged in to the server (Unauthorized)")."""
    cert, token = fake
    for kubeconfig in (cert, token):
        out = json.loads(Kubectl(kubeconfig).ok("get", "--raw", "/api"))
        assert out["kind"] == "APIVersions"
        assert out["versions"] == ["v1"]
    forged = json.loads(token.read_text())
    forged["users"][0]["user"]["token"] = "not-a-token-it-issued"
    bad = token.with_name("forged.kubeconfig")
    bad.write_text(json.dumps(forged))
    bad.chmod(0o600)
    err = Kubectl(bad).fails("get", "nodes")
    assert "You must be logged in to the server (Unauthorized)" in err


def test_kubeconfig_files_are_private(fake: tuple[Path, Path]) -> None:
    cert, token = fake
    for path in (cert, token):
        assert path.stat().st_mode & 0o777 == 0o600
    key = Path(json.loads(cert.read_text())["users"][0]["user"]["client-key"])
    assert key.stat().st_mode & 0o777 == 0o600
    assert key.parent.stat().st_mode & 0o777 == 0o700
