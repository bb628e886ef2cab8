"""``server.workers``: one parent process, N worker processes serving one listening socket.

The parent (``trustplane-hub run`` with ``server.workers`` other than 1) migrates the database
once, binds the listening socket, builds the TLS context, prepares the metrics directory, then
forks the workers. Each worker is a whole hub (:func:`hub.app.create_app`) serving the
*inherited* socket: the kernel hands each new connection to whichever worker accepts first.
An inherited socket rather than one ``SO_REUSEPORT`` socket per worker because a worker's
death then loses nothing: with ``SO_REUSEPORT`` the connections queued in a dead worker's own
socket are reset, and new connections keep being hashed to it until it is back; with one
shared socket they wait in the one queue for the others. The TLS context is made once in the
parent before the fork, so every worker holds the same session-ticket keys: an agent resumes
its TLS session on whichever worker its next connection lands (the keys live in memory only
and change at every start of the service).

The parent supervises: a worker that exits is started again after a back-off (0.5 s, doubling
up to 30 s; back to 0.5 s once a worker lived 60 s); a worker whose event loop sends no
heartbeat for :data:`STUCK_AFTER` seconds is killed and started again. SIGTERM (or SIGINT)
stops them all (SIGTERM, then SIGKILL after :data:`STOP_TIMEOUT`). systemd sees one service:
the parent sends ``READY=1`` once every worker serves, ``STATUS=`` lines, and ``WATCHDOG=1``
only while every worker is alive and heartbeating. A worker whose parent is gone (its
heartbeat pipe breaks) stops by itself.

Work that must run once (the stale sweep) runs under :mod:`hub.singleton`'s lease in one of the
workers; verdict changes reach every worker through :mod:`hub.bus`; metrics are summed across
workers with prometheus_client's multiprocess mode (:mod:`hub.metrics`; the directory
``<state dir>/metrics`` is emptied at each start).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import selectors
import signal
import socket
import ssl
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from hub.config import HubConfig
from hub.notify import Notifier, watchdog_interval

log = logging.getLogger("trustplane.hub.supervisor")

METRICS_DIR: Final = "metrics"
HEARTBEAT: Final = 1.0  # seconds between a worker's heartbeats
STUCK_AFTER: Final = 30.0  # seconds without a heartbeat before a worker is killed
STOP_TIMEOUT: Final = 20.0  # seconds the workers get to stop before SIGKILL
BACKOFF_FIRST: Final = 0.5
BACKOFF_MAX: Final = 30.0
HEALTHY_AFTER: Final = 60.0  # a worker that lived this long resets the back-off
BACKLOG: Final = 1024


def worker_count(config: HubConfig) -> int:
    """``server.workers``, 0 meaning one per CPU."""
    return config.server.workers or os.cpu_count() or 1


@dataclass(slots=True)
class _Worker:
    index: int
    pid: int = 0
    pipe: int = -1  # read end of its heartbeat pipe
    started: float = 0.0
    heard: float = 0.0
    ready: bool = False
    failures: int = 0
    restart_at: float | None = None  # when it is to be started again (it is down)
    buffer: bytes = field(default=b"")


def listening_socket(config: HubConfig) -> socket.socket:
    """The hub's listening socket on ``server.listen`` (raises ``OSError``: port taken)."""
    host, port = config.server.host, config.server.port
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family, backlog=BACKLOG)


def prepare_metrics_dir(state_dir: Path) -> Path:
    """``<state dir>/metrics``, made (0700) and emptied: this run's multiprocess metrics."""
    path = state_dir / METRICS_DIR
    path.mkdir(mode=0o700, exist_ok=True)
    path.chmod(0o700)
    for old in path.glob("*.db"):
        old.unlink()
    return path


