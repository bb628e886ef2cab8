"""A real hub on 127.0.0.1 (TLS, its own event loop thread) and a real swtpm-backed agent.

Nothing is mocked: the hub is :func:`hub.app.create_app` served by :func:`hub.server.start_hub`
with the state directory ``trustplane-hub init`` makes; the agent's evidence comes from a swtpm
through :class:`nodeagent.tpm.TpmDevice`. Only the clock is injected, so tests can move time.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import ssl
import threading
import time
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from hub.app import create_app
from hub.config import HubConfig, StateConfig, load_config
from hub.pki import certificate_pem, issue_client_certificate
from hub.server import RunningHub, start_hub
from hub.state import STATE, HubState
from hub.statedir import create_state_dir, new_token, store_target
from hub.store import HostFacts, HostKeys, Store
from nodeagent.tpm import EndorsementKey, LoadedKey, TpmDevice
from trustcore.algorithms import TPM_ALG_SHA256
from trustcore.assettag import ASSET_TAG_NV_INDEX, ASSET_TAG_NV_SIZE, assettag_qualifying_data
from trustcore.tpm.pcrs import PcrSelection
from trustcore.wire import (
    ActivateRequest,
    AssetTagEvidence,
    Challenge,
    EnrollChallenge,
    Enrollment,
    EnrollRequest,
    EventLogEvidence,
    Report,
    ReportBody,
    binding_qualifying_data,
    encode_report_body,
    host_id_from_ek,
    report_qualifying_data,
)
from trustplane.swtpm import Swtpm

T = TypeVar("T")
POLICY_PCRS = tuple(range(8))


class FakeClock:
    """The hub's clock: starts at the real time, moves only when told."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Response:
    status: int
    body: Any

    @property
    def code(self) -> str | None:
        if isinstance(self.body, dict) and isinstance(self.body.get("error"), dict):
            return self.body["error"].get("code")
        return None


class Client:
    """A small HTTPS client: hub CA trusted, optional client certificate and bearer token."""

    def __init__(
        self,
        port: int,
        ca_file: Path,
        *,
        cert: tuple[Path, Path] | None = None,
        token: str | None = None,
    ) -> None:
        self.port = port
        self.ctx = ssl.create_default_context(cafile=str(ca_file))
        if cert is not None:
            self.ctx.load_cert_chain(str(cert[0]), str(cert[1]))
        self.token = token

    def request(
        self,
        method: str,
        path: str,
        body: object = None,
        *,
        raw: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=self.ctx, timeout=30)
        hdrs = dict(headers or {})
        if self.token is not None:
            hdrs["Authorization"] = f"Bearer {self.token}"
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        if data is not None:
            hdrs.setdefault("Content-Type", "application/json")
        try:
            conn.request(method, path, body=data, headers=hdrs)
            resp = conn.getresponse()
            payload = resp.read()
        finally:
            conn.close()
        try:
            parsed = json.loads(payload) if payload else None
        except ValueError:
            parsed = payload
        return Response(resp.status, parsed)

    def post(self, path: str, body: object = None, **kw: Any) -> Response:
        return self.request("POST", path, {} if body is None else body, **kw)

    def get(self, path: str, **kw: Any) -> Response:
        return self.request("GET", path, **kw)


