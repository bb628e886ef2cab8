"""ocicrypt's encrypted-layer format and key-provider messages, without I/O.

What containers/ocicrypt (inside skopeo, cri-o, containerd's imgcrypt) writes and reads, so that
an image encrypted here decrypts there and the other way round:

- Layer cipher ``AES_256_CTR_HMAC_SHA256``: AES-256 in CTR mode (16-byte nonce as the initial
  128-bit big-endian counter block) over the layer blob as stored (e.g. the gzip stream), and
  HMAC-SHA256 under the same 32-byte key over the *ciphertext*. The ciphertext is as long as the
  plaintext. :class:`LayerEncryptor` and :class:`LayerDecryptor` work chunk by chunk, so a layer
  of any size needs bounded memory; the decryptor's plaintext is only trustworthy once
  :meth:`LayerDecryptor.finish` has checked the HMAC (a caller writes it somewhere temporary until
  then).
- Private options (ocicrypt's ``optsdata``, the secret a key provider wraps): JSON
  ``{"symkey": b64, "digest": "sha256:<hex of the plain blob>", "cipheroptions": {"nonce": b64}}``
  (:class:`PrivateOptions`).
- Public options, base64 JSON in the layer annotation ``org.opencontainers.image.enc.pubopts``:
  ``{"cipher": "AES_256_CTR_HMAC_SHA256", "hmac": b64, "cipheroptions": {}}``
  (:class:`PublicOptions`).
- The wrapped key of provider NAME: base64 of the provider's opaque annotation in the layer
  annotation ``org.opencontainers.image.enc.keys.provider.NAME``; the media type gains
  ``+encrypted``.
- The ``cmd`` key-provider protocol: one JSON request on the provider's stdin, one JSON reply on
  its stdout, with Go's field names and its ``null`` for nil values (:func:`keywrap_request`,
  :func:`keyunwrap_request`, :func:`parse_keywrap_response`, :func:`parse_keyunwrap_response`).

Randomness (the symmetric key and nonce) comes in as parameters; running the provider, reading
and writing blobs is :mod:`trustplane.imagecrypt`'s work. Every malformed input raises
:class:`OcicryptError` (a :class:`~trustcore.errors.TrustcoreError`) with a reason id.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from cryptography.hazmat.primitives.ciphers import Cipher, CipherContext, algorithms, modes

from trustcore.errors import TrustcoreError

CIPHER_AES_CTR: Final = "AES_256_CTR_HMAC_SHA256"
SYMKEY_BYTES: Final = 32
NONCE_BYTES: Final = 16
HMAC_BYTES: Final = 32
ENCRYPTED_SUFFIX: Final = "+encrypted"
PUBOPTS_ANNOTATION: Final = "org.opencontainers.image.enc.pubopts"
KEYS_ANNOTATION_PREFIX: Final = "org.opencontainers.image.enc.keys."
PROVIDER_ANNOTATION_PREFIX: Final = "org.opencontainers.image.enc.keys.provider."
ENABLED_PARAMETER: Final = b"Enabled"
"""What ocicrypt passes as a provider's parameter when ``provider:NAME`` has none."""

MAX_OPTIONS_BYTES: Final = 4096
MAX_PROVIDER_REPLY_BYTES: Final = 64 * 1024
MAX_ANNOTATION_BYTES: Final = 16 * 1024
_PROVIDER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


class OcicryptError(TrustcoreError):
    """Input that is not what ocicrypt's format or protocol says (reason ids ``ocicrypt.*``)."""

    reason = "ocicrypt.invalid"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(value: object, what: str, *, reason: str = "ocicrypt.invalid") -> bytes:
    if not isinstance(value, str):
        raise OcicryptError(f"{what} is not a base64 string", reason=reason)
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise OcicryptError(f"{what} is not base64", reason=reason) from exc


def _json_object(data: bytes, what: str, limit: int, reason: str) -> dict[str, Any]:
    if len(data) > limit:
        raise OcicryptError(f"{what} of {len(data)} bytes (at most {limit})", reason=reason)
    try:
        obj = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise OcicryptError(f"{what} is not JSON", reason=reason) from exc
    if not isinstance(obj, dict):
        raise OcicryptError(f"{what} is not a JSON object", reason=reason)
    return obj


