"""systemd integration: readiness, status lines, watchdog pings, journal logging.

:class:`Notifier` sends ``READY=1``, ``STATUS=...``, ``WATCHDOG=1`` and ``STOPPING=1`` through
``systemd.daemon.notify`` when ``NOTIFY_SOCKET`` is set (and does nothing otherwise).
:class:`Health` is the daemon's promise of progress: the attestation loop states by when it
will next be heard from (:meth:`Health.expect`); :func:`run_watchdog` pings at half of
``WATCHDOG_USEC`` only while that promise holds, so a hung TPM call or a stuck loop stops the
pings and systemd restarts the service. A blocked event loop stops them too, since the pinger
is a task on that loop. :func:`setup_logging` logs to the journal when ``JOURNAL_STREAM`` is
set, else to stderr.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Mapping

log = logging.getLogger("trustplane.agent")


class Notifier:
    """sd_notify messages, a no-op without ``NOTIFY_SOCKET``."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self.enabled = bool(env.get("NOTIFY_SOCKET"))
        self.last_status = ""

    def _send(self, message: str) -> None:
        if not self.enabled:
            return
        import systemd.daemon  # noqa: PLC0415 - only under systemd

        systemd.daemon.notify(message)

    def ready(self) -> None:
        self._send("READY=1")

    def status(self, text: str) -> None:
        """A one-line STATUS= for ``systemctl status`` (repeats are not resent)."""
        if text != self.last_status:
            self.last_status = text
            log.info("%s", text)
            self._send(f"STATUS={text}")

    def watchdog(self) -> None:
        self._send("WATCHDOG=1")

    def stopping(self) -> None:
        self._send("STOPPING=1")


def watchdog_interval(environ: Mapping[str, str] | None = None) -> float | None:
    """Half of ``WATCHDOG_USEC`` in seconds, or None when no watchdog is asked for (or it is
    meant for another process: ``WATCHDOG_PID`` differs)."""
    env = os.environ if environ is None else environ
    usec = env.get("WATCHDOG_USEC", "")
    pid = env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if pid and pid != str(os.getpid()):
        return None
    return int(usec) / 2_000_000


class Health:
    """The loop's latest promise: "you will hear from me again before ``deadline``"."""

    def __init__(self, first_deadline: float = 60.0) -> None:
        self._deadline = time.monotonic() + first_deadline

    def expect(self, within: float) -> None:
        """Promise progress within ``within`` seconds from now (call at every step)."""
        self._deadline = time.monotonic() + within

    def healthy(self) -> bool:
        return time.monotonic() <= self._deadline


async def run_watchdog(notifier: Notifier, health: Health, interval: float) -> None:
    """Ping ``WATCHDOG=1`` every ``interval`` s while ``health`` holds; runs until cancelled."""
    while True:
        if health.healthy():
            notifier.watchdog()
        else:
            log.warning("attestation loop missed its deadline: withholding the watchdog ping")
        await asyncio.sleep(interval)


def setup_logging(level: str, environ: Mapping[str, str] | None = None) -> None:
    """Journal handler under systemd (``JOURNAL_STREAM`` set), else stderr."""
    env = os.environ if environ is None else environ
    handler: logging.Handler
    if env.get("JOURNAL_STREAM"):
        import systemd.journal  # noqa: PLC0415 - only under systemd

        handler = systemd.journal.JournalHandler(SYSLOG_IDENTIFIER="trustplane-agent")
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("trustplane")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
