"""OCI image manifests, indexes and image references, without I/O.

Parses what an OCI image layout or a registry hands out (image manifest, image index, Docker
schema 2 manifest) into :class:`Manifest` and :class:`Descriptor` values with every length and
field checked, re-encodes a manifest with new layers keeping every other field, and parses the
image references the ``trustplane image`` commands take: ``oci:DIR[:TAG]`` and
``docker://HOST[:PORT]/REPO[:TAG|@DIGEST]``. Reading and writing layouts and talking to
registries is :mod:`trustplane.imagestore`'s work. Every malformed input raises
:class:`OciError`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Final

from trustcore.errors import TrustcoreError

OCI_MANIFEST: Final = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX: Final = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST: Final = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST: Final = "application/vnd.docker.distribution.manifest.list.v2+json"
MANIFEST_TYPES: Final = (OCI_MANIFEST, DOCKER_MANIFEST)
OCI_CONFIG: Final = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP: Final = "application/vnd.oci.image.layer.v1.tar+gzip"
REF_NAME_ANNOTATION: Final = "org.opencontainers.image.ref.name"
MAX_MANIFEST_BYTES: Final = 4 * 1024 * 1024
MAX_LAYERS: Final = 1024
MAX_ANNOTATIONS: Final = 256
MAX_ANNOTATION_VALUE: Final = 64 * 1024
MAX_BLOB_SIZE: Final = 1 << 40

_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_MEDIA_TYPE = re.compile(
    r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}"
)
_REPO = re.compile(
    r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
)
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
_HOST = re.compile(
    r"(?:[A-Za-z0-9-]{1,63}\.)*[A-Za-z0-9-]{1,63}(?::[0-9]{1,5})?|\[[0-9a-fA-F:.]{2,45}\](?::[0-9]{1,5})?"
)


class OciError(TrustcoreError):
    """A manifest, index or reference that is not well formed (reason ``oci.*``)."""

    reason = "oci.manifest_invalid"


def is_digest(value: object) -> bool:
    return isinstance(value, str) and _DIGEST.fullmatch(value) is not None


@dataclass(frozen=True)
class Descriptor:
    """A content descriptor: media type, digest, size and annotations."""

    media_type: str
    digest: str
    size: int
    annotations: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if _MEDIA_TYPE.fullmatch(self.media_type) is None:
            raise OciError(f"malformed media type {self.media_type[:80]!r}")
        if not is_digest(self.digest):
            raise OciError(f"digest {self.digest[:80]!r} is not sha256:<64 hex>")
        if type(self.size) is not int or not 0 <= self.size <= MAX_BLOB_SIZE:
            raise OciError(f"descriptor size {str(self.size)[:20]} out of range")
        if len(self.annotations) > MAX_ANNOTATIONS:
            raise OciError(f"more than {MAX_ANNOTATIONS} annotations")
        for key, value in self.annotations.items():
            if not isinstance(key, str) or not isinstance(value, str):
                raise OciError("annotations must map strings to strings")
            if len(key) > 255 or len(value) > MAX_ANNOTATION_VALUE:
                raise OciError(f"annotation {key[:80]!r} too long")

    @property
    def hex(self) -> str:
        return self.digest.removeprefix("sha256:")

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.size,
        }
        if self.annotations:
            out["annotations"] = dict(sorted(self.annotations.items()))
        return out


def parse_descriptor(obj: object, *, default_media_type: str | None = None) -> Descriptor:
    """A descriptor from its JSON object. Raises OciError."""
    if not isinstance(obj, dict):
        raise OciError("descriptor is not a JSON object")
    media_type = obj.get("mediaType", default_media_type)
    annotations = obj.get("annotations") or {}
    if not isinstance(media_type, str) or not isinstance(annotations, dict):
        raise OciError("descriptor without a media type or with malformed annotations")
    digest, size = obj.get("digest"), obj.get("size")
    if not isinstance(digest, str) or type(size) is not int:
        raise OciError("descriptor without a digest or size")
    return Descriptor(
        media_type=media_type, digest=digest, size=size, annotations=dict(annotations)
    )


def _load(data: bytes, what: str) -> dict[str, Any]:
    if len(data) > MAX_MANIFEST_BYTES:
        raise OciError(f"{what} of {len(data)} bytes (at most {MAX_MANIFEST_BYTES})")
    try:
        obj = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise OciError(f"{what} is not JSON") from exc
    if not isinstance(obj, dict) or obj.get("schemaVersion") != 2:
        raise OciError(f"{what} is not a schemaVersion 2 JSON object")
    return obj


@dataclass(frozen=True)
class Manifest:
    """An image manifest; ``document`` is the whole parsed JSON (other fields are kept)."""

    media_type: str
    config: Descriptor
    layers: tuple[Descriptor, ...]
    document: dict[str, Any] = field(repr=False)

    def to_oci(self) -> Manifest:
        """The same image as an OCI manifest (a Docker schema 2 manifest's media types mapped
        as containers/image converts them; the blobs stay the same). ocicrypt encrypts OCI
        images only. Raises OciError for a Docker media type without an OCI twin."""
        if self.media_type == OCI_MANIFEST:
            return self
        config = _to_oci(self.config)
        layers = tuple(_to_oci(layer) for layer in self.layers)
        doc = {**self.document, "mediaType": OCI_MANIFEST, "config": config.to_json()}
        doc["layers"] = [layer.to_json() for layer in layers]
        return Manifest(OCI_MANIFEST, config, layers, doc)

    def with_layers(self, layers: list[Descriptor]) -> bytes:
        """The manifest's JSON bytes with ``layers`` instead of its own, everything else kept."""
        if len(layers) != len(self.layers):
            raise OciError("a manifest's layers can be replaced, not added or dropped")
        doc = dict(self.document)
        doc["layers"] = [layer.to_json() for layer in layers]
        return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


