"""Serving the hub: the TLS context and a started site on the configured address.

TLS 1.2 or later with the state directory's server certificate; client certificates are
requested but optional (enrollment happens without one) and, when sent, verified against the hub
CA. Used by ``trustplane-hub run`` and by the tests, which start the real server on 127.0.0.1.
"""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass

from aiohttp import web

from hub.config import HubConfig
from hub.connections import GuardedRunner, GuardedSite, set_tls_read_buffer


def server_ssl_context(config: HubConfig) -> ssl.SSLContext:
    """The hub's TLS context; raises ``OSError``/``ssl.SSLError`` for unreadable key files."""
    state = config.state.dir
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(state / "server.pem", state / "server.key")
    ctx.load_verify_locations(cafile=str(state / "ca.pem"))
    ctx.verify_mode = ssl.CERT_OPTIONAL
    return ctx


@dataclass(slots=True)
class RunningHub:
    runner: web.AppRunner
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}"

    async def stop(self) -> None:
        await self.runner.cleanup()


async def start_hub(
    app: web.Application,
    config: HubConfig,
    *,
    port: int | None = None,
    sock: socket.socket | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> RunningHub:
    """Start ``app`` on ``server.listen`` (``port`` overrides, 0 = any free port), or on the
    listening socket ``sock`` a worker inherited (:mod:`hub.supervisor`), with ``ssl_context``
    when given (the parent's: its session-ticket keys are shared by every worker)."""
    server = config.server
    set_tls_read_buffer(server.tls_read_buffer)
    runner = GuardedRunner(
        app,
        header_timeout=server.header_timeout,
        max_connections=server.max_connections,
        max_per_address=server.max_connections_per_address,
        access_log=None,
        handle_signals=False,
        keepalive_timeout=server.keepalive_timeout,
    )
    await runner.setup()
    host = server.host
    if ssl_context is None and server.tls:
        ssl_context = server_ssl_context(config)
    site = GuardedSite(
        runner,
        host,
        server.port if port is None else port,
        ssl_context=ssl_context if server.tls else None,
        sock=sock,
    )
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    bound = runner.addresses[0][1] if runner.addresses else config.server.port
    return RunningHub(runner, host, int(bound))