def _go_json(obj: object) -> bytes:
    """Compact JSON in the given key order, as Go's encoding/json writes structs."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def is_provider_name(value: str) -> bool:
    """Whether ``value`` can name a key provider (1-64 of ``A-Za-z0-9._-``)."""
    return _PROVIDER_NAME.fullmatch(value) is not None


def is_sha256_digest(value: str) -> bool:
    """Whether ``value`` is ``sha256:`` and 64 lower-case hex digits."""
    return _DIGEST.fullmatch(value) is not None


# --- options ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PrivateOptions:
    """A layer's secret options: what the key provider wraps. ``repr`` hides the key."""

    symkey: bytes = field(repr=False)
    digest: str
    nonce: bytes

    def __post_init__(self) -> None:
        if len(self.symkey) != SYMKEY_BYTES:
            raise OcicryptError(
                f"layer key of {len(self.symkey)} bytes, not {SYMKEY_BYTES}",
                reason="ocicrypt.options_invalid",
            )
        if len(self.nonce) != NONCE_BYTES:
            raise OcicryptError(
                f"layer nonce of {len(self.nonce)} bytes, not {NONCE_BYTES}",
                reason="ocicrypt.options_invalid",
            )
        if not is_sha256_digest(self.digest):
            raise OcicryptError(
                "layer digest is not sha256:<64 hex>", reason="ocicrypt.options_invalid"
            )

    def encode(self) -> bytes:
        """ocicrypt's ``optsdata``: the JSON bytes a key provider wraps."""
        return _go_json(
            {
                "symkey": _b64(self.symkey),
                "digest": self.digest,
                "cipheroptions": {"nonce": _b64(self.nonce)},
            }
        )


def parse_private_options(data: bytes) -> PrivateOptions:
    """Decode ``optsdata`` (what a provider's keyunwrap returned).

    Raises:
        OcicryptError: not ocicrypt's private options (reason ``ocicrypt.options_invalid``).
    """
    reason = "ocicrypt.options_invalid"
    obj = _json_object(data, "layer private options", MAX_OPTIONS_BYTES, reason)
    options = obj.get("cipheroptions")
    if not isinstance(options, dict):
        raise OcicryptError("layer private options without cipheroptions", reason=reason)
    digest = obj.get("digest")
    if not isinstance(digest, str):
        raise OcicryptError("layer private options without a digest", reason=reason)
    return PrivateOptions(
        symkey=_unb64(obj.get("symkey"), "symkey", reason=reason),
        digest=digest,
        nonce=_unb64(options.get("nonce"), "cipheroptions.nonce", reason=reason),
    )


@dataclass(frozen=True)
class PublicOptions:
    """A layer's public options: the cipher and the HMAC of the ciphertext."""

    hmac: bytes
    cipher: str = CIPHER_AES_CTR

    def __post_init__(self) -> None:
        if self.cipher != CIPHER_AES_CTR:
            raise OcicryptError(
                f"layer cipher {self.cipher[:40]!r} is not {CIPHER_AES_CTR}",
                reason="ocicrypt.cipher_unsupported",
            )
        if len(self.hmac) != HMAC_BYTES:
            raise OcicryptError(
                f"layer HMAC of {len(self.hmac)} bytes", reason="ocicrypt.pubopts_invalid"
            )

    def annotation(self) -> str:
        """The value of the ``org.opencontainers.image.enc.pubopts`` annotation."""
        return _b64(_go_json({"cipher": self.cipher, "hmac": _b64(self.hmac), "cipheroptions": {}}))


def parse_public_options(annotation: str) -> PublicOptions:
    """Decode the ``enc.pubopts`` annotation.

    Raises:
        OcicryptError: malformed (``ocicrypt.pubopts_invalid``) or another cipher
            (``ocicrypt.cipher_unsupported``).
    """
    reason = "ocicrypt.pubopts_invalid"
    if len(annotation) > MAX_OPTIONS_BYTES:
        raise OcicryptError("enc.pubopts annotation too long", reason=reason)
    obj = _json_object(
        _unb64(annotation, "enc.pubopts", reason=reason), "enc.pubopts", MAX_OPTIONS_BYTES, reason
    )
    cipher = obj.get("cipher")
    if not isinstance(cipher, str):
        raise OcicryptError("enc.pubopts without a cipher", reason=reason)
    return PublicOptions(
        cipher=cipher, hmac=_unb64(obj.get("hmac"), "enc.pubopts hmac", reason=reason)
    )


# --- the layer cipher -------------------------------------------------------------------------


def _ctr(symkey: bytes, nonce: bytes) -> CipherContext:
    return Cipher(algorithms.AES(symkey), modes.CTR(nonce)).encryptor()


