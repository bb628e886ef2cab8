"""The registry client against a hostile registry (an aiohttp server on 127.0.0.1 written here).

A registry the pipeline or a host talks to may lie: oversized manifests, blobs that are not what
their descriptor says, a manifest that does not hash to the digest asked for, uploads sent to
another host, authentication it cannot finish. Each must end in one error with its reason id,
never in bytes we trust.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web

from trustcore.oci import Descriptor
from trustplane.cli import main
from trustplane.imagestore import ImageStoreError, RegistryClient, RegistryOptions
from trustplane.registryauth import Credentials, RegistryAuthError
from trustplane.swtpm import free_port

BLOB = b"the real layer bytes"
BLOB_DIGEST = "sha256:" + hashlib.sha256(BLOB).hexdigest()
LAYER = Descriptor("application/vnd.oci.image.layer.v1.tar+gzip", BLOB_DIGEST, len(BLOB))
MANIFEST = json.dumps(
    {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": BLOB_DIGEST,
            "size": len(BLOB),
        },
        "layers": [LAYER.to_json()],
    }
).encode()


async def manifest(request: web.Request) -> web.Response:
    ref = request.match_info["ref"]
    if ref == "big":
        return web.Response(body=b" " * (4 * 1024 * 1024 + 10), content_type="application/json")
    if ref == "garbage":
        return web.Response(body=b"\xff\xfe{", content_type="application/json")
    # any digest asked for gets the same manifest: it hashes to one of them at most
    return web.Response(body=MANIFEST, content_type="application/vnd.oci.image.manifest.v1+json")


async def blob(request: web.Request) -> web.Response:
    kind = request.match_info["repo"]
    if kind == "swapped":
        return web.Response(body=b"X" * len(BLOB))
    if kind == "long":
        return web.Response(body=BLOB + b"and a lot more" * 1000)
    return web.Response(body=BLOB)


async def head_blob(request: web.Request) -> web.Response:
    return web.Response(status=404)


async def uploads(request: web.Request) -> web.Response:
    return web.Response(status=202, headers={"Location": "http://attacker.example/v2/x/uploads/1"})


async def challenge(request: web.Request) -> web.Response:
    kind = request.match_info["kind"]
    header = {
        "negotiate": "Negotiate abc",
        "badrealm": 'Bearer realm="ftp://x/token"',
        "notoken": f'Bearer realm="http://{request.host}/token",service="s"',
    }[kind]
    return web.Response(status=401, headers={"WWW-Authenticate": header})


async def token(request: web.Request) -> web.Response:
    return web.json_response({"nothing": "here"})


@pytest.fixture(scope="module")
def hostile() -> Iterator[str]:
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()
    port = free_port()

    async def start() -> web.AppRunner:
        app = web.Application()
        app.router.add_get("/v2/auth/{kind}/manifests/{ref}", challenge)
        app.router.add_get("/token", token)
        app.router.add_get("/v2/{repo}/app/manifests/{ref}", manifest)
        app.router.add_get("/v2/{repo}/app/blobs/{digest}", blob, allow_head=False)
        app.router.add_head("/v2/{repo}/app/blobs/{digest}", head_blob)
        app.router.add_post("/v2/{repo}/app/blobs/uploads/", uploads)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        return runner

    runner = asyncio.run_coroutine_threadsafe(start(), loop).result(10)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)


def client(host: str, repo: str, ref: str = "v1", **options: object) -> RegistryClient:
    return RegistryClient(host, f"{repo}/app", ref, RegistryOptions(plain_http=True, **options))


def test_oversized_and_garbage_manifests(hostile: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ImageStoreError) as err:
        client(hostile, "x", "big").get_manifest()
    assert err.value.reason == "image.too_large"
    code = main(["image", "check", "--plain-http", f"docker://{hostile}/x/app:garbage"])
    assert code == 2
    assert "oci.manifest_invalid: manifest is not JSON" in capsys.readouterr().err


def test_a_manifest_not_hashing_to_the_digest_asked_for(hostile: str) -> None:
    wanted = "sha256:" + "0" * 64
    with pytest.raises(ImageStoreError) as err:
        client(hostile, "x", wanted).get_manifest()
    assert err.value.reason == "image.blob_mismatch"
    honest = "sha256:" + hashlib.sha256(MANIFEST).hexdigest()
    assert client(hostile, "x", honest).get_manifest()[0] == MANIFEST


@pytest.mark.parametrize("repo", ["swapped", "long"])
def test_blobs_that_are_not_what_their_descriptor_says(
    hostile: str, repo: str, tmp_path: Path
) -> None:
    with pytest.raises(ImageStoreError) as err:
        client(hostile, repo).fetch_blob(LAYER, tmp_path / "blob")
    assert err.value.reason == "image.blob_mismatch"
    client(hostile, "honest").fetch_blob(LAYER, tmp_path / "ok")
    assert (tmp_path / "ok").read_bytes() == BLOB


def test_an_upload_sent_to_another_host_is_refused(hostile: str, tmp_path: Path) -> None:
    (tmp_path / "blob").write_bytes(BLOB)
    with pytest.raises(ImageStoreError) as err:
        client(hostile, "x").put_blob(tmp_path / "blob", LAYER)
    assert err.value.reason == "image.registry_failed"
    assert "sent us to another host (attacker.example)" in err.value.message


@pytest.mark.parametrize(
    ("kind", "text"),
    [
        ("negotiate", "authentication we do not speak (Negotiate)"),
        ("badrealm", "token realm is malformed"),
        ("notoken", "the token service sent no token"),
    ],
)
def test_authentication_that_cannot_finish(hostile: str, kind: str, text: str) -> None:
    creds = {hostile: Credentials("u", "p")}
    with pytest.raises(RegistryAuthError) as err:
        RegistryClient(
            hostile, f"auth/{kind}", "v1", RegistryOptions(plain_http=True, credentials=creds)
        ).get_manifest()
    assert err.value.reason == "image.registry_auth"
    assert text in err.value.message
    assert "Basic" not in err.value.message
