"""The opaque key blob the trustplane ocicrypt key provider puts into an encrypted image.

At encryption time the hub wraps a layer's private options (ocicrypt's ``optsdata``: the layer's
symmetric key, digest and cipher options) under a key-encryption key it never lets go of, and the
key provider hands the result to ocicrypt as its ``annotation``; ocicrypt stores it, base64
encoded, in the layer annotation ``org.opencontainers.image.enc.keys.provider.trustplane``.

The blob is canonical JSON (sorted keys, no white space), UTF-8, at most
:data:`MAX_KEY_BLOB_BYTES` bytes::

    {"alg": "A256GCM", "ct": b64, "hub": "https://hub.example:8443", "iv": b64 (12 bytes),
     "kid": "<key id>", "policy": "<policy name>", "v": 1}

``ct`` is AES-256-GCM ciphertext plus its 16-byte tag; the associated data is
:meth:`KeyBlob.associated_data`, the canonical JSON of every field but ``iv`` and ``ct``, so
neither the key id, the policy name, the hub nor the format version can be changed without the
hub noticing. Key id, policy and hub are public (a pipeline's image check prints them); the
secret is only ever in ``ct``.

This module only encodes and decodes; sealing and opening (the AES-GCM operation itself, with a
key from the hub's key store) is the hub's work. Every malformed blob raises
:class:`KeyBlobError` with reason ``release.blob_invalid``.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from typing import Any, Final

from trustcore.errors import TrustcoreError

KEY_BLOB_VERSION: Final = 1
KEY_BLOB_ALGORITHM: Final = "A256GCM"
MAX_KEY_BLOB_BYTES: Final = 4096
IV_BYTES: Final = 12
TAG_BYTES: Final = 16
MAX_SECRET_BYTES: Final = 2048
"""The most plaintext a blob carries (ocicrypt's optsdata is ~150 bytes)."""

_KEY_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_POLICY = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
_MAX_HUB = 255
_FIELDS: Final = frozenset({"v", "alg", "kid", "policy", "hub", "iv", "ct"})


class KeyBlobError(TrustcoreError):
    """Bytes that are not a well-formed trustplane key blob."""

    reason = "release.blob_invalid"


def is_key_id(value: str) -> bool:
    """Whether ``value`` is a well-formed key id (1-64 of ``A-Za-z0-9._-``, not starting with
    a punctuation character)."""
    return _KEY_ID.fullmatch(value) is not None


def is_policy_name(value: str) -> bool:
    """Whether ``value`` is a well-formed policy name (a DNS label: 1-63 of ``a-z0-9-``)."""
    return _POLICY.fullmatch(value) is not None


def _canonical(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


@dataclass(frozen=True)
class KeyBlob:
    """A decoded key blob; building one checks every field."""

    key_id: str
    policy: str
    hub: str
    iv: bytes
    ciphertext: bytes
    version: int = KEY_BLOB_VERSION
    algorithm: str = KEY_BLOB_ALGORITHM

    def __post_init__(self) -> None:
        if self.version != KEY_BLOB_VERSION:
            raise KeyBlobError(f"unsupported key blob version {self.version!r}")
        if self.algorithm != KEY_BLOB_ALGORITHM:
            raise KeyBlobError(f"unsupported key blob algorithm {self.algorithm[:32]!r}")
        if not is_key_id(self.key_id):
            raise KeyBlobError("key blob has a malformed key id")
        if not is_policy_name(self.policy):
            raise KeyBlobError("key blob has a malformed policy name")
        if not self.hub or len(self.hub) > _MAX_HUB or not self.hub.isprintable():
            raise KeyBlobError("key blob has a malformed hub URL")
        if len(self.iv) != IV_BYTES:
            raise KeyBlobError(f"key blob iv is {len(self.iv)} bytes, not {IV_BYTES}")
        if not TAG_BYTES < len(self.ciphertext) <= MAX_SECRET_BYTES + TAG_BYTES:
            raise KeyBlobError(f"key blob ciphertext of {len(self.ciphertext)} bytes")

    def _identity(self) -> dict[str, Any]:
        return {
            "v": self.version,
            "alg": self.algorithm,
            "kid": self.key_id,
            "policy": self.policy,
            "hub": self.hub,
        }

    def associated_data(self) -> bytes:
        """The AES-GCM associated data: canonical JSON of version, algorithm, key id, policy and
        hub."""
        return _canonical(self._identity())

    def encode(self) -> bytes:
        """The blob's canonical bytes (what the key provider returns as its annotation)."""
        return _canonical(
            {
                **self._identity(),
                "iv": base64.b64encode(self.iv).decode(),
                "ct": base64.b64encode(self.ciphertext).decode(),
            }
        )


def _b64field(obj: dict[str, Any], name: str) -> bytes:
    value = obj[name]
    if not isinstance(value, str):
        raise KeyBlobError(f"key blob field {name!r} is not a string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise KeyBlobError(f"key blob field {name!r} is not base64") from exc


def parse_key_blob(data: bytes) -> KeyBlob:
    """Decode a key blob.

    Only the canonical encoding is accepted (what :meth:`KeyBlob.encode` gives for the decoded
    blob), so one blob has exactly one byte form and its SHA-256 identifies it.

    Raises:
        KeyBlobError: ``data`` is not a well-formed blob (reason ``release.blob_invalid``).
    """
    if len(data) > MAX_KEY_BLOB_BYTES:
        raise KeyBlobError(f"key blob of {len(data)} bytes (at most {MAX_KEY_BLOB_BYTES})")
    try:
        obj = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise KeyBlobError("key blob is not JSON") from exc
    if not isinstance(obj, dict) or set(obj) != _FIELDS:
        raise KeyBlobError(
            "key blob does not have exactly the fields v, alg, kid, policy, hub, iv, ct"
        )
    version = obj["v"]
    if type(version) is not int:
        raise KeyBlobError("key blob version is not an integer")
    texts = {k: obj[k] for k in ("alg", "kid", "policy", "hub")}
    for name, value in texts.items():
        if not isinstance(value, str):
            raise KeyBlobError(f"key blob field {name!r} is not a string")
    blob = KeyBlob(
        version=version,
        algorithm=texts["alg"],
        key_id=texts["kid"],
        policy=texts["policy"],
        hub=texts["hub"],
        iv=_b64field(obj, "iv"),
        ciphertext=_b64field(obj, "ct"),
    )
    if blob.encode() != data:
        raise KeyBlobError("key blob is not in its canonical encoding")
    return blob
