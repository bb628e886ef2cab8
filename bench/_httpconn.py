"""A minimal HTTP/1.1 keep-alive client connection over asyncio TLS streams, for load generation.

One :class:`HttpConnection` is one TCP+TLS connection (with whatever client certificate its
``ssl.SSLContext`` carries) that sends one request at a time and reads responses framed by
``Content-Length`` (what the hub's aiohttp answers use). It is deliberately small: a load
generator sharing two cores with the server must spend as little CPU per request as possible, so
there is no redirect, chunked-encoding or pooling logic here. Pooling (which host owns which
connection) is the caller's job.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from typing import Final

__all__ = ["HttpConnection", "HttpError"]

_HEAD_LIMIT: Final = 64 * 1024


class HttpError(Exception):
    """The connection broke or the answer was not a Content-Length framed HTTP/1.1 response."""


class HttpConnection:
    """A keep-alive connection to ``host:port``; open with :meth:`open`, end with :meth:`close`."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._host = host.encode("ascii")
        self.worker: str | None = None  # the hub worker that answered last (X-Trustplane-Worker)

    @classmethod
    async def open(
        cls, host: str, port: int, context: ssl.SSLContext, server_hostname: str
    ) -> HttpConnection:
        """Connect and complete the TLS handshake; raises ``OSError``/``ssl.SSLError``."""
        reader, writer = await asyncio.open_connection(
            host, port, ssl=context, server_hostname=server_hostname, limit=_HEAD_LIMIT
        )
        return cls(reader, writer, server_hostname)

    async def request(
        self, method: str, path: str, body: bytes, *, authorization: str | None = None
    ) -> tuple[int, bytes]:
        """Send one request with a JSON body; return (status, body). Raises :class:`HttpError`."""
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: ".encode("ascii")
            + self._host
            + b"\r\nContent-Type: application/json\r\nContent-Length: "
            + str(len(body)).encode("ascii")
            + (b"" if authorization is None else f"\r\nAuthorization: {authorization}".encode())
            + b"\r\n\r\n"
        )
        try:
            self._writer.write(head + body)
            raw = await self._reader.readuntil(b"\r\n\r\n")
            status, length, worker = _parse_head(raw)
            if worker is not None:
                self.worker = worker
            payload = await self._reader.readexactly(length)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
            raise HttpError(f"{method} {path}: {type(exc).__name__}: {exc}") from None
        return status, payload

    @property
    def resumed(self) -> bool:
        """Whether the TLS handshake resumed a session."""
        obj = self._writer.get_extra_info("ssl_object")
        return bool(obj is not None and obj.session_reused)

    @property
    def closed(self) -> bool:
        """True once the peer closed the connection (an idle keep-alive timeout) or we did."""
        return self._reader.at_eof() or self._writer.is_closing()

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await self._writer.wait_closed()


def _parse_head(raw: bytes) -> tuple[int, int, str | None]:
    lines = raw.split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise HttpError(f"not an HTTP/1.1 status line: {lines[0][:80]!r}")
    length = -1
    worker = None
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        key = name.strip().lower()
        if key == b"content-length":
            length = int(value.strip())
        elif key == b"x-trustplane-worker":
            worker = value.strip().decode("ascii", "replace")
    if length < 0:
        raise HttpError("response without Content-Length")
    return int(parts[1]), length, worker
