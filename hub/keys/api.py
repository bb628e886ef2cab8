"""The key broker's JSON API: the twins of ``trustplane-hub keys`` (docs/keys.md).

``GET /v1/keys`` (viewer): every policy with its keys. ``GET /v1/keys/{key_id}`` (viewer): one
key. ``POST /v1/keys/policies`` (admin): create a policy ``{"name", "predicate", "max_age"}``
(409 ``keys.policy_exists``). ``PUT /v1/keys/policies/{policy}`` (admin): set its predicate and
maximum age. ``POST /v1/keys/policies/{policy}/rotate`` (admin): a new key version. ``POST
/v1/keys/{key_id}/retire`` (admin). Answers describe keys (id, policy, version, dates,
counters), never their material. Each change is audited.
"""

from __future__ import annotations

from typing import Any, Final

from aiohttp import web

from hub.auth import principal, role
from hub.errors import ApiError, read_json
from hub.keys.broker import Broker
from hub.keys.routes import BROKER
from hub.state import STATE
from hub.store import KeyPolicy, KeyVersion, Store
from trustcore.keyblob import is_key_id, is_policy_name
from trustcore.keypolicy import KeyPolicyError, parse_predicate

BODY_LIMIT: Final = 4096
DEFAULT_MAX_AGE: Final = 300.0
MAX_MAX_AGE: Final = 366 * 86400.0


def key_json(key: KeyVersion) -> dict[str, Any]:
    return {
        "id": key.id,
        "policy": key.policy,
        "version": key.version,
        "created": key.created,
        "retired": key.retired,
        "releases": key.releases,
        "refusals": key.refusals,
        "last_use": key.last_use,
    }


def policy_json(policy: KeyPolicy, keys: list[KeyVersion]) -> dict[str, Any]:
    return {
        "name": policy.name,
        "predicate": policy.predicate,
        "max_age": policy.max_age,
        "created": policy.created,
        "updated": policy.updated,
        "keys": [key_json(k) for k in keys if k.policy == policy.name],
    }


def check_policy_name(name: str) -> str:
    if not is_policy_name(name):
        raise ApiError(
            400, "keys.policy_name_invalid", "a policy name is a DNS label (1-63 of a-z0-9-)"
        )
    return name


def check_predicate(text: str) -> str:
    """The normalised predicate; raises 400 ``keys.policy_invalid`` with the position."""
    try:
        return parse_predicate(text).text
    except KeyPolicyError as e:
        raise ApiError(400, e.reason, f"asset-tag predicate: {e.message}") from None


def check_max_age(value: object) -> float:
    # compared before any conversion: a huge integer or NaN/inf fails the range check
    if (
        not isinstance(value, int | float)
        or isinstance(value, bool)
        or not 0 < value <= MAX_MAX_AGE
    ):
        raise ApiError(
            400,
            "keys.max_age_invalid",
            f"max_age is seconds, above 0 and at most {MAX_MAX_AGE:.0f}",
        )
    return float(value)


async def set_policy(  # noqa: PLR0917
    store: Store,
    now: float,
    actor: str,
    name: str,
    predicate: str,
    max_age: float,
    *,
    create: bool,
) -> KeyPolicy:
    """Create (``create``: 409 if it exists) or update (404 if it does not) a policy; audited."""
    existing = await store.get_key_policy(name)
    if create and existing is not None:
        raise ApiError(409, "keys.policy_exists", f"policy {name} exists (use policy set)")
    if not create and existing is None:
        raise ApiError(404, "keys.unknown_policy", "no such key policy")
    policy, _ = await store.put_key_policy(name, predicate, max_age, now)
    await store.audit(
        at=now,
        actor=actor,
        action="keys.policy_create" if create else "keys.policy_set",
        subject=name,
        details={"predicate": predicate, "max_age": max_age},
    )
    return policy


async def rotate(store: Store, now: float, broker: Broker, actor: str, name: str) -> KeyVersion:
    """A new version of the policy's key; audited. 404 ``keys.unknown_policy``."""
    if await store.get_key_policy(name) is None:
        raise ApiError(404, "keys.unknown_policy", "no such key policy")
    key = await store.add_key_version(name, broker.new_key(name), now)
    await store.audit(
        at=now,
        actor=actor,
        action="keys.rotate",
        subject=key.id,
        details={"policy": name, "version": key.version},
    )
    return key


