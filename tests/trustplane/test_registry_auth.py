"""The registry client against registries that want credentials, and blobs behind a redirect.

Debian's docker-registry with htpasswd (Basic) auth, and with token auth whose token service is
an aiohttp server here issuing ES256 JWTs (x5c header, the registry's rootcertbundle trusts the
certificate), as Docker Hub-style registries do; credentials come from an auth file as skopeo
reads them. A second aiohttp server answers blob downloads with a 307 to the registry, as
registries with CDN-backed storage do.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import json
import threading
import time
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from tests.imagekit import FIXTURE
from trustcore.oci import Descriptor, LayoutReference
from trustplane.cli import main
from trustplane.imagestore import OciLayout, RegistryClient, RegistryOptions
from trustplane.registryauth import (
    Credentials,
    RegistryAuthError,
    load_auth_file,
    parse_challenge,
)
from trustplane.registryserver import RegistryServer
from trustplane.swtpm import free_port

USER, PASSWORD = "ci-bot", "s3cret-pass"
LAYER = "sha256:e8762c9e5f0cf1a0861897accbd8c1b2514b8604358c7ab72996d5cae06658d8"


def auth_file(path: Path, host: str, user: str = USER, password: str = PASSWORD) -> Path:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    path.write_text(json.dumps({"auths": {host: {"auth": token}}}))
    return path


def push_plain(client: RegistryClient, tmp_path: Path) -> None:
    src = OciLayout(LayoutReference(str(FIXTURE / "plain-image"), "v1"))
    data, media_type = src.get_manifest()
    manifest = json.loads(data)
    for obj in [manifest["config"], *manifest["layers"]]:
        desc = Descriptor(obj["mediaType"], obj["digest"], obj["size"])
        src.fetch_blob(desc, tmp_path / "blob")
        client.put_blob(tmp_path / "blob", desc)
    client.put_manifest(data, media_type)


# --- Basic (htpasswd) --------------------------------------------------------------------------


def bcrypt_hash(password: str) -> str:
    """A bcrypt hash for docker-registry's htpasswd file (the system's libcrypt)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt  # noqa: PLC0415 - deprecated module, imported only here

    return crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH))


@pytest.fixture(scope="module")
def basic_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    work = tmp_path_factory.mktemp("basic")
    htpasswd = work / "htpasswd"
    htpasswd.write_text(f"{USER}:{bcrypt_hash(PASSWORD)}\n")
    section = f"  htpasswd:\n    realm: trustplane-test\n    path: {htpasswd}\n"
    with RegistryServer(work / "registry", auth=section) as server:
        yield server


