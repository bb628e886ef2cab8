"""Enrollment: a new agent proves its AK lives in the TPM that owns its EK, and gets a client
certificate.

``POST /v1/enroll`` (no client certificate needed, rate-limited and bounded): decode the keys,
check the AK is a restricted signing key, check the AK's Certify of the binding key when sent
and that it is a policy-only RSA decryption key (:mod:`trustcore.binding`, ``binding.key_invalid``),
check the EK certificate against the configured vendor CA bundle (or a registration token).
Without either the host is ``pending`` until an operator approves it. Otherwise the hub answers
MakeCredential(EK, name(AK), secret) and keeps only SHA-256(secret), the candidate keys and the
CSR, for ``enrollment.challenge_ttl`` seconds.

``POST /v1/enroll/activate``: the challenge is taken (single use, even when the answer is wrong),
the secret compared in constant time; only then are the keys bound to the host and the client
certificate (CN = host id) issued.
"""

from __future__ import annotations

import hashlib
import hmac
import math
from typing import Final

from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from hub.auth import enrollment, peer_host_id
from hub.errors import ApiError, read_json
from hub.keys import binding_kind
from hub.pki import (
    PkiError,
    certificate_pem,
    check_csr,
    issue_client_certificate,
    verify_ek_certificate,
)
from hub.state import STATE, HubState
from hub.store import HostFacts, HostKeys, PendingEnrollment
from trustcore.binding import verify_binding_key
from trustcore.credential import CREDENTIAL_RANDOM_BYTES, make_credential
from trustcore.errors import TrustcoreError
from trustcore.quote import AttestationKey
from trustcore.tpm.public import parse_public
from trustcore.wire import (
    HANDLE_SIZE,
    ActivateRequest,
    EnrollChallenge,
    Enrollment,
    EnrollRequest,
    WireError,
    host_id_from_ek,
)

ENROLL_BODY_LIMIT: Final = 64 * 1024
SECRET_SIZE: Final = 32


def _limited(retry: float | None) -> None:
    if retry is not None:
        raise ApiError(
            429,
            "enroll.rate_limited",
            "too many enrollment requests; retry later",
            headers={"Retry-After": str(max(1, math.ceil(retry)))},
        )


def _admit(st: HubState, request: web.Request) -> str | None:
    """Before the body is read: an anonymous request spends its client address's budget
    (``enrollment.rate_per_minute``); one with a verified client certificate (a renewal) does
    not. Returns the certificate's host id, if any. Raises 429 ``enroll.rate_limited``."""
    renewing = peer_host_id(request)
    if renewing is None:
        _limited(st.enroll_limiter.retry_after(f"addr:{request.remote}"))
    return renewing


def _admit_ek(st: HubState, request: web.Request, host_id: str, renewing: str | None) -> None:
    """Once the EK is known: its own budget (``enrollment.rate_per_ek``); a certificate for
    another host than the EK's counts as anonymous too. Raises 429 ``enroll.rate_limited``."""
    if renewing is not None and renewing != host_id:
        _limited(st.enroll_limiter.retry_after(f"addr:{request.remote}"))
    kind = "renewal" if renewing == host_id else "ek"
    _limited(st.ek_limiter.retry_after(f"{kind}:{host_id}"))


def _conflict_text(conflicts: list[tuple[str, str]]) -> str:
    named = ", ".join(f"{field} of host {other[:16]}" for other, field in conflicts[:3])
    return f"already used by an active host: {named}"


def _decode_keys(st: HubState, req: EnrollRequest) -> tuple[object, AttestationKey]:
    try:
        ek = parse_public(req.ek_public).public_key()
    except TrustcoreError as e:
        raise ApiError(400, "enroll.ek_invalid", f"EK public area: {e.message}") from None
    try:
        ak = AttestationKey.from_tpmt_public(req.ak_public)
    except TrustcoreError as e:
        raise ApiError(400, "ak.invalid", f"AK public area: {e.message}") from None
    if req.binding_public is not None:
        if req.binding_certify_attest is None or req.binding_certify_signature is None:
            raise ApiError(400, "certify.missing", "binding key sent without the AK's Certify")
        try:  # certified by this AK for this EK, and a PCR-policy-only RSA decryption key
            verify_binding_key(
                ak,
                ek_public=req.ek_public,
                ak_public=req.ak_public,
                binding_public=req.binding_public,
                attest=req.binding_certify_attest,
                signature=req.binding_certify_signature,
            )
        except TrustcoreError as e:
            raise ApiError(400, e.reason, f"binding key: {e.message}") from None
    return ek, ak


