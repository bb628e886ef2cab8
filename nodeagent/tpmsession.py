"""The agent's keys on one open TPM: the AK kept across restarts, the EK made when needed.

A :class:`TpmSession` is what the TPM worker thread holds: it opens a :class:`TpmDevice` on the
configured TCTI, loads the AK from the state directory (creating and storing it, 0600 and
atomically, the very first time only), and offers the few operations the daemon needs (EK
public and certificate, ActivateCredential, PCR read, quote). Only the AK stays loaded; the EK is
created for one operation and flushed, since small TPMs (swtpm) have three object slots.
Every method runs on the worker thread and raises :class:`~nodeagent.errors.TpmError`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Final

from nodeagent.config import TpmConfig
from nodeagent.errors import TpmError
from nodeagent.state import StateDir, StoredAk
from nodeagent.tpm import AkBlobs, EndorsementKey, KeyKind, SignedAttestation, TpmDevice
from trustcore.algorithms import BY_NAME
from trustcore.tpm.pcrs import PcrSelection

log = logging.getLogger("trustplane.agent.tpm")

_KINDS: Final[Mapping[str, KeyKind]] = {"ecc": "ecc256", "rsa": "rsa2048"}


@dataclass(frozen=True, slots=True)
class EkInfo:
    """The EK's marshalled TPMT_PUBLIC and its certificate (DER) when the TPM holds one."""

    public: bytes
    certificate: bytes | None


class TpmSession:
    """One open TPM with the agent's AK loaded. Not thread-safe: the worker thread owns it."""

    def __init__(self, cfg: TpmConfig, state: StateDir) -> None:
        """Open the TPM and load (or, the first time, create and store) the AK.

        Raises :class:`TpmError`; :class:`~nodeagent.state.StateError` if the AK cannot be stored.
        """
        self._cfg = cfg
        self._device = TpmDevice(cfg.tcti)
        try:
            stored = state.load_ak()
            if stored is None:
                ak, blobs = self._device.create_ak(_KINDS[cfg.ak_algorithm])
                state.save_ak(StoredAk(cfg.ak_algorithm, blobs.public, blobs.private))
                log.info("created a new AK (%s) and stored it in %s", cfg.ak_algorithm, state.root)
            else:
                ak = self._device.load_ak(AkBlobs(private=stored.private, public=stored.public))
        except BaseException:
            self._device.close()
            raise
        self.ak = ak

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

    def close(self) -> None:
        """Flush the AK and close the TPM context (errors of a TPM that is gone are ignored)."""
        with contextlib.suppress(TpmError):
            self._device.flush(self.ak)
        self._device.close()
