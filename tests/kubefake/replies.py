"""Building the fake API server's HTTP replies and reading its requests' parameters and bodies
the way the API server does (JSON, Status bodies, 400 for what it cannot parse)."""

from __future__ import annotations

import copy
import json
import socket
from collections.abc import Callable
from typing import Any

import yaml
from aiohttp import web

from .status import ApiError, bad_request, not_found
from .store import WatchEvent

NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=json.dumps(data, separators=(",", ":")).encode(),
        status=status,
        content_type="application/json",
    )


def error_response(err: ApiError) -> web.Response:
    return json_response(err.body(), err.code)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def flag(request: web.Request, name: str) -> bool:
    return request.query.get(name, "").lower() in ("1", "true")


def warn(response: web.Response, unknown: list[str]) -> web.Response:
    for u in unknown:
        response.headers.add("Warning", f'299 - "unknown field \\"{u}\\""')
    return response


def method_not_allowed(method: str) -> ApiError:
    return ApiError(
        405,
        "MethodNotAllowed",
        f"the server does not allow this method on the requested resource ({method})",
        {},
    )


def namespace_object(ns: str) -> dict[str, Any]:
    if ns not in NAMESPACES:
        raise not_found("namespaces", ns)
    return {
        "kind": "Namespace",
        "apiVersion": "v1",
        "metadata": {"name": ns, "labels": {"kubernetes.io/metadata.name": ns}},
        "spec": {"finalizers": ["kubernetes"]},
        "status": {"phase": "Active"},
    }


def empty_list(kind: str, rv: int) -> dict[str, Any]:
    return {"kind": kind, "apiVersion": "v1", "metadata": {"resourceVersion": str(rv)}, "items": []}


def parse_int(text: str, name: str) -> int:
    if not text.isdigit() or len(text) > 18:
        raise bad_request(
            f"{name}: Invalid value: {json.dumps(text)}: must be a non-negative integer"
        )
    return int(text)


def parse_rv(text: str) -> int:
    if not text.isdigit() or len(text) > 18:
        raise bad_request(
            f'invalid resource version "{text}"' if len(text) <= 64 else "invalid resource version"
        )
    return int(text)


def decode_body(raw: bytes, yaml_ok: bool) -> Any:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise bad_request("the request body is not valid UTF-8") from exc
    try:
        return json.loads(text)
    except ValueError:
        if not yaml_ok:
            raise bad_request(
                "couldn't get version/kind; json parse error: invalid character in the request body"
            ) from None
    try:
        tokens = list(yaml.scan(text))
    except yaml.YAMLError as exc:
        raise bad_request(f"error converting YAML to JSON: {exc.__class__.__name__}") from exc
    if sum(isinstance(t, yaml.AliasToken) for t in tokens) > 100:
        raise bad_request("error converting YAML to JSON: too many aliases")
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise bad_request(f"error converting YAML to JSON: {exc.__class__.__name__}") from exc


def filter_event(
    ev: WatchEvent, matches: Callable[[dict[str, Any] | None], bool]
) -> tuple[str, dict[str, Any]] | None:
    """The event a watch with selectors sees: objects moving out of the selection are DELETED."""
    now, before = matches(ev.obj), matches(ev.old)
    if ev.type == "ADDED":
        return ("ADDED", ev.obj) if now else None
    if ev.type == "DELETED":
        return ("DELETED", ev.obj) if before else None
    if now and before:
        return ("MODIFIED", ev.obj)
    if now:
        return ("ADDED", ev.obj)
    if before:
        gone = copy.deepcopy(ev.old) if ev.old is not None else copy.deepcopy(ev.obj)
        gone["metadata"]["resourceVersion"] = ev.obj["metadata"]["resourceVersion"]
        return ("DELETED", gone)
    return None


async def send_event(response: web.StreamResponse, kind: str, obj: dict[str, Any]) -> None:
    line = json.dumps({"type": kind, "object": obj}, separators=(",", ":")) + "\n"
    await response.write(line.encode())
