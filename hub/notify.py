"""systemd notifications of ``trustplane-hub run``: readiness, status lines, watchdog pings.

:class:`Notifier` sends ``READY=1``, ``STATUS=...``, ``WATCHDOG=1`` and ``STOPPING=1`` through
``systemd.daemon.notify`` when ``NOTIFY_SOCKET`` is set, and does nothing otherwise (a hub run
by hand or by the tests). Only the main process notifies (the unit's ``NotifyAccess=main``):
the parent of :mod:`hub.supervisor`, or the single process when ``server.workers = 1``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

log = logging.getLogger("trustplane.hub")


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
