"""Browser sessions: log in with a bearer token, a cookie from then on, CSRF on every write.

``POST /login`` checks the token against the store and opens a server-side session; the
browser gets only a random session id in an ``HttpOnly; Secure; SameSite=Strict`` cookie (the
token never goes back to the browser). :func:`session_middleware` sits between the error and
the auth middleware: a request carrying a live session cookie (and no ``Authorization``) is
passed on with the session's token as its bearer token (public routes such as
``/login`` never see the session), so the core's role checks decide
exactly as for an API client, and a revoked token stops working at once. A cookie-authenticated
request that is not GET/HEAD must carry the session's CSRF token (form field ``csrf`` or header
``X-CSRF-Token``), or it is refused with 403 ``csrf.invalid`` before any handler runs.

Pages (handlers marked with :func:`page`) answer a missing login with a redirect to ``/login``
and other refusals with an HTML error page; the JSON API keeps its JSON errors.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, TypeVar
from urllib.parse import quote

from aiohttp import web
from aiohttp.typedefs import Middleware
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from multidict import CIMultiDict

from hub.auth import ACCESS_ATTR
from hub.errors import ApiError, Handler, read_form
from hub.state import STATE
from hub.store import Store, StoredWebSession

COOKIE: Final = "trustplane_session"
LOGIN_COOKIE: Final = "trustplane_login"
PAGE_ATTR: Final = "__trustplane_page__"
SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
MAX_SID: Final = 256  # a session id is 43 characters; longer cookies are not ours
SEAL_INFO: Final = b"trustplane web session tokens"

H = TypeVar("H", bound=Handler)


def page(handler: H) -> H:
    """Mark an HTML page: a refusal becomes a login redirect or an HTML error page."""
    setattr(handler, PAGE_ATTR, True)
    return handler


def is_page(request: web.Request) -> bool:
    return bool(getattr(request.match_info.handler, PAGE_ATTR, False))


@dataclass(frozen=True, slots=True)
class Session:
    token: str
    name: str
    role: str
    csrf: str
    expires: float


class Sessions:
    """Server-side sessions in the store (:mod:`hub.store.websessions`), so every hub process
    and replica knows every session; keyed by the SHA-256 of their id. The bearer token a
    session stands for is kept sealed (AES-256-GCM under a key derived from the hub's master
    key, the row's key as associated data), never in clear."""

    def __init__(self, app: web.Application, ttl: float, clock: Callable[[], float]) -> None:
        self._app = app
        self._ttl = ttl
        self._clock = clock
        self._aead: AESGCM | None = None

    @staticmethod
    def _key(sid: str) -> str:
        return hashlib.sha256(sid.encode()).hexdigest()

    def _state(self) -> tuple[Store, AESGCM]:
        st = self._app[STATE]
        if self._aead is None:
            derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=SEAL_INFO).derive(
                st.keys.master_key
            )
            self._aead = AESGCM(derived)
        return st.store, self._aead

    async def open(self, token: str, name: str, role: str) -> tuple[str, Session]:
        store, aead = self._state()
        sid = secrets.token_urlsafe(32)
        key = self._key(sid)
        now = self._clock()
        session = Session(token, name, role, secrets.token_urlsafe(32), now + self._ttl)
        nonce = os.urandom(12)
        sealed = nonce + aead.encrypt(nonce, token.encode(), key.encode())
        await store.add_web_session(
            StoredWebSession(key, sealed, name, role, session.csrf, session.expires), now
        )
        return sid, session

    async def get(self, sid: str) -> Session | None:
        if len(sid) > MAX_SID:
            return None
        store, aead = self._state()
        key = self._key(sid)
        row = await store.web_session(key, self._clock())
        if row is None:
            return None
        try:
            token = aead.decrypt(row.sealed_token[:12], row.sealed_token[12:], key.encode())
        except (InvalidTag, ValueError):  # another master key, or a row edited by hand
            return None
        return Session(token.decode(), row.name, row.role, row.csrf, row.expires)

    async def close(self, sid: str) -> None:
        if len(sid) <= MAX_SID:
            await self._state()[0].delete_web_session(self._key(sid))

    @property
    def ttl(self) -> float:
        return self._ttl


SESSIONS = web.AppKey("trustplane_sessions", Sessions)
SESSION_KEY: Final = web.RequestKey("trustplane_session", Session)


def current_session(request: web.Request) -> Session | None:
    found: Session | None = request.get(SESSION_KEY)
    return found


def set_cookie(response: web.StreamResponse, name: str, value: str, max_age: float) -> None:
    response.set_cookie(
        name,
        value,
        max_age=int(max_age),
        path="/",
        secure=True,
        httponly=True,
        samesite="Strict",
    )


def login_redirect(request: web.Request) -> web.Response:
    location = f"/login?next={quote(request.path_qs, safe='/')}"
    return web.Response(status=303, headers={"Location": location})


FORM_LIMIT = 16 * 1024  # the page forms (ack, logout) carry a CSRF token and little else
_NEXT_MAX = 2048


def safe_next(target: str | None) -> str:
    """Where a login may send the browser: a same-origin path of printable ASCII (no space, no
    control character, no backslash) that starts with one ``/``; anything else gives ``/``.

    Browsers drop tabs and newlines inside URLs and read ``\\`` as ``/``, so ``/<TAB>/evil``
    or ``/\\evil`` would become ``//evil``, another origin; a newline would also break the
    ``Location`` header."""
    if (
        not target
        or len(target) > _NEXT_MAX
        or not target.startswith("/")
        or target.startswith("//")
        or any(not 0x21 <= ord(c) <= 0x7E or c == "\\" for c in target)
    ):
        return "/"
    return target


async def _csrf_ok(request: web.Request, session: Session) -> bool:
    given = request.headers.get("X-CSRF-Token")
    if given is None and request.content_type in (
        "application/x-www-form-urlencoded",
        "multipart/form-data",
    ):
        form = await read_form(request, FORM_LIMIT)
        given = form.get("csrf")
    return given is not None and hmac.compare_digest(given.encode(), session.csrf.encode())


ErrorPage = Callable[[web.Request, int, str, str], web.StreamResponse]


def session_middleware(error_page: ErrorPage) -> Middleware:
    """The middleware; ``error_page(request, status, code, message)`` renders refusals."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        sid = request.cookies.get(COOKIE)
        session = await request.app[SESSIONS].get(sid) if sid else None
        public = getattr(request.match_info.handler, ACCESS_ATTR, None) == "public"
        if session is not None and not public and "Authorization" not in request.headers:
            headers = CIMultiDict(request.headers)
            headers["Authorization"] = f"Bearer {session.token}"
            request = request.clone(headers=headers)
            request[SESSION_KEY] = session
            if request.method not in SAFE_METHODS and not await _csrf_ok(request, session):
                if is_page(request):
                    return error_page(request, 403, "csrf.invalid", "missing or wrong CSRF token")
                raise ApiError(403, "csrf.invalid", "missing or wrong CSRF token")
        if not is_page(request):
            return await handler(request)
        try:
            return await handler(request)
        except ApiError as e:
            if e.status == 401:
                return login_redirect(request)
            return error_page(request, e.status, e.code, e.message)

    return middleware
