"""The agent's key-release client: blobs in, layer secrets out, one hub round trip.

:meth:`KeyReleaser.release` asks the hub for a release nonce (``POST /v1/keys/challenge``),
builds a complete signed report over it exactly as the attestation loop does (PCRs read and
quoted in one turn of the TPM thread, the next sequence number of the host's report ledger,
event logs by digest once the hub has them), and sends it with every blob in one
``POST /v1/keys/release``. The hub verifies and records that report as any other, decides each
blob, and returns each secret sealed to this host's TPM binding key
(:mod:`trustcore.releasedsecret`): the TPM recovers each secret's AES key here
(:meth:`nodeagent.tpmsession.TpmSession.decrypt_authorized` with the hub's signed approval of
the attested PCR state, or the enrollment-time PolicyPCR key), then AES-GCM opens the secret,
bound to its blob, so a secret
is only ever in clear in this process, in the attested state. Secrets are never logged.

Errors: :class:`~nodeagent.hubclient.HubUnavailable` (hub away, or not enrolled yet),
:class:`~nodeagent.hubclient.HubRejected` (the hub refused the request as a whole),
:class:`~nodeagent.errors.TpmError` (TPM faults); a refused blob is a
:class:`KeyReleaseRefused` in the returned list, at its place.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from nodeagent.attestation import Attestor
from nodeagent.config import AgentConfig
from nodeagent.errors import NodeAgentError, TpmError
from nodeagent.evidence import collect_evidence
from nodeagent.hubclient import HubClient, HubRejected, HubUnavailable
from nodeagent.state import QueuedReport, StateDir, StateError
from nodeagent.tpm import ObjectBlobs
from nodeagent.tpm_worker import TpmWorker
from nodeagent.tpmsession import TpmSession
from trustcore.errors import TrustcoreError
from trustcore.releasedsecret import ReleasedSecretError, open_content, split_sealed
from trustcore.tpm.public import RsaParameters, parse_tpm2b_public
from trustcore.wire import MAX_ANNOTATIONS, KeyReleaseRequest, KeyReleaseResult

__all__ = ["KeyReleaseRefused", "KeyReleaser", "ReleasedSecret"]

log = logging.getLogger("trustplane.agent.keys")

_TRIES: Final = 3  # a refused nonce or sequence, or event logs the hub lacks: ask again
_TPM_POLICY_FAILURES: Final = frozenset({0x99D, 0x184, 0x9A2, 0x18B, 0x99B})


@dataclass(frozen=True)
class ReleasedSecret:
    """A layer secret the hub released and this TPM decrypted."""

    annotation_sha256: bytes  # SHA-256 of the blob bytes (the cache key)
    secret: bytes  # the layer's optsdata in clear: never log it
    expires_at: float  # unix time; the cache must not serve it after this

    def __repr__(self) -> str:  # never show the secret
        return (
            f"ReleasedSecret(annotation_sha256={self.annotation_sha256.hex()}, "
            f"expires_at={self.expires_at})"
        )


class KeyReleaseRefused(NodeAgentError):
    """The hub (or this host's TPM) refused one blob: ``reason`` id and ``message``."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message, reason=reason)


def _modulus_bytes(tpm2b_public: bytes) -> int:
    """The RSA modulus size of the stored binding key (its TPM2B_PUBLIC)."""
    try:
        params = parse_tpm2b_public(tpm2b_public).parameters
    except TrustcoreError as e:
        raise StateError(f"binding.json holds an unreadable key: {e.message}") from None
    if not isinstance(params, RsaParameters):
        raise StateError("binding.json holds a key that is not RSA")
    return params.key_bits // 8


class KeyReleaser:
    """Releases key blobs for one enrolled host; built by the daemon (``daemon.key_releaser``)
    from its TPM worker, hub client, state directory and attestor (the latter two looked up at
    each call: the daemon makes them once enrolled)."""

    def __init__(
        self,
        cfg: AgentConfig,
        state: StateDir,
        tpm: TpmWorker,
        hub: Callable[[], HubClient],
        attestor: Callable[[], Attestor | None],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._cfg = cfg
        self._state = state
        self._tpm = tpm
        self._hub = hub
        self._attestor = attestor
        self._clock = clock
        self.round_trips = 0  # release requests sent (the benchmark counts them)

    async def release(
        self, annotations: Sequence[bytes]
    ) -> list[ReleasedSecret | KeyReleaseRefused]:
        """One hub round trip for all of them (challenge + release; more only past
        :data:`~trustcore.wire.MAX_ANNOTATIONS` blobs). Raises HubUnavailable when the hub
        cannot be reached, TpmError on TPM faults."""
        out: list[ReleasedSecret | KeyReleaseRefused] = []
        for start in range(0, len(annotations), MAX_ANNOTATIONS):
            out.extend(await self._release(annotations[start : start + MAX_ANNOTATIONS]))
        return out

    async def _release(
        self, annotations: Sequence[bytes]
    ) -> list[ReleasedSecret | KeyReleaseRefused]:
        attestor = self._attestor()
        if attestor is None:
            raise HubUnavailable("not enrolled with the hub yet")
        stored = self._state.load_binding()
        if stored is None:
            refused = KeyReleaseRefused("release.not_bound", "this host has no TPM binding key")
            return [refused for _ in annotations]
        blobs = ObjectBlobs(private=stored.private, public=stored.public)
        result = await self._round_trip(attestor, tuple(annotations))
        if len(result.results) != len(annotations):
            raise HubUnavailable(
                f"hub answered {len(result.results)} results for {len(annotations)} blobs"
            )
        modulus = _modulus_bytes(stored.public)
        opened = iter(await self._open(blobs, modulus, annotations, result))
        out: list[ReleasedSecret | KeyReleaseRefused] = []
        for raw, entry in zip(annotations, result.results, strict=True):
            if not entry.ok or entry.secret is None or entry.expires_at is None:
                out.append(KeyReleaseRefused(entry.reason, entry.message))
                continue
            clear = next(opened)
            if isinstance(clear, KeyReleaseRefused):
                out.append(clear)
                continue
            out.append(ReleasedSecret(hashlib.sha256(raw).digest(), clear, entry.expires_at))
        released = sum(1 for r in out if isinstance(r, ReleasedSecret))
        log.info("key release: %d of %d blobs released", released, len(out))
        return out

    async def _open(
        self,
        blobs: ObjectBlobs,
        modulus: int,
        annotations: Sequence[bytes],
        result: KeyReleaseResult,
    ) -> list[bytes | KeyReleaseRefused]:
        """Each released secret in clear (in the order of the released entries): the TPM
        recovers every content key in one turn of its thread, then AES-GCM opens each."""
        parts: list[tuple[bytes, bytes, bytes, bytes]] = []  # rsa part, iv, rest, annotation
        bad: dict[int, KeyReleaseRefused] = {}
        released = [
            (raw, e.secret)
            for raw, e in zip(annotations, result.results, strict=True)
            if e.ok and e.secret is not None and e.expires_at is not None
        ]
        for i, (raw, sealed) in enumerate(released):
            try:
                rsa_part, iv, rest = split_sealed(sealed, modulus)
            except ReleasedSecretError as e:
                bad[i] = KeyReleaseRefused(e.reason, e.message)
                rsa_part, iv, rest = b"", b"", b""
            parts.append((rsa_part, iv, rest, raw))
        todo = [p[0] for i, p in enumerate(parts) if i not in bad]
        keys = iter(await self._decrypt(blobs, todo, result) if todo else [])
        out: list[bytes | KeyReleaseRefused] = []
        for i, (_, iv, rest, raw) in enumerate(parts):
            if i in bad:
                out.append(bad[i])
                continue
            key = next(keys)
            if isinstance(key, TpmError):
                if key.rc & 0xFFF not in _TPM_POLICY_FAILURES:
                    raise key
                out.append(
                    KeyReleaseRefused(
                        "release.not_bound",
                        f"the TPM refused the binding key in its current state ({key.message})",
                    )
                )
                continue
            try:
                out.append(open_content(key, iv, rest, raw))
            except ReleasedSecretError as e:
                out.append(KeyReleaseRefused(e.reason, e.message))
        return out

    async def _decrypt(
        self, blobs: ObjectBlobs, ciphertexts: list[bytes], result: KeyReleaseResult
    ) -> list[bytes | TpmError]:
        """Every RSA part decrypted by the TPM in one turn of its thread."""
        auth = result.authorization
        if auth is not None:
            return await self._tpm.call(lambda s: s.decrypt_authorized(blobs, ciphertexts, auth))

        def each(session: TpmSession) -> list[bytes | TpmError]:
            out: list[bytes | TpmError] = []
            for ct in ciphertexts:
                try:
                    out.append(session.decrypt_with_binding_key(blobs, ct))
                except TpmError as e:
                    out.append(e)
            return out

        return await self._tpm.call(each)

    def _reserve(self, attestor: Attestor, boot_id: str) -> QueuedReport:
        """The next sequence number of the host's ledger, for this release's report (not
        queued: the release delivers it)."""
        ledger = attestor.ledger
        entry = QueuedReport(
            sequence=ledger.next_sequence,
            observed_at=self._clock(),
            boot_id=boot_id,
            reason="key_release",
        )
        ledger.next_sequence += 1
        self._state.save_ledger(ledger)
        return entry

    async def _round_trip(
        self, attestor: Attestor, annotations: tuple[bytes, ...]
    ) -> KeyReleaseResult:
        hub = self._hub()
        evidence = await asyncio.to_thread(collect_evidence, self._cfg.evidence)
        for attempt in range(_TRIES):
            last_try = attempt == _TRIES - 1
            challenge = await hub.key_challenge()
            entry = self._reserve(attestor, evidence.boot_id)
            report, sent = await attestor.build_report(challenge.nonce, entry, evidence)
            self.round_trips += 1
            try:
                result = await hub.release_keys(KeyReleaseRequest(report, annotations))
            except HubRejected as e:
                if e.code == "report.sequence_old" and e.last_sequence is not None:
                    ledger = attestor.ledger
                    ledger.next_sequence = max(ledger.next_sequence, e.last_sequence + 1)
                    self._state.save_ledger(ledger)
                    if not last_try:
                        continue
                if e.status == 409 and e.code.startswith("nonce.") and not last_try:
                    continue
                raise
            ledger = attestor.ledger
            missing = set(result.report.missing_eventlogs)
            for name, digest in sent.items():
                if name in missing or digest in missing:
                    ledger.acked_logs.discard(digest)
                else:
                    ledger.acked_logs.add(digest)
            if missing and not last_try:
                self._state.save_ledger(ledger)
                continue
            ledger.last_acked = max(ledger.last_acked, entry.sequence)
            self._state.save_ledger(ledger)
            return result
        raise HubUnavailable("the hub did not record the release's report")
