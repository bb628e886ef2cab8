"""The agent's keys on one open TPM: the AK kept across restarts, the EK made when needed.

A :class:`TpmSession` is what the TPM worker thread holds: it opens a :class:`TpmDevice` on the
configured TCTI, loads the AK from the state directory (creating and storing it, 0600 and
atomically, the very first time only), and offers the few operations the daemon needs (EK
public and certificate, ActivateCredential, PCR read, quote, a new certified binding key and
decryption with it, writing and certifying the asset-tag NV index). Only the AK stays
loaded; the EK and the binding key are loaded for one operation and flushed, since small TPMs
(swtpm) have three object slots.
Every method runs on the worker thread and raises :class:`~nodeagent.errors.TpmError`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Final

from nodeagent.config import TpmConfig
from nodeagent.errors import NodeAgentError, TpmError
from nodeagent.state import StateDir, StoredAk
from nodeagent.tpm import (
    AkBlobs,
    EndorsementKey,
    KeyKind,
    LoadedKey,
    ObjectBlobs,
    SignedAttestation,
    TpmDevice,
    TpmProperties,
)
from trustcore.algorithms import BY_NAME
from trustcore.assettag import (
    ASSET_TAG_NV_ATTRIBUTES,
    ASSET_TAG_NV_INDEX,
    ASSET_TAG_NV_SIZE,
    expected_nv_public,
)
from trustcore.tpm.constants import TPMA_NV_WRITTEN
from trustcore.tpm.pcrs import PcrSelection
from trustcore.tpm.public import NvPublic, parse_nv_public
from trustcore.wire import ReleaseAuthorization, binding_qualifying_data

log = logging.getLogger("trustplane.agent.tpm")

_KINDS: Final[Mapping[str, KeyKind]] = {"ecc": "ecc256", "rsa": "rsa2048"}


class NoAkError(NodeAgentError):
    """The session was opened without creating an AK, and none is stored yet."""


@dataclass(frozen=True, slots=True)
class EkInfo:
    """The EK's marshalled TPMT_PUBLIC and its certificate (DER) when the TPM holds one."""

    public: bytes
    certificate: bytes | None


@dataclass(frozen=True, slots=True)
class BindingKey:
    """A binding key: its TPMT_PUBLIC, the blobs to store, and the AK's Certify of it."""

    public: bytes
    blobs: ObjectBlobs
    certify: SignedAttestation


