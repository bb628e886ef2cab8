"""The hub's aiohttp application: :func:`create_app` wires config, state, routes and middleware.

Resources live in ``cleanup_ctx``: the store is opened (and migrated) at startup and closed at
shutdown, keys are loaded from the state directory, the stale-host timer runs as a task. Tests
pass ``clock`` (a callable returning Unix seconds) to move time, and ``random_bytes`` when they
need to know the hub's randomness.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Final

from aiohttp import web

from hub import api, assettags, attestation, enrollment, groups
from hub.auditseal import audit_sealer
from hub.auth import auth_middleware
from hub.bus import SqliteVerdictBus, VerdictBus
from hub.clusters import install as install_clusters
from hub.config import ConfigError, HubConfig
from hub.errors import MAX_BODY, body_limit_middleware, error_middleware
from hub.keys import install as install_keys
from hub.pki import PkiError, load_ca_bundle
from hub.singleton import holder_id, run_singleton
from hub.state import (
    BUS,
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
from hub.statedir import BUS_DIR, load_hub_keys, store_target
from hub.store import Store
from hub.verification import ReportVerifier
from hub.web import install as install_web

__all__ = ["create_app"]

log = logging.getLogger("trustplane.hub")


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


async def _pump_changes(bus: VerdictBus, after: int, events: VerdictEvents) -> None:
    """Hand every change on the bus after ``after`` to the in-process subscribers."""
    while True:
        try:
            async for posted in bus.changes(after):
                after = posted.id
                events.publish(posted.change)
        except Exception:  # the loop boundary: a database error; read again in a moment
            log.exception("reading the verdict bus failed")
            await asyncio.sleep(1.0)


def create_app(
    config: HubConfig,
    *,
    clock: Clock = time.time,
    random_bytes: RandomBytes = os.urandom,
    credentials_dir: Path | None = None,
    metrics_dir: Path | None = None,
) -> web.Application:
    """The hub application for ``config``; raises :class:`ConfigError` for a bad CA bundle.

    ``credentials_dir`` is systemd's ``$CREDENTIALS_DIRECTORY`` (the master key's credential);
    ``metrics_dir`` is set in a worker of :mod:`hub.supervisor` (metrics summed over workers)."""
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
        store = await Store.open(store_target(config.state.dir, config.state.database))
        store.audit_sealer = audit_sealer(config, keys.jws_key)
        bus = SqliteVerdictBus(store, config.state.dir / BUS_DIR)
        await bus.start()
        app[BUS] = bus
        state = HubState(
            config=config,
            store=store,
            keys=keys,
            clock=clock,
            verifier=ReportVerifier(store, config.attestation, tag_ca=keys.tag_ca.certificate),
            events=app[EVENTS],
            bus=bus,
            enroll_limiter=KeyedRateLimiter(config.enrollment.rate_per_minute, clock),
            ek_limiter=KeyedRateLimiter(config.enrollment.rate_per_ek, clock),
            ek_anchors=anchors,  # type: ignore[arg-type]
            random_bytes=random_bytes,
        )
        app[STATE] = state
        app[STORE] = store
        # every process's verdict changes, from now on, to this process's subscribers
        pump = asyncio.create_task(
            _pump_changes(bus, await bus.position(), app[EVENTS]), name="hub-verdict-bus"
        )
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
            for task in (watcher, pump):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await bus.close()
            await store.close()

    app.cleanup_ctx.append(resources)
    api.add_routes(app)
    enrollment.add_routes(app)
    attestation.add_routes(app)
    assettags.add_routes(app)
    groups.add_routes(app)
    install_keys(app)  # the key broker (after the state's startup above)
    # status pages, live updates, alerts, webhooks, metrics, OpenAPI
    install_web(app, metrics_dir=metrics_dir)
    install_clusters(app)  # cluster sync (under a lease), GET /v1/clusters, Clusters page
    return app