DOCKER_TO_OCI: Final = {
    "application/vnd.docker.container.image.v1+json": OCI_CONFIG,
    "application/vnd.docker.image.rootfs.diff.tar.gzip": OCI_LAYER_GZIP,
    "application/vnd.docker.image.rootfs.diff.tar": "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip": (
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
    ),
}


def _to_oci(desc: Descriptor) -> Descriptor:
    if desc.media_type.startswith("application/vnd.oci."):
        return desc
    mapped = DOCKER_TO_OCI.get(desc.media_type)
    if mapped is None:
        raise OciError(
            f"media type {desc.media_type[:80]} has no OCI equivalent",
            reason="oci.media_type_unsupported",
        )
    return Descriptor(mapped, desc.digest, desc.size, dict(desc.annotations))


def parse_manifest(data: bytes, media_type: str | None = None) -> Manifest:
    """An OCI image manifest or Docker schema 2 manifest.

    ``media_type`` is what the transport said (a registry's Content-Type, a layout's index entry);
    the document's own ``mediaType`` wins when present. Raises OciError (``oci.manifest_invalid``,
    or ``oci.index_not_supported`` for an index / manifest list).
    """
    doc = _load(data, "manifest")
    kind = doc.get("mediaType", media_type) or OCI_MANIFEST
    if kind in (OCI_INDEX, DOCKER_LIST) or "manifests" in doc:
        raise OciError(
            "the reference names an image index (several platforms); name one platform's "
            "manifest by digest",
            reason="oci.index_not_supported",
        )
    if kind not in MANIFEST_TYPES:
        raise OciError(f"unsupported manifest media type {str(kind)[:80]!r}")
    layers = doc.get("layers")
    if not isinstance(layers, list) or len(layers) > MAX_LAYERS:
        raise OciError(f"manifest layers missing or more than {MAX_LAYERS}")
    return Manifest(
        media_type=kind,
        config=parse_descriptor(doc.get("config")),
        layers=tuple(parse_descriptor(layer) for layer in layers),
        document=doc,
    )


def parse_index(data: bytes) -> list[Descriptor]:
    """The ``manifests`` of an OCI image index (an OCI layout's ``index.json``). Raises OciError."""
    doc = _load(data, "image index")
    manifests = doc.get("manifests")
    if not isinstance(manifests, list) or len(manifests) > MAX_LAYERS:
        raise OciError("image index without a manifests list")
    return [parse_descriptor(m) for m in manifests]


def encode_index(manifests: list[Descriptor]) -> bytes:
    """An OCI layout's ``index.json``."""
    doc = {"schemaVersion": 2, "manifests": [m.to_json() for m in manifests]}
    return json.dumps(doc, separators=(",", ":")).encode()


# --- references -------------------------------------------------------------------------------


@dataclass(frozen=True)
class LayoutReference:
    """``oci:DIR[:TAG]`` (TAG defaults to ``latest``)."""

    directory: str
    tag: str

    def __str__(self) -> str:
        return f"oci:{self.directory}:{self.tag}"


@dataclass(frozen=True)
class RegistryReference:
    """``docker://HOST[:PORT]/REPO[:TAG|@sha256:...]``."""

    host: str
    repository: str
    reference: str

    def __str__(self) -> str:
        sep = "@" if is_digest(self.reference) else ":"
        return f"docker://{self.host}/{self.repository}{sep}{self.reference}"


ImageReference = LayoutReference | RegistryReference


def parse_image_reference(text: str) -> ImageReference:
    """Parse an image reference as skopeo writes them (``oci:`` and ``docker://`` transports).

    Raises:
        OciError: reason ``oci.reference_invalid``.
    """
    reason = "oci.reference_invalid"
    if len(text) > 1024 or not text.isprintable():
        raise OciError("image reference too long or with control characters", reason=reason)
    if text.startswith("oci:"):
        rest = text[4:]
        directory, sep, tag = rest.rpartition(":")
        if not sep or "/" in tag:
            directory, tag = rest, "latest"
        if not directory or _TAG.fullmatch(tag) is None:
            raise OciError(f"{text!r}: expected oci:DIR[:TAG]", reason=reason)
        return LayoutReference(directory=directory, tag=tag)
    if text.startswith("docker://"):
        rest = text[len("docker://") :]
        host, slash, path = rest.partition("/")
        if not slash or _HOST.fullmatch(host) is None:
            raise OciError(f"{text!r}: expected docker://HOST[:PORT]/REPO[:TAG]", reason=reason)
        if "@" in path:
            repo, _, ref = path.partition("@")
            if not is_digest(ref):
                raise OciError(f"{text!r}: malformed digest", reason=reason)
        else:
            repo, sep, ref = path.rpartition(":")
            if not sep or "/" in ref:
                repo, ref = path, "latest"
            if _TAG.fullmatch(ref) is None:
                raise OciError(f"{text!r}: malformed tag", reason=reason)
        if len(repo) > 255 or _REPO.fullmatch(repo) is None:
            raise OciError(f"{text!r}: malformed repository name", reason=reason)
        return RegistryReference(host=host, repository=repo, reference=ref)
    raise OciError(
        f"{text[:80]!r}: expected oci:DIR[:TAG] or docker://HOST[:PORT]/REPO[:TAG]", reason=reason
    )
