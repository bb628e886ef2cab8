"""Verdict changes written by other hub processes sharing a PostgreSQL database (LISTEN/NOTIFY).

Each verdict change is announced in the transaction that writes it
(:data:`hub.store.VERDICTS_CHANNEL`, payload: its ``verdicts`` row id), so PostgreSQL delivers
it when, and only if, that transaction commits, to every listening connection. A
:class:`TransitionListener` holds one asynchronous psycopg connection that listens, leaves out
the changes its own store wrote (the notifying backend's pid is the store connection's: those
were published in this process already, at once), reads each other change's row through the
store and yields it. A lost connection is opened again after a pause; changes committed while
it was down are not replayed (logged: pages reload the state; alerts and webhooks are not
affected, since they are written and sent by the process that wrote the change).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Final

import psycopg
from psycopg import sql

from hub.store.postgres import CONNECT_TIMEOUT
from hub.store.reports import VERDICTS_CHANNEL, Transition

if TYPE_CHECKING:
    from hub.store.reports import ReportsStore

log = logging.getLogger("trustplane.hub.store")

RECONNECT_DELAY: Final = 2.0  # seconds between attempts to listen again


class TransitionListener:
    """Transitions other processes committed, as they commit (see the module docstring)."""

    def __init__(self, url: str, store: ReportsStore, *, channel: str = VERDICTS_CHANNEL) -> None:
        self._url = url
        self._store = store
        self._channel = channel
        self.listening = asyncio.Event()  # set while LISTEN is in effect (tests wait on it)

    async def transitions(self) -> AsyncIterator[Transition]:
        """Yield each change another process commits; runs until cancelled."""
        while True:
            try:
                async for transition in self._listen_once():
                    yield transition
            except (psycopg.Error, OSError) as e:
                log.warning(
                    "verdict notifications interrupted (%s); listening again", type(e).__name__
                )
            self.listening.clear()
            await asyncio.sleep(RECONNECT_DELAY)

    async def _listen_once(self) -> AsyncIterator[Transition]:
        conn = await psycopg.AsyncConnection.connect(
            self._url, autocommit=True, connect_timeout=CONNECT_TIMEOUT
        )
        async with conn:
            await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self._channel)))
            self.listening.set()
            async for notify in conn.notifies():
                if notify.pid == self._store.backend_pid:
                    continue  # this process wrote it and published it already
                try:
                    change_id = int(notify.payload)
                except ValueError:
                    log.warning("verdict notification with a bad payload ignored")
                    continue
                transition = await self._store.get_transition(change_id)
                if transition is not None:
                    yield transition
