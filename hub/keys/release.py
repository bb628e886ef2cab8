"""Deciding a key release: each blob against its key, its policy and the verified report.

:func:`decide` is the policy half of ``POST /v1/keys/release`` (the route in
:mod:`hub.keys.routes` verifies and records the report first, exactly as ``POST /v1/report``).
For each blob, in this order: it parses (``release.blob_invalid``), its key exists
(``release.unknown_key``) and is not retired (``release.key_retired``), it opens under its key
(``release.blob_invalid``: one changed byte is enough), the host is ``trusted``
(``release.host_untrusted``), its TPM-vouched asset tags satisfy the key's predicate
(``release.assettag_mismatch``), the evidence is not older than the key's maximum age
(``release.report_stale``), and the host has a binding key the hub can release to in the
attested state (``release.not_bound``). Only then is the secret sealed to the binding key
(:mod:`trustcore.releasedsecret`: RSA-OAEP SHA-256 of a fresh AES key, AES-256-GCM of the
secret, bound to the blob's bytes). Messages never carry secrets.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from hub.keys.broker import Broker, OpenFailed
from hub.store import KeyPolicy, KeyVersion
from hub.verification import Outcome
from trustcore.binding import binding_policy_matches
from trustcore.errors import TrustcoreError
from trustcore.keyblob import KeyBlob, KeyBlobError, parse_key_blob
from trustcore.keypolicy import KeyPolicyError, parse_predicate
from trustcore.releasedsecret import CONTENT_KEY_BYTES, IV_BYTES, seal_secret
from trustcore.tpm.authorize import authorize_message, ecdsa_signature
from trustcore.tpm.policy import policy_pcr_digest
from trustcore.tpm.public import Public, parse_public
from trustcore.wire import ReleaseAuthorization, ReleasedKey

_PCR_DETAIL: Final = re.compile(r"expected [a-z0-9]+:(\d+)=")


@dataclass(frozen=True, slots=True)
class Binding:
    """How the hub can reach the host's TPM: its binding key and, for a PolicyAuthorize key,
    the authorization for the attested PCR state; ``problem`` when it cannot."""

    public: Public | None
    authorization: ReleaseAuthorization | None = None
    problem: str = ""


def untrusted_message(outcome: Outcome) -> str:
    """``host untrusted (flavor.platform.pcr_mismatch: PCR 0)``: the first reason a failed rule
    names a PCR for, else the first reason."""
    if not outcome.reasons:
        return f"host {outcome.verdict}"
    for reason in outcome.reasons:
        for rule in outcome.rules:
            if not rule.passed and rule.reason == reason:
                m = _PCR_DETAIL.match(rule.detail)
                if m:
                    return f"host {outcome.verdict} ({reason}: PCR {m.group(1)})"
    more = f" and {len(outcome.reasons) - 1} more" if len(outcome.reasons) > 1 else ""
    return f"host {outcome.verdict} ({outcome.reasons[0]}{more})"


def binding_for(broker: Broker, binding_public: bytes | None, outcome: Outcome) -> Binding:
    """The host's binding key, checked against what the hub can release to now."""
    if binding_public is None:
        return Binding(None, problem="the host enrolled without a binding key")
    try:
        public = parse_public(binding_public)
    except TrustcoreError:
        return Binding(None, problem="the host's binding key cannot be read")
    quote = outcome.quote
    if quote is None:
        return Binding(None, problem="no verified quote")
    values = {alg: dict(v) for alg, v in quote.pcr_values.items()}
    signer = broker.signer
    try:
        approved = policy_pcr_digest(quote.pcr_selection, values, public.name_alg)
    except TrustcoreError:
        return Binding(None, problem="the attested PCR values make no policy")
    if public.auth_policy == signer.authorize_policy:
        der = signer.key.sign(authorize_message(approved), ec.ECDSA(Prehashed(hashes.SHA256())))
        auth = ReleaseAuthorization(
            signing_key=signer.public, approved_policy=approved, signature=ecdsa_signature(der)
        )
        return Binding(public, auth)
    if binding_policy_matches(public, quote.pcr_selection, values):
        return Binding(public)  # an enrollment-time PolicyPCR key still in its PCR state
    return Binding(
        None,
        problem="the binding key's PCR policy is not the attested state "
        "(a PolicyPCR key from enrollment: enroll again)",
    )


