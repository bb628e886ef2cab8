"""Encrypt and decrypt OCI images through an ocicrypt key provider, as ocicrypt itself does.

The driver behind ``trustplane image encrypt|decrypt`` and the demo: it copies an image from one
:class:`~trustplane.imagestore.ImageStore` to another and encrypts (or decrypts) every layer with
ocicrypt's layer format (:mod:`trustcore.ocicrypt`), calling the key provider named by the
``OCICRYPT_KEYPROVIDER_CONFIG`` file exactly as ocicrypt 1.1 does: the ``cmd`` protocol, one
provider process per layer, up to :data:`PARALLEL_LAYERS` at once, the request JSON byte for byte
as a real skopeo sends it (the ``null`` fields included). A provider that fails (non-zero exit)
fails the copy, and its stderr is carried in the error, as ocicrypt puts it into skopeo's and
cri-o's error.

Layers stream through temporary files in the work directory (0700), so memory stays bounded; a
decrypted layer is written to the destination only after its HMAC and digest checked out. Layer
keys and nonces come from ``os.urandom``; secrets (layer keys, ``optsdata``) are never logged or
put into errors. The key provider and the hub decide who gets a key; this module only moves bytes.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from trustcore.oci import Descriptor, Manifest, parse_manifest
from trustcore.ocicrypt import (
    KEYS_ANNOTATION_PREFIX,
    NONCE_BYTES,
    PUBOPTS_ANNOTATION,
    SYMKEY_BYTES,
    LayerDecryptor,
    LayerEncryptor,
    OcicryptError,
    ProviderKey,
    decrypted_media_type,
    encrypted_media_type,
    encryption_schemes,
    is_encrypted_media_type,
    is_provider_name,
    keyunwrap_request,
    keywrap_request,
    parse_keyunwrap_response,
    parse_keywrap_response,
    parse_private_options,
    parse_public_options,
    provider_annotation,
    wrapped_keys,
)
from trustplane.errors import TrustplaneError
from trustplane.imagestore import CHUNK, ImageStore

PARALLEL_LAYERS: Final = 6
"""Layers (and so provider processes) at once: what containers/image copies in parallel."""
PROVIDER_TIMEOUT: Final = 120.0
MAX_PROVIDER_OUTPUT: Final = 64 * 1024
MAX_STDERR_SHOWN: Final = 500
MAX_CONFIG_BYTES: Final = 64 * 1024
CONFIG_ENV: Final = "OCICRYPT_KEYPROVIDER_CONFIG"


class ImageCryptError(TrustplaneError):
    """An image that cannot be encrypted or decrypted as asked (reason ``image.*``)."""

    reason = "image.crypt_failed"


class ProviderFailed(ImageCryptError):
    """The key provider exited non-zero; ``stderr`` is what it said (bounded, one line)."""

    reason = "image.provider_failed"

    def __init__(self, provider: str, status: int, stderr: str) -> None:
        super().__init__(f"key provider {provider} failed (exit status {status}): {stderr}")
        self.stderr = stderr


# --- the provider config (OCICRYPT_KEYPROVIDER_CONFIG) -------------------------------------------


@dataclass(frozen=True)
class CmdProvider:
    """A ``cmd`` key provider: the program and its arguments."""

    name: str
    path: str
    args: tuple[str, ...] = ()


@dataclass(frozen=True)
class ProviderConfig:
    """ocicrypt's key-provider config: ``{"key-providers": {NAME: {"cmd": {"path", "args"}}}}``."""

    providers: dict[str, CmdProvider]

    def provider(self, name: str) -> CmdProvider:
        try:
            return self.providers[name]
        except KeyError:
            raise ImageCryptError(
                f"key provider {name!r} is not in the key-provider config "
                f"({', '.join(sorted(self.providers)) or 'none configured'})",
                reason="image.provider_unknown",
            ) from None


def parse_provider_config(data: bytes, where: str) -> ProviderConfig:
    """Parse the config's JSON; ``grpc`` providers are named but refused when used.

    Raises:
        ImageCryptError: reason ``image.provider_config_invalid``.
    """
    reason = "image.provider_config_invalid"
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        doc = None
    entries = doc.get("key-providers") if isinstance(doc, dict) else None
    if not isinstance(entries, dict):
        raise ImageCryptError(
            f'{where}: not {{"key-providers": {{NAME: {{"cmd": {{"path", "args"}}}}}}}}',
            reason=reason,
        )
    providers: dict[str, CmdProvider] = {}
    for name, entry in entries.items():
        cmd = entry.get("cmd") if isinstance(entry, dict) else None
        if not is_provider_name(name) or not isinstance(cmd, dict):
            raise ImageCryptError(f"{where}: provider {name[:64]!r} has no cmd", reason=reason)
        path, args = cmd.get("path"), cmd.get("args") or []
        if not isinstance(path, str) or not Path(path).is_absolute():
            raise ImageCryptError(f"{where}: provider {name}: path must be absolute", reason=reason)
        if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
            raise ImageCryptError(f"{where}: provider {name}: args must be strings", reason=reason)
        providers[name] = CmdProvider(name=name, path=path, args=tuple(args))
    return ProviderConfig(providers)


