"""systemd notification of the real daemon process: READY, STATUS, WATCHDOG, STOPPING.

The daemon runs as a subprocess with ``NOTIFY_SOCKET`` pointing at a datagram socket the test
binds, exactly as systemd would set it up. The hub address is a closed port, so the agent is
"retrying" (which is when READY=1 must come); stopping the swtpm process (SIGSTOP) hangs the
daemon's TPM call, and the watchdog pings must stop until the TPM answers again.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from systemd.journal import JournalHandler

from nodeagent.notify import Health, Notifier, setup_logging, watchdog_interval
from tests.conftest import REPO
from trustplane.swtpm import Swtpm, free_port

READY_DEADLINE = 20.0  # seconds from exec to READY=1 (the daemon's startup, not its loop)


def _receive(sock: socket.socket, seconds: float) -> list[tuple[float, str]]:
    """Every datagram within ``seconds``, with its arrival time (monotonic)."""
    out: list[tuple[float, str]] = []
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            data = sock.recv(4096)
        except TimeoutError:
            break
        out.extend((time.monotonic(), line) for line in data.decode().splitlines())
    return out


def _receive_until(
    sock: socket.socket, wanted: Callable[[list[str]], bool], seconds: float
) -> list[str]:
    """Datagrams until ``wanted(messages so far)`` holds; fails after ``seconds`` without it."""
    out: list[str] = []
    deadline = time.monotonic() + seconds
    while not wanted(out):
        left = deadline - time.monotonic()
        assert left > 0, f"not seen within {seconds} s: {out}"
        sock.settimeout(left)
        try:
            out.extend(sock.recv(4096).decode().splitlines())
        except TimeoutError:
            continue
    return out


def _ready_and_retrying(messages: list[str]) -> bool:
    return "READY=1" in messages and any(
        m.startswith("STATUS=hub unreachable, retrying in ") for m in messages
    )


def _write_config(tmp_path: Path, tpm: Swtpm) -> Path:
    cfg = tmp_path / "agent.toml"
    cfg.write_text(
        f'state_dir = "{tmp_path / "state"}"\n'
        f'[hub]\nurl = "https://127.0.0.1:{free_port()}"\ntimeout = 1\n'
        f'[tpm]\ntcti = "{tpm.tcti}"\n'
        f'[evidence]\nuefi_log = "{tmp_path / "none"}"\ntxt = false\n'
        "[attestation]\nbackoff_initial = 0.05\nbackoff_max = 0.2\nstep_timeout = 1.0\n"
    )
    return cfg


def test_ready_status_watchdog_stuck_and_stopping(tmp_path: Path, swtpm: Swtpm) -> None:
    sock_path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(REPO),
        "NOTIFY_SOCKET": str(sock_path),
        "WATCHDOG_USEC": "200000",  # ping every 0.1 s
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "nodeagent.cli",
            "--config",
            str(_write_config(tmp_path, swtpm)),
            "run",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        # Startup (interpreter, imports, first AK) may be slow on a loaded machine: READY=1
        # gets a generous deadline of its own; the watchdog timing is checked after it.
        started = _receive_until(sock, _ready_and_retrying, READY_DEADLINE)
        assert "STATUS=enrolling with the hub" in started
        assert started.index("READY=1") > started.index("STATUS=enrolling with the hub")
        healthy = [m for _, m in _receive(sock, 1.0)]
        assert healthy.count("WATCHDOG=1") >= 5  # pings every 0.1 s while retrying

        assert swtpm.process is not None
        os.kill(swtpm.process.pid, signal.SIGSTOP)  # the next TPM call hangs
        try:
            stopped_at = time.monotonic()
            stuck = _receive(sock, 3.0)
        finally:
            os.kill(swtpm.process.pid, signal.SIGCONT)
        pings = [t for t, m in stuck if m == "WATCHDOG=1"]
        # the step may have just begun: at most step_timeout (1 s) + one backoff (0.2 s) +
        # one ping interval of pings after the TPM stopped answering, then silence
        assert all(t - stopped_at < 1.5 for t in pings), [round(t - stopped_at, 2) for t in pings]
        assert not [t for t in pings if t - stopped_at > 1.5]

        resumed = [m for _, m in _receive(sock, 2.0)]
        assert resumed.count("WATCHDOG=1") >= 3

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        final = [m for _, m in _receive(sock, 0.5)]
        assert "STOPPING=1" in final
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        sock.close()


def test_watchdog_interval_from_environment() -> None:
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "0"}) is None
    assert watchdog_interval({}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": str(os.getpid())}) == 1.0


def test_health_deadline_and_disabled_notifier() -> None:
    health = Health(first_deadline=60)
    assert health.healthy()
    health.expect(-1)
    assert not health.healthy()
    notifier = Notifier({})
    assert notifier.enabled is False
    notifier.ready()  # a no-op without NOTIFY_SOCKET, must not raise


def test_logging_goes_to_the_journal_only_under_systemd() -> None:
    root = logging.getLogger("trustplane")
    saved = root.handlers[:], root.level
    try:
        setup_logging("debug", {"JOURNAL_STREAM": "8:12345"})
        assert [type(h) for h in root.handlers] == [JournalHandler]
        assert root.level == logging.DEBUG
        setup_logging("warning", {})
        assert [type(h) for h in root.handlers] == [logging.StreamHandler]
        assert root.level == logging.WARNING
    finally:
        root.handlers[:], root.level = saved[0], saved[1]