async def retire(store: Store, now: float, actor: str, key_id: str) -> KeyVersion:
    """Retire a key; audited. 404 ``keys.unknown_key``, 409 ``keys.key_retired``."""
    key = await store.get_key(key_id) if is_key_id(key_id) else None
    if key is None:
        raise ApiError(404, "keys.unknown_key", "no such key")
    if not await store.retire_key(key.id, now):
        raise ApiError(409, "keys.key_retired", f"key {key.id} was already retired")
    await store.audit(
        at=now, actor=actor, action="keys.retire", subject=key.id, details={"policy": key.policy}
    )
    retired = await store.get_key(key.id)
    assert retired is not None
    return retired


def _actor(request: web.Request) -> str:
    who = principal(request)
    return f"token:{who.name}"


async def _body(request: web.Request) -> dict[str, Any]:
    body = await read_json(request, BODY_LIMIT)
    if not isinstance(body, dict):
        raise ApiError(400, "keys.request_invalid", "expected a JSON object")
    return body


def _text(body: dict[str, Any], name: str, default: str | None = None) -> str:
    value = body.get(name, default)
    if not isinstance(value, str):
        raise ApiError(400, "keys.request_invalid", f"{name} must be a string")
    return value


@role("viewer")
async def list_keys(request: web.Request) -> web.Response:
    st = request.app[STATE]
    keys = await st.store.list_keys()
    policies = await st.store.list_key_policies()
    return web.json_response({"policies": [policy_json(p, keys) for p in policies]})


@role("viewer")
async def show_key(request: web.Request) -> web.Response:
    st = request.app[STATE]
    key_id = request.match_info["key_id"]
    key = await st.store.get_key(key_id) if is_key_id(key_id) else None
    if key is None:
        raise ApiError(404, "keys.unknown_key", "no such key")
    return web.json_response(key_json(key))


@role("admin")
async def create_policy(request: web.Request) -> web.Response:
    st = request.app[STATE]
    body = await _body(request)
    name = check_policy_name(_text(body, "name"))
    predicate = check_predicate(_text(body, "predicate", ""))
    max_age = check_max_age(body.get("max_age", DEFAULT_MAX_AGE))
    policy = await set_policy(
        st.store, st.clock(), _actor(request), name, predicate, max_age, create=True
    )
    return web.json_response(policy_json(policy, []), status=201)


@role("admin")
async def update_policy(request: web.Request) -> web.Response:
    st = request.app[STATE]
    name = request.match_info["policy"]
    if not is_policy_name(name):
        raise ApiError(404, "keys.unknown_policy", "no such key policy")
    current = await st.store.get_key_policy(name)
    if current is None:
        raise ApiError(404, "keys.unknown_policy", "no such key policy")
    body = await _body(request)
    predicate = check_predicate(_text(body, "predicate", current.predicate))
    max_age = check_max_age(body.get("max_age", current.max_age))
    policy = await set_policy(
        st.store, st.clock(), _actor(request), name, predicate, max_age, create=False
    )
    return web.json_response(policy_json(policy, await st.store.list_keys(name)))


@role("admin")
async def rotate_policy(request: web.Request) -> web.Response:
    st = request.app[STATE]
    name = request.match_info["policy"]
    if not is_policy_name(name):
        raise ApiError(404, "keys.unknown_policy", "no such key policy")
    key = await rotate(st.store, st.clock(), request.app[BROKER], _actor(request), name)
    return web.json_response(key_json(key), status=201)


@role("admin")
async def retire_key(request: web.Request) -> web.Response:
    st = request.app[STATE]
    key = await retire(st.store, st.clock(), _actor(request), request.match_info["key_id"])
    return web.json_response(key_json(key))


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/keys", list_keys)
    app.router.add_post("/v1/keys/policies", create_policy)
    app.router.add_put("/v1/keys/policies/{policy}", update_policy)
    app.router.add_post("/v1/keys/policies/{policy}/rotate", rotate_policy)
    app.router.add_get("/v1/keys/{key_id}", show_key)
    app.router.add_post("/v1/keys/{key_id}/retire", retire_key)
