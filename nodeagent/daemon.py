"""The agent daemon: one asyncio loop that enrolls, attests on schedule and survives outages.

:class:`Daemon` wires the parts together: the TPM worker thread, the hub client, the attestation
ledger, the udev watcher (for ``device:`` TCTIs), systemd notification and the watchdog. Its
loop attests at start, every ``attestation.interval`` seconds (with jitter), at once when the TPM
reappears, and sooner when the hub asks (``next_report_in``). Failures never end the loop: the
hub away (:class:`HubUnavailable`) or a TPM fault (:class:`TpmError`) mean exponential backoff
with jitter, a STATUS line saying so, and owed reports kept in the queue. An unexpected
exception from a step (a bug, an ``OSError`` or ``TrustcoreError`` nobody turned into an agent
error) is caught at the loop boundary, logged with its traceback, shown in STATUS and
``status.json`` (``agent_problem``), and retried the same way after the TPM session is reopened;
systemd's watchdog and ``Restart=on-failure`` stay the outer guard. Every step renews the
watchdog promise (:class:`~nodeagent.notify.Health`). SIGTERM and SIGINT stop it cleanly;
SIGUSR1 makes an attestation due at once.
``status.json`` in the state directory is rewritten after every step for ``trustplane-agent
status``; ``trust-report.json`` after every acknowledged report, and ``hub-jws.pem`` once per
hub key, for the OCI hook (``trustplane-agent hook``). The key socket for the ocicrypt key
provider (:class:`~nodeagent.keys.service.KeyService`, ``[keys]``) is served from the start;
it refuses unwraps until the host is enrolled. Turning errors into exit codes is the CLI's job.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import signal
import time
from collections.abc import Mapping
from typing import Any

from nodeagent import __version__
from nodeagent.attestation import Attestor, Delivered
from nodeagent.config import AgentConfig
from nodeagent.devices import TpmDeviceWatcher, TpmNode, find_tpm_devices
from nodeagent.errors import NodeAgentError, TpmError
from nodeagent.hubclient import HubClient, HubRejected, HubUnavailable
from nodeagent.keys.cache import SealedKeyCache
from nodeagent.keys.release import KeyReleaser
from nodeagent.keys.service import KeyService, KeyServiceError
from nodeagent.metrics import AgentMetrics, start_metrics_server
from nodeagent.notify import Health, Notifier, run_watchdog, watchdog_interval
from nodeagent.state import EnrollmentState, StateDir, write_atomic
from nodeagent.tpm_worker import TpmWorker
from nodeagent.tpmsession import TpmSession

log = logging.getLogger("trustplane.agent")

_SHUTDOWN_GRACE = 10.0


class Backoff:
    """Exponential backoff with full jitter between ``initial`` and ``maximum`` seconds."""

    def __init__(self, initial: float, maximum: float, rng: random.Random | None = None) -> None:
        self.initial = initial
        self.maximum = maximum
        self.failures = 0
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not secrets

    def next(self) -> float:
        ceiling = min(self.maximum, self.initial * (2**self.failures))
        self.failures += 1
        return self._rng.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        self.failures = 0


def _secs(seconds: float) -> str:
    return f"{seconds:.1f}s" if seconds < 10 else f"{seconds:.0f}s"


def _jws_kid(token: str) -> str | None:
    """The ``kid`` of a compact JWS's protected header (unverified: only to notice a new key)."""
    import base64  # noqa: PLC0415
    import json  # noqa: PLC0415

    head = token.split(".", 1)[0]
    try:
        header = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    except (ValueError, TypeError):
        return None
    kid = header.get("kid") if isinstance(header, dict) else None
    return kid if isinstance(kid, str) else None


def jittered(interval: float, jitter: float, rng: random.Random) -> float:
    """``interval`` spread by +-``jitter`` (a fraction) so hosts do not report in lockstep."""
    return interval * (1 + rng.uniform(-jitter, jitter))


