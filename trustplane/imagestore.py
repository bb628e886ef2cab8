"""Where images live: OCI image layouts on disk and registries speaking the OCI distribution API.

:class:`OciLayout` reads and writes an OCI image layout directory (``oci-layout``,
``index.json`` with ``org.opencontainers.image.ref.name`` tags, ``blobs/sha256/``);
:class:`RegistryClient` talks to a registry (``/v2/``: manifests by tag or digest, blobs, uploads
monolithic or in chunks with ``PATCH`` + ``Content-Range``), over HTTPS or, when asked, plain
HTTP, answering authentication challenges (Basic, or a bearer token from the registry's token
service) with the credentials of :mod:`trustplane.registryauth`. Both are an
:class:`ImageStore` bound to one image reference, so the encrypt/decrypt driver and the pipeline
gate do not care where an image is.

Every blob read is streamed to a file in bounded memory and checked against its descriptor's
size and digest; manifests are capped at :data:`trustcore.oci.MAX_MANIFEST_BYTES`. Uploads are
not followed off the registry's host; blob downloads follow up to :data:`MAX_REDIRECTS`
redirects (storage behind a CDN), without our credentials when they leave the host. Failures
raise :class:`ImageStoreError` or :class:`~trustplane.registryauth.RegistryAuthError` (reason
``image.*``).
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import ssl
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Final, Protocol, TypeAlias
from urllib.parse import urlencode, urlsplit

from trustcore.oci import (
    DOCKER_LIST,
    DOCKER_MANIFEST,
    MAX_MANIFEST_BYTES,
    OCI_INDEX,
    OCI_MANIFEST,
    REF_NAME_ANNOTATION,
    Descriptor,
    ImageReference,
    LayoutReference,
    encode_index,
    is_digest,
    parse_index,
)
from trustplane.errors import TrustplaneError
from trustplane.registryauth import Credentials, RegistryAuthError, parse_challenge

CHUNK: Final = 64 * 1024
DEFAULT_UPLOAD_CHUNK: Final = 8 * 1024 * 1024
DEFAULT_TIMEOUT: Final = 60.0
MAX_ERROR_BODY: Final = 4096
MAX_TOKEN_ANSWER: Final = 64 * 1024
MAX_REDIRECTS: Final = 3
HTTPConn: TypeAlias = http.client.HTTPConnection
ACCEPT: Final = ", ".join((OCI_MANIFEST, DOCKER_MANIFEST, OCI_INDEX, DOCKER_LIST))


class ImageStoreError(TrustplaneError):
    """A layout or registry that cannot give or take what was asked."""

    reason = "image.store_failed"


class ImageStore(Protocol):
    """One image reference in a layout or a registry."""

    def describe(self) -> str: ...

    def get_manifest(self) -> tuple[bytes, str]:
        """The manifest bytes and media type the reference names."""
        ...

    def fetch_blob(self, desc: Descriptor, dest: Path) -> None:
        """Write the blob to ``dest``, checking its size and digest."""
        ...

    def has_blob(self, desc: Descriptor) -> bool: ...

    def put_blob(self, path: Path, desc: Descriptor) -> None:
        """Store the file at ``path`` as the blob ``desc`` names."""
        ...

    def put_manifest(self, data: bytes, media_type: str) -> str:
        """Store the manifest under the reference's tag; returns its digest."""
        ...


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def copy_checked(src: BinaryIO, dest: Path, desc: Descriptor, where: str) -> None:
    """Stream ``src`` into ``dest`` (0600), refusing more than ``desc.size`` bytes or another
    digest."""
    h = hashlib.sha256()
    size = 0
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        while chunk := src.read(CHUNK):
            size += len(chunk)
            if size > desc.size:
                raise ImageStoreError(
                    f"{where}: blob {desc.digest} is longer than its {desc.size} bytes",
                    reason="image.blob_mismatch",
                )
            h.update(chunk)
            out.write(chunk)
    if size != desc.size or "sha256:" + h.hexdigest() != desc.digest:
        raise ImageStoreError(
            f"{where}: blob {desc.digest} has another digest or size ({size} bytes)",
            reason="image.blob_mismatch",
        )


# --- OCI image layout ---------------------------------------------------------------------------