def _ek_chain_verified(st: HubState, req: EnrollRequest, ek: object, now: float) -> bool:
    """True when the EK certificate chains to the bundle; raises for a certificate that lies."""
    if req.ek_certificate is None or not st.ek_anchors:
        return False
    if not isinstance(ek, ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
        return False
    try:
        verify_ek_certificate(req.ek_certificate, ek, st.ek_anchors, now)
    except PkiError as e:
        if e.reason == "enroll.ek_certificate_untrusted":
            return False
        raise ApiError(403, e.reason, str(e)) from None
    return True


def _token_ok(st: HubState, token: str | None) -> bool:
    if token is None:
        return False
    given = token.encode("utf-8")
    return any(hmac.compare_digest(given, t.encode("utf-8")) for t in st.config.enrollment.tokens)


@enrollment
async def enroll(request: web.Request) -> web.Response:
    st = request.app[STATE]
    renewing = _admit(st, request)
    try:
        req = EnrollRequest.from_json(await read_json(request, ENROLL_BODY_LIMIT))
    except WireError as e:
        raise ApiError(400, e.reason, e.message) from None
    now = st.clock()
    host_id = host_id_from_ek(req.ek_public)
    _admit_ek(st, request, host_id, renewing)
    if req.csr is None:
        raise ApiError(400, "enroll.csr_invalid", "a CSR for the agent's TLS key is required")
    try:
        check_csr(req.csr)
    except PkiError as e:
        raise ApiError(400, e.reason, str(e)) from None
    ek, ak = _decode_keys(st, req)
    ek_verified = _ek_chain_verified(st, req, ek, now)
    if st.config.enrollment.require_ek_certificate and not ek_verified:
        raise ApiError(
            403, "enroll.ek_certificate_required", "an EK certificate from a known vendor CA"
        )
    existing = await st.store.get_host(host_id)
    if existing is not None and existing.state in ("revoked", "retired"):
        raise ApiError(403, "enroll.revoked", f"this host was {existing.state} by an operator")
    conflicts = await st.store.identity_conflicts(
        host_id, req.hostname, req.node_name, req.dmi_uuid
    )
    if conflicts and existing is not None and existing.state == "enrolled":
        # an enrolled host renewing may not take another active host's names
        raise ApiError(409, "enroll.identity_conflict", _conflict_text(conflicts))
    approved = (ek_verified or _token_ok(st, req.registration_token)) and not conflicts
    if existing is None:
        open_now = await st.store.count_open_enrollments(now)
        pending = await st.store.count_hosts("pending")
        if open_now + pending >= st.config.enrollment.max_pending:
            raise ApiError(503, "enroll.capacity", "too many enrollments in progress")
    host = await st.store.register_host(
        host_id=host_id,
        state="approved" if approved else "pending",
        hostname=req.hostname,
        node_name=req.node_name,
        dmi_uuid=req.dmi_uuid,
        now=now,
    )
    await st.store.audit(
        at=now,
        actor=f"agent:{host_id}",
        action="enroll.request",
        subject=host_id,
        details={
            "state": host.state,
            "ek_verified": ek_verified,
            "hostname": req.hostname,
            "binding": binding_kind(request.app, req.binding_public),
        },
    )
    if conflicts:
        await st.store.audit(
            at=now,
            actor=f"agent:{host_id}",
            action="enroll.identity_conflict",
            subject=host_id,
            details={"conflicts": [f"{field}:{other}" for other, field in conflicts]},
        )
    if host.state == "pending":
        return web.json_response(EnrollChallenge(host_id=host_id, status="pending").to_json())
    secret = st.random_bytes(SECRET_SIZE)
    try:
        made = make_credential(
            req.ek_public, ak.name, secret, st.random_bytes(CREDENTIAL_RANDOM_BYTES)
        )
    except TrustcoreError as e:
        raise ApiError(400, e.reason, f"MakeCredential: {e.message}") from None
    handle = st.random_bytes(HANDLE_SIZE)
    await st.store.put_enrollment(
        PendingEnrollment(
            host_id=host_id,
            handle=handle,
            secret_hash=hashlib.sha256(secret).digest(),
            expires=now + st.config.enrollment.challenge_ttl,
            csr=req.csr,
            keys=HostKeys(
                host_id=host_id,
                ek_public=req.ek_public,
                ak_public=req.ak_public,
                ek_certificate=req.ek_certificate,
                binding_public=req.binding_public,
                ek_verified=ek_verified,
            ),
            facts=HostFacts(req.hostname, req.node_name, req.dmi_uuid),
        )
    )
    return web.json_response(
        EnrollChallenge(
            host_id=host_id,
            status="challenge",
            credential_blob=made.credential_blob,
            encrypted_secret=made.secret,
            handle=handle,
        ).to_json()
    )


@enrollment
async def activate(request: web.Request) -> web.Response:
    st = request.app[STATE]
    renewing = _admit(st, request)
    try:
        req = ActivateRequest.from_json(await read_json(request, ENROLL_BODY_LIMIT))
    except WireError as e:
        raise ApiError(400, e.reason, e.message) from None
    _admit_ek(st, request, req.host_id, renewing)
    now = st.clock()
    pending = await st.store.take_enrollment(req.host_id, req.handle)
    if pending is None:
        raise ApiError(
            403,
            "enroll.no_challenge",
            "no open enrollment challenge with this handle for this host",
        )
    if pending.expires < now:
        raise ApiError(403, "enroll.challenge_expired", "the enrollment challenge expired")
    if not hmac.compare_digest(hashlib.sha256(req.secret).digest(), pending.secret_hash):
        await st.store.audit(
            at=now,
            actor=f"agent:{req.host_id}",
            action="enroll.activation_failed",
            subject=req.host_id,
            details={},
        )
        raise ApiError(403, "enroll.activation_failed", "the activated secret does not match")
    try:
        cert = issue_client_certificate(
            st.keys.ca, pending.csr, req.host_id, now, days=st.config.enrollment.client_cert_days
        )
    except PkiError as e:
        raise ApiError(400, e.reason, str(e)) from None
    # the new certificate is the host's only one from now on: the previous one stops at once
    serial = format(cert.serial_number, "x")
    await st.store.complete_enrollment(pending.keys, pending.facts, cert_serial=serial)
    st.verifier.forget(req.host_id)
    await st.store.audit(
        at=now,
        actor=f"agent:{req.host_id}",
        action="enroll.activated",
        subject=req.host_id,
        details={"serial": format(cert.serial_number, "x")},
    )
    return web.json_response(
        Enrollment(
            host_id=req.host_id,
            status="enrolled",
            client_certificate=certificate_pem(cert),
            ca_certificate=st.keys.ca_pem,
        ).to_json()
    )


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/enroll", enroll)
    app.router.add_post("/v1/enroll/activate", activate)
