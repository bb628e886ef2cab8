"""How the hub says "no" over HTTP: :class:`ApiError` and the error middleware.

Every failure answer is ``{"error": {"code": "<stable id>", "message": "..."}}``. Handlers raise
:class:`ApiError`; aiohttp's own HTTP exceptions (404, 405, 413) are rewritten into the same
shape; anything else is logged with its traceback here, at the request boundary, and answered
with a bare ``internal`` error: no traceback ever reaches a client.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Final

from aiohttp import web

from hub.store.connection import UnstorableText

log = logging.getLogger("trustplane.hub")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_HTTP_CODES: Final = {
    400: "http.bad_request",
    401: "auth.required",
    403: "auth.forbidden",
    404: "http.not_found",
    405: "http.method_not_allowed",
    408: "http.timeout",
    411: "http.length_required",
    413: "http.body_too_large",
    415: "http.unsupported_media_type",
    429: "http.rate_limited",
}


class ApiError(Exception):
    """An answer with a 4xx/5xx status and a stable error code."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        extra: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra or {}  # more fields of the error object (e.g. last_sequence)
        self.headers = headers or {}  # e.g. Retry-After


def error_response(
    status: int, code: str, message: str, extra: dict[str, object] | None = None
) -> web.Response:
    body = {"error": {**(extra or {}), "code": code, "message": message}}
    return web.json_response(body, status=status)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn every failure into the JSON error shape; the one catch-all of a request."""
    try:
        return await handler(request)
    except ApiError as e:
        resp = error_response(e.status, e.code, e.message, e.extra)
        resp.headers.update(e.headers)
        return resp
    except UnstorableText:
        return error_response(400, "request.nul_character", "text with a NUL character")
    except web.HTTPException as e:
        if e.status < 400:
            raise
        code = _HTTP_CODES.get(e.status, f"http.{e.status}")
        message = e.reason if e.status != 413 else "request body too large"
        resp = error_response(e.status, code, message)
        if e.status == 405 and "Allow" in e.headers:
            resp.headers["Allow"] = e.headers["Allow"]
        return resp
    except Exception:
        log.exception("unhandled error in %s %s", request.method, request.path)
        return error_response(500, "internal", "internal error (see the hub's log)")


MAX_BODY: Final = web.AppKey("max_body_bytes", int)
"""The configured ``server.max_body_bytes``: no route accepts more (set by the app factory)."""


@web.middleware
async def body_limit_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """413 for a declared body above ``server.max_body_bytes``, read or not. Bodies without a
    declared length (chunked) are counted while :func:`read_json` reads them."""
    limit = request.app[MAX_BODY]
    if request.content_length is not None and request.content_length > limit:
        raise ApiError(413, "http.body_too_large", f"request body exceeds {limit} bytes")
    return await handler(request)


MAX_ID: Final = 2**63 - 1  # SQLite's largest INTEGER: no id the store hands out is larger


def path_id(request: web.Request, name: str, *, code: str, message: str) -> int:
    """The path parameter ``name`` as a row id: 1 to :data:`MAX_ID`, decimal digits only (no sign,
    no white space, no other digits Python's ``int`` would take). Anything else is 404 ``code``
    (no such row could exist), never an error from the database.
    """
    text = request.match_info[name]
    if not (0 < len(text) <= 19 and text.isascii() and text.isdigit()):
        raise ApiError(404, code, message)
    value = int(text)
    if not 1 <= value <= MAX_ID:
        raise ApiError(404, code, message)
    return value


async def read_form(request: web.Request, limit: int) -> dict[str, str]:
    """A urlencoded or multipart form of at most ``limit`` bytes, as text fields.

    Raises :class:`ApiError`: 413 ``http.body_too_large``, 400 ``http.malformed_form`` (not
    UTF-8, not a form).
    """
    if request.content_length is not None and request.content_length > limit:
        raise ApiError(413, "http.body_too_large", f"form exceeds {limit} bytes")
    try:
        form = await request.post()
    except (UnicodeDecodeError, ValueError, LookupError) as e:
        raise ApiError(400, "http.malformed_form", "the form is not valid UTF-8 form data") from e
    return {k: v for k, v in form.items() if isinstance(v, str)}


def body_limit(request: web.Request, route_limit: int) -> int:
    """The limit that applies: the smaller of the route's and the configured server limit."""
    return min(route_limit, request.app[MAX_BODY])


async def read_json(request: web.Request, limit: int) -> object:
    """The request's JSON body, at most :func:`body_limit` (``limit``) bytes, counted as it
    arrives, so a chunked body is cut off at the limit too.

    Raises :class:`ApiError`: 413 ``http.body_too_large``, 400 ``http.malformed_json``.
    """
    limit = body_limit(request, limit)
    if request.content_length is not None and request.content_length > limit:
        raise ApiError(413, "http.body_too_large", f"request body exceeds {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(65536):
        size += len(chunk)
        if size > limit:
            raise ApiError(413, "http.body_too_large", f"request body exceeds {limit} bytes")
        chunks.append(chunk)
    try:
        return json.loads(b"".join(chunks))
    except (ValueError, RecursionError):
        raise ApiError(400, "http.malformed_json", "the request body is not JSON") from None
