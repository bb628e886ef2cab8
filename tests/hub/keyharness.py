"""Key-broker test helpers: a host enrolled with a PolicyAuthorize binding key on a real swtpm,
that asks the real hub for releases and decrypts with its TPM; a pipeline that wraps."""

from __future__ import annotations

import base64
import contextlib
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from nodeagent.errors import TpmError
from nodeagent.tpm import ObjectBlobs
from tests.hub.harness import POLICY_PCRS, Agent, Client, HubProcess, Response
from trustcore.algorithms import TPM_ALG_SHA256
from trustcore.releasedsecret import open_content, split_sealed
from trustcore.tpm.authorize import policy_authorize_digest, tpm_name
from trustcore.tpm.pcrs import PcrSelection
from trustcore.wire import (
    Challenge,
    EventLogEvidence,
    KeyReleaseRequest,
    KeyReleaseResult,
    ReleaseAuthorization,
)
from trustplane.swtpm import SwtpmFactory


def wrap(
    pipeline: Client, secret: bytes, *, policy: str | None = None, key_id: str | None = None
) -> Response:
    body: dict[str, str] = {"optsdata": base64.b64encode(secret).decode()}
    if policy is not None:
        body["policy"] = policy
    if key_id is not None:
        body["key_id"] = key_id
    return pipeline.post("/v1/keys/wrap", body)


def annotation(pipeline: Client, secret: bytes, policy: str) -> bytes:
    resp = wrap(pipeline, secret, policy=policy)
    assert resp.status == 200, resp.body
    return base64.b64decode(resp.body["annotation"])


def policy_key(hub: HubProcess) -> bytes:
    resp = hub.client().get("/v1/enroll/policy-key")
    assert resp.status == 200, resp.body
    return base64.b64decode(resp.body["public"])


class KeyHost:
    """An agent (harness :class:`Agent`) enrolled with a binding key whose authPolicy is
    PolicyAuthorize by the hub's policy key; ``blobs`` load it again for decryption."""

    def __init__(self, agent: Agent, hub: HubProcess) -> None:
        self.agent = agent
        self.hub = hub
        authorize = policy_authorize_digest(tpm_name(policy_key(hub)))
        key, blobs = agent.device.create_binding_key(authorize)
        self.blobs = ObjectBlobs(private=blobs.private, public=blobs.public)
        agent.enroll(hub, binding_key=key)  # certified by the AK, then flushed

    @property
    def host_id(self) -> str:
        return self.agent.host_id

    def key_challenge(self) -> bytes:
        resp = self.agent.mtls(self.hub).post("/v1/keys/challenge", {})
        assert resp.status == 200, resp.body
        return Challenge.from_json(resp.body).nonce

    def release_response(
        self,
        annotations: Sequence[bytes],
        *,
        pcrs: tuple[int, ...] = POLICY_PCRS,
        advance: float = 0.0,
        nonce: bytes | None = None,
        eventlogs: Mapping[str, EventLogEvidence] | None = None,
        asset_tag_certificate: bytes | None = None,
    ) -> Response:
        nonce = self.key_challenge() if nonce is None else nonce
        self.hub.clock.advance(advance)
        report = self.agent.build_report(
            nonce, pcrs=pcrs, eventlogs=eventlogs, asset_tag_certificate=asset_tag_certificate
        )
        body = KeyReleaseRequest(report, tuple(annotations)).to_json()
        return self.agent.mtls(self.hub).post("/v1/keys/release", body)

    def release(self, annotations: Sequence[bytes], **kw: object) -> KeyReleaseResult:
        resp = self.release_response(annotations, **kw)  # type: ignore[arg-type]
        assert resp.status == 200, resp.body
        return KeyReleaseResult.from_json(resp.body)

    def decrypt(
        self,
        sealed: bytes,
        authorization: ReleaseAuthorization,
        annotation: bytes,
        *,
        pcrs: tuple[int, ...] = POLICY_PCRS,
        blobs: ObjectBlobs | None = None,
    ) -> bytes:
        """The TPM recovers the secret's AES key (RSA-OAEP through PolicyPCR + PolicyAuthorize),
        then AES-GCM opens it for ``annotation`` (raises :class:`TpmError` when the TPM refuses,
        :class:`ReleasedSecretError` when it does not open)."""
        rsa_part, iv, rest = split_sealed(sealed, 256)
        device = self.agent.device
        key = device.load_object(blobs or self.blobs)
        try:
            content_key = device.rsa_decrypt_authorized(
                key,
                PcrSelection.of({TPM_ALG_SHA256: pcrs}),
                rsa_part,
                signing_key=authorization.signing_key,
                approved_policy=authorization.approved_policy,
                signature=authorization.signature,
                policy_ref=authorization.policy_ref,
            )
        finally:
            with contextlib.suppress(TpmError):
                device.flush(key)
        return open_content(content_key, iv, rest, annotation)


def key_host(
    hub: HubProcess, factory: SwtpmFactory, workdir: Path, *, tag: str
) -> Iterator[KeyHost]:
    """A :class:`KeyHost` on a swtpm with its own EK (its own host id and names)."""
    tpm = factory.start(unique=True)
    agent = Agent(tpm, workdir)
    agent.names = (f"{tag}.test", tag, f"4c4c4544-0000-1000-8000-{tag.encode().hex()[:12]:0>12}")
    # the fake clock must not be before the fresh EK certificate's notBefore
    hub.clock.now = max(hub.clock.now, time.time() + 1)
    try:
        yield KeyHost(agent, hub)
    finally:
        agent.close()
        tpm.stop()
