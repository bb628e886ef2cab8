"""Building and delivering attestation reports, with a persisted queue of reports owed.

A quote proves the TPM's state *now*: evidence cannot be signed ahead of time and sent later,
because the hub's nonces are single use and expire within minutes. So what the agent queues is
not signed reports but *reports owed*: each due attestation (interval, TPM back, hub asked)
reserves the next sequence number and records when and why it was due (and what was observed:
``tpm_gone``, ``hub_unreachable``...) in ``reports.json`` before anything is sent. Delivery takes
the queue in order; for each entry it asks a fresh challenge, collects current evidence, reads
the PCRs, encodes the body once (carrying the entry's sequence, ``observed_at`` and reason),
quotes with ``SHA-256(nonce || SHA-256(body))`` and posts. An entry leaves the queue only when
the hub's ``ReportResult`` acknowledges it, and that removal is persisted before the next send:
nothing acknowledged is lost, nothing acknowledged is sent twice (the hub can also refuse a
sequence it has seen). The queue is bounded (``attestation.queue_max``): when full, the oldest
unsent entry is dropped and counted.

Event logs travel with their bytes until the hub has acknowledged a report carrying them;
after that only their SHA-256 goes. A ``ReportResult`` listing a log in ``missing_eventlogs``
(the hub did not record the report) makes the agent forget that acknowledgement and resend the
same entry at once with the data.

Asset tags: a ``ReportResult`` carrying ``tag_certificate`` (the hub's current tag certificate,
sent because the report did not carry it) makes the agent write its SHA-384 into the TPM's
asset-tag NV index, store it (``tag-certificate.der``) and, when it is new, owe a report at
once. Every report then carries the certificate and the AK's NV_Certify of that index
(qualifying data ``assettag_qualifying_data(nonce)``); if the TPM cannot certify the index
(cleared TPM), the report goes without it and the hub's answer hands the certificate over again.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from nodeagent import __version__
from nodeagent.config import AgentConfig
from nodeagent.errors import TpmError
from nodeagent.evidence import Evidence, collect_evidence
from nodeagent.hubclient import HubClient, HubRejected
from nodeagent.state import QueuedReport, ReportLedger, StateDir
from nodeagent.tpm_worker import TpmWorker
from nodeagent.tpmsession import TpmSession
from trustcore.assettag import assettag_qualifying_data, tag_certificate_digest
from trustcore.wire import (
    AssetTagEvidence,
    Challenge,
    EventLogEvidence,
    Report,
    ReportBody,
    ReportResult,
    encode_report_body,
    report_qualifying_data,
)

log = logging.getLogger("trustplane.agent.attest")

_NONCE_RETRIES = 2
_MAX_RESENDS = 2


@dataclass(frozen=True, slots=True)
class Delivered:
    """One acknowledged report: its sequence and the hub's answer."""

    sequence: int
    result: ReportResult