class Supervisor:
    """The parent: starts, watches and stops the workers (see the module docstring)."""

    def __init__(
        self,
        config: HubConfig,
        *,
        workers: int,
        credentials_dir: Path | None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self._config = config
        self._credentials_dir = credentials_dir
        self._workers = [_Worker(i) for i in range(workers)]
        self._notifier = Notifier(environ)
        self._watchdog = watchdog_interval(environ)
        self._stopping = False
        self._ready_sent = False
        self._sock: socket.socket | None = None
        self._ssl: ssl.SSLContext | None = None
        self._metrics_dir: Path | None = None
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    def run(self) -> int:
        """Serve until SIGTERM/SIGINT; the exit code (0 after a clean stop)."""
        from hub.server import server_ssl_context  # noqa: PLC0415 - the TLS part only

        _migrate(self._config)
        self._sock = listening_socket(self._config)
        self._ssl = server_ssl_context(self._config) if self._config.server.tls else None
        self._metrics_dir = prepare_metrics_dir(self._config.state.dir)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(self._metrics_dir)
        previous = {
            sig: signal.signal(sig, self._on_signal)
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD)
        }
        old_wakeup = signal.set_wakeup_fd(self._wake_w)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        log.info("trustplane hub: %d workers on %s", len(self._workers), self._config.server.listen)
        try:
            for worker in self._workers:
                self._start(worker)
            self._loop()
        finally:
            self._stop_all()
            signal.set_wakeup_fd(old_wakeup)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self._sock.close()
        return 0

    # --- signals -----------------------------------------------------------------------------

    def _on_signal(self, signum: int, _frame: object) -> None:
        if signum in (signal.SIGTERM, signal.SIGINT):
            self._stopping = True

    # --- workers -----------------------------------------------------------------------------

    def _start(self, worker: _Worker) -> None:
        assert self._sock is not None
        read_end, write_end = os.pipe2(os.O_CLOEXEC)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the worker
            code = 1
            try:
                os.close(read_end)
                self._close_parent_fds()
                code = _worker_main(
                    self._config,
                    self._sock,
                    self._ssl,
                    self._metrics_dir,
                    self._credentials_dir,
                    write_end,
                )
            except BaseException:  # the process boundary: log and exit
                log.exception("hub worker %d failed", worker.index)
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        os.close(write_end)
        os.set_blocking(read_end, False)
        now = time.monotonic()
        worker.pid, worker.pipe, worker.started, worker.heard = pid, read_end, now, now
        worker.ready, worker.restart_at, worker.buffer = False, None, b""
        self._selector.register(read_end, selectors.EVENT_READ, worker)
        log.info("hub worker %d started (pid %d)", worker.index, pid)

    def _close_parent_fds(self) -> None:
        """In a new worker: the parent's descriptors (another worker's pipe kept open here would
        hide the parent's death from that worker)."""
        for other in self._workers:
            if other.pipe >= 0:
                os.close(other.pipe)
        self._selector.close()
        os.close(self._wake_r)
        os.close(self._wake_w)

    def _read_heartbeat(self, worker: _Worker) -> None:
        try:
            data = os.read(worker.pipe, 4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:  # the worker closed its end: it is exiting (reaped via SIGCHLD)
            self._selector.unregister(worker.pipe)
            os.close(worker.pipe)
            worker.pipe = -1
            return
        worker.heard = time.monotonic()
        if b"R" in data and not worker.ready:
            worker.ready = True
            log.info("hub worker %d serving", worker.index)

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            for worker in self._workers:
                if worker.pid == pid:
                    self._worker_exited(worker, status)

    def _worker_exited(self, worker: _Worker, status: int) -> None:
        now = time.monotonic()
        code = os.waitstatus_to_exitcode(status)
        with contextlib.suppress(Exception):  # (its live gauges only; counters stay summed)
            from prometheus_client import multiprocess  # noqa: PLC0415

            multiprocess.mark_process_dead(worker.pid, str(self._metrics_dir))  # type: ignore[no-untyped-call]
        worker.pid = 0
        worker.ready = False
        if worker.pipe >= 0:
            self._selector.unregister(worker.pipe)
            os.close(worker.pipe)
            worker.pipe = -1
        if self._stopping:
            return
        if now - worker.started >= HEALTHY_AFTER:
            worker.failures = 0
        delay = min(BACKOFF_MAX, BACKOFF_FIRST * 2**worker.failures)
        worker.failures += 1
        worker.restart_at = now + delay
        log.warning("hub worker %d (exit %s) is started again in %.1f s", worker.index, code, delay)

    def _loop(self) -> None:
        next_ping = time.monotonic()
        while not self._stopping:
            now = time.monotonic()
            timeout = min(HEARTBEAT, max(0.0, next_ping - now))
            for worker in self._workers:
                if worker.restart_at is not None:
                    timeout = min(timeout, max(0.0, worker.restart_at - now))
            for key, _events in self._selector.select(timeout):
                if key.data is None:
                    with contextlib.suppress(BlockingIOError):
                        while os.read(self._wake_r, 512):
                            pass
                else:
                    self._read_heartbeat(key.data)
            self._reap()
            if self._stop_requested():
                break
            now = time.monotonic()
            for worker in self._workers:
                if worker.restart_at is not None and now >= worker.restart_at:
                    self._start(worker)
                elif worker.pid and now - worker.heard > STUCK_AFTER:
                    log.error(
                        "hub worker %d sent no heartbeat for %.0f s: killed",
                        worker.index,
                        now - worker.heard,
                    )
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(worker.pid, signal.SIGKILL)
                    worker.heard = now  # reaped (and started again) through SIGCHLD
            self._report(now)
            if now >= next_ping:
                if self._watchdog is not None and self._healthy(now):
                    self._notifier.watchdog()
                next_ping = now + (self._watchdog or HEARTBEAT)

    def _stop_requested(self) -> bool:
        """(Set by the signal handler at any moment.)"""
        return self._stopping

    def _healthy(self, now: float) -> bool:
        return all(w.pid and w.ready and now - w.heard <= STUCK_AFTER for w in self._workers)

    def _report(self, now: float) -> None:
        serving = sum(1 for w in self._workers if w.pid and w.ready)
        total = len(self._workers)
        if serving == total and not self._ready_sent:
            self._ready_sent = True
            self._notifier.ready()
        listen = self._config.server.listen
        self._notifier.status(f"{serving} of {total} workers serving on {listen}")
        del now

    def _stop_all(self) -> None:
        self._stopping = True
        self._notifier.stopping()
        for worker in self._workers:
            if worker.pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(worker.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        while any(w.pid for w in self._workers) and time.monotonic() < deadline:
            self._reap()
            time.sleep(0.05)
        for worker in self._workers:
            if worker.pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(worker.pid, signal.SIGKILL)
        while any(w.pid for w in self._workers):
            self._reap()
            time.sleep(0.01)


def _migrate(config: HubConfig) -> None:
    """Open the store once before the fork: the workers find the schema migrated."""
    from hub.statedir import DB_FILE  # noqa: PLC0415
    from hub.store import Store  # noqa: PLC0415

    async def go() -> None:
        store = await Store.open(config.state.dir / DB_FILE)
        await store.close()

    asyncio.run(go())


def _worker_main(  # noqa: PLR0917
    config: HubConfig,
    sock: socket.socket,
    ssl_context: ssl.SSLContext | None,
    metrics_dir: Path | None,
    credentials_dir: Path | None,
    heartbeat: int,
) -> int:
    """In the forked worker: serve ``sock`` until SIGTERM or the parent is gone."""
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the parent, which stops us
    signal.set_wakeup_fd(-1)
    if metrics_dir is not None:
        from prometheus_client import values  # noqa: PLC0415

        values.ValueClass = values.MultiProcessValue()  # type: ignore[no-untyped-call]
    os.set_blocking(heartbeat, False)
    return asyncio.run(
        _serve_worker(config, sock, ssl_context, metrics_dir, credentials_dir, heartbeat)
    )


async def _serve_worker(  # noqa: PLR0917
    config: HubConfig,
    sock: socket.socket,
    ssl_context: ssl.SSLContext | None,
    metrics_dir: Path | None,
    credentials_dir: Path | None,
    heartbeat: int,
) -> int:
    from hub.app import create_app  # noqa: PLC0415
    from hub.gcpolicy import freeze_after_full  # noqa: PLC0415
    from hub.server import start_hub  # noqa: PLC0415

    app = create_app(config, credentials_dir=credentials_dir, metrics_dir=metrics_dir)
    running = await start_hub(app, config, sock=sock, ssl_context=ssl_context)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)

    def beat(message: bytes) -> None:
        try:
            os.write(heartbeat, message)
        except BlockingIOError:
            pass  # the parent is slow to read: it has heard from us anyway
        except OSError as e:  # EPIPE: the parent is gone
            if e.errno == errno.EPIPE:
                log.warning("the hub's parent process is gone: stopping")
            stop.set()

    async def heartbeats() -> None:
        beat(b"R")
        while True:
            await asyncio.sleep(HEARTBEAT)
            beat(b".")

    tasks = [
        asyncio.create_task(heartbeats(), name="hub-heartbeat"),
        asyncio.create_task(freeze_after_full(), name="hub-gc-policy"),
    ]
    try:
        await stop.wait()
    finally:
        for task in tasks:
            task.cancel()
        await running.stop()
        os.close(heartbeat)
    return 0
