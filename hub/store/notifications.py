"""Wake-ups from other hub processes sharing a PostgreSQL database (LISTEN/NOTIFY).

A writer announces a new row with ``NOTIFY`` inside the transaction that writes it
(:meth:`hub.store.connection.Connection.notify`), so PostgreSQL delivers it when, and only if,
that transaction commits, to every connection listening on the channel, on any machine.
:class:`NotificationListener` holds one asynchronous psycopg connection (autocommit, its own:
the store's connection is busy on its thread) that listens and yields the payloads. It also
yields ``None`` each time it starts listening (first, and again after the connection was
lost and opened anew, after a pause): a reader then reads what it may have missed, since the
notifications sent while nobody listened are gone (:mod:`hub.bus` reads its log from the last
id it saw, so nothing is lost). The URL, which may hold a password, is never logged.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Final

from hub.store.connection import CONNECT_TIMEOUT

log = logging.getLogger("trustplane.hub.store")

RECONNECT_DELAY: Final = 2.0  # seconds between attempts to listen again


class NotificationListener:
    """The payloads of one channel's notifications (see the module docstring)."""

    def __init__(self, url: str, channel: str, *, reconnect_delay: float = RECONNECT_DELAY) -> None:
        self._url = url
        self._channel = channel
        self._delay = reconnect_delay
        self.listening = asyncio.Event()  # set while LISTEN is in effect

    async def payloads(self) -> AsyncIterator[str | None]:
        """Each notification's payload, and ``None`` whenever listening (re)starts; runs until
        cancelled."""
        import psycopg  # noqa: PLC0415 - only a hub on PostgreSQL needs the driver
        from psycopg import sql  # noqa: PLC0415

        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(
                    self._url, autocommit=True, connect_timeout=CONNECT_TIMEOUT
                )
                async with conn:
                    await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self._channel)))
                    self.listening.set()
                    yield None
                    async for notify in conn.notifies():
                        yield notify.payload
            except (psycopg.Error, OSError) as e:
                log.warning(
                    "notifications on %s interrupted (%s); listening again",
                    self._channel,
                    type(e).__name__,
                )
            self.listening.clear()
            await asyncio.sleep(self._delay)