class Attestor:
    """Owns the report ledger of one enrolled host. Methods raise HubUnavailable, HubRejected,
    TpmError, StateError."""

    def __init__(
        self,
        cfg: AgentConfig,
        state: StateDir,
        tpm: TpmWorker,
        host_id: str,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._cfg = cfg
        self._state = state
        self._tpm = tpm
        self.host_id = host_id
        self._clock = clock
        self.ledger: ReportLedger = state.load_ledger()
        self.dropped = 0
        self._next_challenge: Challenge | None = None
        self._next_received = 0.0

    def enqueue(self, reason: str, boot_id: str = "") -> QueuedReport:
        """Reserve the next sequence number for a report owed now; persisted before returning."""
        entry = QueuedReport(
            sequence=self.ledger.next_sequence,
            observed_at=self._clock(),
            boot_id=boot_id,
            reason=reason,
        )
        self.ledger.next_sequence += 1
        self.ledger.queue.append(entry)
        while len(self.ledger.queue) > self._cfg.attestation.queue_max:
            lost = self.ledger.queue.pop(0)
            self.dropped += 1
            log.warning(
                "report queue full: dropped owed report %d (%s)", lost.sequence, lost.reason
            )
        self._state.save_ledger(self.ledger)
        return entry

    async def drain(self, hub: HubClient) -> Delivered | None:
        """Deliver every owed report in order; return the last acknowledgement (None if none)."""
        last: Delivered | None = None
        evidence: Evidence | None = None
        renumbered = False
        while self.ledger.queue:
            entry = self.ledger.queue[0]
            if evidence is None:
                evidence = await asyncio.to_thread(collect_evidence, self._cfg.evidence)
            try:
                result = await self._deliver(hub, entry, evidence)
            except HubRejected as e:
                if e.code != "report.sequence_old" or e.last_sequence is None or renumbered:
                    raise
                self._renumber_after(e.last_sequence)
                renumbered = True
                continue
            entry = self.ledger.queue[0]
            self.ledger.queue.pop(0)
            self.ledger.last_acked = max(self.ledger.last_acked, entry.sequence)
            self._state.save_ledger(self.ledger)
            last = Delivered(entry.sequence, result)
            log.info("report %d acknowledged: %s", entry.sequence, result.verdict)
            if result.tag_certificate is not None and await self._install_tag_certificate(
                result.tag_certificate
            ):
                self.enqueue("asset_tag_changed", evidence.boot_id)
        return last

    def _renumber_after(self, last: int) -> None:
        """The hub has recorded report ``last`` (sequence numbers only grow): our ledger is
        behind it (restored from a backup, or we crashed after the hub recorded a report but
        before we wrote its acknowledgement). Owed reports keep their order and facts and take
        the numbers after ``last``; the one the hub may already hold is sent again, once."""
        log.warning(
            "the hub has recorded report %d, past our owed reports %s: renumbering them from %d",
            last,
            [e.sequence for e in self.ledger.queue],
            last + 1,
        )
        self.ledger.queue = [
            replace(entry, sequence=last + 1 + i) for i, entry in enumerate(self.ledger.queue)
        ]
        self.ledger.next_sequence = last + 1 + len(self.ledger.queue)
        self.ledger.last_acked = min(self.ledger.last_acked, last)
        self._state.save_ledger(self.ledger)

    async def install_tag_certificate(self, der: bytes) -> bool:
        """:meth:`_install_tag_certificate` for the key releaser, whose reports' answers carry
        the host's new tag certificate too (nodeagent.keys.release)."""
        return await self._install_tag_certificate(der)

    async def _install_tag_certificate(self, der: bytes) -> bool:
        """Write the certificate's SHA-384 into the asset-tag NV index and store it; True when
        it differs from the stored one (then a report is owed at once). A TPM that refuses
        (an owner password is set, no NV space) is logged and the host stays untagged."""
        new = self._state.load_tag_certificate() != der
        digest = tag_certificate_digest(der)
        try:
            await self._tpm.call(lambda s: s.write_asset_tag(digest))
        except TpmError as e:
            log.warning("cannot write the asset-tag NV index: %s", e.describe())
            return False
        self._state.save_tag_certificate(der)
        log.info("asset-tag certificate %s written to the TPM", digest.hex()[:16])
        return new

    async def _deliver(self, hub: HubClient, entry: QueuedReport, ev: Evidence) -> ReportResult:
        """Send ``entry`` until the hub records it (fresh nonce on a refused nonce, logs with data
        when the hub lacks them)."""
        nonce_retries = resends = 0
        while True:
            try:
                result, sent = await self.send(hub, entry, ev)
            except HubRejected as e:
                if e.status == 409 and nonce_retries < _NONCE_RETRIES:
                    nonce_retries += 1
                    log.info("hub refused the nonce (%s): asking a new challenge", e.code)
                    continue
                raise
            missing = set(result.missing_eventlogs)
            for name, digest in sent.items():
                if name in missing or digest in missing:
                    self.ledger.acked_logs.discard(digest)
                else:
                    self.ledger.acked_logs.add(digest)
            if not missing:
                return result
            self._state.save_ledger(self.ledger)
            if resends >= _MAX_RESENDS:
                raise HubRejected(409, "eventlog.missing", f"hub keeps asking for {missing}")
            resends += 1
            log.info(
                "hub lacks event logs %s: resending report %d with data", missing, entry.sequence
            )

    async def send(
        self, hub: HubClient, entry: QueuedReport, ev: Evidence
    ) -> tuple[ReportResult, dict[str, str]]:
        """One challenge, quote and post for ``entry``; returns the answer and the logs sent
        (name -> sha256 hex)."""
        challenge, self._next_challenge = self._next_challenge, None
        max_age = 2 * self._cfg.attestation.interval  # the hub keeps it interval + nonce_ttl
        if challenge is None or time.monotonic() - self._next_received > max_age:
            challenge = await hub.challenge()
        report, sent = await self.build_report(challenge.nonce, entry, ev)
        result = await hub.report(report)
        # the hub's nonce for our next report (one request instead of two); if it has expired
        # by then, the hub refuses it (409) and _deliver asks a fresh challenge
        self._next_challenge, self._next_received = result.next_challenge, time.monotonic()
        return result, sent

    async def build_report(
        self, nonce: bytes, entry: QueuedReport, ev: Evidence
    ) -> tuple[Report, dict[str, str]]:
        """The signed report for ``entry`` under ``nonce`` (PCRs read and quoted now)."""
        logs: dict[str, EventLogEvidence] = {}
        sent: dict[str, str] = {}
        for name, data in sorted(ev.eventlogs.items()):
            digest = hashlib.sha256(data).digest()
            known = digest.hex() in self.ledger.acked_logs
            logs[name] = EventLogEvidence(sha256=digest, data=None if known else data)
            sent[name] = digest.hex()
        facts = dict(ev.facts)
        facts["observed_at"] = f"{entry.observed_at:.3f}"
        facts["report_reason"] = entry.reason
        if entry.boot_id and entry.boot_id != ev.boot_id:
            facts["observed_boot_id"] = entry.boot_id
        if self.dropped:
            facts["reports_dropped"] = str(self.dropped)

        tag_certificate = self._state.load_tag_certificate()

        def sign(session: TpmSession) -> Report:
            try:
                facts.update(session.facts())
            except TpmError as e:
                log.warning("cannot read the TPM's properties: %s", e.describe())
            asset_tag = None
            if tag_certificate is not None:
                try:
                    nv = session.certify_asset_tag(assettag_qualifying_data(nonce))
                    asset_tag = AssetTagEvidence(tag_certificate, nv.attest, nv.signature)
                except TpmError as e:
                    log.warning("cannot certify the asset-tag NV index: %s", e.describe())
            body = ReportBody(
                host_id=self.host_id,
                boot_id=ev.boot_id,
                nonce=nonce,
                pcr_selection=session.selection().as_dict(),
                pcr_values=session.pcr_read(),
                eventlogs=logs,
                missing_evidence=ev.missing,
                facts=facts,
                agent_version=__version__,
                sequence=entry.sequence,
                asset_tag=asset_tag,
            )
            body_bytes = encode_report_body(body)
            signed = session.quote(report_qualifying_data(nonce, body_bytes))
            return Report(body_bytes=body_bytes, attest=signed.attest, signature=signed.signature)

        # PCR read, encoding and quote in one turn of the TPM thread: nothing of ours runs
        # between the read and the quote.
        return await self._tpm.call(sign), sent
