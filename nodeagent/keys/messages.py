"""The key socket's messages: one JSON line per request and one per reply (docs/protocol.md).

Requests: ``{"op": "unwrap", "annotation": "<base64 of the key blob>"}`` and
``{"op": "status"}``. Replies: ``{"ok": true, "optsdata": "<base64>"}`` (unwrap),
``{"ok": true, "verdict": ..., "valid_until": ..., "trust_report": ...}`` (status), or
``{"ok": false, "reason": "<reason id>", "message": "<one sentence>"}``.

Everything here is bounded (:data:`MAX_REQUEST_BYTES`, :data:`MAX_REPLY_BYTES`) and pure: the
provider process imports it, so it imports only the standard library's json and base64.
Malformed input raises :class:`MessageError` (reason ``keys.request_invalid``). Records are
``NamedTuple``s rather than dataclasses: the provider starts once per layer, and importing
``dataclasses`` (with ``inspect``) would cost it several milliseconds.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any, Final, NamedTuple

from nodeagent.errors import NodeAgentError

MAX_REQUEST_BYTES: Final = 16 * 1024
MAX_REPLY_BYTES: Final = 64 * 1024
MAX_ANNOTATION_BYTES: Final = 4096  # trustcore.keyblob.MAX_KEY_BLOB_BYTES
MAX_MESSAGE_CHARS: Final = 512


class MessageError(NodeAgentError):
    """A request or reply that is not one of the socket's messages."""

    reason = "keys.request_invalid"


class UnwrapRequest(NamedTuple):
    annotation: bytes  # the key blob's bytes


class StatusRequest(NamedTuple):
    pass


class Refusal(NamedTuple):
    """A reply saying no: a stable reason id and a sentence for a person."""

    reason: str
    message: str


def decode_b64(value: object, what: str, max_bytes: int) -> bytes:
    """Strict base64 of at most ``max_bytes`` decoded bytes; raises :class:`MessageError`."""
    if not isinstance(value, str) or not value:
        raise MessageError(f"{what} must be a non-empty base64 string")
    if len(value) > (max_bytes + 2) // 3 * 4:
        raise MessageError(f"{what} is longer than {max_bytes} bytes")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise MessageError(f"{what} is not base64") from None


def _load(line: bytes, limit: int) -> dict[str, Any]:
    if len(line) > limit:
        raise MessageError(f"message longer than {limit} bytes")
    try:
        value = json.loads(line)
    except (ValueError, RecursionError):
        raise MessageError("not a JSON message") from None
    if not isinstance(value, dict):
        raise MessageError("expected a JSON object")
    return value


def parse_request(line: bytes) -> UnwrapRequest | StatusRequest:
    """Raises :class:`MessageError`."""
    value = _load(line, MAX_REQUEST_BYTES)
    op = value.get("op")
    if op == "unwrap":
        return UnwrapRequest(
            decode_b64(value.get("annotation"), "annotation", MAX_ANNOTATION_BYTES)
        )
    if op == "status":
        return StatusRequest()
    raise MessageError("op must be unwrap or status")


def encode(value: dict[str, Any]) -> bytes:
    """One compact JSON line."""
    return json.dumps(value, separators=(",", ":"), sort_keys=True).encode() + b"\n"


def unwrap_request(annotation_b64: str) -> bytes:
    return encode({"op": "unwrap", "annotation": annotation_b64})


def secret_reply(secret: bytes) -> bytes:
    return encode({"ok": True, "optsdata": base64.b64encode(secret).decode("ascii")})


def refusal_reply(reason: str, message: str) -> bytes:
    return encode({"ok": False, "reason": reason[:128], "message": message[:MAX_MESSAGE_CHARS]})


def _printable(text: str) -> str:
    """One line without control characters (a reply's sentence goes to a terminal)."""
    return "".join(c if c.isprintable() else " " for c in text)[:MAX_MESSAGE_CHARS]


def parse_unwrap_reply(line: bytes) -> bytes | Refusal:
    """The secret, or the refusal; raises :class:`MessageError`."""
    value = _load(line, MAX_REPLY_BYTES)
    if value.get("ok") is True:
        return decode_b64(value.get("optsdata"), "optsdata", MAX_REPLY_BYTES)
    if value.get("ok") is False:
        reason, message = value.get("reason"), value.get("message")
        if isinstance(reason, str) and isinstance(message, str):
            return Refusal(_printable(reason)[:128], _printable(message))
    raise MessageError("not an unwrap reply")