class LayerEncryptor:
    """AES-256-CTR + HMAC-SHA256 over a layer, chunk by chunk; also hashes the plaintext."""

    def __init__(self, symkey: bytes, nonce: bytes) -> None:
        PrivateOptions(symkey=symkey, digest="sha256:" + "0" * 64, nonce=nonce)  # checks sizes
        self._symkey = symkey
        self._nonce = nonce
        self._ctr = _ctr(symkey, nonce)
        self._mac = hmac.new(symkey, digestmod=hashlib.sha256)
        self._plain = hashlib.sha256()
        self._cipher = hashlib.sha256()
        self.size = 0

    def update(self, chunk: bytes) -> bytes:
        """Encrypt the next chunk; returns as many bytes."""
        self._plain.update(chunk)
        out = self._ctr.update(chunk)
        self._mac.update(out)
        self._cipher.update(out)
        self.size += len(chunk)
        return out

    def finish(self) -> tuple[PrivateOptions, PublicOptions, str]:
        """The private and public options and the ciphertext's ``sha256:`` digest."""
        private = PrivateOptions(
            symkey=self._symkey, digest="sha256:" + self._plain.hexdigest(), nonce=self._nonce
        )
        return private, PublicOptions(hmac=self._mac.digest()), "sha256:" + self._cipher.hexdigest()


class LayerDecryptor:
    """The inverse of :class:`LayerEncryptor`; the plaintext counts only after :meth:`finish`."""

    def __init__(self, private: PrivateOptions, public: PublicOptions) -> None:
        self._private = private
        self._public = public
        self._ctr = _ctr(private.symkey, private.nonce)
        self._mac = hmac.new(private.symkey, digestmod=hashlib.sha256)
        self._plain = hashlib.sha256()
        self.size = 0

    def update(self, chunk: bytes) -> bytes:
        """Decrypt the next chunk (not yet authenticated)."""
        self._mac.update(chunk)
        out = self._ctr.update(chunk)
        self._plain.update(out)
        self.size += len(chunk)
        return out

    def finish(self) -> str:
        """Check the HMAC and the plaintext digest; returns the plaintext's digest.

        Raises:
            OcicryptError: ``ocicrypt.hmac_mismatch`` (the ciphertext or key is not the one the
                HMAC was made with) or ``ocicrypt.digest_mismatch`` (the plaintext is not the
                layer the private options name).
        """
        if not hmac.compare_digest(self._mac.digest(), self._public.hmac):
            raise OcicryptError(
                "layer HMAC does not match: the encrypted blob or its key was altered",
                reason="ocicrypt.hmac_mismatch",
            )
        digest = "sha256:" + self._plain.hexdigest()
        if digest != self._private.digest:
            raise OcicryptError(
                f"decrypted layer is {digest}, not {self._private.digest}",
                reason="ocicrypt.digest_mismatch",
            )
        return digest


# --- media types and annotations ---------------------------------------------------------------


def is_encrypted_media_type(media_type: str) -> bool:
    return media_type.endswith(ENCRYPTED_SUFFIX)


def encrypted_media_type(media_type: str) -> str:
    """``...tar+gzip`` → ``...tar+gzip+encrypted``.

    Raises:
        OcicryptError: already encrypted (``ocicrypt.already_encrypted``).
    """
    if is_encrypted_media_type(media_type):
        raise OcicryptError(
            f"layer media type {media_type[:120]} is already encrypted",
            reason="ocicrypt.already_encrypted",
        )
    return media_type + ENCRYPTED_SUFFIX


def decrypted_media_type(media_type: str) -> str:
    """``...+encrypted`` → the media type without the suffix.

    Raises:
        OcicryptError: not an encrypted media type (``ocicrypt.not_encrypted``).
    """
    if not is_encrypted_media_type(media_type):
        raise OcicryptError(
            f"layer media type {media_type[:120]} is not encrypted", reason="ocicrypt.not_encrypted"
        )
    return media_type[: -len(ENCRYPTED_SUFFIX)]


def provider_annotation(name: str) -> str:
    return PROVIDER_ANNOTATION_PREFIX + name


def wrapped_keys(annotations: Mapping[str, str]) -> dict[str, bytes]:
    """The provider name → opaque annotation (decoded once) of every key provider.

    Raises:
        OcicryptError: a provider annotation that is not base64 (``ocicrypt.annotation_invalid``).
    """
    found: dict[str, bytes] = {}
    for key, value in annotations.items():
        if key.startswith(PROVIDER_ANNOTATION_PREFIX):
            name = key[len(PROVIDER_ANNOTATION_PREFIX) :]
            if len(value) > MAX_ANNOTATION_BYTES:
                raise OcicryptError(
                    f"annotation {key[:120]} too long", reason="ocicrypt.annotation_invalid"
                )
            found[name] = _unb64(
                value, f"annotation {key[:120]}", reason="ocicrypt.annotation_invalid"
            )
    return found