@dataclass(frozen=True)
class OciLayout:
    """An OCI image layout directory and one tag in it."""

    ref: LayoutReference

    @property
    def root(self) -> Path:
        return Path(self.ref.directory)

    def describe(self) -> str:
        return str(self.ref)

    def _blob_path(self, digest: str) -> Path:
        if not is_digest(digest):
            raise ImageStoreError(f"malformed digest {digest[:80]!r}", reason="image.blob_mismatch")
        return self.root / "blobs" / "sha256" / digest.removeprefix("sha256:")

    def _index(self) -> list[Descriptor]:
        try:
            with (self.root / "index.json").open("rb") as f:
                data = f.read(MAX_MANIFEST_BYTES + 1)
        except OSError as e:
            raise ImageStoreError(
                f"{self.ref}: not an OCI layout ({e.strerror or e})", reason="image.not_found"
            ) from None
        return parse_index(data)

    def get_manifest(self) -> tuple[bytes, str]:
        for desc in self._index():
            if desc.annotations.get(REF_NAME_ANNOTATION) == self.ref.tag:
                path = self._blob_path(desc.digest)
                try:
                    with path.open("rb") as f:
                        data = f.read(MAX_MANIFEST_BYTES + 1)
                except OSError as e:
                    raise ImageStoreError(
                        f"{self.ref}: manifest blob missing ({e.strerror or e})",
                        reason="image.not_found",
                    ) from None
                if len(data) != desc.size or sha256_digest(data) != desc.digest:
                    raise ImageStoreError(
                        f"{self.ref}: manifest blob does not match index.json",
                        reason="image.blob_mismatch",
                    )
                return data, desc.media_type
        raise ImageStoreError(
            f"{self.ref}: no image tagged {self.ref.tag}", reason="image.not_found"
        )

    def fetch_blob(self, desc: Descriptor, dest: Path) -> None:
        try:
            with self._blob_path(desc.digest).open("rb") as f:
                copy_checked(f, dest, desc, str(self.ref))
        except FileNotFoundError:
            raise ImageStoreError(
                f"{self.ref}: blob {desc.digest} missing", reason="image.not_found"
            ) from None

    def has_blob(self, desc: Descriptor) -> bool:
        path = self._blob_path(desc.digest)
        return path.is_file() and path.stat().st_size == desc.size

    def _ensure(self) -> None:
        (self.root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        marker = self.root / "oci-layout"
        if not marker.exists():
            marker.write_text('{"imageLayoutVersion":"1.0.0"}')
        if not (self.root / "index.json").exists():
            self._write_atomic(self.root / "index.json", encode_index([]))

    @staticmethod
    def _write_atomic(path: Path, data: bytes) -> None:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        Path(tmp).chmod(0o644)
        Path(tmp).replace(path)

    def put_blob(self, path: Path, desc: Descriptor) -> None:
        self._ensure()
        target = self._blob_path(desc.digest)
        if self.has_blob(desc):
            return
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        os.close(fd)
        with path.open("rb") as src:
            copy_checked(src, Path(tmp), desc, str(self.ref))
        Path(tmp).chmod(0o644)
        Path(tmp).replace(target)

    def put_manifest(self, data: bytes, media_type: str) -> str:
        self._ensure()
        digest = sha256_digest(data)
        self._write_atomic(self._blob_path(digest), data)
        kept = [d for d in self._index() if d.annotations.get(REF_NAME_ANNOTATION) != self.ref.tag]
        entry = Descriptor(media_type, digest, len(data), {REF_NAME_ANNOTATION: self.ref.tag})
        self._write_atomic(self.root / "index.json", encode_index([*kept, entry]))
        return digest


# --- registry (OCI distribution API) ------------------------------------------------------------


@dataclass(frozen=True)
class RegistryOptions:
    """How to reach registries: ``plain_http`` for a registry on 127.0.0.1 without TLS;
    ``credentials`` by registry host (:mod:`trustplane.registryauth`)."""

    plain_http: bool = False
    ca_file: Path | None = None
    timeout: float = DEFAULT_TIMEOUT
    upload_chunk: int = DEFAULT_UPLOAD_CHUNK
    credentials: Mapping[str, Credentials] = field(default_factory=dict)


@dataclass(frozen=True)
class RegistryClient:
    """One repository and reference (tag or digest) in a registry."""

    host: str
    repository: str
    reference: str
    options: RegistryOptions = RegistryOptions()
    _auth: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    def describe(self) -> str:
        sep = "@" if is_digest(self.reference) else ":"
        return f"docker://{self.host}/{self.repository}{sep}{self.reference}"

    def _connection(self, host: str | None = None, *, tls: bool | None = None) -> HTTPConn:
        host = host or self.host
        if not (not self.options.plain_http if tls is None else tls):
            return http.client.HTTPConnection(host, timeout=self.options.timeout)
        ctx = ssl.create_default_context(
            cafile=str(self.options.ca_file) if self.options.ca_file else None
        )
        return http.client.HTTPSConnection(host, timeout=self.options.timeout, context=ctx)

    def _unreachable(self, e: Exception) -> ImageStoreError:
        return ImageStoreError(
            f"{self.describe()}: cannot reach the registry ({e})",
            reason="image.registry_unreachable",
        )

    def _authenticate(self, header: str | None) -> None:
        """Answer a 401's challenge: Basic credentials, or a bearer token from the realm."""
        challenge = parse_challenge(header)
        creds = self.options.credentials.get(self.host)
        if challenge.scheme == "basic":
            if creds is None:
                raise RegistryAuthError(
                    f"{self.describe()}: the registry wants a user name and password and the "
                    f"auth file has none for {self.host}"
                )
            self._auth["header"] = creds.basic()
            return
        realm = urlsplit(challenge.params.get("realm", ""))
        if realm.scheme not in ("https", "http") or not realm.netloc:
            raise RegistryAuthError(f"{self.describe()}: the registry's token realm is malformed")
        if realm.scheme == "http" and not self.options.plain_http:
            raise RegistryAuthError(
                f"{self.describe()}: the registry's token realm is plain HTTP (use --plain-http "
                "only for a registry on 127.0.0.1)"
            )
        query: dict[str, str] = {
            k: challenge.params[k] for k in ("service", "scope") if k in challenge.params
        }
        path = (realm.path or "/") + "?" + urlencode(query)
        headers = {"Authorization": creds.basic()} if creds is not None else {}
        conn = self._connection(realm.netloc, tls=realm.scheme == "https")
        try:
            try:
                conn.request("GET", path, headers=headers)
                resp = conn.getresponse()
                body = resp.read(MAX_TOKEN_ANSWER + 1)
            except (OSError, http.client.HTTPException) as e:
                raise self._unreachable(e) from None
        finally:
            conn.close()
        if resp.status != 200:
            raise RegistryAuthError(
                f"{self.describe()}: the token service refused us (HTTP {resp.status}"
                f"{'' if creds else ', and the auth file has no credentials for ' + self.host})"
            )
        try:
            answer = json.loads(body.decode("utf-8"))
            token = answer.get("token") or answer.get("access_token")
        except (UnicodeDecodeError, ValueError, AttributeError):
            token = None
        if not isinstance(token, str) or not token or len(body) > MAX_TOKEN_ANSWER:
            raise RegistryAuthError(f"{self.describe()}: the token service sent no token")
        if not token.isascii() or not token.isprintable():
            raise RegistryAuthError(f"{self.describe()}: the token service sent a bad token")
        self._auth["header"] = f"Bearer {token}"

    def _path(self, location: str) -> str:
        """A same-host path from a ``Location`` (absolute or relative)."""
        parts = urlsplit(location)
        if parts.netloc and parts.netloc != self.host:
            raise ImageStoreError(
                f"{self.describe()}: registry sent us to another host ({parts.netloc[:80]})",
                reason="image.registry_failed",
            )
        if not parts.path.startswith("/v2/"):
            raise ImageStoreError(
                f"{self.describe()}: unexpected upload location", reason="image.registry_failed"
            )
        return parts.path + (f"?{parts.query}" if parts.query else "")

    @contextmanager
    def _request(
        self,
        method: str,
        path: str,
        body: bytes | BinaryIO | None = None,
        headers: dict[str, str] | None = None,
        expect: tuple[int, ...] = (200,),
        *,
        redirects: int = 0,
    ) -> Iterator[http.client.HTTPResponse]:
        """One request, answering one authentication challenge and following up to
        ``redirects`` redirects (blob downloads: storage behind a CDN; the Authorization header
        goes only to the registry's own host)."""
        start = body.tell() if body is not None and not isinstance(body, bytes) else 0
        opened: list[HTTPConn] = []
        try:
            resp = None
            for attempt in range(2):
                hdrs = dict(headers or {})
                if "header" in self._auth:
                    hdrs["Authorization"] = self._auth["header"]
                if body is not None and not isinstance(body, bytes):
                    body.seek(start)
                conn = self._connection()
                opened.append(conn)
                try:
                    conn.request(method, path, body=body, headers=hdrs)
                    resp = conn.getresponse()
                except (OSError, http.client.HTTPException) as e:
                    raise self._unreachable(e) from None
                if resp.status != 401:
                    break
                if attempt == 1:
                    raise RegistryAuthError(
                        f"{self.describe()}: {method} {path.split('?', maxsplit=1)[0]}: the "
                        "registry refused our credentials"
                    )
                challenge = resp.getheader("WWW-Authenticate")
                resp.read(MAX_ERROR_BODY)
                self._authenticate(challenge)
            assert resp is not None
            for _ in range(redirects):
                if resp.status not in (301, 302, 303, 307, 308):
                    break
                target = urlsplit(resp.getheader("Location") or "")
                if target.scheme not in ("http", "https") or not target.netloc:
                    target = target._replace(
                        scheme="http" if self.options.plain_http else "https", netloc=self.host
                    )
                if target.scheme == "http" and not self.options.plain_http:
                    break
                hdrs = {}
                if target.netloc == self.host and "header" in self._auth:
                    hdrs["Authorization"] = self._auth["header"]
                conn = self._connection(target.netloc, tls=target.scheme == "https")
                opened.append(conn)
                try:
                    query = f"?{target.query}" if target.query else ""
                    conn.request("GET", (target.path or "/") + query, headers=hdrs)
                    resp = conn.getresponse()
                except (OSError, http.client.HTTPException) as e:
                    raise self._unreachable(e) from None
            if resp.status not in expect:
                bare = path.split("?", maxsplit=1)[0]
                raise ImageStoreError(
                    f"{self.describe()}: {method} {bare} answered {resp.status}"
                    f"{_registry_errors(resp.read(MAX_ERROR_BODY))}",
                    reason="image.not_found" if resp.status == 404 else "image.registry_failed",
                )
            yield resp
        finally:
            for conn in opened:
                conn.close()

    def _base(self) -> str:
        return f"/v2/{self.repository}"

    def get_manifest(self) -> tuple[bytes, str]:
        path = f"{self._base()}/manifests/{self.reference}"
        with self._request("GET", path, headers={"Accept": ACCEPT}) as resp:
            data = resp.read(MAX_MANIFEST_BYTES + 1)
            media_type = (resp.getheader("Content-Type") or "").split(";")[0].strip()
        if len(data) > MAX_MANIFEST_BYTES:
            raise ImageStoreError(
                f"{self.describe()}: manifest too large", reason="image.too_large"
            )
        if is_digest(self.reference) and sha256_digest(data) != self.reference:
            raise ImageStoreError(
                f"{self.describe()}: manifest does not match its digest",
                reason="image.blob_mismatch",
            )
        return data, media_type

    def fetch_blob(self, desc: Descriptor, dest: Path) -> None:
        path = f"{self._base()}/blobs/{desc.digest}"
        with self._request("GET", path, redirects=MAX_REDIRECTS) as resp:
            copy_checked(resp, dest, desc, self.describe())

    def has_blob(self, desc: Descriptor) -> bool:
        path = f"{self._base()}/blobs/{desc.digest}"
        with self._request("HEAD", path, expect=(200, 404)) as resp:
            return resp.status == 200

    def _start_upload(self) -> str:
        with self._request("POST", f"{self._base()}/blobs/uploads/", expect=(202,)) as resp:
            return self._path(resp.getheader("Location") or "")

    @staticmethod
    def _with_digest(location: str, digest: str) -> str:
        sep = "&" if "?" in location else "?"
        return f"{location}{sep}{urlencode({'digest': digest})}"

    def put_blob(self, path: Path, desc: Descriptor) -> None:
        if self.has_blob(desc):
            return
        location = self._start_upload()
        octets = {"Content-Type": "application/octet-stream"}
        with path.open("rb") as f:
            if desc.size <= self.options.upload_chunk:
                headers = {**octets, "Content-Length": str(desc.size)}
                with self._request(
                    "PUT", self._with_digest(location, desc.digest), f, headers, expect=(201,)
                ):
                    return
            offset = 0
            while chunk := f.read(self.options.upload_chunk):
                headers = {
                    **octets,
                    "Content-Length": str(len(chunk)),
                    "Content-Range": f"{offset}-{offset + len(chunk) - 1}",
                }
                with self._request("PATCH", location, chunk, headers, expect=(202,)) as resp:
                    location = self._path(resp.getheader("Location") or "")
                offset += len(chunk)
        headers = {"Content-Length": "0"}
        with self._request(
            "PUT", self._with_digest(location, desc.digest), b"", headers, expect=(201,)
        ):
            return

    def put_manifest(self, data: bytes, media_type: str) -> str:
        headers = {"Content-Type": media_type, "Content-Length": str(len(data))}
        path = f"{self._base()}/manifests/{self.reference}"
        with self._request("PUT", path, data, headers, expect=(201,)):
            return sha256_digest(data)


def _registry_errors(body: bytes) -> str:
    """``: CODE message`` from the registry's ``{"errors": [...]}``, if it sent one."""
    try:
        errors = json.loads(body.decode("utf-8")).get("errors")
        first = errors[0]
        text = f"{first.get('code', '')} {first.get('message', '')}".strip()
    except (ValueError, AttributeError, IndexError, KeyError, TypeError):
        return ""
    return f": {' '.join(text.split())[:200]}" if text.isprintable() else ""


def open_store(ref: ImageReference, options: RegistryOptions) -> ImageStore:
    """The store for a parsed reference."""
    if isinstance(ref, LayoutReference):
        return OciLayout(ref)
    return RegistryClient(ref.host, ref.repository, ref.reference, options)