class HubProcess:
    """The hub application on a private event loop thread, serving TLS on a free port."""

    def __init__(
        self,
        config: HubConfig,
        clock: FakeClock,
        *,
        extra_routes: Callable[[web.Application], None] | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.app = create_app(config, clock=clock)
        if extra_routes is not None:
            extra_routes(self.app)
        self.running: RunningHub = self.call(start_hub(self.app, config, port=0))

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=60)

    @property
    def state(self) -> HubState:
        return self.app[STATE]

    @property
    def port(self) -> int:
        return self.running.port

    @property
    def ca_file(self) -> Path:
        return self.config.state.dir / "ca.pem"

    def client(self, **kw: Any) -> Client:
        return Client(self.port, self.ca_file, **kw)

    def token(self, role: str, name: str = "t") -> str:
        token, digest = new_token()
        self.call(self.state.store.add_token(digest, role, name, self.clock()))
        return token

    def stop(self) -> None:
        self.call(self.running.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


def make_state(tmp: Path, *, database: str = "sqlite", **sections: Mapping[str, Any]) -> HubConfig:
    """A fresh state directory (as ``init`` makes it) and a config that points at it (and at
    ``database``: ``sqlite`` or a PostgreSQL URL)."""
    state_dir = tmp / "hub-state"
    create_state_dir(state_dir, ["hub.test"], time.time())

    async def migrate() -> None:
        store = await Store.open(store_target(state_dir, database))
        await store.close()

    asyncio.run(migrate())
    overrides: dict[str, Any] = {"server": {"listen": "127.0.0.1:0"}, **sections}
    config = load_config(tmp / "absent.toml", overrides=overrides)
    return replace(config, state=StateConfig(dir=state_dir, database=database))


class Agent:
    """One host: a swtpm with its EK, an AK, a TLS key; talks to the hub like the agent does."""

    def __init__(self, tpm: Swtpm, workdir: Path) -> None:
        self.tpm = tpm
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.device = TpmDevice(tpm.tcti)
        # swtpm holds 3 transient objects: keep only the AK loaded; the EK is recreated (it is
        # deterministic) when ActivateCredential needs it.
        self.ek: EndorsementKey = self.device.create_ek("rsa2048")
        self.device.flush(self.ek.key)
        self.ak, _ = self.device.create_ak("ecc256")
        self.tls_key = ec.generate_private_key(ec.SECP256R1())
        # what it says of itself at enrollment (hostname, node name, DMI UUID); hosts with their
        # own EK get names of their own (running_agent), since names are unique among hosts
        self.names = ("node-1.test", "node-1", "4c4c4544-0000-1000-8000-000000000001")
        self.host_id = ""
        self.cert_files: tuple[Path, Path] | None = None
        self.boot_id = "0f" * 16
        self.sequence = 0

    def close(self) -> None:
        self.device.close()

    def csr(self) -> str:
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "agent")]))
            .sign(self.tls_key, hashes.SHA256())
        )
        return csr.public_bytes(serialization.Encoding.PEM).decode()

    def enroll_request(
        self,
        *,
        token: str | None = None,
        with_cert: bool = True,
        binding_qd: bytes | None = None,
        binding_key: LoadedKey | None = None,
        hostname: str | None = None,
        node_name: str | None = None,
        dmi_uuid: str | None = None,
    ) -> EnrollRequest:
        # the binding key: an RSA decryption key usable only under PolicyPCR of the policy PCRs
        # (or, for refusal tests, whatever key is given; it is flushed after the Certify)
        binding = (
            binding_key
            or self.device.create_binding_key(
                self.device.pcr_policy(PcrSelection.of({TPM_ALG_SHA256: POLICY_PCRS}))
            )[0]
        )
        qd = binding_qualifying_data(self.ek.key.public, self.ak.public)
        try:
            certify = self.device.certify(
                self.ak, binding, qd if binding_qd is None else binding_qd
            )
        finally:
            self.device.flush(binding)
        return EnrollRequest(
            ek_public=self.ek.key.public,
            ak_public=self.ak.public,
            hostname=hostname or self.names[0],
            ek_certificate=self.ek.certificate if with_cert else None,
            binding_public=binding.public,
            binding_certify_attest=certify.attest,
            binding_certify_signature=certify.signature,
            dmi_uuid=dmi_uuid or self.names[2],
            node_name=node_name or self.names[1],
            registration_token=token,
            csr=self.csr(),
        )

    def activate(self, challenge: EnrollChallenge) -> bytes:
        assert challenge.credential_blob is not None
        assert challenge.encrypted_secret is not None
        ek = self.device.create_ek("rsa2048")
        try:
            return self.device.activate_credential(
                self.ak, ek, challenge.credential_blob, challenge.encrypted_secret
            )
        finally:
            self.device.flush(ek.key)

    def enroll(self, hub: HubProcess, **kw: Any) -> Enrollment:
        """The whole enrollment: request, MakeCredential challenge, activation, certificate."""
        anon = hub.client()
        resp = anon.post("/v1/enroll", self.enroll_request(**kw).to_json())
        assert resp.status == 200, resp.body
        challenge = EnrollChallenge.from_json(resp.body)
        assert challenge.status == "challenge", resp.body
        secret = self.activate(challenge)
        resp = anon.post(
            "/v1/enroll/activate",
            ActivateRequest(challenge.host_id, secret, challenge.handle or b"").to_json(),
        )
        assert resp.status == 200, resp.body
        enrollment = Enrollment.from_json(resp.body)
        assert enrollment.client_certificate is not None
        self._store_certificate(enrollment.host_id, enrollment.client_certificate)
        return enrollment

    def enroll_direct(self, hub: HubProcess) -> None:
        """Bind this agent's keys in the hub's store and issue its certificate, skipping the
        MakeCredential round trip (for tests about attestation, not enrollment)."""
        host_id = host_id_from_ek(self.ek.key.public)
        keys = HostKeys(host_id, self.ek.key.public, self.ak.public, None, None, ek_verified=False)

        cert = issue_client_certificate(hub.state.keys.ca, self.csr(), host_id, hub.clock())

        async def bind() -> None:
            store = hub.state.store
            await store.register_host(
                host_id=host_id,
                state="approved",
                hostname="direct",
                node_name="direct",
                dmi_uuid=None,
                now=hub.clock(),
            )
            await store.complete_enrollment(
                keys,
                HostFacts("direct", "direct", None),
                cert_serial=format(cert.serial_number, "x"),
            )

        hub.call(bind())
        self._store_certificate(host_id, certificate_pem(cert))

    def _store_certificate(self, host_id: str, pem: str) -> None:
        self.host_id = host_id
        cert = self.workdir / "agent.pem"
        key = self.workdir / "agent.key"
        cert.write_text(pem)
        key.write_bytes(
            self.tls_key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        self.cert_files = (cert, key)

    def mtls(self, hub: HubProcess) -> Client:
        assert self.cert_files is not None
        return hub.client(cert=self.cert_files)

    def challenge(self, hub: HubProcess) -> bytes:
        resp = self.mtls(hub).post("/v1/challenge", {})
        assert resp.status == 200, resp.body
        return Challenge.from_json(resp.body).nonce

    def build_report(
        self,
        nonce: bytes,
        *,
        pcrs: tuple[int, ...] = POLICY_PCRS,
        eventlogs: Mapping[str, EventLogEvidence] | None = None,
        tamper_values: bool = False,
        ak: LoadedKey | None = None,
        asset_tag_certificate: bytes | None = None,
    ) -> Report:
        """A signed report; with ``asset_tag_certificate``, also the AK's NV certify of the
        asset-tag index (which the test wrote) and that certificate."""
        selection = PcrSelection.of({TPM_ALG_SHA256: pcrs})
        asset_tag = None
        if asset_tag_certificate is not None:
            nv = self.device.nv_certify(
                ak or self.ak,
                ASSET_TAG_NV_INDEX,
                assettag_qualifying_data(nonce),
                size=ASSET_TAG_NV_SIZE,
            )
            asset_tag = AssetTagEvidence(asset_tag_certificate, nv.attest, nv.signature)
        values = self.device.pcr_read(selection)
        if tamper_values:
            values[TPM_ALG_SHA256][pcrs[-1]] = b"\x5a" * 32
        self.sequence += 1
        body = ReportBody(
            host_id=self.host_id,
            boot_id=self.boot_id,
            nonce=nonce,
            pcr_selection={TPM_ALG_SHA256: pcrs},
            pcr_values=values,
            eventlogs=dict(eventlogs or {}),
            agent_version="test",
            sequence=self.sequence,
            asset_tag=asset_tag,
        )
        body_bytes = encode_report_body(body)
        quote = self.device.quote(
            ak or self.ak, selection, report_qualifying_data(nonce, body_bytes)
        )
        return Report(body_bytes, quote.attest, quote.signature)

    def send(self, hub: HubProcess, report: Report) -> Response:
        return self.mtls(hub).post("/v1/report", report.to_json())

    def attest(self, hub: HubProcess, **kw: Any) -> Response:
        return self.send(hub, self.build_report(self.challenge(hub), **kw))