def encryption_schemes(annotations: Mapping[str, str]) -> list[str]:
    """Every ``enc.keys.*`` scheme a layer carries (``provider.trustplane``, ``jwe``, ...)."""
    return sorted(
        k[len(KEYS_ANNOTATION_PREFIX) :]
        for k in annotations
        if k.startswith(KEYS_ANNOTATION_PREFIX)
    )


# --- key specs and the provider protocol --------------------------------------------------------


@dataclass(frozen=True)
class ProviderKey:
    """``provider:NAME[:PARAMS]`` as given to ``--encryption-key`` / ``--decryption-key``."""

    name: str
    parameter: bytes

    @property
    def text(self) -> str:
        return self.parameter.decode("utf-8", errors="replace")


def parse_provider_key(spec: str) -> ProviderKey:
    """Parse ``provider:NAME`` or ``provider:NAME:PARAMS`` (PARAMS passed on verbatim;
    without them ocicrypt passes ``Enabled``).

    Raises:
        OcicryptError: another protocol or a malformed name (``ocicrypt.key_spec_invalid``).
    """
    reason = "ocicrypt.key_spec_invalid"
    protocol, _, rest = spec.partition(":")
    if protocol != "provider":
        raise OcicryptError(
            f"key {spec[:60]!r}: only provider:NAME[:PARAMS] keys are supported", reason=reason
        )
    name, sep, params = rest.partition(":")
    if not is_provider_name(name):
        raise OcicryptError(f"key {spec[:60]!r}: malformed provider name", reason=reason)
    if len(params) > MAX_OPTIONS_BYTES or not params.isprintable():
        raise OcicryptError(f"key {spec[:60]!r}: malformed parameters", reason=reason)
    return ProviderKey(
        name=name, parameter=params.encode() if sep and params else ENABLED_PARAMETER
    )


def keywrap_request(key: ProviderKey, optsdata: bytes) -> bytes:
    """The JSON ocicrypt writes to a ``cmd`` provider's stdin to wrap ``optsdata``."""
    return _go_json(
        {
            "op": "keywrap",
            "keywrapparams": {
                "ec": {
                    "Parameters": {key.name: [_b64(key.parameter)]},
                    "DecryptConfig": {"Parameters": {}},
                },
                "optsdata": _b64(optsdata),
            },
            "keyunwrapparams": {"dc": None, "annotation": None},
        }
    )


def keyunwrap_request(key: ProviderKey, annotation: bytes) -> bytes:
    """The JSON ocicrypt writes to a ``cmd`` provider's stdin to unwrap ``annotation``."""
    return _go_json(
        {
            "op": "keyunwrap",
            "keywrapparams": {"ec": None, "optsdata": None},
            "keyunwrapparams": {
                "dc": {"Parameters": {key.name: [_b64(key.parameter)]}},
                "annotation": _b64(annotation),
            },
        }
    )


def _reply_field(data: bytes, outer: str, inner: str) -> bytes:
    reason = "ocicrypt.provider_reply_invalid"
    obj = _json_object(data, "key provider reply", MAX_PROVIDER_REPLY_BYTES, reason)
    results = obj.get(outer)
    if not isinstance(results, dict):
        raise OcicryptError(f"key provider reply without {outer}", reason=reason)
    value = _unb64(results.get(inner), f"{outer}.{inner}", reason=reason)
    if not value:
        raise OcicryptError(f"key provider reply with an empty {outer}.{inner}", reason=reason)
    return value


def parse_keywrap_response(data: bytes) -> bytes:
    """The opaque annotation in ``{"keywrapresults": {"annotation": b64}}``.

    Raises:
        OcicryptError: reason ``ocicrypt.provider_reply_invalid``.
    """
    return _reply_field(data, "keywrapresults", "annotation")


def parse_keyunwrap_response(data: bytes) -> bytes:
    """The ``optsdata`` in ``{"keyunwrapresults": {"optsdata": b64}}``.

    Raises:
        OcicryptError: reason ``ocicrypt.provider_reply_invalid``.
    """
    return _reply_field(data, "keyunwrapresults", "optsdata")