class TpmSession:
    """One open TPM with the agent's AK loaded. Not thread-safe: the worker thread owns it."""

    def __init__(self, cfg: TpmConfig, state: StateDir, *, create_ak: bool = True) -> None:
        """Open the TPM and load (or, the first time, create and store) the AK.

        With ``create_ak=False`` (the read-only CLI commands) a missing AK stays missing and
        nothing is written: :attr:`has_ak` is false and what needs the AK raises
        :class:`NoAkError`.

        Raises :class:`TpmError`; :class:`~nodeagent.state.StateError` if the AK cannot be
        loaded or stored.
        """
        self._cfg = cfg
        self._device = TpmDevice(cfg.tcti)
        ak: LoadedKey | None = None
        try:
            stored = state.load_ak()
            if stored is not None:
                ak = self._device.load_ak(AkBlobs(private=stored.private, public=stored.public))
            elif create_ak:
                ak, blobs = self._device.create_ak(_KINDS[cfg.ak_algorithm])
                state.save_ak(StoredAk(cfg.ak_algorithm, blobs.public, blobs.private))
                log.info("created a new AK (%s) and stored it in %s", cfg.ak_algorithm, state.root)
        except BaseException:
            self._device.close()
            raise
        self._ak = ak
        self._properties: TpmProperties | None = None

    @property
    def has_ak(self) -> bool:
        """Whether an AK is loaded (false only for ``create_ak=False`` before any enrollment)."""
        return self._ak is not None

    @property
    def ak(self) -> LoadedKey:
        """The loaded AK; raises :class:`NoAkError` when none is stored yet."""
        if self._ak is None:
            raise NoAkError("no AK yet: `trustplane-agent run` or `enroll` creates and stores it")
        return self._ak

    @property
    def properties(self) -> TpmProperties:
        """The TPM's manufacturer, vendor and firmware (read once per open TPM)."""
        if self._properties is None:
            self._properties = self._device.properties()
        return self._properties

    def facts(self) -> dict[str, str]:
        """The TPM facts a report carries: ``tpm_manufacturer``, ``tpm_vendor``,
        ``tpm_firmware``, ``tpm_spec_revision``."""
        p = self.properties
        return {
            "tpm_manufacturer": p.manufacturer,
            "tpm_vendor": p.vendor,
            "tpm_firmware": p.firmware_version,
            "tpm_spec_revision": p.spec_revision,
        }

    @property
    def ak_public(self) -> bytes:
        """The AK's marshalled TPMT_PUBLIC."""
        return self.ak.public

    def _ek_kind(self) -> KeyKind:
        return _KINDS[self._cfg.ek_algorithm]

    @contextlib.contextmanager
    def _ek(self) -> Iterator[EndorsementKey]:
        ek = self._device.create_ek(self._ek_kind())
        try:
            yield ek
        finally:
            with contextlib.suppress(TpmError):
                self._device.flush(ek.key)

    def endorsement(self) -> EkInfo:
        """The EK's public area and certificate."""
        with self._ek() as ek:
            return EkInfo(public=ek.key.public, certificate=ek.certificate)

    def activate_credential(self, credential_blob: bytes, encrypted_secret: bytes) -> bytes:
        """ActivateCredential for the AK under the EK; returns the recovered secret."""
        with self._ek() as ek:
            return self._device.activate_credential(self.ak, ek, credential_blob, encrypted_secret)

    def selection(self) -> PcrSelection:
        return PcrSelection.of({BY_NAME[self._cfg.pcr_bank].alg_id: self._cfg.pcrs})

    def pcr_read(self) -> dict[int, dict[int, bytes]]:
        return self._device.pcr_read(self.selection())

    def quote(self, qualifying_data: bytes) -> SignedAttestation:
        return self._device.quote(self.ak, self.selection(), qualifying_data)

    # --- binding key and asset-tag NV index (nodeagent.tpm's policy features) ----------------

    def create_binding_key(self, ek_public: bytes) -> BindingKey:
        """A new binding key whose use needs PolicyPCR over this session's selection at the
        PCRs' current values, certified by the AK with ``binding_qualifying_data(ek_public,
        ak_public)``. The key is not left loaded."""
        key, blobs = self._device.create_binding_key(self._device.pcr_policy(self.selection()))
        try:
            certify = self._device.certify(
                self.ak, key, binding_qualifying_data(ek_public, self.ak.public)
            )
        finally:
            with contextlib.suppress(TpmError):
                self._device.flush(key)
        return BindingKey(key.public, blobs, certify)

    def decrypt_with_binding_key(self, blobs: ObjectBlobs, ciphertext: bytes) -> bytes:
        """RSA-OAEP decryption with the stored binding key (fails with TPM_RC_POLICY_FAIL once
        the selected PCRs changed since the key was made)."""
        key = self._device.load_object(blobs)
        try:
            return self._device.rsa_decrypt_with_binding_key(key, self.selection(), ciphertext)
        finally:
            with contextlib.suppress(TpmError):
                self._device.flush(key)

    def create_authorized_binding_key(
        self, ek_public: bytes, authorize_policy: bytes
    ) -> BindingKey:
        """A new binding key whose authPolicy is ``authorize_policy`` (PolicyAuthorize by the
        hub's policy-signing key, :func:`trustcore.tpm.authorize.policy_authorize_digest`),
        certified by the AK like :meth:`create_binding_key`. The key is not left loaded."""
        key, blobs = self._device.create_binding_key(authorize_policy)
        try:
            certify = self._device.certify(
                self.ak, key, binding_qualifying_data(ek_public, self.ak.public)
            )
        finally:
            with contextlib.suppress(TpmError):
                self._device.flush(key)
        return BindingKey(key.public, blobs, certify)

    def decrypt_authorized(
        self, blobs: ObjectBlobs, ciphertexts: list[bytes], authorization: ReleaseAuthorization
    ) -> list[bytes | TpmError]:
        """RSA-OAEP decryption of each ciphertext with a PolicyAuthorize binding key, using the
        hub's signed approval of the current PCR state (the TPM refuses in any state the hub
        did not approve). The key is loaded and the approval verified once; a decryption the
        TPM refuses is a :class:`TpmError` at its place."""
        key = self._device.load_object(blobs)
        try:
            return self._device.rsa_decrypt_authorized_many(
                key,
                self.selection(),
                ciphertexts,
                signing_key=authorization.signing_key,
                approved_policy=authorization.approved_policy,
                signature=authorization.signature,
                policy_ref=authorization.policy_ref,
            )
        finally:
            with contextlib.suppress(TpmError):
                self._device.flush(key)

    def write_asset_tag(self, digest: bytes) -> None:
        """Write ``digest`` (SHA-384 of the tag certificate) into the asset-tag NV index,
        defining it first (again, when it exists with attributes the hub would refuse)."""
        try:
            current: NvPublic | None = parse_nv_public(
                self._device.nv_read_public(ASSET_TAG_NV_INDEX).public
            )
        except TpmError:
            current = None
        wanted = parse_nv_public(expected_nv_public())
        if current is not None and (
            current.attributes & ~TPMA_NV_WRITTEN != ASSET_TAG_NV_ATTRIBUTES
            or (current.name_alg, current.auth_policy, current.data_size)
            != (wanted.name_alg, wanted.auth_policy, wanted.data_size)
        ):
            self._device.nv_undefine(ASSET_TAG_NV_INDEX)
            current = None
        if current is None:
            self._device.nv_define(ASSET_TAG_NV_INDEX, ASSET_TAG_NV_SIZE, ASSET_TAG_NV_ATTRIBUTES)
        self._device.nv_write(ASSET_TAG_NV_INDEX, digest)

    def certify_asset_tag(self, qualifying_data: bytes) -> SignedAttestation:
        """The AK's NV_Certify of the whole asset-tag index (index auth)."""
        return self._device.nv_certify(
            self.ak, ASSET_TAG_NV_INDEX, qualifying_data, size=ASSET_TAG_NV_SIZE
        )

    # --- the sealed key cache (nodeagent.keys.cache) ---------------------------------------------

    def pcr_policy(self) -> bytes:
        """The PolicyPCR digest of this session's selection at the PCRs' current values."""
        return self._device.pcr_policy(self.selection())

    def seal_to_current_pcrs(self, secret: bytes) -> tuple[ObjectBlobs, bytes]:
        """Seal ``secret`` (1 to 128 bytes) to PolicyPCR over this session's selection at the
        current values; returns the blobs to store and the policy digest they need."""
        policy = self.pcr_policy()
        return self._device.seal(policy, secret), policy

    def unseal(self, blobs: ObjectBlobs) -> bytes:
        """Unseal what :meth:`seal_to_current_pcrs` sealed; raises :class:`TpmError` with rc
        TPM_RC_POLICY_FAIL (0x99d) once the selected PCRs hold other values."""
        return self._device.unseal(blobs, self.selection())

    def close(self) -> None:
        """Flush the AK and close the TPM context (errors of a TPM that is gone are ignored)."""
        if self._ak is not None:
            with contextlib.suppress(TpmError):
                self._device.flush(self._ak)
        self._device.close()
