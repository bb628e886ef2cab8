"""The agent's HTTPS client for the hub (paths and messages of docs/protocol.md).

TLS is verified against the hub's CA (the configured bootstrap CA before enrollment, the CA the
hub returned afterwards); after enrollment every call presents the client certificate (mTLS).
Every transport failure (connection, TLS, timeout, 5xx, an answer too large or not the agreed
shape) becomes :class:`HubUnavailable`, which the attestation loop retries with backoff; a
4xx answer with the hub's error JSON becomes :class:`HubRejected` carrying the stable code.
Every answer is read with a size cap. What to send and when is the caller's business.
"""

from __future__ import annotations

import base64
import binascii
import json
import ssl
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import aiohttp

from nodeagent.config import HubConfig
from nodeagent.errors import NodeAgentError
from trustcore.errors import ParseError
from trustcore.wire import (
    ActivateRequest,
    Challenge,
    EnrollChallenge,
    Enrollment,
    EnrollRequest,
    KeyReleaseRequest,
    KeyReleaseResult,
    Report,
    ReportResult,
)

T = TypeVar("T")


class HubUnavailable(NodeAgentError):
    """The hub could not be reached or did not answer properly; try again later."""

    reason = "hub.unavailable"


class HubRejected(NodeAgentError):
    """The hub answered with an error (4xx): ``code`` is its stable id, ``status`` the HTTP code."""

    reason = "hub.rejected"

    def __init__(
        self, status: int, code: str, message: str, last_sequence: int | None = None
    ) -> None:
        super().__init__(f"hub refused ({status} {code}): {message}")
        self.status = status
        self.code = code
        # with report.sequence_old: the host's last report the hub recorded
        self.last_sequence = last_sequence


def tls_context(ca_file: Path | None, client: tuple[Path, Path] | None) -> ssl.SSLContext:
    """A client TLS context trusting ``ca_file`` (system roots when None), with an optional
    client certificate and key. Raises :class:`HubUnavailable` for unusable files."""
    ctx = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if client is not None:
        cert, key = client
        try:
            ctx.load_cert_chain(certfile=str(cert), keyfile=str(key))
        except (OSError, ssl.SSLError) as e:
            raise HubUnavailable(f"cannot load client certificate {cert}: {e}") from None
    return ctx