@dataclass(frozen=True, slots=True)
class Decision:
    """One blob's outcome and what the audit row and the key counters record of it."""

    result: ReleasedKey
    key_id: str | None


def _refused(reason: str, message: str, key_id: str | None = None) -> Decision:
    return Decision(ReleasedKey(ok=False, reason=reason, message=message), key_id)


def decode_blob(raw: bytes) -> KeyBlob | Decision:
    try:
        return parse_key_blob(raw)
    except KeyBlobError as e:
        return _refused("release.blob_invalid", e.message)


def decide(  # noqa: PLR0917
    broker: Broker,
    annotations: Sequence[bytes],
    keys: Mapping[str, KeyVersion],
    policies: Mapping[str, KeyPolicy],
    outcome: Outcome,
    evidence_age: float,
    binding: Binding,
    expires_at: float,
) -> list[Decision]:
    """One :class:`Decision` per annotation, in order (see the module's docstring)."""
    out: list[Decision] = []
    for raw in annotations:
        blob = decode_blob(raw)
        if isinstance(blob, Decision):
            out.append(blob)
            continue
        out.append(
            _decide_one(
                broker, raw, blob, keys, policies, outcome, evidence_age, binding, expires_at
            )
        )
    return out


def _decide_one(  # noqa: PLR0917
    broker: Broker,
    raw: bytes,
    blob: KeyBlob,
    keys: Mapping[str, KeyVersion],
    policies: Mapping[str, KeyPolicy],
    outcome: Outcome,
    evidence_age: float,
    binding: Binding,
    expires_at: float,
) -> Decision:
    kid = blob.key_id
    key = keys.get(kid)
    if key is None:
        return _refused("release.unknown_key", f"unknown key {kid}")
    if key.retired is not None:
        return _refused("release.key_retired", f"key {kid} was retired", kid)
    policy = policies.get(key.policy)
    if blob.policy != key.policy or policy is None:
        return _refused("release.blob_invalid", f"the blob's policy is not key {kid}'s", kid)
    try:
        secret = broker.unwrap(blob, key.material)
    except OpenFailed:
        return _refused("release.blob_invalid", f"the blob does not open under key {kid}", kid)
    if outcome.verdict != "trusted":
        return _refused("release.host_untrusted", untrusted_message(outcome), kid)
    try:
        predicate = parse_predicate(policy.predicate)
    except KeyPolicyError:
        return _refused("release.assettag_mismatch", f"policy {policy.name} is unreadable", kid)
    if not predicate.holds(outcome.asset_tags):
        tags = ", ".join(f"{k}={v}" for k, v in sorted(outcome.asset_tags.items())) or "none"
        return _refused(
            "release.assettag_mismatch",
            f"asset tags ({tags}) do not satisfy policy {policy.name}: {predicate.text}",
            kid,
        )
    if evidence_age > policy.max_age:
        return _refused(
            "release.report_stale",
            f"the evidence is {evidence_age:.0f}s old; policy {policy.name} allows "
            f"{policy.max_age:.0f}s",
            kid,
        )
    if binding.public is None:
        return _refused("release.not_bound", f"no usable binding key: {binding.problem}", kid)
    try:
        key_obj = binding.public.public_key()
    except TrustcoreError:
        return _refused("release.not_bound", "the binding key cannot be used", kid)
    if not isinstance(key_obj, rsa.RSAPublicKey):
        return _refused("release.not_bound", "the binding key is not an RSA key", kid)
    sealed = seal_secret(
        key_obj,
        secret,
        raw,
        content_key=broker.random_bytes(CONTENT_KEY_BYTES),
        iv=broker.random_bytes(IV_BYTES),
    )
    return Decision(ReleasedKey(ok=True, secret=sealed, expires_at=expires_at), kid)


def annotation_digest_b64(raw: bytes) -> str:
    """A short, non-secret label of an annotation for the audit row (its first 12 bytes of
    SHA-256, base64)."""
    return base64.b64encode(hashlib.sha256(raw).digest()[:12]).decode()
