"""Attestation endpoints and what follows a verdict: challenges, reports, trust reports, staleness.

``POST /v1/challenge`` issues a 32-byte single-use nonce (``attestation.nonce_ttl``).
``POST /v1/report`` decodes a :class:`~trustcore.wire.Report`, runs
:class:`~hub.verification.ReportVerifier`, records the outcome (bounded history), raises an alert
on every transition to ``untrusted`` or ``stale``, publishes the change on the event bus, and
answers a :class:`~trustcore.wire.ReportResult` with a JWS-signed trust report and the nonce
for the host's next report (single use, valid ``attestation.interval + attestation.nonce_ttl``
seconds), so that a steady-state report is one request.
:func:`watch_staleness` is the background timer that turns hosts whose last report's validity
has passed into ``stale``.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from typing import Any, Final

from aiohttp import web
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from hub.auth import AGENT_HOST_KEY, agent, enrollment, principal
from hub.bus import VerdictChange
from hub.errors import ApiError, read_json
from hub.jws import key_id, sign_jws
from hub.state import STATE, HubState
from hub.store import Host, HostEvidence, NonceRefused, SequenceRefused, Transition
from hub.verification import MissingEventlogs, NonceRejected, Outcome
from trustcore.wire import NONCE_SIZE, Challenge, Report, ReportBody, ReportResult, WireError

log = logging.getLogger("trustplane.hub")

CHALLENGE_BODY_LIMIT: Final = 1024
# the wire body is at most 12 MiB (trustcore.wire.MAX_BODY_BYTES) plus its envelope; the
# configured server.max_body_bytes (default the same 16 MiB) caps it further (hub.errors)
REPORT_BODY_LIMIT: Final = 16 * 1024 * 1024
ALERTING: Final = frozenset({"untrusted", "stale"})
EVENTLOG_RETENTION: Final = 7 * 86400.0  # seconds a stored event log is kept for digest-only use


def trust_report(st: HubState, host: Host, outcome: Outcome, now: float, valid_until: float) -> str:
    payload: dict[str, Any] = {
        "host_id": host.id,
        "node_name": host.node_name,
        "verdict": outcome.verdict,
        "reasons": list(outcome.reasons),
        "asset_tags": dict(outcome.asset_tags),  # only tags the TPM vouched for
        "flavors": list(outcome.flavors),
        "iat": int(now),
        "valid_until": int(valid_until),
    }
    return sign_jws(payload, st.keys.jws_key)


async def record_transition(st: HubState, transition: Transition | None) -> None:
    """Publish a verdict change the store wrote (its alert, on a change to untrusted/stale,
    was written in the same transaction: see :meth:`hub.store.Store.record_report`)."""
    if transition is None:
        return
    await st.bus.publish(
        VerdictChange(
            transition.host_id,
            transition.previous,
            transition.verdict,
            transition.reasons,
            transition.at,
            transition.alert_id,
        )
    )


@agent
async def challenge(request: web.Request) -> web.Response:
    st = request.app[STATE]
    if request.can_read_body:  # the protocol sends {}; an empty body is fine too
        await read_json(request, CHALLENGE_BODY_LIMIT)
    issued = await issue_challenge(st, principal(request).host_id, st.config.attestation.nonce_ttl)
    return web.json_response(issued.to_json())


async def issue_challenge(st: HubState, host_id: str, ttl: float) -> Challenge:
    """A fresh single-use nonce for ``host_id``, stored until ``ttl`` seconds from now."""
    nonce = st.random_bytes(NONCE_SIZE)
    expires = st.clock() + ttl
    await st.store.put_nonce(nonce, host_id, expires)
    return Challenge(nonce=nonce, expires_at=expires)


@agent
async def report(request: web.Request) -> web.Response:
    st = request.app[STATE]
    host_id = principal(request).host_id
    try:
        signed = Report.from_json(await read_json(request, REPORT_BODY_LIMIT))
        body = signed.body()
    except WireError as e:
        raise ApiError(400, e.reason, e.message) from None
    if body.host_id != host_id:
        raise ApiError(403, "report.host_mismatch", "the body's host_id is not this client's")
    host = request.get(AGENT_HOST_KEY)  # read by the auth middleware for this request
    if host is None:
        host = await st.store.get_host(host_id)
    if host is None:
        raise ApiError(403, "host.unknown", "this host is not enrolled")
    _, result = await verify_and_record(st, host, signed, body)
    return web.json_response(result)


async def verify_and_record(
    st: HubState, host: Host, signed: Report, body: ReportBody
) -> tuple[Outcome | None, dict[str, Any]]:
    """Verify a report from ``host`` (whose id the caller matched to ``body.host_id``) and
    record its outcome, as ``POST /v1/report`` does; the key release (hub.keys) runs the same.

    Returns the outcome (``None`` when the hub lacks event logs the report names only by
    digest: nothing was recorded) and the :class:`ReportResult` JSON. Raises :class:`ApiError`
    (409 for a refused nonce or an old sequence number).
    """
    now = st.clock()
    flavors = await st.store.flavors_for_host(host)  # its own, then its group's
    try:
        # the nonce is spent in the transaction that records the outcome (_conclude)
        outcome = await st.verifier.verify(host, signed, body, flavors, now, defer_nonce=True)
    except NonceRejected as e:
        raise _nonce_refused(e.reason) from None
    if isinstance(outcome, MissingEventlogs):
        current = Outcome(host.verdict, host.reasons)
        until = host.valid_until or now
        return None, ReportResult(
            verdict=host.verdict,
            reasons=host.reasons,
            trust_report=trust_report(st, host, current, now, until),
            valid_until=until,
            next_report_in=0.0,
            missing_eventlogs=outcome.names,
        ).to_json()
    return outcome, await _conclude(
        st,
        host,
        body.sequence,
        signed,
        outcome,
        now,
        tag_certificate=await _tag_certificate_to_send(st, host, body),
        nonce=body.nonce,
    )


def _nonce_refused(reason: str) -> ApiError:
    return ApiError(409, reason, f"the report's nonce was refused: {reason}")


async def _tag_certificate_to_send(st: HubState, host: Host, body: ReportBody) -> bytes | None:
    """The host's current tag certificate when the report did not carry it (the agent then
    writes its hash into the TPM and reports again), else ``None``."""
    if not host.tags:
        return None
    current = await st.store.get_tag_certificate(host.id)
    if current is None or (body.asset_tag is not None and body.asset_tag.certificate == current):
        return None
    return current


async def _conclude(  # noqa: PLR0917
    st: HubState,
    host: Host,
    sequence: int,
    signed: Report,
    outcome: Outcome,
    now: float,
    *,
    tag_certificate: bytes | None = None,
    nonce: bytes | None = None,
) -> dict[str, Any]:
    cfg = st.config.attestation
    valid_until = now + cfg.report_validity
    evidence = None
    if outcome.quote is not None and outcome.replayed is not None:
        pcrs = {alg: dict(v) for alg, v in outcome.quote.pcr_values.items()}
        evidence = HostEvidence(host.id, now, pcrs, dict(outcome.replayed))
    if outcome.nonce_pending and nonce is None:  # never record without spending it
        raise RuntimeError("the report's nonce is still to be consumed")
    try:
        recorded = await st.store.record_report(
            host_id=host.id,
            received=now,
            verdict=outcome.verdict,
            reasons=outcome.reasons,
            sequence=sequence,
            body_sha256=hashlib.sha256(signed.body_bytes).hexdigest(),
            valid_until=valid_until,
            rule_results=(
                outcome.rules_json
                if outcome.rules_json is not None
                else [r.to_json() for r in outcome.rules]
            ),
            history=st.config.reports.history,
            evidence=evidence,
            nonce=nonce if outcome.nonce_pending else None,
            alert_on=ALERTING,
        )
    except NonceRefused as e:
        raise _nonce_refused(f"nonce.{e.status}") from None
    except SequenceRefused as e:
        raise ApiError(
            409,
            "report.sequence_old",
            f"report {sequence} is not above the last recorded report {e.last} of this host",
            extra={"last_sequence": e.last},
        ) from None
    await record_transition(st, recorded.transition)
    return ReportResult(
        verdict=outcome.verdict,
        reasons=outcome.reasons,
        trust_report=trust_report(st, host, outcome, now, valid_until),
        valid_until=valid_until,
        next_report_in=cfg.interval,
        tag_certificate=tag_certificate,
        next_challenge=await issue_challenge(st, host.id, cfg.interval + cfg.nonce_ttl),
    ).to_json()


async def sweep_stale(st: HubState) -> int:
    """Mark expired hosts stale (alert and publish each); prune old nonces and stored event
    logs. Returns how many hosts became stale."""
    now = st.clock()
    changed = await st.store.mark_stale(now, alert_on=ALERTING)
    for _host, transition in changed:
        await record_transition(st, transition)
    await st.store.prune_nonces(now)
    await st.store.prune_eventlogs(now - EVENTLOG_RETENTION)
    return len(changed)


async def watch_staleness(st: HubState) -> None:
    """Run :func:`sweep_stale` every ``attestation.stale_check_interval`` seconds, for ever."""
    while True:
        try:
            await sweep_stale(st)
        except Exception:  # the loop boundary: log and keep watching
            log.exception("stale sweep failed")
        await asyncio.sleep(st.config.attestation.stale_check_interval)


@enrollment
async def trust_report_key(request: web.Request) -> web.Response:
    """The public key that signs trust reports: agents check their own stored report with it
    (the OCI hook), and anyone may verify a trust report with it (TLS shows it is this hub)."""
    public = request.app[STATE].keys.jws_key.public_key()
    pem = public.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode("ascii")
    return web.json_response(
        {"type": "trust_report_key", "alg": "ES256", "kid": key_id(public), "public_key": pem}
    )


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/challenge", challenge)
    app.router.add_post("/v1/report", report)
    app.router.add_get("/v1/trust-report-key", trust_report_key)
