"""The packaged OCI hook with a real container engine: Debian's podman 4.3.1 and runc.

podman reads the same hooks.d JSON as cri-o (``systemd/trustplane-require-trusted.json``, here
with the hook's path pointing at this checkout's ``trustplane-agent`` and its config), and runs
busybox-static containers with runc (flags from the team's notes on real peers). The host is a
real swtpm attested by the real hub: an annotated container starts while the host is trusted and
is refused, with the hook's line in podman's error, once it is not; a container without the
annotation starts either way, so the hook never ran for it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.nodeagent.conftest import LoopbackHub, agent_config
from tests.nodeagent.test_hook import attest_until
from trustplane.swtpm import Swtpm

REPO = Path(__file__).resolve().parents[2]
AGENT = Path(sys.executable).with_name("trustplane-agent")
BUSYBOX = Path("/bin/busybox")
ANNOTATION = ("--annotation", "trustplane.io/require-trusted=true")


class Podman:
    """podman as root with private storage, runc, vfs and the given hooks directory."""

    def __init__(self, root: Path, hooks: Path) -> None:
        self.base = [
            "podman",
            "--root", str(root / "storage"),
            "--runroot", str(root / "run"),
            "--storage-driver", "vfs",
            "--cgroup-manager", "cgroupfs",
            "--events-backend", "file",
            "--runtime", "runc",
            "--hooks-dir", str(hooks),
        ]  # fmt: skip

    def __call__(self, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [*self.base, *args], input=stdin, capture_output=True, timeout=120, check=False
        )
        return subprocess.CompletedProcess(
            done.args, done.returncode, done.stdout.decode(), done.stderr.decode()
        )

    def run(self, *extra: str) -> subprocess.CompletedProcess[str]:
        return self(
            "run", "--rm", "--network", "none",
            "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024",
            *extra, "localhost/bb:1", "/bin/echo", "hello",
        )  # fmt: skip


@pytest.fixture
def workdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="tppod-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_podman_runs_annotated_containers_only_on_a_trusted_host(
    tmp_path: Path, workdir: Path, booted_tpm: Swtpm, hub: LoopbackHub
) -> None:
    cfg = agent_config(tmp_path, booted_tpm, hub.url, hub.ca_file)
    agent_toml = workdir / "agent.toml"
    agent_toml.write_text(f'state_dir = "{cfg.state_dir}"\n')
    hooks = workdir / "hooks.d"
    hooks.mkdir()
    packaged = json.loads((REPO / "systemd" / "trustplane-require-trusted.json").read_text())
    assert packaged["hook"]["path"] == "/usr/bin/trustplane-agent"
    assert packaged["hook"]["args"] == ["trustplane-agent", "hook"]
    packaged["hook"]["path"] = str(AGENT)
    packaged["hook"]["args"] = ["trustplane-agent", "--config", str(agent_toml), "hook"]
    (hooks / "trustplane-require-trusted.json").write_text(json.dumps(packaged))

    rootfs = workdir / "rootfs"
    (rootfs / "bin").mkdir(parents=True)
    shutil.copy(BUSYBOX, rootfs / "bin" / "busybox")
    (rootfs / "bin" / "echo").symlink_to("busybox")
    podman = Podman(workdir, hooks)
    tarball = subprocess.run(["tar", "-C", str(rootfs), "-c", "."], capture_output=True, check=True)
    imported = podman("import", "-", "localhost/bb:1", stdin=tarball.stdout)
    assert imported.returncode == 0, imported.stderr

    attest_until(cfg, booted_tpm, untrusted_after=False)
    trusted = podman.run(*ANNOTATION)
    assert (trusted.returncode, trusted.stdout) == (0, "hello\n"), trusted.stderr

    attest_until(cfg, booted_tpm, untrusted_after=True)
    refused = podman.run(*ANNOTATION)
    assert (refused.returncode, refused.stdout) == (126, ""), refused.stderr
    assert refused.stderr.rstrip("\n").endswith(
        "error running hook #0: error running hook: exit status 1, stdout: , stderr: "
        "trustplane: container refused: host untrusted (eventlog.replay_mismatch) "
        "[hook.host_untrusted]"
    ), refused.stderr
    # without the annotation the hook does not run (it would refuse on this host now)
    plain = podman.run()
    assert (plain.returncode, plain.stdout) == (0, "hello\n"), plain.stderr
    other_value = podman.run("--annotation", "trustplane.io/require-trusted=false")
    assert (other_value.returncode, other_value.stdout) == (0, "hello\n"), other_value.stderr
