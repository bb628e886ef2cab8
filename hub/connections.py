"""What a connection may cost the hub: a deadline for the first request, caps, small buffers.

aiohttp keeps a connection that never sends a complete request until ``keepalive_timeout``
(75 s here) and accepts as many connections as the process has descriptors; asyncio gives every
TLS connection a 256 KiB read buffer that it keeps while the connection is idle. Measured by
``python -m bench.idle_connections``: 2,000 idle keep-alive TLS connections grew the hub by
~277 KB each. This module bounds all three:

- **Header deadline** (``server.header_timeout``, default 10 s): a new connection must finish
  its TLS handshake (asyncio's ``ssl_handshake_timeout``) and send the complete headers of its
  first request within it, else it is closed. Later idle time between requests is
  ``server.keepalive_timeout``'s.
- **Caps** (``server.max_connections``, ``server.max_connections_per_address``): a connection
  past either is closed at once, after its handshake (the peer's address is known then); one
  warning per cap and minute says so and how many were refused, never one line per connection.
- **TLS read buffer** (``server.tls_read_buffer``, default 17 KiB): asyncio's ``SSLProtocol``
  reads into a buffer of ``max_size`` bytes (256 KiB by default), allocated per connection and
  held for its life. One TLS record is at most 16 KiB of data plus a few hundred bytes, so 17 KiB
  still takes a whole record per ``recv``; a 12 MiB report costs ~700 of them instead of ~50,
  and every connection holds ~239 KiB less. The size is a class attribute of asyncio's
  ``SSLProtocol`` (there is no per-server knob), so it applies to the whole process; the hub
  process serves nothing else.
- **Returning memory**: a closed connection's objects hold reference cycles (that
  :mod:`hub.gcpolicy` may have frozen while the connection lived), and glibc keeps freed memory
  in its heap, so RSS stayed at its peak after 2,000 connections closed. After a burst of closed
  connections (256 or more, then 5 s without more) the hub unfreezes and runs one full
  collection, then calls glibc's ``malloc_trim(0)``, which gives the free pages back.

Measured with ``python -m bench.idle_connections --json`` (2,000 idle connections, numbers in
docs/hub-config.md).
"""

from __future__ import annotations

import asyncio
import asyncio.sslproto
import ctypes
import gc
import logging
import socket
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from aiohttp import web, web_protocol, web_server

log = logging.getLogger("trustplane.hub.connections")

_WARN_EVERY = 60.0
_TRIM_AFTER_CLOSED = 256
_TRIM_QUIET = 5.0


def _load_malloc_trim() -> Callable[[int], int] | None:
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc: nothing to trim
        return None
    trim: Callable[[int], int] = libc.malloc_trim
    return trim


_malloc_trim = _load_malloc_trim()


def set_tls_read_buffer(size: int) -> None:
    """Make asyncio's TLS transports read into ``size``-byte buffers (process-wide)."""
    asyncio.sslproto.SSLProtocol.max_size = size


