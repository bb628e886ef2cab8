"""TPM 2.0 policy digests computed in software (TPM 2.0 Library, Part 3, 23.7 TPM2_PolicyPCR).

A policy session starts with an all-zero ``policyDigest`` of the session's hash size; each
policy command extends it. :func:`policy_pcr_digest` computes what a session holds after one
``TPM2_PolicyPCR(selection, digestTPM)`` from the PCR *values* (current ones read from a TPM,
or values predicted by replaying an event log), so an object can be created whose authPolicy
is that digest: a key sealed for the next boot of a known-good configuration. The update is::

    policyDigest' = H(policyDigest || TPM_CC_PolicyPCR || TPML_PCR_SELECTION || digestTPM)
    digestTPM     = H(value of each selected PCR, banks in selection order, PCRs ascending)

with ``H`` the session's hash (the sealed object's nameAlg). A TPM first drops from the
selection every PCR of a bank it has not allocated (swtpm allocates SHA-384 and SHA-512 banks
with no PCRs), so a digest computed here over such PCRs is one no session will ever reach:
select only allocated PCRs. This module only computes; it neither talks to a TPM nor decides
which PCR values are good (that is the caller's policy).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from trustcore.algorithms import HASH_ALGORITHMS, digest, hash_algorithm
from trustcore.errors import TrustcoreError
from trustcore.tpm.pcrs import PcrSelection

__all__ = [
    "TPM_CC_POLICY_PCR",
    "PolicyError",
    "expected_pcr_values",
    "pcr_values_digest",
    "policy_pcr_digest",
    "policy_pcr_update",
]

TPM_CC_POLICY_PCR: Final = 0x0000017F


_DRTM_PCRS: Final = range(17, 23)  # reset to all ones at TPM2_Startup (PC Client profile)


class PolicyError(TrustcoreError):
    """A policy cannot be computed: a selected PCR has no value, or a value has the wrong size."""

    reason = "policy.pcr_values_invalid"


def pcr_values_digest(
    selection: PcrSelection, values: Mapping[int, Mapping[int, bytes]], name_alg: int
) -> bytes:
    """``digestTPM``: H_name_alg of the selected PCR values concatenated in selection order.

    Raises :class:`PolicyError` when a selected PCR is missing from ``values`` or a value's
    size does not fit its bank; ``UnsupportedAlgorithm`` for an unknown hash.
    """
    parts = []
    for alg, pcrs in selection.plan():
        bank = values.get(alg, {})
        known = HASH_ALGORITHMS.get(alg)
        if known is None:
            raise PolicyError(f"PCR bank 0x{alg:04x} is not a known hash algorithm")
        for pcr in pcrs:
            value = bank.get(pcr)
            if value is None:
                raise PolicyError(f"no value for PCR {pcr} of bank {known.name}")
            if len(value) != known.digest_size:
                raise PolicyError(
                    f"PCR {pcr} of bank {known.name} has {len(value)} bytes, "
                    f"expected {known.digest_size}"
                )
            parts.append(value)
    return digest(name_alg, b"".join(parts))


def policy_pcr_update(
    policy_digest: bytes, selection: PcrSelection, pcr_digest: bytes, name_alg: int
) -> bytes:
    """One TPM2_PolicyPCR step from ``policy_digest`` with an already computed ``digestTPM``.

    Raises :class:`PolicyError` when ``policy_digest`` does not have the hash's size.
    """
    size = hash_algorithm(name_alg).digest_size
    if len(policy_digest) != size:
        raise PolicyError(f"policy digest has {len(policy_digest)} bytes, expected {size}")
    if not len(selection):
        raise PolicyError("an empty PCR selection makes a vacuous policy")
    return digest(
        name_alg,
        policy_digest + TPM_CC_POLICY_PCR.to_bytes(4, "big") + selection.marshal() + pcr_digest,
    )


def policy_pcr_digest(
    selection: PcrSelection, values: Mapping[int, Mapping[int, bytes]], name_alg: int
) -> bytes:
    """The policyDigest of a fresh session after ``TPM2_PolicyPCR(selection)`` while the PCRs
    hold ``values`` (``{alg: {pcr: value}}``; extra values are ignored).

    Raises :class:`PolicyError` (missing or mis-sized value, empty selection) and
    ``UnsupportedAlgorithm``.
    """
    start = bytes(hash_algorithm(name_alg).digest_size)
    return policy_pcr_update(
        start, selection, pcr_values_digest(selection, values, name_alg), name_alg
    )


def expected_pcr_values(
    selection: PcrSelection, replayed: Mapping[int, Mapping[int, bytes]]
) -> dict[int, dict[int, bytes]]:
    """The values the selected PCRs hold after a boot that measured exactly ``replayed`` (from
    :func:`trustcore.eventlog.replay_eventlog`): a PCR no record extended keeps its reset
    value (all zeros; all ones for the DRTM PCRs 17-22). Raises :class:`PolicyError` for a bank
    trustcore does not know.
    """
    out: dict[int, dict[int, bytes]] = {}
    for alg, pcrs in selection.plan():
        known = HASH_ALGORITHMS.get(alg)
        if known is None:
            raise PolicyError(f"PCR bank 0x{alg:04x} is not a known hash algorithm")
        bank = replayed.get(alg, {})
        size = known.digest_size
        out[alg] = {
            pcr: bank.get(pcr) or (b"\xff" * size if pcr in _DRTM_PCRS else bytes(size))
            for pcr in pcrs
        }
    return out
