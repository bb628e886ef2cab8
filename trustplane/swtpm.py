"""Start and stop software TPMs (swtpm) for the demo, the benchmarks and the tests.

A :class:`SwtpmFactory` manufactures one TPM state with ``swtpm_setup --create-ek-cert``
(EK certificates signed by a private local CA in the factory's directory) and then starts any
number of :class:`Swtpm` processes, each from a copy of that state, on free loopback ports, and
waits until each answers. Nothing here is mocked: a missing ``swtpm`` binary is an error
(:class:`SwtpmUnavailable`), never a skip.
"""

from __future__ import annotations

import contextlib
import ctypes
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

__all__ = ["Swtpm", "SwtpmFactory", "SwtpmUnavailable"]


class SwtpmUnavailable(RuntimeError):
    """swtpm or swtpm_setup is not installed, or the TPM did not come up."""


def _require(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise SwtpmUnavailable(
            f"{tool} not found: install the Debian packages swtpm and swtpm-tools "
            "(make setup does this)"
        )
    return path


PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Have the kernel send SIGTERM to this child when its parent dies, even by SIGKILL.

    For ``subprocess.Popen(preexec_fn=...)``: a demo or test killed outright leaves no TPM,
    agent or hub behind.
    """
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


_PAIR_RANGE = (20000, 32000)
"""Below Linux's default ephemeral range (32768-60999): ``bind(0)`` and outgoing connections take
their ports from that range (even ones for bind, odd ones for connect), so ``free_port() + 1`` is
often some client's port on a busy machine, and a client may take it between our check and
swtpm's bind. Pairs from below the range do not race with clients."""


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port_pair() -> int:
    """A port ``p`` such that ``p`` and ``p + 1`` were both free on 127.0.0.1 a moment ago.

    The swtpm and mssim TCTIs reach the control channel at ``port + 1``, so a TPM needs two
    adjacent ports. Raises :class:`SwtpmUnavailable` if none is found after many tries.
    """
    rng = random.SystemRandom()
    for _ in range(200):
        port = rng.randrange(_PAIR_RANGE[0], _PAIR_RANGE[1] - 1)
        if _bindable(port) and _bindable(port + 1):
            return port
    raise SwtpmUnavailable("no two adjacent free TCP ports on 127.0.0.1")


@dataclass
class Swtpm:
    """One running swtpm process speaking the TCP protocol on 127.0.0.1."""

    state_dir: Path
    port: int
    ctrl_port: int
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def tcti(self) -> str:
        """The TCTI string for tpm2-pytss' ``TCTILdr.parse`` / tpm2-tools."""
        return f"swtpm:host=127.0.0.1,port={self.port}"

    def start(self, *, timeout: float = 10.0) -> None:
        swtpm = _require("swtpm")
        self.process = subprocess.Popen(
            [
                swtpm,
                "socket",
                "--tpm2",
                "--tpmstate",
                f"dir={self.state_dir}",
                "--server",
                f"type=tcp,port={self.port},bindaddr=127.0.0.1",
                "--ctrl",
                f"type=tcp,port={self.ctrl_port},bindaddr=127.0.0.1",
                "--flags",
                "not-need-init,startup-clear",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            # Its own session: a Ctrl-C meant for the demo or a test reaches only that process,
            # which stops its TPMs in order; the kernel stops them if that process dies.
            start_new_session=True,
            preexec_fn=die_with_parent,  # noqa: PLW1509 - async-signal-safe: one prctl call
        )
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                err = (
                    self.process.stderr.read().decode(errors="replace")
                    if self.process.stderr
                    else ""
                )
                raise SwtpmUnavailable(
                    f"swtpm exited with {self.process.returncode}: {err.strip()}"
                )
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2),
            ):
                return
            if time.monotonic() > deadline:
                self.stop()
                raise SwtpmUnavailable(f"swtpm did not listen on port {self.port} in {timeout}s")
            time.sleep(0.02)

    def ioctl(self, *args: str, stdin: bytes = b"") -> None:
        """Run ``swtpm_ioctl`` against this TPM's control port (e.g. ``-l 4``, ``-h data``);
        ``stdin`` feeds ``-h -`` (binary data to hash).

        Raises :class:`subprocess.CalledProcessError` when swtpm_ioctl fails.
        """
        tool = _require("swtpm_ioctl")
        subprocess.run(
            [tool, "--tcp", f"127.0.0.1:{self.ctrl_port}", *args],
            check=True,
            capture_output=True,
            input=stdin,
            timeout=10,
        )

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        if self.process.stderr:
            self.process.stderr.close()
        self.process = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class SwtpmFactory:
    """Manufactures a TPM state once (with EK certificates) and starts TPMs from copies of it."""

    def __init__(self, root: Path | None = None, *, pcr_banks: str = "sha1,sha256") -> None:
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if root is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="trustplane-swtpm-")
            root = Path(self._tmp.name)
        self.root = root
        self.template = root / "template"
        self.ca_dir = root / "ca"
        self._count = 0
        self._running: list[Swtpm] = []
        self._manufacture(pcr_banks)

    @property
    def ca_certificates(self) -> list[Path]:
        """The local CA's root and intermediate certificates that EK certificates chain to."""
        return [self.ca_dir / "swtpm-localca-rootca-cert.pem", self.ca_dir / "issuercert.pem"]

    def _manufacture(self, pcr_banks: str) -> None:
        _require("swtpm_setup")
        _require("swtpm_localca")
        self.template.mkdir(parents=True)
        self.ca_dir.mkdir(parents=True)
        localca_conf = self.root / "swtpm-localca.conf"
        localca_conf.write_text(
            f"statedir = {self.ca_dir}\n"
            f"signingkey = {self.ca_dir}/signkey.pem\n"
            f"issuercert = {self.ca_dir}/issuercert.pem\n"
            f"certserial = {self.ca_dir}/certserial\n"
        )
        options = self.root / "swtpm-localca.options"
        options.write_text(
            "--platform-manufacturer trustplane\n--platform-version 2.1\n--platform-model swtpm\n"
        )
        self._setup_conf = self.root / "swtpm_setup.conf"
        self._setup_conf.write_text(
            f"create_certs_tool = {shutil.which('swtpm_localca')}\n"
            f"create_certs_tool_config = {localca_conf}\n"
            f"create_certs_tool_options = {options}\n"
            f"active_pcr_banks = {pcr_banks}\n"
        )
        self._pcr_banks = pcr_banks
        self._setup_state(self.template)

    def _setup_state(self, state: Path) -> None:
        """Manufacture a TPM into ``state``: new seeds, EKs, EK certificates from the local CA."""
        state.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(
            [
                _require("swtpm_setup"),
                "--tpm2",
                "--tpmstate",
                str(state),
                "--create-ek-cert",
                "--config",
                str(self._setup_conf),
                "--pcr-banks",
                self._pcr_banks,
            ],
            capture_output=True,
            check=False,
            timeout=120,
        )
        if result.returncode != 0:
            raise SwtpmUnavailable(
                "swtpm_setup failed: "
                + result.stdout.decode(errors="replace")
                + result.stderr.decode(errors="replace")
            )

    def start(self, *, unique: bool = False) -> Swtpm:
        """Start a TPM from a copy of the manufactured state.

        Copies share the template's seeds, so every copy has the same EK (and so the same host
        id). With ``unique=True`` the TPM is manufactured anew (about a second): its own EK and
        EK certificate, still issued by this factory's local CA.
        """
        self._count += 1
        state = self.root / f"tpm{self._count}"
        if unique:
            self._setup_state(state)
        else:
            shutil.copytree(self.template, state)
        last: SwtpmUnavailable | None = None
        for _ in range(10):
            # The swtpm and mssim TCTIs reach the control channel at port + 1: keep them adjacent.
            port = free_port_pair()
            tpm = Swtpm(state_dir=state, port=port, ctrl_port=port + 1)
            try:
                tpm.start()
            except SwtpmUnavailable as exc:
                last = exc
                continue
            self._running.append(tpm)
            return tpm
        raise SwtpmUnavailable(f"could not start swtpm on free ports: {last}")

    def close(self) -> None:
        for tpm in self._running:
            tpm.stop()
        self._running.clear()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
