"""The key broker's HTTP routes: wrap (pipelines), challenge and release (hosts).

``POST /v1/keys/wrap`` (pipeline or admin token): ``{"policy": NAME, "optsdata": b64}`` or
``{"key_id": ID, "optsdata": b64}`` -> ``{"annotation": b64 blob, "key_id", "policy"}``; the
policy's key is made on its first wrap. ``POST /v1/keys/challenge`` (host certificate): a nonce
for a release, whose issue time the hub keeps (the evidence's age). ``POST /v1/keys/release``
(host certificate): a :class:`~trustcore.wire.KeyReleaseRequest`; the report is verified and
recorded exactly as ``POST /v1/report`` does (:func:`hub.attestation.verify_and_record`), then
each blob is decided (:mod:`hub.keys.release`); one audit row lists every blob's outcome.
Both host routes spend the host's ``keys.release_rate_per_minute`` budget.
"""

from __future__ import annotations

import base64
import binascii
import math
from typing import Any, Final

from aiohttp import web

from hub.attestation import REPORT_BODY_LIMIT, issue_challenge, verify_and_record
from hub.auth import AGENT_HOST_KEY, agent, enrollment, principal, role
from hub.errors import ApiError, read_json
from hub.keys.broker import Broker
from hub.keys.release import (
    Binding,
    Decision,
    annotation_digest_b64,
    binding_for,
    decide,
    decode_blob,
)
from hub.state import STATE, HubState, KeyedRateLimiter
from hub.store import Host, KeyEvent
from trustcore.keyblob import MAX_SECRET_BYTES, is_key_id, is_policy_name
from trustcore.wire import KeyReleaseRequest, KeyReleaseResult, ReportResult, WireError

BROKER: Final = web.AppKey("trustplane_key_broker", Broker)
RELEASE_LIMITER: Final = web.AppKey("trustplane_key_release_limiter", KeyedRateLimiter)
WRAP_BODY_LIMIT: Final = 8192
CHALLENGE_BODY_LIMIT: Final = 1024
_OPTSDATA_RULE: Final = f"optsdata must be base64 of 1 to {MAX_SECRET_BYTES} bytes"


def hub_url(st: HubState) -> str:
    """The URL blobs name as their hub: ``keys.hub_url``, else ``alerts.external_url``, else
    the listen address."""
    cfg = st.config
    if cfg.keys.hub_url:
        return cfg.keys.hub_url
    if cfg.alerts.external_url:
        return cfg.alerts.external_url.rstrip("/")
    scheme = "https" if cfg.server.tls else "http"
    return f"{scheme}://{cfg.server.listen}"


def _field_text(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ApiError(400, "keys.request_invalid", f"{name} must be a string")
    return value


def _optsdata(body: dict[str, Any]) -> bytes:
    value = body.get("optsdata")
    if not isinstance(value, str) or len(value) > (MAX_SECRET_BYTES * 4) // 3 + 4:
        raise ApiError(
            400,
            "keys.optsdata_invalid",
            f"optsdata must be base64 of 1 to {MAX_SECRET_BYTES} bytes",
        )
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, "keys.optsdata_invalid", "optsdata is not base64") from None
    if not 0 < len(raw) <= MAX_SECRET_BYTES:
        raise ApiError(
            400,
            "keys.optsdata_invalid",
            f"optsdata must be base64 of 1 to {MAX_SECRET_BYTES} bytes",
        )
    return raw


@role("pipeline")
async def wrap(request: web.Request) -> web.Response:
    st = request.app[STATE]
    broker = request.app[BROKER]
    body = await read_json(request, WRAP_BODY_LIMIT)
    if not isinstance(body, dict):
        raise ApiError(400, "keys.request_invalid", "expected a JSON object")
    policy_name = _field_text(body, "policy")
    key_id = _field_text(body, "key_id")
    if (policy_name is None) == (key_id is None):
        raise ApiError(400, "keys.request_invalid", "give exactly one of policy and key_id")
    secret = _optsdata(body)
    now = st.clock()
    if key_id is not None:
        key = await st.store.get_key(key_id) if is_key_id(key_id) else None
        if key is None:
            raise ApiError(404, "keys.unknown_key", "no such key")
        if key.retired is not None:
            raise ApiError(409, "keys.key_retired", f"key {key.id} was retired")
    else:
        assert policy_name is not None
        policy = await st.store.get_key_policy(policy_name) if is_policy_name(policy_name) else None
        if policy is None:
            raise ApiError(404, "keys.unknown_policy", "no such key policy")
        key = await st.store.current_key(policy.name, None, now)
        if key is None:  # the policy's first wrap (or every version retired): make its key
            key = await st.store.current_key(policy.name, broker.new_key(policy.name), now)
        assert key is not None  # a candidate was given
    blob = broker.wrap(key.id, key.material, key.policy, hub_url(st), secret)
    return web.json_response(
        {
            "annotation": base64.b64encode(blob.encode()).decode(),
            "key_id": key.id,
            "policy": key.policy,
        }
    )


