"""trustcore.tpm.policy: PolicyPCR digests from PCR values (the TPM comparison is in
tests/nodeagent/test_tpm_policy.py)."""

from __future__ import annotations

import hashlib

import pytest

from trustcore.errors import TrustcoreError
from trustcore.tpm import PcrSelection
from trustcore.tpm.policy import (
    PolicyError,
    expected_pcr_values,
    pcr_values_digest,
    policy_pcr_digest,
)

SHA1, SHA256 = 0x0004, 0x000B


def test_policy_pcr_digest_known_answer() -> None:
    # Part 3, 23.7, written out by hand: TPML_PCR_SELECTION {count 1, sha256, 3 bytes, PCR 7}
    selection_bytes = bytes.fromhex("00000001000b03800000")
    value = b"\xab" * 32
    expected = hashlib.sha256(
        bytes(32) + bytes.fromhex("0000017f") + selection_bytes + hashlib.sha256(value).digest()
    ).digest()
    selection = PcrSelection.of({SHA256: (7,)})
    assert selection.marshal() == selection_bytes
    assert policy_pcr_digest(selection, {SHA256: {7: value}}, SHA256) == expected


def test_values_digest_follows_selection_order_across_banks() -> None:
    selection = PcrSelection.of({SHA1: (2, 0), SHA256: (1,)})
    values = {SHA256: {1: b"\x03" * 32}, SHA1: {0: b"\x01" * 20, 2: b"\x02" * 20}}
    assert (
        pcr_values_digest(selection, values, SHA256)
        == hashlib.sha256(b"\x01" * 20 + b"\x02" * 20 + b"\x03" * 32).digest()
    )


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({SHA256: {}}, "no value for PCR 7"),
        ({SHA256: {7: b"\x00" * 20}}, "has 20 bytes"),
    ],
)
def test_bad_values_are_policy_errors(values: dict[int, dict[int, bytes]], message: str) -> None:
    with pytest.raises(PolicyError, match=message) as info:
        policy_pcr_digest(PcrSelection.of({SHA256: (7,)}), values, SHA256)
    assert info.value.reason == "policy.pcr_values_invalid"


def test_empty_selection_is_refused() -> None:
    with pytest.raises(PolicyError, match="vacuous"):
        policy_pcr_digest(PcrSelection.of({SHA256: ()}), {}, SHA256)


def test_unknown_policy_hash_is_an_error() -> None:
    with pytest.raises(TrustcoreError) as info:
        policy_pcr_digest(PcrSelection.of({SHA256: (0,)}), {SHA256: {0: bytes(32)}}, 0x7777)
    assert info.value.reason == "algorithm.unsupported"


def test_expected_values_fill_reset_values() -> None:
    selection = PcrSelection.of({SHA256: (0, 5, 17)})
    filled = expected_pcr_values(selection, {SHA256: {0: b"\x09" * 32, 9: b"\x01" * 32}})
    assert filled == {SHA256: {0: b"\x09" * 32, 5: bytes(32), 17: b"\xff" * 32}}
