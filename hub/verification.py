"""The hub's one verification path for an attestation report, in DESIGN.md's order.

:meth:`ReportVerifier.verify` runs: AK signature over TPMS_ATTEST -> magic and type ->
qualifying data (``report_qualifying_data(nonce, body_bytes)``, exact bytes) -> nonce unused and
unexpired (consumed atomically in the store) -> quoted PCR selection covers the policy's PCRs ->
PCR digest over the reported values -> event-log replay equals the quoted values -> flavor rules
(:func:`hub.flavors.evaluate_flavors`), which see only the asset tags the TPM vouched for
(:meth:`ReportVerifier._asset_tags`: the AK's NV certify of the tag index, the tag certificate
from the hub's tag CA, and that it is the host's current one). The cryptography and parsing
are trustcore's (:func:`trustcore.quote.verify_quote`, the event-log replay); this module orders
the steps,
supplies the time and the nonce store, caches decoded AKs, replayed event logs (with their
events in the flavor engine's form) and flavor verdicts, and turns the first failure into a
verdict with its reason id.

The flavor verdict is a pure function of the evidence and the documents, so it is cached under
a digest of exactly what it depends on: each replayed log's SHA-256, the quoted PCR values, the
TPM-vouched asset tags, the flavor documents' content revision
(:attr:`hub.store.FlavorDocuments.revision`) and ``require_flavor``. Identical evidence against
unchanged flavors gets the identical result without re-evaluating; a changed, deleted or
unassigned flavor changes the key. Everything before it (signature, nonce, digest, replay) runs
on every report.

Two kinds of failure leave it differently: evidence that does not verify yields an
``untrusted`` :class:`Outcome` (stored, alerted, signed); a nonce that is unknown, replayed or
expired raises :class:`NonceRejected` (the report proves nothing about the host either way).
With ``defer_nonce`` the verifier does not spend the nonce itself: every outcome reached after
the nonce step comes back with ``nonce_pending`` set, and the caller must consume the nonce in
the same transaction that records the outcome (:meth:`hub.store.Store.record_report`'s
``nonce``), refusing the report if that fails. The outcome cannot depend on the nonce beyond
that, so the result is the same as spending it first, with one store round trip less.
A report that names an event log only by digest which the hub does not hold yields
:class:`MissingEventlogs` before the nonce is spent, so the agent can resend at once.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import struct
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final

from cryptography import x509

from hub.cache import LruCache
from hub.config import AttestationConfig
from hub.flavors import (
    FlavorOutcome,
    RuleOutcome,
    VerifiedEvidence,
    evaluate_flavors,
    measured_events,
)
from hub.store import Host, Store
from trustcore.algorithms import BY_NAME
from trustcore.assettag import verify_asset_tag
from trustcore.errors import TrustcoreError, VerificationError
from trustcore.eventlog import EventLog, parse_eventlog, replay_eventlog
from trustcore.flavors.evidence import MeasuredEvent
from trustcore.quote import AttestationKey, VerifiedQuote, verify_quote
from trustcore.tpm.pcrs import PcrSelection
from trustcore.wire import Report, ReportBody, report_qualifying_data

_PCR_ENTRY: Final = struct.Struct(">HBB")

__all__ = ["LruCache", "MissingEventlogs", "NonceRejected", "Outcome", "ReportVerifier"]

# verify_quote raises these after signature, type and qualifying data have passed; the nonce
# is checked before they are reported, as DESIGN.md orders.
_AFTER_NONCE: Final = frozenset(
    {"quote.pcr_selection_mismatch", "quote.pcr_values_missing", "quote.pcr_digest_mismatch"}
)


class NonceRejected(Exception):
    """The report's nonce is ``nonce.unknown``, ``nonce.replayed`` or ``nonce.expired``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class MissingEventlogs:
    """The report names these event logs by digest only and the hub does not hold them."""

    names: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Outcome:
    """The result of verifying one report: ``trusted`` or ``untrusted`` with reason ids."""

    verdict: str
    reasons: tuple[str, ...] = ()
    rules: tuple[RuleOutcome, ...] = ()
    flavors: tuple[str, ...] = ()
    quote: VerifiedQuote | None = field(default=None, compare=False)
    # set once the quote verified and every event log replayed to it: log name -> SHA-256 hex
    replayed: Mapping[str, str] | None = field(default=None, compare=False)
    # the asset tags the TPM vouched for (empty when the host has no tag certificate)
    asset_tags: Mapping[str, str] = field(default_factory=dict, compare=False)
    # ``rules`` as JSON text (made once per cached flavor verdict), or None
    rules_json: str | None = field(default=None, compare=False)
    # the report's nonce is still to be consumed by the caller (``verify(defer_nonce=True)``)
    nonce_pending: bool = field(default=False, compare=False)

    @classmethod
    def untrusted(cls, reason: str) -> Outcome:
        return cls("untrusted", (reason,))


