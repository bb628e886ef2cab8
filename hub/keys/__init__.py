"""The key broker: key-encryption keys with transfer policies, wrap for pipelines, release to
attested hosts (docs/keys.md, docs/protocol.md "Key release").

Modules: :mod:`~hub.keys.broker` (sealing keys under the master key, blobs, the policy-signing
key), :mod:`~hub.keys.release` (the per-blob decision), :mod:`~hub.keys.routes` (HTTP),
:mod:`~hub.keys.api` (the JSON API twins of the CLI), :mod:`~hub.keys.cli` (``trustplane-hub
keys``), :mod:`~hub.keys.pages` (the Keys status page). :func:`install` adds the routes and, at
startup, the broker built from the master key.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from hub.keys import api, pages, routes
from hub.keys.broker import Broker
from hub.state import STATE, KeyedRateLimiter
from trustcore.errors import TrustcoreError
from trustcore.tpm.public import parse_public

__all__ = ["binding_kind", "install"]


def binding_kind(app: web.Application, binding_public: bytes | None) -> str:
    """What enrollment records of a certified binding key: ``authorized`` (PolicyAuthorize by
    this hub's policy key: releases follow approved reboots), ``pcr`` (another policy, e.g. the
    older PolicyPCR key: usable only in its exact PCR state, checked at each release), or
    ``none``."""
    if binding_public is None:
        return "none"
    try:
        policy = parse_public(binding_public).auth_policy
    except TrustcoreError:
        return "none"
    broker = app.get(routes.BROKER)
    return "authorized" if broker and policy == broker.signer.authorize_policy else "pcr"


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
    pages.add_routes(app)