def test_basic_auth_push_check_and_refusals(
    basic_registry: RegistryServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    host = basic_registry.host
    creds = load_auth_file(auth_file(tmp_path / "auth.json", host))
    assert creds == {host: Credentials(USER, PASSWORD)}
    assert PASSWORD not in repr(creds)
    options = RegistryOptions(plain_http=True, credentials=creds)
    push_plain(RegistryClient(host, "private/app", "v1", options), tmp_path)
    ref = f"docker://{host}/private/app:v1"
    code = main(["image", "check", ref, "--plain-http", "--authfile", str(tmp_path / "auth.json")])
    out, _ = capsys.readouterr()
    assert code == 1  # reachable and read: the plain image fails the gate, as it must
    assert out.splitlines()[-1] == f"{ref}: refused: 2 of 2 layers are not encrypted for trustplane"

    with pytest.raises(RegistryAuthError) as no_creds:
        RegistryClient(host, "private/app", "v1", RegistryOptions(plain_http=True)).get_manifest()
    assert no_creds.value.reason == "image.registry_auth"
    assert "wants a user name and password" in no_creds.value.message
    wrong = load_auth_file(auth_file(tmp_path / "wrong.json", host, password="nope"))
    with pytest.raises(RegistryAuthError) as refused:
        RegistryClient(
            host, "private/app", "v1", RegistryOptions(plain_http=True, credentials=wrong)
        ).get_manifest()
    assert "refused our credentials" in refused.value.message
    assert "nope" not in refused.value.message
    code = main(["image", "check", ref, "--plain-http", "--authfile", str(tmp_path / "none.json")])
    assert code == 1
    assert "none.json" in capsys.readouterr().err


# --- bearer tokens from a token service --------------------------------------------------------


class TokenService:
    """A registry token service: Basic credentials in, an ES256 JWT for the asked scope out."""

    def __init__(self, workdir: Path) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test token issuer")])
        now = datetime.datetime.now(datetime.UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        self.bundle = workdir / "token-ca.pem"
        self.bundle.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        self.port = free_port()
        self.requests: list[dict[str, str]] = []
        self.loop = asyncio.new_event_loop()
        self.runner: web.AppRunner | None = None

    def jwt(self, subject: str, scope: str) -> str:
        def b64(data: bytes) -> str:
            return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

        der = self.cert.public_bytes(serialization.Encoding.DER)
        header = {"typ": "JWT", "alg": "ES256", "x5c": [base64.b64encode(der).decode()]}
        access = []
        if scope:
            kind, repo, actions = scope.split(":")
            access.append({"type": kind, "name": repo, "actions": actions.split(",")})
        now = int(time.time())
        claims = {
            "iss": "test-issuer",
            "sub": subject,
            "aud": "test-registry",
            "exp": now + 300,
            "nbf": now - 10,
            "iat": now,
            "jti": uuid.uuid4().hex,
            "access": access,
        }
        signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
        r, s = decode_dss_signature(
            self.key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
        )
        return f"{signing_input}.{b64(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"

    async def token(self, request: web.Request) -> web.Response:
        self.requests.append(dict(request.query))
        expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        if request.headers.get("Authorization") != expected:
            return web.json_response({"details": "bad credentials"}, status=401)
        scope = request.query.get("scope", "")
        return web.json_response({"token": self.jwt(USER, scope), "expires_in": 300})

    def __enter__(self) -> TokenService:
        threading.Thread(target=self.loop.run_forever, daemon=True).start()

        async def start() -> None:
            app = web.Application()
            app.router.add_get("/token", self.token)
            self.runner = web.AppRunner(app)
            await self.runner.setup()
            await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

        asyncio.run_coroutine_threadsafe(start(), self.loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.runner is not None
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)


@pytest.fixture(scope="module")
def token_registry(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[RegistryServer, TokenService]]:
    work = tmp_path_factory.mktemp("token")
    with TokenService(work) as tokens:
        section = (
            f"  token:\n    realm: http://127.0.0.1:{tokens.port}/token\n"
            "    service: test-registry\n    issuer: test-issuer\n"
            f"    rootcertbundle: {tokens.bundle}\n"
        )
        with RegistryServer(work / "registry", auth=section) as server:
            yield server, tokens


def test_bearer_tokens_from_the_registrys_token_service(
    token_registry: tuple[RegistryServer, TokenService], tmp_path: Path
) -> None:
    registry, tokens = token_registry
    creds = load_auth_file(auth_file(tmp_path / "auth.json", registry.host))
    options = RegistryOptions(plain_http=True, credentials=creds)
    push_plain(RegistryClient(registry.host, "team/app", "v1", options), tmp_path)
    data, _ = RegistryClient(registry.host, "team/app", "v1", options).get_manifest()
    assert json.loads(data)["layers"][0]["digest"] == LAYER
    assert {r.get("scope") for r in tokens.requests} >= {
        "repository:team/app:pull",
        "repository:team/app:pull,push",
    }
    assert {r.get("service") for r in tokens.requests} == {"test-registry"}
    anonymous = RegistryClient(registry.host, "team/app", "v1", RegistryOptions(plain_http=True))
    with pytest.raises(RegistryAuthError) as err:
        anonymous.get_manifest()
    assert "token service refused us (HTTP 401, and the auth file has no credentials" in (
        err.value.message
    )
    # a token realm over plain HTTP is refused unless the registry itself is plain HTTP
    tls_client = RegistryClient(registry.host, "team/app", "v1", RegistryOptions(credentials=creds))
    with pytest.raises(RegistryAuthError) as err:
        tls_client._authenticate(f'Bearer realm="http://127.0.0.1:{tokens.port}/token"')
    assert "token realm is plain HTTP" in err.value.message
    assert parse_challenge('Bearer realm="http://x/token",service="s"').params == {
        "realm": "http://x/token",
        "service": "s",
    }
    with pytest.raises(RegistryAuthError):
        parse_challenge("Negotiate abc")


# --- a blob behind a redirect --------------------------------------------------------------------


def test_blob_downloads_follow_a_redirect(tmp_path: Path) -> None:
    options = RegistryOptions(plain_http=True)
    # a "CDN": the open registry below holds the blob; the front answers 307 to it
    with RegistryServer(tmp_path / "open") as storage:
        push_plain(
            RegistryClient(storage.host, "cdn/app", "v1", RegistryOptions(plain_http=True)),
            tmp_path,
        )
        seen: list[str] = []
        loop = asyncio.new_event_loop()
        threading.Thread(target=loop.run_forever, daemon=True).start()
        port = free_port()

        async def blob(request: web.Request) -> web.Response:
            seen.append(request.match_info["digest"])
            target = f"http://{storage.host}/v2/cdn/app/blobs/{request.match_info['digest']}"
            raise web.HTTPTemporaryRedirect(target)

        async def start() -> web.AppRunner:
            app = web.Application()
            app.router.add_get("/v2/cdn/app/blobs/{digest}", blob)
            runner = web.AppRunner(app)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", port).start()
            return runner

        runner = asyncio.run_coroutine_threadsafe(start(), loop).result(10)
        try:
            front = RegistryClient(f"127.0.0.1:{port}", "cdn/app", "v1", options)
            desc = Descriptor("application/vnd.oci.image.layer.v1.tar+gzip", LAYER, 167)
            front.fetch_blob(desc, tmp_path / "got")
        finally:
            asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
            loop.call_soon_threadsafe(loop.stop)
    expected = FIXTURE / "plain-image" / "blobs" / "sha256" / LAYER[7:]
    assert (tmp_path / "got").read_bytes() == expected.read_bytes()
    assert seen == [LAYER]
