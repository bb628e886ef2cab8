"""What every route of the fake API server shares: its state, fault hooks, request counters and
the reading of common request parameters (fieldManager, fieldValidation, dryRun)."""

from __future__ import annotations

import asyncio
import json
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from .replies import decode_body
from .schema import prune_unknown
from .status import bad_request, options_invalid, unsupported_media
from .store import Store


@dataclass
class Faults:
    """Test hooks: latency added to every request, and one-shot failures of writes to a node."""

    latency: float = 0.0
    fail_next: dict[str, list[int]] = field(default_factory=dict)

    def fail_next_write(self, node: str, code: int = 409, times: int = 1) -> None:
        """The next `times` PUT/PATCH requests on `node` fail with `code` (409 Conflict...)."""
        self.fail_next.setdefault(node, []).extend([code] * times)

    def take(self, node: str) -> int | None:
        pending = self.fail_next.get(node)
        if not pending:
            return None
        code = pending.pop(0)
        if not pending:
            del self.fail_next[node]
        return code


class RequestContext:
    """The state the route mixins work on (set by FakeApiServer.__init__)."""

    store: Store
    faults: Faults
    requests: Counter[str]
    resource_requests: Counter[tuple[str, str]]
    request_log: deque[tuple[str, str, str]]
    bookmark_interval: float
    abrupt_down: bool

    def _count(self, verb: str, resource: str) -> None:
        self.requests[verb] += 1
        self.resource_requests[(verb, resource)] += 1

    async def _body(self, request: web.Request) -> bytes:
        try:
            return await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise
        except (ConnectionError, asyncio.IncompleteReadError) as exc:
            raise bad_request("the request body could not be read") from exc

    async def _json_body(self, request: web.Request) -> Any:
        raw = await self._body(request)
        ctype = request.content_type
        if ctype not in ("application/json", "", "application/yaml"):
            raise unsupported_media(ctype)
        return decode_body(raw, yaml_ok=ctype == "application/yaml")

    def _manager(self, request: web.Request, options: str) -> str:
        """The request's field manager: `fieldManager` (checked as ValidateFieldManager does,
        422 on `options`, e.g. "PatchOptions"), else the User-Agent's product name."""
        manager = request.query.get("fieldManager")
        if manager is None:
            agent = request.headers.get("User-Agent", "")
            return agent.split("/", 1)[0][:128]
        if len(manager) > 128:
            raise options_invalid(
                options,
                [("FieldValueTooLong", "fieldManager", "Too long: may not be more than 128 bytes")],
            )
        if any(not ch.isprintable() for ch in manager):
            shown = json.dumps(manager)
            raise options_invalid(
                options,
                [
                    (
                        "FieldValueInvalid",
                        "fieldManager",
                        f"Invalid value: {shown}: must only contain printable characters",
                    )
                ],
            )
        return manager

    def _unknown_fields(self, request: web.Request, body: Any, apply: bool = False) -> list[str]:
        """Drop unknown fields as the API server's decoder does; refuse them when Strict."""
        mode = request.query.get("fieldValidation", "Warn")
        if mode not in ("Ignore", "Warn", "Strict"):
            raise bad_request(
                f'fieldValidation: Unsupported value: "{mode[:64]}": supported values: '
                '"Ignore", "Warn", "Strict"'
            )
        unknown = prune_unknown(body)
        if unknown and apply:
            raise bad_request(
                "failed to create typed patch object: "
                + ", ".join(f".{u}: field not declared in schema" for u in unknown)
            )
        if unknown and mode == "Strict":
            shown = ", ".join(f'unknown field "{u}"' for u in unknown)
            raise bad_request(
                f'Node in version "v1" cannot be handled as a Node: strict decoding error: {shown}'
            )
        return unknown if mode == "Warn" else []

    def _dry_run(self, request: web.Request) -> bool:
        values = request.query.getall("dryRun", [])
        for value in values:
            if value != "All":
                raise bad_request(f'dryRun: Unsupported value: "{value}": supported values: "All"')
        return bool(values)

    # ---- routing ------------------------------------------------------------------------------
