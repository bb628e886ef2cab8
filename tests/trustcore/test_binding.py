"""trustcore.binding.check_binding_key: a table of public areas (hand-marshalled TPMT_PUBLIC),
each refused for its own reason (the TPM-made key and its Certify are tested on swtpm in
tests/nodeagent/test_tpm_policy.py and through enrollment in tests/hub/test_enrollment.py)."""

from __future__ import annotations

import struct

import pytest

from trustcore.binding import check_binding_key
from trustcore.errors import VerificationError
from trustcore.tpm import parse_public

FIXEDTPM, FIXEDPARENT, SDO, USERWITHAUTH = 1 << 1, 1 << 4, 1 << 5, 1 << 6
NODA, RESTRICTED, DECRYPT, SIGN = 1 << 10, 1 << 16, 1 << 17, 1 << 18
GOOD_ATTRS = FIXEDTPM | FIXEDPARENT | SDO | NODA | DECRYPT
POLICY = bytes(range(1, 33))


def rsa_public(
    *,
    attributes: int = GOOD_ATTRS,
    policy: bytes = POLICY,
    symmetric: bytes = b"\x00\x10",
    scheme: bytes = b"\x00\x17\x00\x0b",  # OAEP, SHA-256
    bits: int = 2048,
) -> bytes:
    return (
        struct.pack(">HHI", 0x0001, 0x000B, attributes)
        + struct.pack(">H", len(policy))
        + policy
        + symmetric
        + scheme
        + struct.pack(">HI", bits, 0)
        + struct.pack(">H", bits // 8)
        + b"\xc5" * (bits // 8)
    )


def test_a_policy_only_oaep_decryption_key_passes() -> None:
    check_binding_key(parse_public(rsa_public()))
    check_binding_key(parse_public(rsa_public(scheme=b"\x00\x10")))  # NULL scheme: any


@pytest.mark.parametrize(
    ("public", "message"),
    [
        (rsa_public(attributes=GOOD_ATTRS | RESTRICTED), "restricted"),
        (rsa_public(attributes=GOOD_ATTRS | SIGN), "not a decryption-only key"),
        (rsa_public(attributes=GOOD_ATTRS & ~DECRYPT | SIGN), "not a decryption-only key"),
        (rsa_public(attributes=GOOD_ATTRS | USERWITHAUTH), "userWithAuth"),
        (rsa_public(attributes=GOOD_ATTRS & ~FIXEDTPM), "can leave its TPM"),
        (rsa_public(attributes=GOOD_ATTRS & ~FIXEDPARENT), "can leave its TPM"),
        (rsa_public(policy=b""), "no policy digest"),
        (rsa_public(policy=bytes(32)), "no policy digest"),
        (rsa_public(policy=POLICY[:20]), "no policy digest"),
        (rsa_public(bits=1024), "RSA-1024"),
        (rsa_public(scheme=b"\x00\x15"), "is not OAEP"),  # RSAES (PKCS#1 v1.5)
        (
            rsa_public(attributes=GOOD_ATTRS | RESTRICTED, symmetric=b"\x00\x06\x00\x80\x00\x43"),
            "restricted",
        ),
    ],
)
def test_other_keys_are_refused(public: bytes, message: str) -> None:
    with pytest.raises(VerificationError, match=message) as info:
        check_binding_key(parse_public(public))
    assert info.value.reason == "binding.key_invalid"


def test_storage_key_symmetric_is_refused() -> None:
    public = parse_public(rsa_public(symmetric=b"\x00\x06\x00\x80\x00\x43", scheme=b"\x00\x10"))
    with pytest.raises(VerificationError, match="storage key") as info:
        check_binding_key(public)
    assert info.value.reason == "binding.key_invalid"


def test_ecc_key_is_refused() -> None:
    ecc = (
        struct.pack(">HHI", 0x0023, 0x000B, GOOD_ATTRS)
        + struct.pack(">H", 32)
        + POLICY
        + b"\x00\x10"  # symmetric NULL
        + b"\x00\x10"  # scheme NULL
        + b"\x00\x03"  # P-256
        + b"\x00\x10"  # kdf NULL
        + struct.pack(">H", 32)
        + b"\x01" * 32
        + struct.pack(">H", 32)
        + b"\x02" * 32
    )
    with pytest.raises(VerificationError, match="is not RSA") as info:
        check_binding_key(parse_public(ecc))
    assert info.value.reason == "binding.key_invalid"