def load_provider_config(path: Path | None) -> ProviderConfig:
    """Read the file named by ``path`` (the caller takes it from ``OCICRYPT_KEYPROVIDER_CONFIG``).

    Raises:
        ImageCryptError: no path, unreadable or malformed.
    """
    if path is None:
        raise ImageCryptError(
            f"no key-provider config: set {CONFIG_ENV} to ocicrypt's provider config file",
            reason="image.provider_config_invalid",
        )
    try:
        with path.open("rb") as f:
            data = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as e:
        raise ImageCryptError(
            f"{path}: {e.strerror or e}", reason="image.provider_config_invalid"
        ) from None
    return parse_provider_config(data, str(path))


def run_provider(provider: CmdProvider, request: bytes, timeout: float = PROVIDER_TIMEOUT) -> bytes:
    """Run one provider process: ``request`` on stdin, its stdout back.

    Raises:
        ProviderFailed: non-zero exit, with the provider's stderr.
        ImageCryptError: cannot start, timed out, or too much output.
    """
    try:
        done = subprocess.run(
            [provider.path, *provider.args],
            input=request,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise ImageCryptError(
            f"key provider {provider.name} did not answer within {timeout:g} s",
            reason="image.provider_failed",
        ) from None
    except OSError as e:
        raise ImageCryptError(
            f"key provider {provider.name}: cannot run {provider.path}: {e.strerror or e}",
            reason="image.provider_failed",
        ) from None
    if done.returncode != 0:
        text = " ".join(done.stderr[-4096:].decode("utf-8", errors="replace").split())
        shown = "".join(c for c in text if c.isprintable())[-MAX_STDERR_SHOWN:]
        raise ProviderFailed(provider.name, done.returncode, shown or "(nothing on stderr)")
    if len(done.stdout) > MAX_PROVIDER_OUTPUT:
        raise ImageCryptError(
            f"key provider {provider.name} wrote more than {MAX_PROVIDER_OUTPUT} bytes",
            reason="image.provider_failed",
        )
    return done.stdout


# --- the copy ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class LayerResult:
    """What happened to one layer: its digest before and after."""

    index: int
    source_digest: str
    target_digest: str
    media_type: str
    changed: bool


@dataclass(frozen=True)
class CopyResult:
    manifest_digest: str
    layers: tuple[LayerResult, ...]


def _stream(src: Path, dst: Path, update: Callable[[bytes], bytes]) -> None:
    fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with src.open("rb") as fin, os.fdopen(fd, "wb") as fout:
        while chunk := fin.read(CHUNK):
            fout.write(update(chunk))


@dataclass
class _Copy:
    source: ImageStore
    target: ImageStore
    workdir: Path

    def manifest(self) -> Manifest:
        data, media_type = self.source.get_manifest()
        return parse_manifest(data, media_type)

    def copy_blob(self, desc: Descriptor) -> None:
        if self.target.has_blob(desc):
            return
        path = self.workdir / f"copy-{desc.hex}"
        try:
            self.source.fetch_blob(desc, path)
            self.target.put_blob(path, desc)
        finally:
            path.unlink(missing_ok=True)

    def run(self, manifest: Manifest, each: Callable[[int, Descriptor], Descriptor]) -> CopyResult:
        self.copy_blob(manifest.config)
        with ThreadPoolExecutor(max_workers=PARALLEL_LAYERS) as pool:
            futures = [pool.submit(each, i, layer) for i, layer in enumerate(manifest.layers)]
            new_layers = [f.result() for f in futures]
        data = manifest.with_layers(new_layers)
        digest = self.target.put_manifest(data, manifest.media_type)
        return CopyResult(
            manifest_digest=digest,
            layers=tuple(
                LayerResult(i + 1, old.digest, new.digest, new.media_type, old != new)
                for i, (old, new) in enumerate(zip(manifest.layers, new_layers, strict=True))
            ),
        )


def _workdir(parent: Path | None) -> Path:
    path = Path(tempfile.mkdtemp(prefix="trustplane-image-", dir=parent))
    path.chmod(0o700)
    return path


def encrypt_image(
    source: ImageStore,
    target: ImageStore,
    key: ProviderKey,
    config: ProviderConfig,
    *,
    workdir: Path | None = None,
    random: Callable[[int], bytes] = os.urandom,
) -> CopyResult:
    """Copy ``source`` to ``target`` with every layer encrypted for the provider ``key`` names.

    Raises:
        ImageCryptError: a layer already encrypted, the provider failed (ProviderFailed) or
            answered garbage; ImageStoreError: reading or writing the image;
            OciError: a malformed manifest.
    """
    provider = config.provider(key.name)
    tmp = _workdir(workdir)
    try:
        copy = _Copy(source, target, tmp)
        manifest = copy.manifest().to_oci()  # ocicrypt encrypts OCI images (as skopeo converts)

        def encrypt(index: int, layer: Descriptor) -> Descriptor:
            if is_encrypted_media_type(layer.media_type):
                raise ImageCryptError(
                    f"layer {index + 1} ({layer.digest}) is already encrypted",
                    reason="image.already_encrypted",
                )
            plain, sealed = tmp / f"plain-{index}", tmp / f"sealed-{index}"
            try:
                source.fetch_blob(layer, plain)
                enc = LayerEncryptor(random(SYMKEY_BYTES), random(NONCE_BYTES))
                _stream(plain, sealed, enc.update)
                private, public, digest = enc.finish()
                reply = run_provider(provider, keywrap_request(key, private.encode()))
                try:
                    annotation = parse_keywrap_response(reply)
                except OcicryptError as e:
                    raise ImageCryptError(
                        f"key provider {key.name}: {e.message}", reason=e.reason
                    ) from None
                annotations = {
                    **layer.annotations,
                    provider_annotation(key.name): base64.b64encode(annotation).decode(),
                    PUBOPTS_ANNOTATION: public.annotation(),
                }
                new = Descriptor(
                    encrypted_media_type(layer.media_type), digest, enc.size, annotations
                )
                target.put_blob(sealed, new)
                return new
            finally:
                plain.unlink(missing_ok=True)
                sealed.unlink(missing_ok=True)

        return copy.run(manifest, encrypt)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def decrypt_image(
    source: ImageStore,
    target: ImageStore,
    key: ProviderKey,
    config: ProviderConfig,
    *,
    workdir: Path | None = None,
) -> CopyResult:
    """Copy ``source`` to ``target`` with every encrypted layer decrypted through the provider.

    Layers that are not encrypted are copied as they are. An encrypted layer without a key for
    this provider fails the copy (``image.no_key_for_provider``).

    Raises:
        ImageCryptError (ProviderFailed: the provider refused, its stderr in the message),
        OcicryptError (``ocicrypt.hmac_mismatch``, ``ocicrypt.digest_mismatch``, malformed
        options), ImageStoreError, OciError.
    """
    provider = config.provider(key.name)
    tmp = _workdir(workdir)
    try:
        copy = _Copy(source, target, tmp)
        manifest = copy.manifest()

        def decrypt(index: int, layer: Descriptor) -> Descriptor:
            if not is_encrypted_media_type(layer.media_type):
                copy.copy_blob(layer)
                return layer
            wrapped = wrapped_keys(layer.annotations).get(key.name)
            if wrapped is None:
                schemes = ", ".join(encryption_schemes(layer.annotations)) or "none"
                raise ImageCryptError(
                    f"layer {index + 1} ({layer.digest}) has no key for provider {key.name} "
                    f"(its keys: {schemes})",
                    reason="image.no_key_for_provider",
                )
            public = parse_public_options(layer.annotations.get(PUBOPTS_ANNOTATION, ""))
            reply = run_provider(provider, keyunwrap_request(key, wrapped))
            private = parse_private_options(parse_keyunwrap_response(reply))
            sealed, plain = tmp / f"sealed-{index}", tmp / f"plain-{index}"
            try:
                source.fetch_blob(layer, sealed)
                dec = LayerDecryptor(private, public)
                _stream(sealed, plain, dec.update)
                digest = dec.finish()
                annotations = {
                    k: v
                    for k, v in layer.annotations.items()
                    if not k.startswith(KEYS_ANNOTATION_PREFIX) and k != PUBOPTS_ANNOTATION
                }
                new = Descriptor(
                    decrypted_media_type(layer.media_type), digest, dec.size, annotations
                )
                target.put_blob(plain, new)
                return new
            finally:
                plain.unlink(missing_ok=True)
                sealed.unlink(missing_ok=True)

        return copy.run(manifest, decrypt)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
