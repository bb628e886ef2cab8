"""A throw-away OCI registry on 127.0.0.1: Debian's ``docker-registry`` (distribution 2.8).

For the demo and the tests: :class:`RegistryServer` writes a config (storage in a given
directory, listen on 127.0.0.1 on a free port, no auth, logs at error level to a file), starts
``docker-registry serve`` as a child that dies with its parent, waits until ``GET /v2/``
answers, and stops it (SIGTERM, then SIGKILL) on exit.
"""

from __future__ import annotations

import http.client
import secrets
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Final

from trustplane.errors import TrustplaneError
from trustplane.swtpm import die_with_parent, free_port

DEFAULT_BINARY: Final = "/usr/bin/docker-registry"
READY_TIMEOUT: Final = 20.0


class RegistryUnavailable(TrustplaneError):
    """The registry program is missing or did not come up."""

    reason = "registry.unavailable"


@dataclass
class RegistryServer:
    """``with RegistryServer(workdir) as reg:`` → ``reg.host`` is ``127.0.0.1:PORT``."""

    workdir: Path
    binary: str = DEFAULT_BINARY
    auth: str = ""
    """An ``auth:`` section (YAML, already indented) for registries that want credentials."""
    port: int = 0
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _config(self) -> Path:
        storage = self.workdir / "storage"
        storage.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "config.yml"
        config.write_text(
            "version: 0.1\n"
            "log:\n  level: error\n  accesslog:\n    disabled: true\n"
            f"storage:\n  filesystem:\n    rootdirectory: {storage}\n  delete:\n    enabled: true\n"
            f"http:\n  addr: 127.0.0.1:{self.port}\n  secret: {secrets.token_hex(16)}\n"
            + (f"auth:\n{self.auth}" if self.auth else "")
        )
        config.chmod(0o600)
        return config

    def start(self) -> None:
        if shutil.which(self.binary) is None:
            raise RegistryUnavailable(f"{self.binary} not found (Debian package docker-registry)")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        log = (self.workdir / "registry.log").open("wb")
        with log:
            self.process = subprocess.Popen(
                [self.binary, "serve", str(self._config())],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent,  # noqa: PLW1509 - only prctl, no locks
            )
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            if self._ready():
                return
            time.sleep(0.05)
        tail = (self.workdir / "registry.log").read_text(errors="replace")[-300:]
        self.stop()
        raise RegistryUnavailable(f"docker-registry did not come up on {self.host}: {tail}")

    def _ready(self) -> bool:
        conn = http.client.HTTPConnection(self.host, timeout=1.0)
        try:
            conn.request("GET", "/v2/")
            return conn.getresponse().status in (200, 401)  # 401: it wants credentials
        except OSError:
            return False
        finally:
            conn.close()

    def stop(self) -> None:
        proc, self.process = self.process, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def __enter__(self) -> RegistryServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