class GuardedServer(web_server.Server):
    """aiohttp's connection manager with the header deadline and the caps of this module."""

    def __init__(
        self,
        *args: Any,  # noqa: ANN401 - aiohttp's own Server arguments
        header_timeout: float,
        max_connections: int,
        max_per_address: int,
        **kwargs: Any,  # noqa: ANN401
    ) -> None:
        super().__init__(*args, **kwargs)
        self.header_timeout = header_timeout
        self.max_connections = max_connections
        self.max_per_address = max_per_address
        self.open = 0
        self.per_address: Counter[str] = Counter()
        self.refused: Counter[str] = Counter()  # "total" / "per_address" -> since last warning
        self.timed_out = 0
        self._addresses: dict[web_protocol.RequestHandler, str] = {}
        self._warned_at: dict[str, float] = {}
        self.closed_since_trim = 0
        self.trims = 0
        self._trim_handle: asyncio.TimerHandle | None = None

    def connection_made(
        self, handler: web_protocol.RequestHandler, transport: asyncio.Transport
    ) -> None:
        super().connection_made(handler, transport)
        peer = transport.get_extra_info("peername")
        address = str(peer[0]) if isinstance(peer, tuple) and peer else "unknown"
        if self.open >= self.max_connections:
            self._refuse(transport, "total", address)
            return
        if self.max_per_address and self.per_address[address] >= self.max_per_address:
            self._refuse(transport, "per_address", address)
            return
        self.open += 1
        self.per_address[address] += 1
        self._addresses[handler] = address
        loop = asyncio.get_running_loop()
        loop.call_later(self.header_timeout, self._check_first_request, handler, transport)

    def connection_lost(
        self, handler: web_protocol.RequestHandler, exc: BaseException | None = None
    ) -> None:
        super().connection_lost(handler, exc)
        address = self._addresses.pop(handler, None)
        if address is not None:
            self.open -= 1
            self.per_address[address] -= 1
            if self.per_address[address] <= 0:
                del self.per_address[address]
            self.closed_since_trim += 1
            if self.closed_since_trim >= _TRIM_AFTER_CLOSED and _malloc_trim is not None:
                if self._trim_handle is not None:
                    self._trim_handle.cancel()  # wait until the burst is over
                loop = asyncio.get_running_loop()
                self._trim_handle = loop.call_later(_TRIM_QUIET, self._trim)

    def _trim(self) -> None:
        self._trim_handle = None
        self.closed_since_trim = 0
        # the closed connections' objects hold reference cycles, and hub.gcpolicy may have
        # frozen them while they lived: hand them back and collect them, then return the pages
        gc.unfreeze()
        gc.collect()
        if _malloc_trim is not None:
            _malloc_trim(0)
        self.trims += 1

    def _check_first_request(
        self, handler: web_protocol.RequestHandler, transport: asyncio.Transport
    ) -> None:
        # aiohttp counts a request once its headers are parsed (RequestHandler.data_received)
        if handler._request_count == 0 and not transport.is_closing():
            self.timed_out += 1
            transport.close()

    def _refuse(self, transport: asyncio.Transport, cap: str, address: str) -> None:
        transport.close()
        self.refused[cap] += 1
        now = time.monotonic()
        if now - self._warned_at.get(cap, -_WARN_EVERY) >= _WARN_EVERY:
            limit = self.max_connections if cap == "total" else self.max_per_address
            setting = "max_connections" if cap == "total" else "max_connections_per_address"
            log.warning(
                "connection limit reached: %d connection(s) refused in the last minute "
                "(server.%s = %d; latest from %s)",
                self.refused[cap],
                setting,
                limit,
                address,
            )
            self._warned_at[cap] = now
            self.refused[cap] = 0


class GuardedRunner(web.AppRunner):
    """An AppRunner whose connection manager is a :class:`GuardedServer`."""

    def __init__(
        self,
        app: web.Application,
        *,
        header_timeout: float,
        max_connections: int,
        max_per_address: int,
        **kwargs: Any,  # noqa: ANN401 - aiohttp's AppRunner arguments
    ) -> None:
        super().__init__(app, **kwargs)
        self.header_timeout = header_timeout
        self._max_connections = max_connections
        self._max_per_address = max_per_address

    async def _make_server(self) -> web_server.Server:
        server = await super()._make_server()  # starts the app; its Server is replaced
        return GuardedServer(
            server.request_handler,
            request_factory=server.request_factory,
            handler_cancellation=server.handler_cancellation,
            loop=server._loop,
            header_timeout=self.header_timeout,
            max_connections=self._max_connections,
            max_per_address=self._max_per_address,
            **server._kwargs,
        )


class GuardedSite(web.TCPSite):
    """A TCPSite whose TLS handshake must finish within the header deadline."""

    def __init__(
        self,
        runner: GuardedRunner,
        *args: Any,  # noqa: ANN401
        sock: socket.socket | None = None,
        **kwargs: Any,  # noqa: ANN401
    ) -> None:
        """As TCPSite; ``sock``: serve this listening socket (inherited) instead of binding."""
        super().__init__(runner, *args, **kwargs)
        self._handshake_timeout = runner.header_timeout
        self._sock = sock

    async def start(self) -> None:
        await web.BaseSite.start(self)
        loop = asyncio.get_running_loop()
        server = self._runner.server
        assert server is not None
        handshake_timeout = self._handshake_timeout if self._ssl_context else None
        if self._sock is not None:  # inherited from the parent (hub.supervisor)
            self._server = await loop.create_server(
                server,
                sock=self._sock,
                ssl=self._ssl_context,
                ssl_handshake_timeout=handshake_timeout,
                backlog=self._backlog,
            )
        else:
            self._server = await loop.create_server(
                server,
                self._host,
                self._port,
                ssl=self._ssl_context,
                ssl_handshake_timeout=handshake_timeout,
                backlog=self._backlog,
                reuse_address=self._reuse_address,
                reuse_port=self._reuse_port,
            )
        if self._server.sockets:
            self._bound_port = self._server.sockets[0].getsockname()[1]
        else:
            self._bound_port = self._port
