"""``trustplane-keyprovider``: the ocicrypt key provider (``cmd`` protocol) of trustplane.

ocicrypt runs it once per layer with one JSON request on stdin and reads one JSON reply from
stdout (containers/ocicrypt ``keywrap/keyprovider``):

- ``{"op": "keywrap", "keywrapparams": {"ec": {"Parameters": {"trustplane": [b64...]}},
  "optsdata": b64}, ...}``: each parameter is base64 of what followed ``provider:trustplane:``
  (``policy=NAME`` or ``key=ID``). The provider asks the hub's wrap API (``POST
  /v1/keys/wrap`` with the pipeline token from its config file) and answers
  ``{"keywrapresults": {"annotation": b64 of the key blob}}``.
- ``{"op": "keyunwrap", "keyunwrapparams": {"annotation": b64, ...}, ...}``: the provider asks
  the agent daemon over its unix socket (the TPM, the cache and the hub connection stay in the
  daemon) and answers ``{"keyunwrapresults": {"optsdata": b64}}``.

JSON ``null`` anywhere ocicrypt leaves a Go nil, and other providers' parameters, are accepted.
On failure the exit status is 1 and stderr holds exactly one line for a person, e.g.
``trustplane: key release denied: host untrusted (flavor.platform.pcr_mismatch: PCR 0)``;
ocicrypt puts it into skopeo's and cri-o's error. Neither stream ever carries a secret except
the reply itself. Exit status 2 is a request that is not ocicrypt's.

Start time matters (one process per layer): only json, base64 and socket are imported for an
unwrap; TOML, TLS and HTTP only for what needs them.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import socket
import sys
from collections.abc import Sequence
from typing import IO, Any, Final

from nodeagent.errors import NodeAgentError
from nodeagent.keys.messages import (
    MAX_ANNOTATION_BYTES,
    MAX_REPLY_BYTES,
    MessageError,
    Refusal,
    parse_unwrap_reply,
    unwrap_request,
)
from nodeagent.keys.providerconfig import ProviderConfig, load_provider_config, read_token

MAX_STDIN_BYTES: Final = 64 * 1024
MAX_OPTSDATA_BYTES: Final = 2048  # trustcore.keyblob.MAX_SECRET_BYTES
MAX_HUB_ANSWER_BYTES: Final = 64 * 1024
EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_BAD_REQUEST: Final = 2


class ProviderError(NodeAgentError):
    """Why this wrap or unwrap failed, as the one line stderr shows (without the prefix)."""

    reason = "keyprovider.failed"


class BadRequest(ProviderError):
    reason = "keyprovider.request_invalid"


def _obj(value: object) -> dict[str, Any]:
    """A JSON object, or {} for null (ocicrypt's nil)."""
    return value if isinstance(value, dict) else {}


def _b64(value: object, what: str, max_bytes: int) -> bytes:
    if not isinstance(value, str) or not value or len(value) > (max_bytes + 2) // 3 * 4:
        raise BadRequest(f"{what} must be base64 of 1 to {max_bytes} bytes")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest(f"{what} is not base64") from None


def parse_request(data: bytes) -> dict[str, Any]:
    """The request object; raises :class:`BadRequest`."""
    if len(data) > MAX_STDIN_BYTES:
        raise BadRequest(f"the request on stdin is longer than {MAX_STDIN_BYTES} bytes")
    try:
        value = json.loads(data)
    except (ValueError, RecursionError):
        raise BadRequest("the request on stdin is not JSON") from None
    if not isinstance(value, dict):
        raise BadRequest("the request on stdin is not a JSON object")
    return value


def wrap_target(request: dict[str, Any], name: str) -> tuple[str, str]:
    """``("policy", NAME)`` or ``("key_id", ID)`` from the ``ec`` parameters for ``name``.

    Raises :class:`BadRequest` when none or two different ones are given.
    """
    params = _obj(_obj(_obj(request.get("keywrapparams")).get("ec")).get("Parameters"))
    raw = params.get(name)
    targets: set[tuple[str, str]] = set()
    for item in raw if isinstance(raw, list) else []:
        text = _b64(item, "a parameter", 1024).decode("utf-8", "replace")
        field, sep, value = text.partition("=")
        if sep and field == "policy" and value:
            targets.add(("policy", value))
        elif sep and field in ("key", "key_id") and value:
            targets.add(("key_id", value))
    if not targets:
        raise BadRequest(
            f"no key named: use --encryption-key provider:{name}:policy=NAME (or key=ID)"
        )
    if len(targets) > 1:
        raise BadRequest("more than one policy or key named for one layer")
    return targets.pop()


# --- keywrap: the hub's wrap API ------------------------------------------------------------


def _hub_post(cfg: ProviderConfig, path: str, body: dict[str, Any]) -> tuple[int, bytes]:
    import http.client  # noqa: PLC0415 - only wraps talk HTTP
    import ssl  # noqa: PLC0415
    from urllib.parse import urlsplit  # noqa: PLC0415

    if cfg.hub_url is None or cfg.hub_token_file is None:
        raise ProviderError("keywrap needs [hub] url and token_file in the provider's config")
    token = read_token(cfg.hub_token_file)
    url = urlsplit(cfg.hub_url)
    host, port = url.hostname or "", url.port
    conn: http.client.HTTPConnection
    if url.scheme == "https":
        ctx = ssl.create_default_context(cafile=str(cfg.hub_ca_file) if cfg.hub_ca_file else None)
        conn = http.client.HTTPSConnection(host, port, context=ctx, timeout=cfg.timeout)
    else:
        conn = http.client.HTTPConnection(host, port, timeout=cfg.timeout)
    try:
        conn.request(
            "POST",
            url.path.rstrip("/") + path,
            body=json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        resp = conn.getresponse()
        data = resp.read(MAX_HUB_ANSWER_BYTES + 1)
    except (OSError, http.client.HTTPException, ssl.SSLError) as e:
        raise ProviderError(f"cannot reach the hub at {cfg.hub_url}: {_oserror(e)}") from None
    else:
        return resp.status, data
    finally:
        conn.close()


def _oserror(e: BaseException) -> str:
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    return str(e) or type(e).__name__


def _hub_error(data: bytes) -> tuple[str, str]:
    try:
        err = json.loads(data)["error"]
        return str(err["code"])[:128], str(err["message"])[:512]
    except (ValueError, KeyError, TypeError):
        return "unknown", "the hub's answer is not its error format"


def keywrap(request: dict[str, Any], cfg: ProviderConfig) -> dict[str, Any]:
    """Raises :class:`ProviderError`."""
    field, value = wrap_target(request, cfg.name)
    optsdata = _obj(request.get("keywrapparams")).get("optsdata")
    _b64(optsdata, "keywrapparams.optsdata", MAX_OPTSDATA_BYTES)
    status, data = _hub_post(cfg, "/v1/keys/wrap", {field: value, "optsdata": optsdata})
    if len(data) > MAX_HUB_ANSWER_BYTES:
        raise ProviderError("the hub's answer is too long")
    if status != 200:
        code, message = _hub_error(data)
        raise ProviderError(f"key wrap refused by the hub: {_line(message)} ({_line(code)})")
    try:
        annotation = json.loads(data)["annotation"]
    except (ValueError, KeyError, TypeError):
        raise ProviderError("the hub's wrap answer has no annotation") from None
    _b64(annotation, "the hub's annotation", MAX_ANNOTATION_BYTES)
    return {"keywrapresults": {"annotation": annotation}}


# --- keyunwrap: the agent's socket ----------------------------------------------------------


def _ask_agent(cfg: ProviderConfig, line: bytes) -> bytes:
    path = cfg.socket
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(cfg.timeout)
    try:
        try:
            sock.connect(path)
        except FileNotFoundError:
            raise ProviderError(
                f"cannot reach the trustplane agent: {path} does not exist "
                "(is trustplane-agent running?)"
            ) from None
        except OSError as e:
            raise ProviderError(
                f"cannot reach the trustplane agent at {path}: {_oserror(e)}"
            ) from None
        try:
            sock.sendall(line)
            sock.shutdown(socket.SHUT_WR)
            reply = bytearray()
            while len(reply) <= MAX_REPLY_BYTES:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                reply += chunk
        except TimeoutError:
            raise ProviderError(
                f"the trustplane agent did not answer within {cfg.timeout:g}s"
            ) from None
        except OSError as e:
            raise ProviderError(f"the trustplane agent at {path}: {_oserror(e)}") from None
    finally:
        sock.close()
    return bytes(reply)


def keyunwrap(request: dict[str, Any], cfg: ProviderConfig) -> dict[str, Any]:
    """Raises :class:`ProviderError`."""
    annotation = _obj(request.get("keyunwrapparams")).get("annotation")
    _b64(annotation, "keyunwrapparams.annotation", MAX_ANNOTATION_BYTES)
    assert isinstance(annotation, str)
    reply = _ask_agent(cfg, unwrap_request(annotation))
    try:
        result = parse_unwrap_reply(reply)
    except MessageError as e:
        raise ProviderError(f"the trustplane agent's answer is not valid: {e.message}") from None
    if isinstance(result, Refusal):
        if result.reason.startswith("release."):
            raise ProviderError(f"key release denied: {result.message}")
        raise ProviderError(f"cannot get the layer key: {result.message} ({result.reason})")
    return {"keyunwrapresults": {"optsdata": base64.b64encode(result).decode("ascii")}}


def _line(text: str) -> str:
    return "".join(c if c.isprintable() else " " for c in text)[:512]


def _op(request: dict[str, Any]) -> str:
    op = request.get("op")
    if op not in ("keywrap", "keyunwrap"):
        raise BadRequest("op must be keywrap or keyunwrap")
    return str(op)


def run(stdin: IO[bytes], stdout: IO[str], stderr: IO[str], environ: Any) -> int:  # noqa: ANN401
    """One request from ``stdin``, one reply to ``stdout``; returns the exit status."""
    try:
        request = parse_request(stdin.read(MAX_STDIN_BYTES + 1))
        op = _op(request)
        cfg = load_provider_config(environ)
        reply = keywrap(request, cfg) if op == "keywrap" else keyunwrap(request, cfg)
    except BadRequest as e:
        stderr.write(f"trustplane: {_line(e.message)}\n")
        return EXIT_BAD_REQUEST
    except NodeAgentError as e:
        stderr.write(f"trustplane: {_line(e.message)}\n")
        return EXIT_FAILED
    stdout.write(json.dumps(reply))
    stdout.flush()
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``trustplane-keyprovider`` (arguments are ignored: ocicrypt passes the
    configured ``args``, which this provider does not need)."""
    del argv
    return run(sys.stdin.buffer, sys.stdout, sys.stderr, os.environ)


if __name__ == "__main__":
    sys.exit(main())
