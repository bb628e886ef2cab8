"""The key broker: key-encryption keys with transfer policies, wrap for pipelines, release to
attested hosts (docs/keys.md, docs/protocol.md "Key release").

Modules: :mod:`~hub.keys.broker` (sealing keys under the master key, blobs, the policy-signing
key), :mod:`~hub.keys.release` (the per-blob decision), :mod:`~hub.keys.routes` (HTTP),
:mod:`~hub.keys.api` (the JSON API twins of the CLI), :mod:`~hub.keys.cli` (``trustplane-hub
keys``). :func:`install` adds the routes and, at startup, the broker built from the master key.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from hub.keys import api, routes
from hub.keys.broker import Broker
from hub.state import STATE, KeyedRateLimiter

__all__ = ["install"]


def install(app: web.Application) -> None:
    """Add the key routes; the broker is made once the hub's keys are loaded (after the
    state's own startup, which is registered first)."""

    async def broker(app: web.Application) -> AsyncIterator[None]:
        st = app[STATE]
        app[routes.BROKER] = Broker(st.keys.master_key, random_bytes=st.random_bytes)
        app[routes.RELEASE_LIMITER] = KeyedRateLimiter(
            st.config.keys.release_rate_per_minute, st.clock
        )
        yield

    app.cleanup_ctx.append(broker)
    routes.add_routes(app)
    api.add_routes(app)
