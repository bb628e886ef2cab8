"""The Keys status page (``GET /keys``): every policy and key with its release counters.

Rendered with the status pages' template environment and security headers
(:func:`hub.web.pages.render`); the JSON twin is ``GET /v1/keys`` (:mod:`hub.keys.api`). Key
material is never read for it. A host's refusals are on its own page (``key_refusals``).
"""

from __future__ import annotations

from aiohttp import web

from hub.auth import role
from hub.keys.api import policy_json
from hub.state import STATE
from hub.web.pages import render
from hub.web.session import page


@role("viewer")
@page
async def keys_page(request: web.Request) -> web.Response:
    store = request.app[STATE].store
    keys = await store.list_keys()
    policies = [policy_json(p, keys) for p in await store.list_key_policies()]
    return render(request, "keys.html", {"policies": policies})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/keys", keys_page)