class Daemon:
    """The running agent. ``await Daemon(cfg).run()`` returns after SIGTERM/SIGINT or stop()."""

    def __init__(self, cfg: AgentConfig, environ: Mapping[str, str] | None = None) -> None:
        self.cfg = cfg
        self.state = StateDir(cfg.state_dir)
        self.notifier = Notifier(environ)
        self.health = Health(first_deadline=cfg.attestation.step_timeout)
        self._watchdog_every = watchdog_interval(environ)
        self.tpm = TpmWorker(lambda: TpmSession(cfg.tpm, self.state))
        self._rng = random.Random()  # noqa: S311 - jitter, not secrets
        self._backoff = Backoff(cfg.attestation.backoff_initial, cfg.attestation.backoff_max)
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._due_reason: str | None = "start"
        self._next_due = 0.0
        self.tpm_present = True
        self.tpm_problem = ""
        self.hub_problem = ""
        self.agent_problem = ""
        self.enrollment: EnrollmentState | None = None
        self.attestor: Attestor | None = None
        self.last: Delivered | None = None
        self.last_at: float | None = None
        self._hub: HubClient | None = None
        self._ready = False
        self.cycles = 0
        self.steps = 0
        self.renewals = 0
        self._renew_now = False
        self._background: set[asyncio.Task[None]] = set()
        self.metrics = AgentMetrics()
        self.keys: KeyService | None = None  # the key socket for the ocicrypt key provider
        self._jws_kid: str | None = None
        # image-key releases (nodeagent.keys.release): the hub client and the attestor are
        # looked up at each release (made once enrolled, replaced on renewal)
        self.key_releaser = KeyReleaser(
            cfg,
            self.state,
            self.tpm,
            self._hub_client,
            lambda: self.attestor,
            on_report=self._after_release,
        )

    # --- events from outside the loop ------------------------------------------------------

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def attest_now(self, reason: str) -> None:
        """Make an attestation due at once (TPM back, operator request)."""
        self._due_reason = reason
        self._next_due = 0.0
        self._wake.set()

    def _on_device(self, action: str, node: TpmNode) -> None:
        if node.device_node != self.cfg.tpm.watched_device:
            return
        if action == "remove":
            self.tpm_present = False
            self.tpm_problem = f"{node.device_node} was removed"
            task = asyncio.get_running_loop().create_task(self.tpm.reset())
            self._background.add(task)
            task.add_done_callback(self._background.discard)
            self._wake.set()
        elif action == "add":
            self.tpm_present = True
            self.tpm_problem = ""
            self.attest_now("tpm_appeared")

    # --- the loop --------------------------------------------------------------------------

    async def run(self) -> None:
        """Run until stopped. Raises :class:`~nodeagent.state.StateError` if the state
        directory cannot be created (nothing else ends the loop but BaseExceptions)."""
        self.state.ensure()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop)
        loop.add_signal_handler(signal.SIGUSR1, self.attest_now, "requested")
        watcher = self._watch_devices(loop)
        dog = None
        if self._watchdog_every is not None:
            dog = asyncio.create_task(
                run_watchdog(self.notifier, self.health, self._watchdog_every)
            )
        metrics_server = None
        if self.cfg.metrics.listen is not None:
            host, port = self.cfg.metrics.listen
            try:
                metrics_server = await start_metrics_server(self.metrics, host, port)
            except OSError as e:
                log.warning("cannot serve metrics on %s:%d: %s", host, port, e)
        keys = await self._start_key_service()
        main = asyncio.create_task(self._loop())
        stopped = asyncio.create_task(self._stop.wait())
        try:
            await asyncio.wait({main, stopped}, return_when=asyncio.FIRST_COMPLETED)
            if main.done():  # only a BaseException ends the loop: let it end the process
                main.result()
            self.notifier.stopping()
            self.notifier.status("stopping")
            try:
                await asyncio.wait_for(asyncio.shield(main), _SHUTDOWN_GRACE)
            except TimeoutError:
                main.cancel()
        finally:
            for task in (main, dog, stopped):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            if watcher is not None:
                watcher.stop()
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1):
                loop.remove_signal_handler(sig)
            if self._hub is not None:
                await self._hub.close()
            if metrics_server is not None:
                await metrics_server.cleanup()
            if keys is not None:
                await keys.close()
            await self.tpm.close()
            self._write_status("stopped")

    def _watch_devices(self, loop: asyncio.AbstractEventLoop) -> TpmDeviceWatcher | None:
        """Follow udev for the TPM's device node; note at once if it is not there."""
        wanted = self.cfg.tpm.watched_device
        if not self.cfg.tpm.watch_devices or not wanted:
            return None
        watcher = TpmDeviceWatcher(self._on_device)
        try:
            watcher.start(loop)
            nodes = [n.device_node for n in find_tpm_devices()]
        except OSError as e:
            log.warning("cannot watch udev for TPM devices: %s", e)
            return None
        log.info("TPM devices udev knows: %s", ", ".join(nodes) or "none")
        if wanted not in nodes:
            self.tpm_present = False
            self.tpm_problem = f"{wanted} is not present"
        return watcher

    async def _loop(self) -> None:
        while not self._stop.is_set():
            # one step (enroll, or deliver the queue) may take this long before the watchdog
            # stops vouching for us
            step = self.cfg.attestation.step_timeout
            self.health.expect(step)
            try:
                delay = await self._step()
            except Exception as e:  # the loop boundary: logged with its traceback, then retried
                delay = await self._recover(e)
            self._write_status("running", next_in=delay)
            if not self._ready:
                self._ready = True
                self.notifier.ready()
            self.health.expect(delay + step)
            await self._sleep(delay)

    async def _sleep(self, delay: float) -> None:
        """Sleep ``delay`` seconds or until woken; a wake-up during the last step counts."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=max(0.0, delay))
        self._wake.clear()

    async def _recover(self, error: Exception) -> float:
        """After an unexpected exception from a step: log it with its traceback, reopen the
        TPM session, back off. Returns seconds to sleep."""
        self.agent_problem = f"{type(error).__name__}: {error}"
        self.metrics.record_failure("internal")
        log.error("unexpected error in the attestation loop", exc_info=error)
        await self.tpm.reset()
        delay = self._backoff.next()
        self.notifier.status(f"internal error, retrying in {_secs(delay)}: {self.agent_problem}")
        return delay

    async def _step(self) -> float:
        """One round: enroll if needed, queue a due report, deliver. Returns seconds to sleep."""
        self.steps += 1
        if not self.tpm_present:
            self.metrics.record_failure("tpm_absent")
            self.notifier.status(f"TPM gone ({self.tpm_problem}): not attesting, waiting for it")
            return self.cfg.attestation.interval
        try:
            if self.attestor is None:
                pending = await self._ensure_enrolled()
                if pending:
                    return self._backoff.next()
            assert self.attestor is not None
            await self._renew_if_due()
            now = time.time()
            if now >= self._next_due:
                self.attestor.enqueue(self._due_reason or "interval", self._boot_id())
                self._due_reason = None
                interval = self.cfg.attestation
                self._next_due = now + jittered(interval.interval, interval.jitter, self._rng)
            delivered = await self.attestor.drain(self._hub_client())
        except HubUnavailable as e:
            self.metrics.record_failure("hub_unreachable")
            self.hub_problem = e.message
            delay = self._backoff.next()
            self.notifier.status(f"hub unreachable, retrying in {_secs(delay)}: {e.message}")
            return delay
        except HubRejected as e:
            self.metrics.record_failure("hub_refused")
            self.hub_problem = e.message
            if e.status in (401, 403) and e.code.startswith("auth."):
                self._renew_now = True  # our client certificate is refused: enroll again
            delay = self._backoff.next()
            self.notifier.status(f"hub refused us, retrying in {_secs(delay)}: {e.message}")
            return delay
        except TpmError as e:
            self.metrics.record_failure("tpm_fault")
            self.tpm_problem = e.message
            await self.tpm.reset()
            delay = self._backoff.next()
            self.notifier.status(f"TPM fault, retrying in {_secs(delay)}: {e.message}")
            return delay
        except NodeAgentError as e:  # the loop boundary: state directory, evidence...
            self.metrics.record_failure("error")
            delay = self._backoff.next()
            self.notifier.status(f"error, retrying in {_secs(delay)}: {e.describe()}")
            return delay
        self._backoff.reset()
        self.hub_problem = self.tpm_problem = self.agent_problem = ""
        delay = self._after_delivery(delivered)
        if delivered is not None:
            await self._learn_jws_key(delivered.result.trust_report)
        return delay

    def _after_delivery(self, delivered: Delivered | None) -> float:
        now = time.time()
        if delivered is not None:
            self.cycles += 1
            self.last, self.last_at = delivered, now
            self.metrics.record_delivery(now, delivered.result.verdict)
            asked = delivered.result.next_report_in
            if asked > 0:
                self._next_due = min(self._next_due, now + asked)
            result = delivered.result
            if result.verdict != "trusted" and self.keys is not None and self.keys.cache:
                # keys released while trusted are not kept past the hub's word that we are not
                self.keys.cache.invalidate(f"the hub's verdict is {result.verdict}")
            try:  # for the OCI hook (trustplane-agent hook)
                self.state.save_trust_report(
                    result.trust_report, result.verdict, result.valid_until
                )
            except NodeAgentError as e:
                log.warning("cannot store the trust report: %s", e.message)
            self.notifier.status(
                f"attested: {result.verdict} (report {delivered.sequence}); "
                f"next in {max(0.0, self._next_due - now):.0f}s"
            )
        return max(0.0, self._next_due - now)

    def _after_release(self, delivered: Delivered) -> None:
        """A key release's report is the host's latest: keep its trust report (the OCI hook
        checks it) without counting an attestation cycle."""
        self.last, self.last_at = delivered, time.time()
        result = delivered.result
        try:
            self.state.save_trust_report(result.trust_report, result.verdict, result.valid_until)
        except NodeAgentError as e:
            log.warning("cannot store the trust report: %s", e.message)

    async def _ensure_enrolled(self) -> bool:
        """Load or run enrollment; True while the hub has not approved the host."""
        state = self.enrollment or self.state.load_enrollment()
        if state is None or state.status != "enrolled":
            self.notifier.status("enrolling with the hub")
            from nodeagent.enrollment import enroll  # noqa: PLC0415 - x509 only for enrolling

            async with HubClient(self.cfg.hub) as bootstrap:
                state = await enroll(self.cfg, self.state, self.tpm, bootstrap)
            if state.status != "enrolled":
                self.enrollment = state
                self.notifier.status(f"enrollment of {state.host_id} pending approval on the hub")
                return True
        self.enrollment = state
        self.attestor = Attestor(self.cfg, self.state, self.tpm, state.host_id)
        return False

    async def _renew_if_due(self) -> None:
        """Enroll again (same EK and AK, new TLS key certificate) when the client certificate
        is in the last ``hub.renew_fraction`` of its life, missing, or refused by the hub."""
        validity = self.state.client_cert_validity()
        due = self._renew_now or validity is None  # refused, or the certificate file is gone
        if validity is not None:
            start, end = validity
            due = due or time.time() >= end - (end - start) * self.cfg.hub.renew_fraction
        if not due:
            return
        from nodeagent.enrollment import enroll  # noqa: PLC0415

        self.notifier.status("renewing the client certificate (enrolling again)")
        # a certificate still valid goes along: the hub counts the renewal against this host's
        # budget, not against the anonymous budget of our address (which strangers can spend)
        current = validity is not None and validity[0] <= time.time() < validity[1]
        ca = self.state.hub_ca if self.state.hub_ca.exists() else self.cfg.hub.ca_file
        client = (self.state.client_cert, self.state.client_key) if current else None
        async with HubClient(self.cfg.hub, ca_file=ca, client=client) as bootstrap:
            state = await enroll(self.cfg, self.state, self.tpm, bootstrap, new_key=True)
        self._renew_now = False
        self.renewals += 1
        if self._hub is not None:
            await self._hub.close()
            self._hub = None
        self.enrollment = state
        if state.status != "enrolled":
            raise HubRejected(403, "enroll.pending", "re-enrollment is pending approval")

    # --- keys: the socket for the key provider, the hub's trust-report key -----------------

    async def _start_key_service(self) -> KeyService | None:
        """Serve ``[keys] socket``; a socket that cannot be served is logged, not fatal."""
        cache = SealedKeyCache(self.state.key_cache, self.tpm) if self.cfg.keys.cache else None
        service = KeyService(
            self.cfg.keys,
            self._key_releaser,
            cache,
            self._key_status,
            metrics=self.metrics,
            # the hub judged a release's report untrusted: report now, so that the stored
            # trust report (the OCI hook's) says so too
            on_untrusted=lambda: self.attest_now("release_refused"),
        )
        try:
            await service.start()
        except KeyServiceError as e:
            log.warning("key service not available: %s", e.message)
            return None
        self.keys = service
        return service

    def _key_releaser(self) -> KeyReleaser | None:
        """The releaser once this host is enrolled (the key socket refuses before)."""
        return self.key_releaser if self.attestor is not None else None

    def _keys_status(self) -> dict[str, Any]:
        """The key socket's counters for ``status.json``."""
        service = self.keys
        if service is None:
            return {"socket": str(self.cfg.keys.socket), "serving": False}
        stats = service.stats
        return {
            "socket": str(service.path),
            "serving": service.serving,
            "unwraps": stats.unwraps,
            "cache_hits": stats.cache_hits,
            "releases": stats.releases,
            "released": stats.released,
            "refused": stats.refused,
            "failures": stats.failures,
        }

    def _key_status(self) -> dict[str, Any]:
        last = self.last.result if self.last is not None else None
        return {
            "host_id": self.enrollment.host_id if self.enrollment else None,
            "verdict": last.verdict if last else None,
            "reasons": list(last.reasons) if last else [],
            "valid_until": last.valid_until if last else None,
            "trust_report": last.trust_report if last else None,
        }

    async def _learn_jws_key(self, token: str) -> None:
        """Store the hub's trust-report key (``hub-jws.pem``) when we have none or the
        report names another one; a failure is logged and tried again after the next report."""
        from nodeagent.trustreport import TrustReportRefused, key_id, load_public_key  # noqa: PLC0415

        kid = _jws_kid(token)
        path = self.state.hub_jws_key
        if self._jws_kid is None and path.exists():
            try:
                self._jws_kid = key_id(load_public_key(path.read_bytes()))
            except (OSError, TrustReportRefused):
                self._jws_kid = None
        if self._jws_kid is not None and self._jws_kid == kid:
            return
        try:
            served_kid, pem = await self._hub_client().trust_report_key()
            key = load_public_key(pem)
        except (HubUnavailable, HubRejected, TrustReportRefused) as e:
            log.warning("cannot learn the hub's trust-report key: %s", e.message)
            return
        if key_id(key) != served_kid:
            log.warning("the hub's trust-report key does not match its key id")
            return
        try:
            write_atomic(path, pem)
        except NodeAgentError as e:
            log.warning("cannot store the hub's trust-report key: %s", e.message)
            return
        self._jws_kid = served_kid
        log.info("stored the hub's trust-report key %s", served_kid)

    def _hub_client(self) -> HubClient:
        if self._hub is None:
            ca = self.state.hub_ca if self.state.hub_ca.exists() else self.cfg.hub.ca_file
            self._hub = HubClient(
                self.cfg.hub,
                ca_file=ca,
                client=(self.state.client_cert, self.state.client_key),
                on_round_trip=self.metrics.record_round_trip,
            )
        return self._hub

    def _boot_id(self) -> str:
        try:
            return self.cfg.evidence.boot_id.read_text().strip()
        except OSError:
            return ""

    def _write_status(self, phase: str, next_in: float | None = None) -> None:
        now = time.time()
        status: dict[str, Any] = {
            "phase": phase,
            "pid": os.getpid(),
            "agent_version": __version__,
            "updated_at": now,
            "host_id": self.enrollment.host_id if self.enrollment else None,
            "enrollment": self.enrollment.status if self.enrollment else "not enrolled",
            "tpm": "ok" if self.tpm_present and not self.tpm_problem else "fault",
            "tpm_problem": self.tpm_problem or None,
            "hub_problem": self.hub_problem or None,
            "agent_problem": self.agent_problem or None,
            "next_attestation_at": None if next_in is None else now + next_in,
            "queued_reports": len(self.attestor.ledger.queue) if self.attestor else 0,
            "last_acked_sequence": self.attestor.ledger.last_acked if self.attestor else 0,
            "cycles": self.cycles,
            "keys": self._keys_status(),
        }
        if self.last is not None:
            status["last_report"] = {
                "at": self.last_at,
                "sequence": self.last.sequence,
                "verdict": self.last.result.verdict,
                "reasons": list(self.last.result.reasons),
                "valid_until": self.last.result.valid_until,
            }
        try:
            self.state.save_status(status)
        except NodeAgentError as e:
            log.warning("cannot write the status file: %s", e.message)
        self.metrics.record_queue(status["queued_reports"])
        if self.cfg.metrics.textfile is not None:
            try:
                self.metrics.write_textfile(self.cfg.metrics.textfile)
            except OSError as e:
                log.warning("cannot write the metrics file %s: %s", self.cfg.metrics.textfile, e)
