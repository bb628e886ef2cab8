"""Synchronous access to one TPM through tpm2-pytss (ESAPI).

:class:`TpmDevice` is the only place in the agent that imports ``tpm2_pytss``: tpm2-pytss values
stay inside it, and callers get plain bytes and frozen dataclasses. Keys loaded in the TPM are
represented by :class:`LoadedKey` (an ESYS handle number meaningful only to the device that made
it, plus the key's public area and name). Every TPM software stack exception becomes a
:class:`~nodeagent.errors.TpmError`.

What is here: EKs from the TCG EK Credential Profile default templates (RSA-2048 L-1, ECC P-256
L-2) and their certificates; an AK (restricted signing key, ECC P-256 or RSA-2048) under an ECC
P-256 SRK in the owner hierarchy, with its private and public blobs so the same AK can be loaded
again after a restart; ActivateCredential with the EK's PolicySecret(TPM_RH_ENDORSEMENT) session;
Quote, PCR read and extend, Certify, NV_ReadPublic and NV_Certify; PCR policies: the binding
key (an RSA-2048 OAEP decryption key under the SRK whose use needs a PolicyPCR session, its
admin role (Certify) keeping the empty password), RSA_Decrypt with it, sealing a secret to a
PCR policy (current or predicted values: the policy digest is
:func:`trustcore.tpm.policy.policy_pcr_digest`) and unsealing it, and a trial session's
PolicyGetDigest to check that software digest against the TPM; NV define, write, read and
undefine in the owner hierarchy.

What is not: the async owner-thread wrapper the daemon runs this class behind (one thread owns
the TPM context), and deciding which PCR values to seal to. The class is not thread-safe.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, Self

from tpm2_pytss import (
    ESAPI,
    ESYS_TR,
    TPM2_ALG,
    TPM2_CAP,
    TPM2_ECC,
    TPM2_SE,
    TPM2B_ENCRYPTED_SECRET,
    TPM2B_ID_OBJECT,
    TPM2B_NV_PUBLIC,
    TPM2B_PRIVATE,
    TPM2B_PUBLIC,
    TPM2B_SENSITIVE_CREATE,
    TPMA_OBJECT,
    TPML_DIGEST_VALUES,
    TPML_PCR_SELECTION,
    TPMS_ECC_PARMS,
    TPMS_KEYEDHASH_PARMS,
    TPMS_NV_PUBLIC,
    TPMS_RSA_PARMS,
    TPMS_SCHEME_HASH,
    TPMS_SENSITIVE_CREATE,
    TPMT_ECC_SCHEME,
    TPMT_KDF_SCHEME,
    TPMT_KEYEDHASH_SCHEME,
    TPMT_PUBLIC,
    TPMT_RSA_DECRYPT,
    TPMT_RSA_SCHEME,
    TPMT_SIG_SCHEME,
    TPMT_SIGNATURE,
    TPMT_SYM_DEF,
    TPMT_SYM_DEF_OBJECT,
    TPMU_ASYM_SCHEME,
    TPMU_PUBLIC_PARMS,
    TPMU_SYM_KEY_BITS,
    TPMU_SYM_MODE,
    TSS2_Exception,
)
from tpm2_pytss.utils import NoSuchIndex, NVReadEK, create_ek_template

from nodeagent.errors import TpmError
from trustcore.algorithms import HASH_ALGORITHMS, TPM_ALG_SHA256, digest
from trustcore.errors import ParseError
from trustcore.tpm.constants import (
    TPM_PT_FIRMWARE_VERSION_1,
    TPM_PT_FIRMWARE_VERSION_2,
    TPM_PT_MANUFACTURER,
    TPM_PT_REVISION,
    TPM_PT_VENDOR_STRING_1,
    TPM_PT_VENDOR_STRING_4,
)
from trustcore.tpm.pcrs import PcrSelection, parse_pcr_selection
from trustcore.tpm.policy import PolicyError, pcr_values_digest, policy_pcr_digest

__all__ = [
    "EK_CERT_INDEX",
    "AkBlobs",
    "EndorsementKey",
    "KeyKind",
    "LoadedKey",
    "NvPublicInfo",
    "ObjectBlobs",
    "SignedAttestation",
    "TpmDevice",
    "TpmProperties",
]

KeyKind = Literal["ecc256", "rsa2048"]

# TCG EK Credential Profile: NV indices of the low-range EK certificates.
EK_CERT_INDEX: Final[dict[KeyKind, int]] = {"rsa2048": 0x01C00002, "ecc256": 0x01C0000A}
_EK_TEMPLATE_NAME: Final[dict[KeyKind, str]] = {"rsa2048": "EK-RSA2048", "ecc256": "EK-ECC256"}
_NULL_SCHEME: Final = TPMT_SIG_SCHEME(scheme=TPM2_ALG.NULL)
_PCR_READ_ROUNDS: Final = 64  # each TPM2_PCR_Read returns at most 8 values
_MAX_PCR: Final = 31  # ESYS_TR.PCR0 .. ESYS_TR.PCR31


@dataclass(frozen=True, slots=True)
class LoadedKey:
    """A key loaded in one :class:`TpmDevice`: the handle is meaningless elsewhere."""

    handle: int
    public: bytes  # TPMT_PUBLIC
    name: bytes


@dataclass(frozen=True, slots=True)
class EndorsementKey:
    key: LoadedKey
    kind: KeyKind
    certificate: bytes | None  # DER, from the EK certificate NV index when present


@dataclass(frozen=True, slots=True)
class AkBlobs:
    """What the caller stores (0600) to load the same AK after a restart."""

    private: bytes  # TPM2B_PRIVATE
    public: bytes  # TPM2B_PUBLIC


ObjectBlobs = AkBlobs  # any object made under the SRK: binding keys, sealed secrets


@dataclass(frozen=True, slots=True)
class SignedAttestation:
    """A TPMS_ATTEST and the TPMT_SIGNATURE over it, as the TPM marshalled them."""

    attest: bytes
    signature: bytes


@dataclass(frozen=True, slots=True)
class NvPublicInfo:
    public: bytes  # TPMS_NV_PUBLIC
    name: bytes


@dataclass(frozen=True, slots=True)
class TpmProperties:
    """Who made the TPM and which firmware it runs (TPM2_GetCapability, fixed properties).

    ``manufacturer`` is the TCG vendor id as text (``IBM``, ``INTC``, ``IFX``, ``NTC``...),
    ``vendor`` the four vendor strings joined, ``firmware_version`` the two firmware-version
    words as ``a.b.c.d`` (high and low 16 bits of each), as TPM vendors print them.
    """

    manufacturer: str
    vendor: str
    firmware_version: str
    spec_revision: str


def _ascii_word(value: int) -> str:
    return value.to_bytes(4, "big").decode("ascii", "replace").replace("\0", "")


def _rc_of(exc: TSS2_Exception) -> int:
    return int(exc.rc)


@contextlib.contextmanager
def _tpm(operation: str) -> Iterator[None]:
    """Turn tpm2-pytss failures into :class:`TpmError` for ``operation``."""
    try:
        yield
    except TSS2_Exception as exc:
        raise TpmError(operation, _rc_of(exc), str(exc)) from exc
    except NoSuchIndex as exc:
        raise TpmError(operation, 0x18B, f"NV index 0x{exc.index:08x} is not defined") from exc
    except ParseError as exc:  # the TPM answered with bytes trustcore cannot decode
        raise TpmError(operation, 0, exc.describe()) from exc
    except PolicyError as exc:  # PCR values that cannot make a policy digest
        raise TpmError(operation, 0, exc.describe()) from exc


def _srk_template() -> Any:  # noqa: ANN401 - tpm2-pytss values stay untyped inside this module
    """TCG provisioning guidance SRK: ECC P-256 restricted decryption key, AES-128-CFB."""
    return TPM2B_PUBLIC(
        publicArea=TPMT_PUBLIC(
            type=TPM2_ALG.ECC,
            nameAlg=TPM2_ALG.SHA256,
            objectAttributes=TPMA_OBJECT.FIXEDTPM
            | TPMA_OBJECT.FIXEDPARENT
            | TPMA_OBJECT.SENSITIVEDATAORIGIN
            | TPMA_OBJECT.USERWITHAUTH
            | TPMA_OBJECT.NODA
            | TPMA_OBJECT.RESTRICTED
            | TPMA_OBJECT.DECRYPT,
            parameters=TPMU_PUBLIC_PARMS(
                eccDetail=TPMS_ECC_PARMS(
                    symmetric=TPMT_SYM_DEF_OBJECT(
                        algorithm=TPM2_ALG.AES,
                        keyBits=TPMU_SYM_KEY_BITS(aes=128),
                        mode=TPMU_SYM_MODE(aes=TPM2_ALG.CFB),
                    ),
                    scheme=TPMT_ECC_SCHEME(scheme=TPM2_ALG.NULL),
                    curveID=TPM2_ECC.NIST_P256,
                    kdf=TPMT_KDF_SCHEME(scheme=TPM2_ALG.NULL),
                )
            ),
        )
    )


_AK_ATTRIBUTES: Final = (
    TPMA_OBJECT.FIXEDTPM
    | TPMA_OBJECT.FIXEDPARENT
    | TPMA_OBJECT.SENSITIVEDATAORIGIN
    | TPMA_OBJECT.USERWITHAUTH
    | TPMA_OBJECT.NODA
    | TPMA_OBJECT.RESTRICTED
    | TPMA_OBJECT.SIGN_ENCRYPT
)


def _ak_template(kind: KeyKind) -> Any:  # noqa: ANN401 - tpm2-pytss value
    """A restricted signing key: ECDSA-SHA256 on P-256 or RSASSA-SHA256 with RSA-2048."""
    null_sym = TPMT_SYM_DEF_OBJECT(algorithm=TPM2_ALG.NULL)
    if kind == "ecc256":
        kind_type = TPM2_ALG.ECC
        parameters = TPMU_PUBLIC_PARMS(
            eccDetail=TPMS_ECC_PARMS(
                symmetric=null_sym,
                scheme=TPMT_ECC_SCHEME(
                    scheme=TPM2_ALG.ECDSA,
                    details=TPMU_ASYM_SCHEME(ecdsa=TPMS_SCHEME_HASH(hashAlg=TPM2_ALG.SHA256)),
                ),
                curveID=TPM2_ECC.NIST_P256,
                kdf=TPMT_KDF_SCHEME(scheme=TPM2_ALG.NULL),
            )
        )
    elif kind == "rsa2048":
        kind_type = TPM2_ALG.RSA
        parameters = TPMU_PUBLIC_PARMS(
            rsaDetail=TPMS_RSA_PARMS(
                symmetric=null_sym,
                scheme=TPMT_RSA_SCHEME(
                    scheme=TPM2_ALG.RSASSA,
                    details=TPMU_ASYM_SCHEME(rsassa=TPMS_SCHEME_HASH(hashAlg=TPM2_ALG.SHA256)),
                ),
                keyBits=2048,
                exponent=0,
            )
        )
    else:
        raise ValueError(f"unknown AK kind {kind!r}")
    return TPM2B_PUBLIC(
        publicArea=TPMT_PUBLIC(
            type=kind_type,
            nameAlg=TPM2_ALG.SHA256,
            objectAttributes=_AK_ATTRIBUTES,
            parameters=parameters,
        )
    )


def _selection(selection: PcrSelection) -> Any:  # noqa: ANN401 - tpm2-pytss value
    value, _ = TPML_PCR_SELECTION.unmarshal(selection.marshal())
    return value


# The binding key: usable (RSA_Decrypt, user role) only through its policy (USERWITHAUTH clear);
# Certify (admin role, ADMINWITHPOLICY clear) works with its empty password.
BINDING_KEY_ATTRIBUTES: Final = (
    TPMA_OBJECT.FIXEDTPM
    | TPMA_OBJECT.FIXEDPARENT
    | TPMA_OBJECT.SENSITIVEDATAORIGIN
    | TPMA_OBJECT.NODA
    | TPMA_OBJECT.DECRYPT
)
SEALED_ATTRIBUTES: Final = TPMA_OBJECT.FIXEDTPM | TPMA_OBJECT.FIXEDPARENT | TPMA_OBJECT.NODA
_OAEP_SHA256: Final = TPMT_RSA_DECRYPT(
    scheme=TPM2_ALG.OAEP,
    details=TPMU_ASYM_SCHEME(oaep=TPMS_SCHEME_HASH(hashAlg=TPM2_ALG.SHA256)),
)
MAX_SEALED_BYTES: Final = 128  # MAX_SYM_DATA
_POLICY_ALG: Final = TPM2_ALG.SHA256
_POLICY_SIZE: Final = 32


def _check_policy(policy_digest: bytes) -> None:
    if len(policy_digest) != _POLICY_SIZE:
        raise ValueError(f"a SHA-256 policy digest has 32 bytes, not {len(policy_digest)}")


def _binding_template(policy_digest: bytes) -> Any:  # noqa: ANN401 - tpm2-pytss value
    """RSA-2048, OAEP with SHA-256, not restricted, authPolicy = ``policy_digest``."""
    return TPM2B_PUBLIC(
        publicArea=TPMT_PUBLIC(
            type=TPM2_ALG.RSA,
            nameAlg=_POLICY_ALG,
            objectAttributes=BINDING_KEY_ATTRIBUTES,
            authPolicy=policy_digest,
            parameters=TPMU_PUBLIC_PARMS(
                rsaDetail=TPMS_RSA_PARMS(
                    symmetric=TPMT_SYM_DEF_OBJECT(algorithm=TPM2_ALG.NULL),
                    scheme=TPMT_RSA_SCHEME(
                        scheme=TPM2_ALG.OAEP,
                        details=TPMU_ASYM_SCHEME(oaep=TPMS_SCHEME_HASH(hashAlg=TPM2_ALG.SHA256)),
                    ),
                    keyBits=2048,
                    exponent=0,
                )
            ),
        )
    )


def _sealed_template(policy_digest: bytes) -> Any:  # noqa: ANN401 - tpm2-pytss value
    """A keyed-hash data object (sealed secret) whose only auth is ``policy_digest``."""
    return TPM2B_PUBLIC(
        publicArea=TPMT_PUBLIC(
            type=TPM2_ALG.KEYEDHASH,
            nameAlg=_POLICY_ALG,
            objectAttributes=SEALED_ATTRIBUTES,
            authPolicy=policy_digest,
            parameters=TPMU_PUBLIC_PARMS(
                keyedHashDetail=TPMS_KEYEDHASH_PARMS(
                    scheme=TPMT_KEYEDHASH_SCHEME(scheme=TPM2_ALG.NULL)
                )
            ),
        )
    )


class TpmDevice:
    """One open TPM context (ESAPI over a TCTI such as ``swtpm:host=127.0.0.1,port=2321`` or
    ``device:/dev/tpmrm0``). Close it (or use it as a context manager) to release the TPM."""

    def __init__(self, tcti: str) -> None:
        """Open the TPM; raises :class:`TpmError` when the TCTI cannot be loaded or reached."""
        with _tpm("open"):
            self._ectx = ESAPI(tcti)

    def close(self) -> None:
        """Close the context (keys this device loaded stay loaded until the TPM resets or the
        resource manager drops them; flush them first when that matters)."""
        self._ectx.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- keys ------------------------------------------------------------------------------

    def _loaded(self, handle: Any) -> LoadedKey:  # noqa: ANN401 - ESYS_TR
        public, name, _ = self._ectx.read_public(handle)
        return LoadedKey(int(handle), public.marshal()[2:], bytes(name))

    def create_ek(self, kind: KeyKind = "rsa2048") -> EndorsementKey:
        """Create the EK from the TCG default template (honouring template and nonce NV
        indices if the manufacturer wrote them) and read its certificate when present.

        Raises :class:`TpmError`.
        """
        with _tpm("create_ek"):
            certificate, template = create_ek_template(
                _EK_TEMPLATE_NAME[kind], NVReadEK(self._ectx)
            )
            handle, *_ = self._ectx.create_primary(
                TPM2B_SENSITIVE_CREATE(), template, ESYS_TR.ENDORSEMENT
            )
            return EndorsementKey(self._loaded(handle), kind, certificate)

    def read_ek_certificate(self, kind: KeyKind = "rsa2048") -> bytes | None:
        """The EK certificate (DER) from its NV index, or ``None`` if the index is not defined."""
        with _tpm("read_ek_certificate"):
            try:
                return bytes(NVReadEK(self._ectx)(EK_CERT_INDEX[kind]))
            except NoSuchIndex:
                return None

    @contextlib.contextmanager
    def _srk(self) -> Iterator[Any]:
        """The owner SRK, created for one operation and flushed after it (a loaded child does
        not need its parent loaded, and TPMs have few object slots: swtpm has three)."""
        srk, *_ = self._ectx.create_primary(
            TPM2B_SENSITIVE_CREATE(), _srk_template(), ESYS_TR.OWNER
        )
        try:
            yield srk
        finally:
            with contextlib.suppress(TSS2_Exception):
                self._ectx.flush_context(srk)

    def create_ak(self, kind: KeyKind = "ecc256") -> tuple[LoadedKey, AkBlobs]:
        """Create and load an AK under the owner SRK; return it and the blobs to store.

        Raises :class:`TpmError`.
        """
        return self._create_loaded("create_ak", _ak_template(kind))

    def _create_loaded(
        self,
        operation: str,
        template: Any,  # noqa: ANN401 - a tpm2-pytss TPM2B_PUBLIC
    ) -> tuple[LoadedKey, AkBlobs]:
        """Create an object from ``template`` under the owner SRK and load it."""
        with _tpm(operation), self._srk() as srk:
            private, public, *_ = self._ectx.create(srk, TPM2B_SENSITIVE_CREATE(), template)
            handle = self._ectx.load(srk, private, public)
            return self._loaded(handle), AkBlobs(private.marshal(), public.marshal())

    def load_ak(self, blobs: AkBlobs) -> LoadedKey:
        """Load an AK made by :meth:`create_ak` on this TPM (possibly before a restart).

        Raises :class:`TpmError`, also when the blobs are malformed or from another TPM.
        """
        with _tpm("load_ak"):
            private, _ = TPM2B_PRIVATE.unmarshal(blobs.private)
            public, _ = TPM2B_PUBLIC.unmarshal(blobs.public)
            with self._srk() as srk:
                handle = self._ectx.load(srk, private, public)
            return self._loaded(handle)

    def flush(self, key: LoadedKey) -> None:
        """Unload ``key`` from the TPM; raises :class:`TpmError`."""
        with _tpm("flush"):
            self._ectx.flush_context(ESYS_TR(key.handle))

    def read_public(self, key: LoadedKey) -> tuple[bytes, bytes, bytes]:
        """TPM2_ReadPublic: (TPMT_PUBLIC, name, qualified name); raises :class:`TpmError`."""
        with _tpm("read_public"):
            public, name, qualified = self._ectx.read_public(ESYS_TR(key.handle))
            return public.marshal()[2:], bytes(name), bytes(qualified)

    # --- credential activation -------------------------------------------------------------

    def activate_credential(
        self, ak: LoadedKey, ek: EndorsementKey, credential_blob: bytes, secret: bytes
    ) -> bytes:
        """TPM2_ActivateCredential of a MakeCredential result (TPM2B_ID_OBJECT and
        TPM2B_ENCRYPTED_SECRET bytes); returns the credential.

        Raises :class:`TpmError` when the blobs are malformed or were made for another EK or AK.
        """
        with _tpm("activate_credential"):
            blob, used = TPM2B_ID_OBJECT.unmarshal(credential_blob)
            enc_secret, used_secret = TPM2B_ENCRYPTED_SECRET.unmarshal(secret)
            if used != len(credential_blob) or used_secret != len(secret):
                raise TpmError("activate_credential", 0, "trailing bytes after the blobs")
            session = self._ectx.start_auth_session(
                tpm_key=ESYS_TR.NONE,
                bind=ESYS_TR.NONE,
                session_type=TPM2_SE.POLICY,
                symmetric=TPMT_SYM_DEF(algorithm=TPM2_ALG.NULL),
                auth_hash=TPM2_ALG.SHA256,
            )
            try:
                self._ectx.policy_secret(ESYS_TR.ENDORSEMENT, session, expiration=0)
                credential = self._ectx.activate_credential(
                    ESYS_TR(ak.handle),
                    ESYS_TR(ek.key.handle),
                    blob,
                    enc_secret,
                    session1=ESYS_TR.PASSWORD,
                    session2=session,
                )
            finally:
                with contextlib.suppress(TSS2_Exception):
                    self._ectx.flush_context(session)
            return bytes(credential)

    # --- PCRs and quotes -------------------------------------------------------------------

    def quote(
        self, ak: LoadedKey, selection: PcrSelection, qualifying_data: bytes
    ) -> SignedAttestation:
        """TPM2_Quote of ``selection`` with ``qualifying_data`` as extraData, using the AK's
        scheme. Raises :class:`TpmError`."""
        with _tpm("quote"):
            attest, signature = self._ectx.quote(
                ESYS_TR(ak.handle), _selection(selection), qualifying_data, _NULL_SCHEME
            )
            return SignedAttestation(attest.marshal()[2:], signature.marshal())

    def pcr_read(self, selection: PcrSelection) -> dict[int, dict[int, bytes]]:
        """Read every PCR in ``selection``: ``alg -> pcr -> value``.

        Raises :class:`TpmError`, also when the TPM does not have a selected bank or PCR.
        """
        wanted = {alg: set(pcrs) for alg, pcrs in selection.as_dict().items()}
        values: dict[int, dict[int, bytes]] = {alg: {} for alg in wanted}
        with _tpm("pcr_read"):
            for _ in range(_PCR_READ_ROUNDS):
                remaining = {alg: pcrs for alg, pcrs in wanted.items() if pcrs}
                if not remaining:
                    return values
                _, out_selection, digests = self._ectx.pcr_read(
                    _selection(PcrSelection.of(remaining))
                )
                read, _ = parse_pcr_selection(out_selection.marshal())
                pairs = [(alg, pcr) for alg, pcrs in read.plan() for pcr in pcrs]
                if not pairs:
                    break
                if len(pairs) != len(digests) or any(
                    pcr not in wanted.get(alg, ()) for alg, pcr in pairs
                ):
                    raise TpmError("pcr_read", 0, "the TPM returned PCRs that were not asked for")
                for (alg, pcr), value in zip(pairs, digests, strict=True):
                    values[alg][pcr] = bytes(value)
                    wanted[alg].discard(pcr)
        raise TpmError("pcr_read", 0, f"the TPM did not return PCRs {remaining}")

    def pcr_extend(self, pcr: int, digests: Mapping[int, bytes]) -> None:
        """TPM2_PCR_Extend of PCR ``pcr`` with one digest per bank (``alg -> digest``).

        Raises :class:`TpmError`; ``ValueError`` for an unknown algorithm or wrong digest size.
        """
        if not 0 <= pcr <= _MAX_PCR:
            raise ValueError(f"PCR {pcr} out of range")
        wire = [len(digests).to_bytes(4, "big")]
        for alg, value in digests.items():
            if alg not in HASH_ALGORITHMS or len(value) != HASH_ALGORITHMS[alg].digest_size:
                raise ValueError(f"bad digest for algorithm 0x{alg:04x}")
            wire.append(alg.to_bytes(2, "big") + value)
        with _tpm("pcr_extend"):
            values, _ = TPML_DIGEST_VALUES.unmarshal(b"".join(wire))
            self._ectx.pcr_extend(ESYS_TR(ESYS_TR.PCR0 + pcr), values)

    # --- certification ---------------------------------------------------------------------

    def certify(self, ak: LoadedKey, key: LoadedKey, qualifying_data: bytes) -> SignedAttestation:
        """TPM2_Certify of ``key`` (which must accept password auth) by ``ak``.

        Raises :class:`TpmError`.
        """
        with _tpm("certify"):
            attest, signature = self._ectx.certify(
                ESYS_TR(key.handle), ESYS_TR(ak.handle), qualifying_data, _NULL_SCHEME
            )
            return SignedAttestation(attest.marshal()[2:], signature.marshal())

    def nv_read_public(self, nv_index: int) -> NvPublicInfo:
        """TPM2_NV_ReadPublic: the index's TPMS_NV_PUBLIC and name; raises :class:`TpmError`."""
        with _tpm("nv_read_public"):
            handle = self._ectx.tr_from_tpmpublic(nv_index)
            try:
                public, name = self._ectx.nv_read_public(handle)
            finally:
                self._ectx.tr_close(handle)
            return NvPublicInfo(public.marshal()[2:], bytes(name))

    def nv_certify(
        self,
        ak: LoadedKey,
        nv_index: int,
        qualifying_data: bytes,
        *,
        size: int,
        offset: int = 0,
        auth: Literal["index", "owner"] = "index",
    ) -> SignedAttestation:
        """TPM2_NV_Certify of ``size`` bytes at ``offset`` of ``nv_index`` by ``ak``, reading
        with the index's own (empty) auth or the owner's. Raises :class:`TpmError`."""
        with _tpm("nv_certify"):
            handle = self._ectx.tr_from_tpmpublic(nv_index)
            auth_handle = handle if auth == "index" else ESYS_TR.OWNER
            try:
                attest, signature = self._ectx.nv_certify(
                    ESYS_TR(ak.handle),
                    handle,
                    qualifying_data,
                    _NULL_SCHEME,
                    size,
                    offset,
                    auth_handle=auth_handle,
                )
            finally:  # the ESYS object for the index is per call: a daemon certifies often
                self._ectx.tr_close(handle)
            return SignedAttestation(attest.marshal()[2:], signature.marshal())

    def properties(self) -> TpmProperties:
        """The TPM's manufacturer, vendor strings, firmware version and spec revision."""
        first, last = TPM_PT_REVISION, TPM_PT_FIRMWARE_VERSION_2
        with _tpm("properties"):
            _, capability = self._ectx.get_capability(
                TPM2_CAP.TPM_PROPERTIES, first, last - first + 1
            )
            values = {int(p.property): int(p.value) for p in capability.data.tpmProperties}
        vendor = "".join(
            _ascii_word(values.get(pt, 0))
            for pt in range(TPM_PT_VENDOR_STRING_1, TPM_PT_VENDOR_STRING_4 + 1)
        )
        fw1 = values.get(TPM_PT_FIRMWARE_VERSION_1, 0)
        fw2 = values.get(TPM_PT_FIRMWARE_VERSION_2, 0)
        rev = values.get(TPM_PT_REVISION, 0)
        return TpmProperties(
            manufacturer=_ascii_word(values.get(TPM_PT_MANUFACTURER, 0)).strip(),
            vendor=" ".join(vendor.split()),
            firmware_version=f"{fw1 >> 16}.{fw1 & 0xFFFF}.{fw2 >> 16}.{fw2 & 0xFFFF}",
            spec_revision=f"{rev // 100}.{rev % 100:02d}",
        )

    # --- PCR policies: binding key, sealing ------------------------------------------------

    def allocated_pcrs(self) -> PcrSelection:
        """The PCR banks and PCRs this TPM has allocated (TPM2_GetCapability, TPM_CAP_PCRS)."""
        with _tpm("allocated_pcrs"):
            _, capability = self._ectx.get_capability(TPM2_CAP.PCRS, 0, 1)
            allocated, _ = parse_pcr_selection(capability.data.assignedPCR.marshal())
            return allocated

    def pcr_policy(
        self, selection: PcrSelection, values: Mapping[int, Mapping[int, bytes]] | None = None
    ) -> bytes:
        """The SHA-256 PolicyPCR digest of ``selection`` over ``values`` (default: the PCRs'
        current values, read now).

        Every selected PCR must be allocated: the TPM drops unallocated ones from the selection
        before it hashes it, so a policy over them could never be satisfied. Raises
        :class:`TpmError` (also for missing values and unallocated PCRs).
        """
        if values is None:
            values = self.pcr_read(selection)
        else:
            allocated = self.allocated_pcrs().as_dict()
            for alg, pcrs in selection.plan():
                missing = sorted(set(pcrs) - set(allocated.get(alg, ())))
                if missing:
                    raise TpmError(
                        "pcr_policy", 0, f"PCRs {missing} of bank 0x{alg:04x} are not allocated"
                    )
        with _tpm("pcr_policy"):
            return policy_pcr_digest(selection, values, _POLICY_ALG)

    def trial_pcr_policy(
        self, selection: PcrSelection, values: Mapping[int, Mapping[int, bytes]] | None = None
    ) -> bytes:
        """The TPM's own PolicyGetDigest after PolicyPCR(``selection``) in a trial session, with
        ``values``' digest given (default: the TPM uses its current PCRs). Raises
        :class:`TpmError`."""
        with _tpm("trial_pcr_policy"):
            pcr_digest = (
                b"" if values is None else pcr_values_digest(selection, values, _POLICY_ALG)
            )
            session = self._policy_session(TPM2_SE.TRIAL)
            try:
                self._ectx.policy_pcr(session, pcr_digest, _selection(selection))
                return bytes(self._ectx.policy_get_digest(session))
            finally:
                with contextlib.suppress(TSS2_Exception):
                    self._ectx.flush_context(session)

    def _policy_session(self, kind: Any = TPM2_SE.POLICY) -> Any:  # noqa: ANN401 - tpm2-pytss
        return self._ectx.start_auth_session(
            tpm_key=ESYS_TR.NONE,
            bind=ESYS_TR.NONE,
            session_type=kind,
            symmetric=TPMT_SYM_DEF(algorithm=TPM2_ALG.NULL),
            auth_hash=_POLICY_ALG,
        )

    @contextlib.contextmanager
    def _pcr_session(self, selection: PcrSelection) -> Iterator[Any]:
        """A policy session that has run PolicyPCR(``selection``) over the current PCRs."""
        session = self._policy_session()
        try:
            self._ectx.policy_pcr(session, b"", _selection(selection))
            yield session
        finally:
            with contextlib.suppress(TSS2_Exception):
                self._ectx.flush_context(session)

    def create_binding_key(self, policy_digest: bytes) -> tuple[LoadedKey, ObjectBlobs]:
        """Create and load a binding key (RSA-2048 OAEP-SHA256 decryption key under the owner
        SRK, authPolicy = ``policy_digest``, e.g. :meth:`pcr_policy`); return it and its blobs.

        Raises :class:`TpmError`; ``ValueError`` when the digest is not 32 bytes.
        """
        _check_policy(policy_digest)
        return self._create_loaded("create_binding_key", _binding_template(policy_digest))

    def load_object(self, blobs: ObjectBlobs) -> LoadedKey:
        """Load an object made under the owner SRK (AK, binding key, sealed secret).

        Raises :class:`TpmError`, also when the blobs are malformed or from another TPM.
        """
        return self.load_ak(blobs)

    def rsa_decrypt_with_binding_key(
        self, key: LoadedKey, selection: PcrSelection, ciphertext: bytes
    ) -> bytes:
        """RSA_Decrypt (OAEP, SHA-256, no label) with the binding ``key``, authorised by a
        PolicyPCR session over ``selection`` (the selection the key's policy was made for).

        Raises :class:`TpmError`; its ``rc`` is TPM_RC_POLICY_FAIL (0x99d) when the PCRs no
        longer hold the values the policy was made for.
        """
        with _tpm("rsa_decrypt"), self._pcr_session(selection) as session:
            clear = self._ectx.rsa_decrypt(
                ESYS_TR(key.handle), ciphertext, _OAEP_SHA256, b"", session1=session
            )
            return bytes(clear)

    def rsa_decrypt_authorized(
        self,
        key: LoadedKey,
        selection: PcrSelection,
        ciphertext: bytes,
        *,
        signing_key: bytes,
        approved_policy: bytes,
        signature: bytes,
        policy_ref: bytes = b"",
    ) -> bytes:
        """RSA_Decrypt (OAEP, SHA-256) with a binding ``key`` whose authPolicy is
        PolicyAuthorize by ``signing_key`` (a TPMT_PUBLIC): TPM2_LoadExternal of the signer's
        public key (owner hierarchy, so the ticket is not a NULL ticket), TPM2_VerifySignature
        of ``signature`` over ``SHA-256(approved_policy || policy_ref)``, then a policy session
        with PolicyPCR(``selection``) at the current PCRs and PolicyAuthorize.

        Raises :class:`TpmError`: TPM_RC_SIGNATURE for a bad signature, TPM_RC_VALUE (in
        PolicyAuthorize) when the PCRs' PolicyPCR digest is not ``approved_policy``,
        TPM_RC_POLICY_FAIL when the signer is not the one the key names.
        """
        (result,) = self.rsa_decrypt_authorized_many(
            key,
            selection,
            [ciphertext],
            signing_key=signing_key,
            approved_policy=approved_policy,
            signature=signature,
            policy_ref=policy_ref,
        )
        if isinstance(result, TpmError):
            raise result
        return result

    def rsa_decrypt_authorized_many(
        self,
        key: LoadedKey,
        selection: PcrSelection,
        ciphertexts: list[bytes],
        *,
        signing_key: bytes,
        approved_policy: bytes,
        signature: bytes,
        policy_ref: bytes = b"",
    ) -> list[bytes | TpmError]:
        """:meth:`rsa_decrypt_authorized` for several ciphertexts: the signature is verified
        once (the ticket serves every session), each decryption has its own policy session.
        A failing decryption is a :class:`TpmError` at its place; a signature the TPM refuses
        raises :class:`TpmError`."""
        with _tpm("rsa_decrypt_authorized"):
            public, _ = TPM2B_PUBLIC.unmarshal(len(signing_key).to_bytes(2, "big") + signing_key)
            sig, _ = TPMT_SIGNATURE.unmarshal(signature)
            signer = self._ectx.load_external(public, None, ESYS_TR.OWNER)
            try:
                a_hash = digest(TPM_ALG_SHA256, approved_policy + policy_ref)
                ticket = self._ectx.verify_signature(signer, a_hash, sig)
                signer_name = self._ectx.tr_get_name(signer)
            finally:
                with contextlib.suppress(TSS2_Exception):
                    self._ectx.flush_context(signer)
        out: list[bytes | TpmError] = []
        for ciphertext in ciphertexts:
            try:
                with _tpm("rsa_decrypt_authorized"), self._pcr_session(selection) as session:
                    self._ectx.policy_authorize(
                        session, approved_policy, signer_name, ticket, policy_ref
                    )
                    clear = self._ectx.rsa_decrypt(
                        ESYS_TR(key.handle), ciphertext, _OAEP_SHA256, b"", session1=session
                    )
                    out.append(bytes(clear))
            except TpmError as e:
                out.append(e)
        return out

    def seal(self, policy_digest: bytes, secret: bytes) -> ObjectBlobs:
        """Seal ``secret`` (1 to 128 bytes) under the owner SRK to ``policy_digest`` (from
        :meth:`pcr_policy` or :func:`trustcore.tpm.policy.policy_pcr_digest` of predicted
        values). The object is not left loaded. Raises :class:`TpmError`; ``ValueError``."""
        _check_policy(policy_digest)
        if not 0 < len(secret) <= MAX_SEALED_BYTES:
            raise ValueError(f"a sealed secret has 1 to {MAX_SEALED_BYTES} bytes")
        sensitive = TPM2B_SENSITIVE_CREATE(sensitive=TPMS_SENSITIVE_CREATE(data=secret))
        with _tpm("seal"), self._srk() as srk:
            private, public, *_ = self._ectx.create(srk, sensitive, _sealed_template(policy_digest))
            return ObjectBlobs(private.marshal(), public.marshal())

    def unseal(self, blobs: ObjectBlobs, selection: PcrSelection) -> bytes:
        """Load a sealed object, unseal it through PolicyPCR(``selection``), flush it.

        Raises :class:`TpmError` (rc TPM_RC_POLICY_FAIL, 0x99d, when the PCRs do not hold the
        values it was sealed to).
        """
        obj = self.load_object(blobs)
        try:
            with _tpm("unseal"), self._pcr_session(selection) as session:
                return bytes(self._ectx.unseal(ESYS_TR(obj.handle), session1=session))
        finally:
            with contextlib.suppress(TpmError):
                self.flush(obj)

    # --- NV in the owner hierarchy -----------------------------------------------------------

    def nv_define(self, nv_index: int, size: int, attributes: int) -> None:
        """TPM2_NV_DefineSpace of an ordinary index (SHA-256 name, empty auth and policy) with
        owner authorisation. Raises :class:`TpmError` (rc 0x14c, NV_DEFINED, if it exists)."""
        public = TPM2B_NV_PUBLIC(
            nvPublic=TPMS_NV_PUBLIC(
                nvIndex=nv_index, nameAlg=_POLICY_ALG, attributes=attributes, dataSize=size
            )
        )
        with _tpm("nv_define"):
            handle = self._ectx.nv_define_space(b"", public, ESYS_TR.OWNER)
            self._ectx.tr_close(handle)

    def nv_write(self, nv_index: int, data: bytes, offset: int = 0) -> None:
        """TPM2_NV_Write with owner authorisation; raises :class:`TpmError`."""
        with _tpm("nv_write"):
            handle = self._ectx.tr_from_tpmpublic(nv_index)
            try:
                self._ectx.nv_write(handle, data, offset, auth_handle=ESYS_TR.OWNER)
            finally:
                self._ectx.tr_close(handle)

    def nv_read(self, nv_index: int, size: int, offset: int = 0) -> bytes:
        """TPM2_NV_Read with owner authorisation; raises :class:`TpmError`."""
        with _tpm("nv_read"):
            handle = self._ectx.tr_from_tpmpublic(nv_index)
            try:
                return bytes(self._ectx.nv_read(handle, size, offset, auth_handle=ESYS_TR.OWNER))
            finally:
                self._ectx.tr_close(handle)

    def nv_undefine(self, nv_index: int) -> None:
        """TPM2_NV_UndefineSpace with owner authorisation; raises :class:`TpmError`."""
        with _tpm("nv_undefine"):
            handle = self._ectx.tr_from_tpmpublic(nv_index)
            self._ectx.nv_undefine_space(handle, ESYS_TR.OWNER)
