"""Work that runs exactly once across hub processes sharing a database: under a lease.

:func:`run_singleton` keeps trying to take the lease ``name`` (:mod:`hub.store.leases`) every
``ttl / 3`` seconds. While this process holds it, ``work()`` runs; when a renewal fails (the
database is unreachable, or the lease went to another process after this one stalled past
``ttl``), the work is cancelled at once. Another process takes a dead holder's lease within
``ttl`` plus one try. Cancelling :func:`run_singleton` cancels the work and gives the lease up,
so a clean shutdown hands over at once. Used for the stale-host sweep and the cluster sync
(:mod:`hub.clusters`, lease ``cluster-sync``); webhook delivery and alert raising follow the
verdicts of their own process and need none.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Callable, Coroutine
from typing import Any, Final

from hub.store import Store

log = logging.getLogger("trustplane.hub.singleton")

DEFAULT_TTL: Final = 15.0

Work = Callable[[], Coroutine[Any, Any, None]]
Clock = Callable[[], float]


def holder_id() -> str:
    """This process's name in the leases table: host, pid and a random part."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


async def run_singleton(
    store: Store,
    name: str,
    work: Work,
    *,
    holder: str,
    clock: Clock,
    ttl: float = DEFAULT_TTL,
) -> None:
    """Run ``work()`` while this process holds lease ``name`` (see the module docstring); runs
    until cancelled."""
    task: asyncio.Task[None] | None = None
    try:
        while True:
            try:
                held = await store.take_lease(name, holder, ttl, clock())
            except Exception:  # the loop boundary: a database error means "not held"
                log.exception("cannot renew lease %s", name)
                held = False
            if held and task is None:
                log.info("lease %s taken by %s: starting its work", name, holder)
                task = asyncio.create_task(work(), name=f"singleton-{name}")
            elif not held and task is not None:
                log.warning("lease %s lost by %s: stopping its work", name, holder)
                await _cancel(task)
                task = None
            elif task is not None and task.done():
                # the work ended by itself (a bug: it is meant to run for ever); logged and
                # started again at the next turn
                with contextlib.suppress(asyncio.CancelledError):
                    error = task.exception()
                    if error is not None:
                        log.error("work under lease %s failed", name, exc_info=error)
                task = None
            await asyncio.sleep(ttl / 3)
    finally:
        if task is not None:
            await _cancel(task)
        with contextlib.suppress(Exception):
            await asyncio.shield(store.release_lease(name, holder))


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
