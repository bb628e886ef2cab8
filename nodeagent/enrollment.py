"""Enrollment with the hub: prove the AK lives in the TPM that owns the EK, get a client cert.

:func:`enroll` makes (once) the agent's mTLS key, sends ``EnrollRequest`` (EK public and
certificate, AK public, host facts, registration token, CSR), answers the hub's MakeCredential
challenge with ActivateCredential on the TPM and stores what the hub issues (client certificate,
hub CA) in the state directory. A hub that has not approved the host yet answers ``pending``;
the caller retries later. Every enrollment (renewals too) sends a new binding key with the AK's
Certify of it; its blobs are stored (``binding.json``) once the hub has enrolled the host. Its
authPolicy is PolicyAuthorize by the hub's policy-signing key (``GET /v1/enroll/policy-key``), so
it works in every PCR state the hub approves (docs/protocol.md, "Key release"); a hub without a
key broker gets the older PolicyPCR key of the PCR values at enrollment.
"""

from __future__ import annotations

import logging
import socket

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from nodeagent.config import AgentConfig
from nodeagent.evidence import read_host_facts
from nodeagent.hubclient import HubClient, HubUnavailable
from nodeagent.state import EnrollmentState, StateDir, StateError, StoredAk, write_atomic
from nodeagent.tpm_worker import TpmWorker
from nodeagent.tpmsession import BindingKey
from trustcore.tpm.authorize import policy_authorize_digest, tpm_name
from trustcore.wire import ActivateRequest, EnrollRequest, host_id_from_ek

log = logging.getLogger("trustplane.agent.enroll")


def _pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def client_key(state: StateDir) -> ec.EllipticCurvePrivateKey:
    """The agent's mTLS key (P-256), made and stored 0600 the first time.

    Raises :class:`~nodeagent.state.StateError`.
    """
    path = state.client_key
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise StateError(f"{path} is not an EC private key")
        return key
    key = ec.generate_private_key(ec.SECP256R1())
    write_atomic(path, _pem(key))
    return key


def make_csr(key: ec.EllipticCurvePrivateKey, common_name: str) -> str:
    """A PEM CSR for ``key`` (the hub replaces the subject with the host id)."""
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64])]))
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM).decode("ascii")


async def _binding_key(tpm: TpmWorker, hub: HubClient, ek_public: bytes) -> tuple[BindingKey, str]:
    """A binding key that follows legitimate reboots: authPolicy PolicyAuthorize by the hub's
    policy-signing key (``rsa2048-authorized``); from a hub without a key broker, the PolicyPCR
    key of the current PCR values (``rsa2048-pcr``)."""
    signer = await hub.policy_key()
    if signer is None:
        return await tpm.call(lambda s: s.create_binding_key(ek_public)), "rsa2048-pcr"
    policy = policy_authorize_digest(tpm_name(signer))
    key = await tpm.call(lambda s: s.create_authorized_binding_key(ek_public, policy))
    return key, "rsa2048-authorized"


async def enroll(
    cfg: AgentConfig, state: StateDir, tpm: TpmWorker, hub: HubClient, *, new_key: bool = False
) -> EnrollmentState:
    """Run enrollment to its end or to ``pending``; persist and return the outcome.

    ``new_key`` makes a fresh TLS key for the CSR (certificate renewal); it replaces the old key
    only once the hub has issued the new certificate, so a failed renewal changes nothing.

    Raises :class:`~nodeagent.hubclient.HubUnavailable`,
    :class:`~nodeagent.hubclient.HubRejected`, :class:`~nodeagent.errors.TpmError`,
    :class:`~nodeagent.state.StateError`.
    """
    key = ec.generate_private_key(ec.SECP256R1()) if new_key else client_key(state)
    ek = await tpm.call(lambda s: s.endorsement())
    ak_public = await tpm.call(lambda s: s.ak_public)
    binding, kind = await _binding_key(tpm, hub, ek.public)
    _, facts, _ = read_host_facts(cfg.evidence)
    hostname = cfg.hub.hostname or facts.get("hostname") or socket.gethostname()
    request = EnrollRequest(
        ek_public=ek.public,
        ek_certificate=ek.certificate,
        ak_public=ak_public,
        binding_public=binding.public,
        binding_certify_attest=binding.certify.attest,
        binding_certify_signature=binding.certify.signature,
        hostname=hostname,
        dmi_uuid=facts.get("dmi_uuid"),
        node_name=cfg.hub.node_name,
        registration_token=cfg.hub.registration_token,
        csr=make_csr(key, hostname),
    )
    host_id = host_id_from_ek(ek.public)
    challenge = await hub.enroll(request)
    if challenge.host_id != host_id:
        raise HubUnavailable(f"hub answered for host {challenge.host_id}, expected {host_id}")
    if challenge.status == "pending":
        outcome = EnrollmentState(host_id=host_id, status="pending")
        state.save_enrollment(outcome)
        log.info("enrollment of %s is pending approval on the hub", host_id)
        return outcome
    blob, secret = challenge.credential_blob, challenge.encrypted_secret
    if blob is None or secret is None:
        raise HubUnavailable("hub sent a challenge without credential blob or secret")
    if challenge.handle is None:
        raise HubUnavailable("hub sent a challenge without a handle (a hub older than this agent)")
    recovered = await tpm.call(lambda s: s.activate_credential(blob, secret))
    enrollment = await hub.activate(
        ActivateRequest(host_id=host_id, secret=recovered, handle=challenge.handle)
    )
    if enrollment.status != "enrolled" or enrollment.client_certificate is None:
        outcome = EnrollmentState(host_id=host_id, status="pending")
        state.save_enrollment(outcome)
        return outcome
    outcome = EnrollmentState(host_id=host_id, status="enrolled")
    state.save_binding(StoredAk(kind, binding.blobs.public, binding.blobs.private))
    if new_key:  # the key and its certificate are replaced one after the other
        write_atomic(state.client_key, _pem(key))
    state.save_enrollment(
        outcome, cert_pem=enrollment.client_certificate, ca_pem=enrollment.ca_certificate
    )
    log.info("enrolled as host %s", host_id)
    return outcome