class HubClient:
    """One aiohttp session to the hub. Use as ``async with HubClient(...) as hub``."""

    def __init__(
        self,
        cfg: HubConfig,
        *,
        ca_file: Path | None = None,
        client: tuple[Path, Path] | None = None,
        on_round_trip: Callable[[str, float], None] | None = None,
    ) -> None:
        self._cfg = cfg
        self._on_round_trip = on_round_trip  # (path, seconds) of each answered request
        self._ssl: ssl.SSLContext | bool = False
        if cfg.url.startswith("https://"):
            self._ssl = tls_context(ca_file or cfg.ca_file, client)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> HubClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self._cfg.timeout),
                connector=aiohttp.TCPConnector(ssl=self._ssl, limit=4),
                raise_for_status=False,
            )
        return self._session

    async def _post(self, path: str, body: dict[str, Any], parse: Callable[[object], T]) -> T:
        url = self._cfg.url + path
        started = time.monotonic()
        try:
            async with self._get_session().post(url, json=body) as resp:
                raw = await self._read_capped(resp)
                status = resp.status
        except (aiohttp.ClientError, TimeoutError, OSError, ssl.SSLError) as e:
            raise HubUnavailable(f"POST {url}: {type(e).__name__}: {e}") from None
        if self._on_round_trip is not None:
            self._on_round_trip(path, time.monotonic() - started)
        try:
            value = json.loads(raw)
        except ValueError:
            raise HubUnavailable(f"POST {url}: answer {status} is not JSON") from None
        if status >= 500 or status == 429:
            raise HubUnavailable(f"POST {url}: hub answered {status}: {_error_text(value)}")
        if status >= 400:
            code, message = _error_fields(value)
            raise HubRejected(status, code, message, _last_sequence(value))
        try:
            return parse(value)
        except ParseError as e:
            raise HubUnavailable(f"POST {url}: malformed answer: {e}") from None

    async def _read_capped(self, resp: aiohttp.ClientResponse) -> bytes:
        cap = self._cfg.max_response_bytes
        if resp.content_length is not None and resp.content_length > cap:
            raise HubUnavailable(f"answer of {resp.content_length} bytes exceeds {cap}")
        data = bytearray()
        async for chunk in resp.content.iter_chunked(65536):
            data += chunk
            if len(data) > cap:
                raise HubUnavailable(f"answer exceeds {cap} bytes")
        return bytes(data)

    async def health(self) -> bool:
        """True when ``GET /health`` answers ok. Raises :class:`HubUnavailable`."""
        url = self._cfg.url + "/health"
        try:
            async with self._get_session().get(url) as resp:
                raw = await self._read_capped(resp)
                return resp.status == 200 and json.loads(raw).get("status") == "ok"
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError, AttributeError) as e:
            raise HubUnavailable(f"GET {url}: {type(e).__name__}: {e}") from None

    async def trust_report_key(self) -> tuple[str, bytes]:
        """``GET /v1/trust-report-key``: the hub's key id and PEM public key that sign trust
        reports. Raises :class:`HubUnavailable`, :class:`HubRejected`."""
        url = self._cfg.url + "/v1/trust-report-key"
        try:
            async with self._get_session().get(url) as resp:
                raw = await self._read_capped(resp)
                status = resp.status
        except (aiohttp.ClientError, TimeoutError, OSError, ssl.SSLError) as e:
            raise HubUnavailable(f"GET {url}: {type(e).__name__}: {e}") from None
        try:
            value = json.loads(raw)
        except ValueError:
            raise HubUnavailable(f"GET {url}: answer {status} is not JSON") from None
        if status >= 500 or status == 429:
            raise HubUnavailable(f"GET {url}: hub answered {status}: {_error_text(value)}")
        if status >= 400:
            code, message = _error_fields(value)
            raise HubRejected(status, code, message)
        kid, pem = (
            (value.get("kid"), value.get("public_key")) if isinstance(value, dict) else (0, 0)
        )
        if not isinstance(kid, str) or not isinstance(pem, str) or len(pem) > 4096:
            raise HubUnavailable(f"GET {url}: malformed answer")
        return kid, pem.encode("ascii", "replace")

    async def enroll(self, request: EnrollRequest) -> EnrollChallenge:
        """Raises :class:`HubUnavailable`, :class:`HubRejected`."""
        return await self._post("/v1/enroll", request.to_json(), EnrollChallenge.from_json)

    async def activate(self, request: ActivateRequest) -> Enrollment:
        """Raises :class:`HubUnavailable`, :class:`HubRejected`."""
        return await self._post("/v1/enroll/activate", request.to_json(), Enrollment.from_json)

    async def challenge(self) -> Challenge:
        """Raises :class:`HubUnavailable`, :class:`HubRejected`."""
        return await self._post("/v1/challenge", {}, Challenge.from_json)

    async def report(self, report: Report) -> ReportResult:
        """Raises :class:`HubUnavailable`, :class:`HubRejected`."""
        return await self._post("/v1/report", report.to_json(), ReportResult.from_json)

    async def key_challenge(self) -> Challenge:
        """A nonce for a key release. Raises :class:`HubUnavailable`, :class:`HubRejected`."""
        return await self._post("/v1/keys/challenge", {}, Challenge.from_json)

    async def release_keys(self, request: KeyReleaseRequest) -> KeyReleaseResult:
        """Raises :class:`HubUnavailable`, :class:`HubRejected`."""
        return await self._post("/v1/keys/release", request.to_json(), KeyReleaseResult.from_json)

    async def policy_key(self) -> bytes | None:
        """The hub's policy-signing key (TPMT_PUBLIC) for PolicyAuthorize binding keys, or
        ``None`` from a hub without a key broker. Raises :class:`HubUnavailable`."""
        url = self._cfg.url + "/v1/enroll/policy-key"
        try:
            async with self._get_session().get(url) as resp:
                raw = await self._read_capped(resp)
                status = resp.status
        except (aiohttp.ClientError, TimeoutError, OSError, ssl.SSLError) as e:
            raise HubUnavailable(f"GET {url}: {type(e).__name__}: {e}") from None
        if status == 404:
            return None
        try:
            value = json.loads(raw)
            return base64.b64decode(value["public"], validate=True)
        except (ValueError, KeyError, TypeError, binascii.Error):
            raise HubUnavailable(f"GET {url}: answer {status} is not a policy key") from None


def _error_fields(value: object) -> tuple[str, str]:
    if isinstance(value, dict) and isinstance(value.get("error"), dict):
        err = value["error"]
        return str(err.get("code", "unknown"))[:128], str(err.get("message", ""))[:1024]
    return "unknown", "answer without an error object"


def _last_sequence(value: object) -> int | None:
    if isinstance(value, dict) and isinstance(value.get("error"), dict):
        last = value["error"].get("last_sequence")
        if type(last) is int and 0 <= last < 2**63:
            return last
    return None


def _error_text(value: object) -> str:
    code, message = _error_fields(value)
    return f"{code}: {message}"
