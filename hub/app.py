"""The hub's aiohttp application: :func:`create_app` wires config, state, routes and middleware.

Resources live in ``cleanup_ctx``: the store is opened (and migrated) at startup and closed at
shutdown, keys are loaded from the state directory, the stale-host timer runs as a task. Tests
pass ``clock`` (a callable returning Unix seconds) to move time, and ``random_bytes`` when they
need to know the hub's randomness.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Final

from aiohttp import web

from hub import api, assettags, attestation, enrollment, groups
from hub.auditseal import audit_sealer
from hub.auth import auth_middleware
from hub.config import ConfigError, HubConfig
from hub.errors import MAX_BODY, body_limit_middleware, error_middleware
from hub.keys import install as install_keys
from hub.pki import PkiError, load_ca_bundle
from hub.singleton import holder_id, run_singleton
from hub.state import (
    CLOCK,
    CONFIG,
    EVENTS,
    STATE,
    STORE,
    Clock,
    HubState,
    KeyedRateLimiter,
    RandomBytes,
    VerdictEvents,
)
from hub.statedir import DB_FILE, load_hub_keys
from hub.store import Store
from hub.verification import ReportVerifier
from hub.web import install as install_web

__all__ = ["create_app"]


def _load_anchors(config: HubConfig) -> tuple[object, ...]:
    path = config.enrollment.ek_ca_bundle
    if not path:
        return ()
    try:
        return tuple(load_ca_bundle(Path(path).read_bytes()))
    except OSError as e:
        raise ConfigError(path, "enrollment.ek_ca_bundle", f"cannot read: {e.strerror}") from None
    except PkiError as e:
        raise ConfigError(path, "enrollment.ek_ca_bundle", str(e)) from None


HSTS: Final = "max-age=31536000"


async def _strict_transport_security(_request: web.Request, response: web.StreamResponse) -> None:
    """Served over TLS, every answer (errors included) tells browsers to use HTTPS only."""
    response.headers["Strict-Transport-Security"] = HSTS


def create_app(
    config: HubConfig,
    *,
    clock: Clock = time.time,
    random_bytes: RandomBytes = os.urandom,
    credentials_dir: Path | None = None,
) -> web.Application:
    """The hub application for ``config``; raises :class:`ConfigError` for a bad CA bundle.

    ``credentials_dir`` is systemd's ``$CREDENTIALS_DIRECTORY`` (the master key's credential)."""
    anchors = _load_anchors(config)
    app = web.Application(
        client_max_size=config.server.max_body_bytes,
        middlewares=[
            error_middleware,
            body_limit_middleware,
            auth_middleware(lambda r: r.app[STATE].store),
        ],
    )
    if config.server.tls:
        app.on_response_prepare.append(_strict_transport_security)
    app[CONFIG] = config
    app[MAX_BODY] = config.server.max_body_bytes
    app[CLOCK] = clock
    app[EVENTS] = VerdictEvents()

    async def resources(app: web.Application) -> AsyncIterator[None]:
        keys = load_hub_keys(config.state.dir, credentials_dir)
        store = await Store.open(config.state.dir / DB_FILE)
        store.audit_sealer = audit_sealer(config, keys.jws_key)
        state = HubState(
            config=config,
            store=store,
            keys=keys,
            clock=clock,
            verifier=ReportVerifier(store, config.attestation, tag_ca=keys.tag_ca.certificate),
            events=app[EVENTS],
            enroll_limiter=KeyedRateLimiter(config.enrollment.rate_per_minute, clock),
            ek_limiter=KeyedRateLimiter(config.enrollment.rate_per_ek, clock),
            ek_anchors=anchors,  # type: ignore[arg-type]
            random_bytes=random_bytes,
        )
        app[STATE] = state
        app[STORE] = store
        # the stale sweep runs in one process of those sharing the database (hub.singleton)
        watcher = asyncio.create_task(
            run_singleton(
                store,
                "stale-sweep",
                lambda: attestation.watch_staleness(state),
                holder=holder_id(),
                clock=clock,
                ttl=config.state.lease_ttl,
            ),
            name="hub-stale",
        )
        try:
            yield
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            await store.close()

    app.cleanup_ctx.append(resources)
    api.add_routes(app)
    enrollment.add_routes(app)
    attestation.add_routes(app)
    assettags.add_routes(app)
    groups.add_routes(app)
    install_keys(app)  # the key broker (after the state's startup above)
    install_web(app)  # status pages, live updates, alerts, webhooks, metrics, OpenAPI
    return app
