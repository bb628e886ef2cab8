"""TLS session resumption for the agent's connections to the hub.

An agent reports every ``attestation.interval`` (60 s) and the hub closes idle connections
after ``server.keepalive_timeout``: when the hub is tuned to hold fewer connections, most
reports start a new TLS connection. A full handshake costs the hub an ECDHE key exchange, a
signature and the verification of the client's certificate chain; a resumed one (TLS 1.3
PSK with ECDHE, or a TLS 1.2 session ticket) skips the signature and the certificate checks.

Python's ``ssl`` lets a client offer a saved session only through ``wrap_socket``/``wrap_bio``'s
``session`` argument or ``SSLObject.session`` before the handshake; asyncio (and so aiohttp)
call :meth:`ssl.SSLContext.wrap_bio` without one. :class:`ResumingContext` is an
``SSLContext`` that fills it in: it remembers the last client-side ``SSLObject`` per server name
and offers that connection's session (once it holds a ticket the server sent, and while the
ticket's lifetime lasts) to the next connection to the same name. The hub authenticates the
resumed connection by the client certificate stored in the ticket (verified at the full
handshake) and still checks, per request, that the host is enrolled, that the certificate is
its current one, and that it has not expired since.

A session belongs to the context that made it, so a new client certificate (a new context)
starts with a full handshake.
"""

from __future__ import annotations

import ssl
import time
from pathlib import Path
from typing import Any, Self


class ResumingContext(ssl.SSLContext):
    """A client ``SSLContext`` that resumes the last session per server name (see above)."""

    _last: dict[str | None, ssl.SSLObject]

    def __new__(cls, protocol: int = ssl.PROTOCOL_TLS_CLIENT, *args: Any, **kwargs: Any) -> Self:  # noqa: ANN401
        ctx = super().__new__(cls, protocol, *args, **kwargs)
        ctx._last = {}
        return ctx

    def resumable_session(self, server_hostname: str | None) -> ssl.SSLSession | None:
        """The session the next connection to ``server_hostname`` offers, if any."""
        previous = self._last.get(server_hostname)
        session = previous.session if previous is not None else None
        if session is None or not session.has_ticket:
            return None
        if session.time + session.timeout <= time.time():
            return None
        return session

    def resumed(self, server_hostname: str | None) -> bool | None:
        """Whether the latest connection to ``server_hostname`` resumed a session (``None``:
        no connection yet)."""
        previous = self._last.get(server_hostname)
        return None if previous is None else previous.session_reused

    def wrap_bio(  # type: ignore[override]
        self,
        incoming: ssl.MemoryBIO,
        outgoing: ssl.MemoryBIO,
        server_side: bool = False,
        server_hostname: str | None = None,
        session: ssl.SSLSession | None = None,
    ) -> ssl.SSLObject:
        if server_side:
            return super().wrap_bio(incoming, outgoing, server_side, server_hostname, session)
        if session is None:
            session = self.resumable_session(server_hostname)
        obj = super().wrap_bio(incoming, outgoing, server_side, server_hostname, session)
        self._last[server_hostname] = obj
        return obj


def resuming_client_context(
    ca_file: Path | str | None = None, *, cadata: str | None = None
) -> ResumingContext:
    """What ``ssl.create_default_context()`` makes for a client (certificate and host name
    verified, TLS 1.2 or later), as a :class:`ResumingContext`: ``ca_file`` or ``cadata``, or
    the system roots."""
    ctx = ResumingContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if ca_file is None and cadata is None:
        ctx.load_default_certs(ssl.Purpose.SERVER_AUTH)
    else:
        ctx.load_verify_locations(cafile=None if ca_file is None else str(ca_file), cadata=cadata)
    return ctx
