"""The OpenAPI 3.1 description of everything the hub serves, at ``GET /v1/openapi.json``.

Written by hand next to the handlers (not generated from them), so a test can hold the two
against each other: every registered route is described and every described operation is
registered. It covers the agent protocol (enrollment without credentials, challenge and report
over mTLS), the JSON API for people and pipelines (bearer tokens with roles), the HTML pages
(session cookie), the live event stream and ``/metrics``. Every error answer has one schema,
``Error``.

The document itself needs a viewer token (or a session): DESIGN.md has every endpoint
authenticated except health, and the description helps only those who may call the API anyway.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from hub.auth import role
from hub.openapi.keys import key_paths, key_schemas
from hub.openapi.parts import _responses, schemas
from hub.openapi.paths import _agent_paths, _api_paths, _page_paths


def build_openapi(version: str = "0") -> dict[str, Any]:
    """The whole document (a new dict each call)."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "trustplane hub",
            "version": version,
            "description": "Attestation of hosts, trust verdicts, alerts. Errors are always "
            '`{"error": {"code": "<stable id>", "message": "..."}}`.',
        },
        "paths": {**_agent_paths(), **_api_paths(), **key_paths(), **_page_paths()},
        "components": {
            "schemas": {**schemas(), **key_schemas()},
            "responses": _responses(),
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "a token from `trustplane-hub tokens create` (viewer, "
                    "pipeline or admin); admin grants everything",
                },
                "mtls": {
                    "type": "mutualTLS",
                    "description": "the client certificate issued at enrollment (CN = host id)",
                },
                "session": {
                    "type": "apiKey",
                    "in": "cookie",
                    "name": "trustplane_session",
                    "description": "set by POST /login; writes also need the CSRF token",
                },
            },
        },
    }


@role("viewer")
async def openapi_json(request: web.Request) -> web.Response:
    return web.json_response(build_openapi())


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/openapi.json", openapi_json)