FlavorHook = Callable[[VerifiedEvidence, Mapping[str, Mapping[str, Any]], bool], FlavorOutcome]


@dataclass(frozen=True, slots=True)
class ReplayedLog:
    """A parsed event log, the PCR values its replay implies (not yet compared), and its events
    in the flavor engine's form (:func:`hub.flavors.measured_events`)."""

    log: EventLog
    pcrs: Mapping[int, Mapping[int, bytes]]
    measured: tuple[MeasuredEvent, ...] = ()


def replay_log(data: bytes) -> ReplayedLog:
    """Parse and replay; raises :class:`~trustcore.errors.TrustcoreError` (parse or replay)."""
    log = parse_eventlog(data)
    return ReplayedLog(log, replay_eventlog(log), measured_events(log.events))


def check_replay(name: str, replayed: ReplayedLog, quote: VerifiedQuote) -> None:
    """Every quoted PCR the log extends must equal the log's replay; at least one must overlap.

    Raises :class:`VerificationError`: ``eventlog.replay_mismatch`` naming the first differing
    (bank, PCR), ``eventlog.not_quoted`` when the log touches no quoted PCR (a vacuous check).
    """
    compared = 0
    for alg, quoted in quote.pcr_values.items():
        bank = replayed.pcrs.get(alg, {})
        for pcr, value in sorted(quoted.items()):
            if pcr not in bank:
                continue
            compared += 1
            if not hmac.compare_digest(bank[pcr], value):
                raise VerificationError(
                    f"event log {name!r}: bank 0x{alg:04x} PCR {pcr} replays to "
                    f"{bank[pcr].hex()}, the quote says {value.hex()}",
                    reason="eventlog.replay_mismatch",
                )
    if compared == 0:
        raise VerificationError(
            f"event log {name!r} extends none of the quoted PCRs", reason="eventlog.not_quoted"
        )


def policy_selection(config: AttestationConfig) -> dict[int, frozenset[int]]:
    return {BY_NAME[bank].alg_id: frozenset(pcrs) for bank, pcrs in config.pcr_selection.items()}


