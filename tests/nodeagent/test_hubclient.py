"""The hub client: one error type for transport failures, the hub's refusals, size caps."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web

from nodeagent.config import HubConfig
from nodeagent.hubclient import HubClient, HubRejected, HubUnavailable
from tests.nodeagent.conftest import LoopbackHub
from trustplane.swtpm import SwtpmFactory, free_port

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def _serve(handler: Handler) -> tuple[web.AppRunner, str]:
    """A plain HTTP server on loopback answering every POST with ``handler``."""
    app = web.Application()
    app.router.add_post("/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}"


def _challenge_with(handler: Handler, **cfg: object) -> Exception:
    async def run() -> Exception:
        runner, url = await _serve(handler)
        try:
            async with HubClient(HubConfig(url=url, **cfg)) as hub:  # type: ignore[arg-type]
                await hub.challenge()
        except (HubUnavailable, HubRejected) as e:
            return e
        finally:
            await runner.cleanup()
        raise AssertionError("the client accepted the answer")

    return asyncio.run(run())


def test_connection_refused_is_hub_unavailable() -> None:
    port = free_port()

    async def run() -> None:
        async with HubClient(HubConfig(url=f"http://127.0.0.1:{port}")) as hub:
            await hub.challenge()

    with pytest.raises(HubUnavailable) as info:
        asyncio.run(run())
    assert info.value.reason == "hub.unavailable"
    assert info.value.message.startswith(f"POST http://127.0.0.1:{port}/v1/challenge: Client")


def test_answer_larger_than_the_cap_declared_or_streamed() -> None:
    big = b"x" * 5000

    async def declared(_: web.Request) -> web.Response:
        return web.Response(body=big, content_type="application/json")

    async def streamed(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for _ in range(5):
            await resp.write(b"y" * 1000)
        await resp.write_eof()
        return resp

    e = _challenge_with(declared, max_response_bytes=1024)
    assert isinstance(e, HubUnavailable)
    assert e.message.endswith("answer of 5000 bytes exceeds 1024")
    e = _challenge_with(streamed, max_response_bytes=1024)
    assert isinstance(e, HubUnavailable)
    assert e.message.endswith("answer exceeds 1024 bytes")


def test_server_errors_and_garbage_are_unavailable_refusals_are_rejected() -> None:
    async def boom(_: web.Request) -> web.Response:
        return web.json_response({"error": {"code": "internal", "message": "oops"}}, status=503)

    async def html(_: web.Request) -> web.Response:
        return web.Response(text="<html>proxy error</html>", status=502)

    async def wrong_shape(_: web.Request) -> web.Response:
        return web.json_response({"type": "challenge", "version": 1, "nonce": "AA=="})

    async def refused(_: web.Request) -> web.Response:
        return web.json_response(
            {"error": {"code": "nonce.expired", "message": "late"}}, status=409
        )

    e = _challenge_with(boom)
    assert isinstance(e, HubUnavailable)
    assert e.message.endswith("hub answered 503: internal: oops")
    e = _challenge_with(html)
    assert isinstance(e, HubUnavailable)
    assert e.message.endswith("answer 502 is not JSON")
    e = _challenge_with(wrong_shape)
    assert isinstance(e, HubUnavailable)
    assert "malformed answer: nonce: expected 32 bytes" in e.message
    e = _challenge_with(refused)
    assert isinstance(e, HubRejected)
    assert (e.status, e.code, e.reason) == (409, "nonce.expired", "hub.rejected")


def test_real_hub_tls_untrusted_ca_and_missing_client_certificate(
    hub: LoopbackHub, swtpm_factory: SwtpmFactory
) -> None:
    other_ca = swtpm_factory.ca_certificates[0]  # a real CA, but not the hub's

    async def run(ca: Path) -> None:
        async with HubClient(HubConfig(url=hub.url, ca_file=ca)) as client:
            await client.challenge()

    with pytest.raises(HubUnavailable) as untrusted:
        asyncio.run(run(other_ca))
    assert "CERTIFICATE_VERIFY_FAILED" in untrusted.value.message
    with pytest.raises(HubRejected) as anonymous:
        asyncio.run(run(hub.ca_file))
    assert (anonymous.value.status, anonymous.value.code) == (
        401,
        "auth.client_certificate_required",
    )

    async def health() -> bool:
        async with HubClient(HubConfig(url=hub.url, ca_file=hub.ca_file)) as client:
            return await client.health()

    assert asyncio.run(health()) is True
