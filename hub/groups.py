"""Host groups: hosts that share assigned flavors.

A host is in at most one group; a group has assigned flavors, and a host is verified against its
own assigned flavors plus its group's (:meth:`hub.store.Store.flavors_for_host`, read on the
report path). :func:`set_host_group` and :func:`set_group_flavors` check, store and audit a
change; the CLI (``trustplane-hub hosts group``, ``trustplane-hub flavor assign --group``) and
the API (``PUT /v1/hosts/{id}/group``, ``PUT /v1/groups/{name}/flavors``, ``GET /v1/groups``)
both call them. A group exists once a host is put in it or flavors are assigned to it; a changed
assignment counts from the host's next report. Storage is :mod:`hub.store`'s.
"""

from __future__ import annotations

import re
from typing import Any, Final

from aiohttp import web

from hub.auth import principal, role
from hub.errors import ApiError, read_json
from hub.state import STATE
from hub.store import HostGroup, Store

GROUP_BODY_LIMIT: Final = 64 * 1024
_NAME: Final = re.compile(r"[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?")


class GroupError(Exception):
    """A refused group change; ``reason`` is the stable error code."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def check_group_name(name: str) -> str:
    """``name`` if it is 1-63 of ``a-z0-9._-`` with alphanumeric ends; raises
    :class:`GroupError` (``group.name_invalid``)."""
    if not _NAME.fullmatch(name):
        raise GroupError(
            "group.name_invalid",
            f"group name {name!r} is not 1-63 of [a-z0-9._-] with alphanumeric ends",
        )
    return name


async def set_host_group(
    store: Store, host_id: str, group: str | None, *, now: float, actor: str
) -> None:
    """Put ``host_id`` in ``group`` (None: in no group) and audit it (``host.group``).

    Raises :class:`GroupError`: ``group.name_invalid``, ``host.unknown``."""
    if group is not None:
        check_group_name(group)
    if await store.get_host(host_id) is None:
        raise GroupError("host.unknown", f"no such host: {host_id}")
    await store.set_host_group(host_id, group, now)
    await store.audit(
        at=now, actor=actor, action="host.group", subject=host_id, details={"group": group}
    )


async def set_group_flavors(
    store: Store, group: str, flavors: list[str], *, now: float, actor: str
) -> list[str]:
    """Assign ``flavors`` (each once, in order) to ``group`` and audit it (``group.flavors``);
    returns them. Raises :class:`GroupError`: ``group.name_invalid``, ``flavor.unknown``."""
    check_group_name(group)
    names = list(dict.fromkeys(flavors))
    known = await store.get_flavors(names)
    unknown = [n for n in names if n not in known]
    if unknown:
        raise GroupError("flavor.unknown", f"no such flavors: {', '.join(unknown)}")
    await store.set_group_flavors(group, names, now)
    await store.audit(
        at=now, actor=actor, action="group.flavors", subject=group, details={"flavors": names}
    )
    return names


def group_json(group: HostGroup) -> dict[str, Any]:
    return {"name": group.name, "flavors": list(group.flavors), "hosts": list(group.hosts)}


def _api_error(e: GroupError) -> ApiError:
    return ApiError(404 if e.reason == "host.unknown" else 400, e.reason, e.message)


@role("viewer")
async def list_groups(request: web.Request) -> web.Response:
    groups = await request.app[STATE].store.list_groups()
    return web.json_response({"groups": [group_json(g) for g in groups]})


@role("admin")
async def put_host_group(request: web.Request) -> web.Response:
    """``{"group": "name"}`` puts the host in that group, ``{"group": null}`` in none."""
    st = request.app[STATE]
    host_id = request.match_info["host_id"]
    body = await read_json(request, GROUP_BODY_LIMIT)
    if not isinstance(body, dict) or "group" not in body:
        raise ApiError(400, "group.invalid", 'expected {"group": "name" or null}')
    group = body["group"]
    if group is not None and not isinstance(group, str):
        raise ApiError(400, "group.invalid", 'expected {"group": "name" or null}')
    try:
        await set_host_group(
            st.store, host_id, group, now=st.clock(), actor=f"token:{principal(request).name}"
        )
    except GroupError as e:
        raise _api_error(e) from None
    return web.json_response({"id": host_id, "group": group})


@role("admin")
async def put_group_flavors(request: web.Request) -> web.Response:
    """``{"flavors": ["id", ...]}``: the flavors every host of the group is verified against
    (besides its own)."""
    st = request.app[STATE]
    group = request.match_info["name"]
    body = await read_json(request, GROUP_BODY_LIMIT)
    names = body.get("flavors") if isinstance(body, dict) else None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ApiError(400, "flavor.assignment_invalid", 'expected {"flavors": [ids]}')
    try:
        assigned = await set_group_flavors(
            st.store, group, names, now=st.clock(), actor=f"token:{principal(request).name}"
        )
    except GroupError as e:
        raise _api_error(e) from None
    return web.json_response({"name": group, "flavors": assigned})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/groups", list_groups)
    app.router.add_put("/v1/groups/{name}/flavors", put_group_flavors)
    app.router.add_put("/v1/hosts/{host_id}/group", put_host_group)
