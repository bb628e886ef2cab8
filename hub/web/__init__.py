"""The hub's people-facing side: status pages, live updates, alerts, webhooks, metrics, OpenAPI.

:func:`install` adds all of it to the application :func:`hub.app.create_app` built, without
changing the core's routes or middleware: it registers routes, cleanup contexts, and three
middlewares (the metrics and alert observers outermost, the browser session just inside the
error middleware, so the core's auth middleware still decides every access).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import jinja2
from aiohttp import web

from hub import openapi
from hub.alerts import setup_alerts
from hub.errors import error_middleware
from hub.metrics import setup_metrics
from hub.state import CLOCK, CONFIG
from hub.web import pages
from hub.web.live import setup_live
from hub.web.pages import TEMPLATES
from hub.web.session import SESSIONS, Sessions, session_middleware
from hub.webhooks import setup_webhooks

__all__ = ["install"]


def format_age(ts: float | None, now: float) -> str:
    """``"12 s ago"``, ``"5 min ago"``, ``"3 h ago"``, ``"2 d ago"``; ``"never"`` for None."""
    if ts is None:
        return "never"
    seconds = max(0, int(now - ts))
    if seconds < 120:
        return f"{seconds} s ago"
    if seconds < 7200:
        return f"{seconds // 60} min ago"
    if seconds < 172800:
        return f"{seconds // 3600} h ago"
    return f"{seconds // 86400} d ago"


def format_utc(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


FILTERS: Final[dict[str, Callable[..., str]]] = {"age": format_age, "utc": format_utc}


def install(app: web.Application, *, metrics_dir: Path | None = None) -> None:
    """Add pages, live updates, alerts, webhooks, metrics and OpenAPI to the hub ``app``
    (``metrics_dir``: prometheus_client's multiprocess directory of ``server.workers``)."""
    setup_alerts(app)
    setup_webhooks(app)
    setup_metrics(app, metrics_dir)
    app[SESSIONS] = Sessions(app, app[CONFIG].web.session_ttl, app[CLOCK])
    position = app.middlewares.index(error_middleware) + 1
    app.middlewares.insert(position, session_middleware(pages.error_page))
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("hub.web", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters.update(FILTERS)
    app[TEMPLATES] = env
    setup_live(app)
    pages.add_routes(app)
    openapi.add_routes(app)
