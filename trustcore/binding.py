"""The TPM binding key a host enrolls with: what it must be, and the AK's Certify of it.

The hub wraps image keys (RSA-OAEP) to a host's binding key, so the key must be one the TPM
uses only under a policy: an RSA decryption key (not restricted, not a signing key), bound to
this TPM (fixedTPM, fixedParent), whose user role cannot be satisfied by a password
(userWithAuth clear) and whose authPolicy is a non-trivial digest (the agent makes it
PolicyPCR over the attested PCR selection, :func:`trustcore.tpm.policy.policy_pcr_digest`).
The AK's TPM2_Certify of it, with qualifying data
:func:`trustcore.wire.binding_qualifying_data`, shows that the same TPM holds it.

Which PCR values the policy names cannot be told from the digest alone: the key was made at
enrollment, in whatever state the host was then. Before wrapping a secret to it, a key broker
must check :func:`binding_policy_matches` against the PCR values of a report it judged trusted,
so the TPM releases the secret only in that state.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from trustcore.algorithms import HASH_ALGORITHMS
from trustcore.errors import ParseError, VerificationError
from trustcore.quote import AttestationKey, verify_certify
from trustcore.tpm.constants import (
    TPM_ALG_NULL,
    TPM_ALG_OAEP,
    TPM_ALG_RSA,
    TPMA_OBJECT_DECRYPT,
    TPMA_OBJECT_FIXEDPARENT,
    TPMA_OBJECT_FIXEDTPM,
    TPMA_OBJECT_RESTRICTED,
    TPMA_OBJECT_SIGN_ENCRYPT,
    TPMA_OBJECT_USERWITHAUTH,
)
from trustcore.tpm.pcrs import PcrSelection
from trustcore.tpm.policy import policy_pcr_digest
from trustcore.tpm.public import Public, RsaParameters, parse_public
from trustcore.wire import binding_qualifying_data

__all__ = [
    "MIN_BINDING_RSA_BITS",
    "VerifiedBindingKey",
    "binding_policy_matches",
    "check_binding_key",
    "verify_binding_key",
]

MIN_BINDING_RSA_BITS: Final = 2048


@dataclass(frozen=True, slots=True)
class VerifiedBindingKey:
    """A binding key the AK certified and that passed :func:`check_binding_key`."""

    public: Public
    auth_policy: bytes


def _invalid(message: str) -> VerificationError:
    return VerificationError(message, reason="binding.key_invalid")


def check_binding_key(public: Public) -> None:
    """Refuse a key that is not a policy-only RSA decryption key bound to its TPM.

    Raises :class:`VerificationError` ``binding.key_invalid`` naming the first problem.
    """
    if public.type != TPM_ALG_RSA or not isinstance(public.parameters, RsaParameters):
        raise _invalid(f"object type 0x{public.type:04x} is not RSA")
    if not public.has(TPMA_OBJECT_DECRYPT) or public.has(TPMA_OBJECT_SIGN_ENCRYPT):
        raise _invalid("not a decryption-only key")
    if public.has(TPMA_OBJECT_RESTRICTED):
        raise _invalid("a restricted key cannot decrypt caller data")
    if not public.has(TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT):
        raise _invalid("the key can leave its TPM (fixedTPM or fixedParent clear)")
    if public.has(TPMA_OBJECT_USERWITHAUTH):
        raise _invalid("userWithAuth is set: a password would bypass the PCR policy")
    size = HASH_ALGORITHMS[public.name_alg].digest_size
    if len(public.auth_policy) != size or not any(public.auth_policy):
        raise _invalid("the key has no policy digest")
    params = public.parameters
    if params.key_bits < MIN_BINDING_RSA_BITS:
        raise _invalid(f"RSA-{params.key_bits} is shorter than {MIN_BINDING_RSA_BITS} bits")
    if params.scheme.scheme not in (TPM_ALG_OAEP, TPM_ALG_NULL):
        raise _invalid(f"scheme 0x{params.scheme.scheme:04x} is not OAEP")
    if params.symmetric.algorithm != TPM_ALG_NULL:
        raise _invalid("a storage key is not a binding key")


def verify_binding_key(
    ak: AttestationKey,
    *,
    ek_public: bytes,
    ak_public: bytes,
    binding_public: bytes,
    attest: bytes,
    signature: bytes,
) -> VerifiedBindingKey:
    """Check the AK's Certify of ``binding_public`` (TPMT_PUBLIC) with
    ``binding_qualifying_data(ek_public, ak_public)``, then the key itself.

    Raises :class:`VerificationError` (``certify.*`` from
    :func:`trustcore.quote.verify_certify`, then ``binding.key_invalid``) and
    :class:`ParseError` (``certify.malformed``).
    """
    try:
        public = parse_public(binding_public)
    except ParseError as exc:
        exc.reason = "certify.malformed"
        raise
    verify_certify(
        ak,
        attest,
        signature,
        qualifying_data=binding_qualifying_data(ek_public, ak_public),
        certified=public,
    )
    check_binding_key(public)
    return VerifiedBindingKey(public, public.auth_policy)


def binding_policy_matches(
    public: Public, selection: PcrSelection, values: Mapping[int, Mapping[int, bytes]]
) -> bool:
    """Whether the key's authPolicy is exactly PolicyPCR(``selection``) at ``values`` (e.g. a
    verified quote's selection and values): then the TPM uses the key in that state only.

    Raises :class:`~trustcore.tpm.policy.PolicyError` when ``values`` lack a selected PCR.
    """
    expected = policy_pcr_digest(selection, values, public.name_alg)
    return hmac.compare_digest(public.auth_policy, expected)