class ReportVerifier:
    """Verifies reports for the hub; holds the AK, event-log and flavor-verdict caches
    (bounded LRU: AKs and verdicts are small and sized for a large fleet, parsed logs are
    large and fleets share few of them)."""

    def __init__(
        self,
        store: Store,
        config: AttestationConfig,
        *,
        flavor_hook: FlavorHook = evaluate_flavors,
        ak_cache_size: int = 65536,
        eventlog_cache_size: int = 256,
        verdict_cache_size: int = 16384,
        tag_ca: x509.Certificate | None = None,
    ) -> None:
        self._store = store
        self._tag_ca = tag_ca
        self._config = config
        self._policy = policy_selection(config)
        self._flavor_hook = flavor_hook
        self.aks: LruCache[str, AttestationKey] = LruCache(ak_cache_size)
        self.eventlogs: LruCache[bytes, ReplayedLog] = LruCache(eventlog_cache_size)
        self.verdicts: LruCache[bytes, tuple[FlavorOutcome, str]] = LruCache(verdict_cache_size)

    async def attestation_key(self, host: Host) -> AttestationKey | None:
        """The host's AK, decoded once and cached; ``None`` for an unknown host.

        The cache key includes the serial of the host's current client certificate, which every
        enrollment changes: a host that enrolled again (a new AK), also through another hub
        process sharing the database, is never verified with its old AK."""
        key = f"{host.id}:{host.cert_serial or ''}"
        ak = self.aks.get(key)
        if ak is None:
            keys = await self._store.get_host_keys(host.id)
            if keys is None:
                return None
            ak = AttestationKey.from_tpmt_public(keys.ak_public)
            self.aks.put(key, ak)
        return ak

    def forget(self, host_id: str) -> None:
        """Drop a host's cached AKs (after re-enrollment in this process)."""
        for key in [k for k in self.aks.cached_keys() if k.startswith(f"{host_id}:")]:
            self.aks.discard(key)

    async def _eventlogs(
        self, body: ReportBody, now: float
    ) -> tuple[dict[str, ReplayedLog | TrustcoreError], tuple[str, ...]]:
        """Each log parsed and replayed (from the cache when unchanged), or the error it gave;
        and the names of digest-only logs the hub does not hold."""
        found: dict[str, ReplayedLog | TrustcoreError] = {}
        missing: list[str] = []
        for name, ev in sorted(body.eventlogs.items()):
            cached = self.eventlogs.get(ev.sha256)
            if cached is not None:
                found[name] = cached
                continue
            data = ev.data
            if data is None:
                data = await self._store.get_eventlog(ev.sha256.hex())
                if data is None or hashlib.sha256(data).digest() != ev.sha256:
                    missing.append(name)
                    continue
            try:  # parsing a new log can take milliseconds: keep it off the event loop
                replayed = await asyncio.get_running_loop().run_in_executor(None, replay_log, data)
            except TrustcoreError as e:
                found[name] = e
                continue
            self.eventlogs.put(ev.sha256, replayed)
            if ev.data is not None:
                await self._store.put_eventlog(ev.sha256.hex(), data, now)
            found[name] = replayed
        return found, tuple(missing)

    async def verify(
        self,
        host: Host,
        report: Report,
        body: ReportBody,
        flavors: Mapping[str, Mapping[str, Any]],
        now: float,
        *,
        defer_nonce: bool = False,
    ) -> Outcome | MissingEventlogs:
        """Verify ``report`` from ``host`` (whose id the caller matched to ``body.host_id``).

        Raises :class:`NonceRejected`; every other failure is an ``untrusted`` outcome. With
        ``defer_nonce``, the nonce is left for the caller to consume (see the module's
        docstring) and nothing here raises :class:`NonceRejected`.
        """
        ak = await self.attestation_key(host)
        if ak is None:
            return Outcome.untrusted("host.unknown")
        deferred: VerificationError | None = None
        quote: VerifiedQuote | None = None
        try:
            quote = verify_quote(
                ak,
                report.attest,
                report.signature,
                qualifying_data=report_qualifying_data(body.nonce, report.body_bytes),
                pcr_selection=PcrSelection.of(body.pcr_selection),
                pcr_values=body.pcr_values,
            )
        except VerificationError as e:
            if e.reason not in _AFTER_NONCE:
                return Outcome.untrusted(e.reason)
            deferred = e
        except TrustcoreError as e:
            return Outcome.untrusted(e.reason)
        except ValueError:
            return Outcome.untrusted("quote.pcr_selection_empty")
        logs, missing = await self._eventlogs(body, now)
        if missing:
            return MissingEventlogs(missing)
        if not defer_nonce:
            status = await self._store.consume_nonce(body.nonce, host.id, now)
            if status != "ok":
                raise NonceRejected(f"nonce.{status}")
        outcome = await self._after_nonce(host, body, quote, deferred, logs, flavors, ak, now)
        return replace(outcome, nonce_pending=True) if defer_nonce else outcome

    async def _after_nonce(  # noqa: PLR0917
        self,
        host: Host,
        body: ReportBody,
        quote: VerifiedQuote | None,
        deferred: VerificationError | None,
        logs: Mapping[str, ReplayedLog | TrustcoreError],
        flavors: Mapping[str, Mapping[str, Any]],
        ak: AttestationKey,
        now: float,
    ) -> Outcome:
        if deferred is not None or quote is None:
            # the quote selected what the body says unless the selection itself mismatched:
            # coverage of the policy's PCRs is checked before the digest (DESIGN.md's order)
            if (
                deferred is not None
                and deferred.reason != "quote.pcr_selection_mismatch"
                and not self._covers(body.pcr_selection)
            ):
                return Outcome.untrusted("quote.pcr_selection_insufficient")
            return Outcome.untrusted(deferred.reason if deferred else "quote.invalid")
        current_tag = await self._store.get_tag_certificate(host.id) if host.tags else None
        return self._after_quote(
            host, body, quote, logs, flavors, tag_context=(ak, current_tag, now)
        )

    def _covers(self, selection: Mapping[int, Iterable[int]]) -> bool:
        """Whether ``selection`` includes every PCR of the policy, bank by bank."""
        return all(pcrs <= frozenset(selection.get(alg, ())) for alg, pcrs in self._policy.items())

    def _after_quote(
        self,
        host: Host,
        body: ReportBody,
        quote: VerifiedQuote,
        logs: Mapping[str, ReplayedLog | TrustcoreError],
        flavors: Mapping[str, Mapping[str, Any]],
        *,
        tag_context: tuple[AttestationKey, bytes | None, float] | None = None,
    ) -> Outcome:
        if not self._covers(quote.pcr_selection.as_dict()):
            return Outcome.untrusted("quote.pcr_selection_insufficient")
        replayed: dict[str, ReplayedLog] = {}
        for name, log in logs.items():
            if isinstance(log, TrustcoreError):
                return Outcome("untrusted", (log.reason,), quote=quote)
            try:
                check_replay(name, log, quote)
            except VerificationError as e:
                return Outcome("untrusted", (e.reason,), quote=quote)
            replayed[name] = log
        digests = {name: body.eventlogs[name].sha256.hex() for name in replayed}
        tags = {} if tag_context is None else self._asset_tags(host, body, *tag_context)
        if isinstance(tags, VerificationError):
            return Outcome("untrusted", (tags.reason,), quote=quote, replayed=digests)
        key = self._verdict_key(digests, quote, tags, flavors)
        cached = self.verdicts.get(key) if key is not None else None
        if cached is None:
            events = tuple(e for log in replayed.values() for e in log.measured)
            evidence = VerifiedEvidence(quote, events, tags)
            result = self._flavor_hook(evidence, flavors, self._config.require_flavor)
            cached = (result, json.dumps([r.to_json() for r in result.rules]))
            if key is not None:
                self.verdicts.put(key, cached)
        result, rules_json = cached
        verdict = "untrusted" if result.reasons else "trusted"
        return Outcome(
            verdict,
            result.reasons,
            result.rules,
            result.matched,
            quote,
            digests,
            tags,
            rules_json=rules_json,
        )

    def _verdict_key(
        self,
        digests: Mapping[str, str],
        quote: VerifiedQuote,
        tags: Mapping[str, str],
        flavors: Mapping[str, Mapping[str, Any]],
    ) -> bytes | None:
        """SHA-256 of everything the flavor verdict depends on, or ``None`` (no caching) when
        the documents carry no content revision."""
        revision: tuple[str, ...] | None = getattr(flavors, "revision", None)
        if revision is None:
            return None
        names = [
            sorted(digests.items()),
            sorted(tags.items()),
            revision,
            self._config.require_flavor,
        ]
        key = hashlib.sha256(json.dumps(names, separators=(",", ":")).encode())
        for alg, bank in sorted(quote.pcr_values.items()):  # (bank, PCR, length, value) each
            for pcr, value in sorted(bank.items()):
                key.update(_PCR_ENTRY.pack(alg, pcr, len(value)) + value)
        return key.digest()

    def _asset_tags(
        self, host: Host, body: ReportBody, ak: AttestationKey, current: bytes | None, now: float
    ) -> Mapping[str, str] | VerificationError:
        """The tags the TPM vouches for, ``{}`` for a host without a tag certificate, or the
        ``assettag.*`` error: ``missing`` (no evidence), ``nvcertify_invalid``,
        ``certificate_invalid``, ``mismatch`` (NV contents, or not the current certificate)."""
        if current is None:
            return {}
        evidence = body.asset_tag
        if evidence is None or self._tag_ca is None:
            return VerificationError("no asset-tag evidence", reason="assettag.missing")
        try:
            verified = verify_asset_tag(
                ak,
                certificate=evidence.certificate,
                nv_attest=evidence.nv_attest,
                nv_signature=evidence.nv_signature,
                nonce=body.nonce,
                host_id=host.id,
                tag_ca=self._tag_ca,
                now=now,
            )
        except VerificationError as e:
            return e
        if not hmac.compare_digest(verified.certificate_sha384, hashlib.sha384(current).digest()):
            return VerificationError(
                "the TPM vouches for a tag certificate that is no longer the host's",
                reason="assettag.mismatch",
            )
        return verified.tags
