"""The verdict bus: verdict changes written by any hub process, read by every hub process.

:class:`VerdictBus` is the interface: :meth:`~VerdictBus.publish` one :class:`VerdictChange`
(it gets an id, larger than every id published before it), and iterate
:meth:`~VerdictBus.changes` from a starting point: every change after that id, in id order,
whichever process (a worker of ``server.workers``, or a replica on a shared database) wrote it.
The status page's live stream, the alert notices (and so webhooks) and the metrics are fed
from it (:func:`hub.app.create_app` pumps it into the in-process :class:`hub.state.VerdictEvents`).

:class:`ChangeLogBus` is the part every backend shares: changes are rows of the store's
``verdict_changes`` log (:mod:`hub.store.verdictchanges`, plain SQL); a reader reads the rows
after the last id it saw whenever it is woken, and at least every ``poll`` seconds (a missed
wake-up only delays a change, never loses it). Backends differ only in how a writer wakes the
readers of other processes:

- :class:`SqliteVerdictBus` (one machine): every process binds a unix datagram socket in
  ``<state dir>/bus/`` (mode 0700); after its insert committed, a writer sends one empty
  datagram to every other socket there (its own readers are woken directly). A socket whose
  process died answers ``ECONNREFUSED`` and is removed. Paths go through an ``O_PATH`` handle
  of the directory (``/proc/self/fd/N/name``), so a long state directory never exceeds the
  108-byte limit of a socket address. Measured delay from publish to a reader in another
  process: see docs/hub-config.md ("Worker processes").
- PostgreSQL (wt/scale-db): ``LISTEN``/``NOTIFY`` with the change id as payload; same log.

Ordering: ids are assigned by the database in commit order on SQLite (one writer at a time).
A backend whose concurrent transactions can commit ids out of order must make readers wait for
the gap (the PostgreSQL bus serialises its inserts).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from hub.store import Store, StoredVerdictChange

log = logging.getLogger("trustplane.hub.bus")

POLL: Final = 1.0  # seconds between two reads without a wake-up
BATCH: Final = 256  # rows read at once
OWN_IDS: Final = 4096  # ids this process published, remembered to mark entries ``local``
SOCKET_SUFFIX: Final = ".sock"


@dataclass(frozen=True, slots=True)
class VerdictChange:
    """A host's verdict changed (``alert_id`` is set when the change raised an alert)."""

    host_id: str
    previous: str
    verdict: str
    reasons: tuple[str, ...]
    at: float
    alert_id: int | None = None


@dataclass(frozen=True, slots=True)
class PostedChange:
    """A change as the bus delivers it: its id, and whether this process published it."""

    id: int
    change: VerdictChange
    local: bool


class VerdictBus(ABC):
    """Verdict changes across processes (see the module docstring)."""

    @abstractmethod
    async def start(self) -> None:
        """Get ready to publish and to be woken (before the first :meth:`changes`)."""

    @abstractmethod
    async def publish(self, change: VerdictChange) -> int:
        """Record ``change`` (committed when this returns) and wake every reader; its id."""

    @abstractmethod
    async def position(self) -> int:
        """The id of the newest change now (start :meth:`changes` there for "from now on")."""

    @abstractmethod
    def changes(self, after: int) -> AsyncIterator[PostedChange]:
        """Every change with an id above ``after``, in id order, for ever (until cancelled)."""

    @abstractmethod
    async def close(self) -> None:
        """Stop being woken; iterators end at their next wait."""


class ChangeLogBus(VerdictBus):
    """A bus over the store's ``verdict_changes`` log; subclasses say how to wake other
    processes (:meth:`_announce`) and call :meth:`_wake` when told to read."""

    def __init__(self, store: Store, *, poll: float = POLL) -> None:
        self._store = store
        self._poll = poll
        self._woken = asyncio.Event()
        self._closed = False
        self._own: deque[int] = deque(maxlen=OWN_IDS)

    async def start(self) -> None:
        return

    async def publish(self, change: VerdictChange) -> int:
        new_id = await self._store.add_verdict_change(
            change.host_id,
            change.previous,
            change.verdict,
            change.reasons,
            change.at,
            change.alert_id,
        )
        self._own.append(new_id)
        self._wake()
        try:
            await self._announce(new_id)
        except OSError:  # the change is stored: readers see it at their next poll
            log.warning("cannot wake the other hub processes", exc_info=True)
        return new_id

    async def position(self) -> int:
        return await self._store.last_verdict_change_id()

    async def changes(self, after: int) -> AsyncIterator[PostedChange]:
        last = after
        while not self._closed:
            woken = self._woken
            rows = await self._store.verdict_changes_after(last, BATCH)
            if rows and rows[0].id > last + 1 and last > 0:
                log.warning("verdict bus: changes %d-%d were pruned unread", last + 1, rows[0].id)
            for row in rows:
                last = row.id
                yield PostedChange(row.id, _change(row), row.id in self._own)
            if len(rows) == BATCH:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(woken.wait(), self._poll)

    async def close(self) -> None:
        self._closed = True
        self._wake()

    def _wake(self) -> None:
        """Wake this process's readers (each reads once more)."""
        woken, self._woken = self._woken, asyncio.Event()
        woken.set()

    async def _announce(self, change_id: int) -> None:
        """Tell the other processes a change is there (nothing to do for a lone process)."""
        return


def _change(row: StoredVerdictChange) -> VerdictChange:
    return VerdictChange(row.host_id, row.previous, row.verdict, row.reasons, row.at, row.alert_id)


class SqliteVerdictBus(ChangeLogBus):
    """The one-machine bus: unix datagram wake-ups in ``directory`` (see the module docstring)."""

    def __init__(self, store: Store, directory: Path, *, poll: float = POLL) -> None:
        super().__init__(store, poll=poll)
        self._directory = directory
        self._dir_fd: int | None = None
        self._sock: socket.socket | None = None
        self._name = f"{os.getpid()}-{uuid.uuid4().hex[:12]}{SOCKET_SUFFIX}"

    def _path(self, name: str) -> str:
        return f"/proc/self/fd/{self._dir_fd}/{name}"

    async def start(self) -> None:
        self._directory.mkdir(mode=0o700, exist_ok=True)
        self._directory.chmod(0o700)
        self._dir_fd = os.open(self._directory, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        sock.setblocking(False)
        sock.bind(self._path(self._name))
        self._sock = sock
        asyncio.get_running_loop().add_reader(sock.fileno(), self._readable)

    def _readable(self) -> None:
        """Drain the socket (any number of datagrams is one wake-up)."""
        assert self._sock is not None
        while True:
            try:
                self._sock.recv(16)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                break
        self._wake()

    async def _announce(self, change_id: int) -> None:
        if self._sock is None or self._dir_fd is None:
            return
        for name in os.listdir(self._directory):
            if name == self._name or not name.endswith(SOCKET_SUFFIX):
                continue
            try:
                self._sock.sendto(b"", self._path(name))
            except (BlockingIOError, InterruptedError):
                pass  # its queue is full: it has wake-ups to read already
            except (ConnectionRefusedError, FileNotFoundError):
                with contextlib.suppress(OSError):  # its process is gone
                    os.unlink(self._path(name))

    async def close(self) -> None:
        await super().close()
        if self._sock is not None:
            with contextlib.suppress(ValueError, RuntimeError):
                asyncio.get_running_loop().remove_reader(self._sock.fileno())
            with contextlib.suppress(OSError):
                os.unlink(self._path(self._name))
            self._sock.close()
            self._sock = None
        if self._dir_fd is not None:
            os.close(self._dir_fd)
            self._dir_fd = None