def _admit(request: web.Request, host_id: str) -> None:
    retry = request.app[RELEASE_LIMITER].retry_after(f"host:{host_id}")
    if retry is not None:
        raise ApiError(
            429,
            "keys.rate_limited",
            "too many key requests from this host; retry later",
            headers={"Retry-After": str(max(1, math.ceil(retry)))},
        )


@agent
async def challenge(request: web.Request) -> web.Response:
    st = request.app[STATE]
    host_id = principal(request).host_id
    _admit(request, host_id)
    if request.can_read_body:
        await read_json(request, CHALLENGE_BODY_LIMIT)
    issued = await issue_challenge(st, host_id, st.config.attestation.nonce_ttl)
    await st.store.put_key_nonce(issued.nonce, host_id, st.clock())
    return web.json_response(issued.to_json())


async def _host(request: web.Request, st: HubState, host_id: str) -> Host:
    host = request.get(AGENT_HOST_KEY)
    if host is None:
        host = await st.store.get_host(host_id)
    if host is None:
        raise ApiError(403, "host.unknown", "this host is not enrolled")
    return host


@agent
async def release(request: web.Request) -> web.Response:
    st = request.app[STATE]
    broker = request.app[BROKER]
    host_id = principal(request).host_id
    _admit(request, host_id)
    try:
        req = KeyReleaseRequest.from_json(await read_json(request, REPORT_BODY_LIMIT))
        body = req.report.body()
    except WireError as e:
        raise ApiError(400, e.reason, e.message) from None
    if body.host_id != host_id:
        raise ApiError(403, "report.host_mismatch", "the body's host_id is not this client's")
    host = await _host(request, st, host_id)
    issued = await st.store.key_nonce_issued(body.nonce, host_id)
    if issued is None:
        raise ApiError(409, "nonce.unknown", "a release needs a nonce from POST /v1/keys/challenge")
    outcome, result = await verify_and_record(st, host, req.report, body)
    report_result = ReportResult.from_json(result)
    if outcome is None:  # event logs missing: nothing recorded, the agent resends with data
        return web.json_response(KeyReleaseResult(report_result, ()).to_json())
    now = st.clock()
    blobs = [b for b in (_peek_key_id(raw) for raw in req.annotations) if b is not None]
    keys = await st.store.get_keys(blobs)
    policies = {}
    for name in {k.policy for k in keys.values()}:
        found = await st.store.get_key_policy(name)
        if found is not None:
            policies[name] = found
    binding = Binding(None, problem="the host is not trusted")
    if outcome.verdict == "trusted":
        host_keys = await st.store.get_host_keys(host_id)
        binding = binding_for(broker, host_keys.binding_public if host_keys else None, outcome)
    decisions = decide(
        broker,
        req.annotations,
        keys,
        policies,
        outcome,
        evidence_age=max(0.0, now - issued),
        binding=binding,
        expires_at=now + st.config.keys.secret_ttl,
    )
    await _record(st, host_id, now, req.annotations, decisions, outcome.verdict)
    released = any(d.result.ok for d in decisions)
    return web.json_response(
        KeyReleaseResult(
            report_result,
            tuple(d.result for d in decisions),
            binding.authorization if released else None,
        ).to_json()
    )


def _peek_key_id(raw: bytes) -> str | None:
    blob = decode_blob(raw)
    return None if isinstance(blob, Decision) else blob.key_id


async def _record(  # noqa: PLR0917
    st: HubState,
    host_id: str,
    now: float,
    annotations: tuple[bytes, ...],
    decisions: list[Decision],
    verdict: str,
) -> None:
    """One audit row for the request (every blob's outcome), and the per-key counters."""
    outcomes = [
        {
            "annotation": annotation_digest_b64(raw),
            "key_id": d.key_id,
            "ok": d.result.ok,
            "reason": d.result.reason or None,
        }
        for raw, d in zip(annotations, decisions, strict=True)
    ]
    released = sum(1 for d in decisions if d.result.ok)
    await st.store.record_key_events(
        [
            KeyEvent(
                now,
                host_id,
                d.key_id,
                d.result.ok,
                d.result.reason or "released",
                d.result.message,
            )
            for d in decisions
        ]
    )
    await st.store.audit(
        at=now,
        actor=f"agent:{host_id}",
        action="keys.release",
        subject=host_id,
        details={
            "verdict": verdict,
            "released": released,
            "refused": len(decisions) - released,
            "outcomes": outcomes,
        },
    )


@enrollment
async def policy_key(request: web.Request) -> web.Response:
    """The hub's policy-signing key (public): agents make PolicyAuthorize binding keys with
    its name before they enroll (no client certificate yet; TLS shows it is this hub)."""
    signer = request.app[BROKER].signer
    return web.json_response(
        {
            "public": base64.b64encode(signer.public).decode(),
            "name": signer.name.hex(),
            "authorize_policy": signer.authorize_policy.hex(),
        }
    )


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/enroll/policy-key", policy_key)
    app.router.add_post("/v1/keys/wrap", wrap)
    app.router.add_post("/v1/keys/challenge", challenge)
    app.router.add_post("/v1/keys/release", release)
