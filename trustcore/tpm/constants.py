"""TPM 2.0 constants used by trustcore's decoders (TPM 2.0 Library, Part 2).

Only the values trustcore reads or writes are listed: algorithm identifiers, structure tags,
object and NV attribute bits, and ECC curve identifiers. Hash algorithm identifiers live in
:mod:`trustcore.algorithms`.
"""

from __future__ import annotations

from typing import Final

from trustcore.algorithms import (
    TPM_ALG_SHA1,
    TPM_ALG_SHA256,
    TPM_ALG_SHA384,
    TPM_ALG_SHA512,
)

__all__ = [
    "TPM_ALG_SHA1",
    "TPM_ALG_SHA256",
    "TPM_ALG_SHA384",
    "TPM_ALG_SHA512",
]

# TPM_ALG_ID (Part 2, 6.3): asymmetric, symmetric, schemes and KDFs.
TPM_ALG_RSA: Final = 0x0001
TPM_ALG_HMAC: Final = 0x0005
TPM_ALG_AES: Final = 0x0006
TPM_ALG_MGF1: Final = 0x0007
TPM_ALG_KEYEDHASH: Final = 0x0008
TPM_ALG_XOR: Final = 0x000A
TPM_ALG_NULL: Final = 0x0010
TPM_ALG_SM4: Final = 0x0013
TPM_ALG_RSASSA: Final = 0x0014
TPM_ALG_RSAES: Final = 0x0015
TPM_ALG_RSAPSS: Final = 0x0016
TPM_ALG_OAEP: Final = 0x0017
TPM_ALG_ECDSA: Final = 0x0018
TPM_ALG_ECDH: Final = 0x0019
TPM_ALG_ECDAA: Final = 0x001A
TPM_ALG_SM2: Final = 0x001B
TPM_ALG_ECSCHNORR: Final = 0x001C
TPM_ALG_ECMQV: Final = 0x001D
TPM_ALG_KDF1_SP800_56A: Final = 0x0020
TPM_ALG_KDF2: Final = 0x0021
TPM_ALG_KDF1_SP800_108: Final = 0x0022
TPM_ALG_ECC: Final = 0x0023
TPM_ALG_SYMCIPHER: Final = 0x0025
TPM_ALG_CAMELLIA: Final = 0x0026
TPM_ALG_CTR: Final = 0x0040
TPM_ALG_OFB: Final = 0x0041
TPM_ALG_CBC: Final = 0x0042
TPM_ALG_CFB: Final = 0x0043
TPM_ALG_ECB: Final = 0x0044

# TPM_GENERATED (Part 2, 6.2): the magic that starts every TPMS_ATTEST the TPM signs.
TPM_GENERATED_VALUE: Final = 0xFF544347

# TPM_ST (Part 2, 6.9): attestation structure tags.
TPM_ST_ATTEST_NV: Final = 0x8014
TPM_ST_ATTEST_COMMAND_AUDIT: Final = 0x8015
TPM_ST_ATTEST_SESSION_AUDIT: Final = 0x8016
TPM_ST_ATTEST_CERTIFY: Final = 0x8017
TPM_ST_ATTEST_QUOTE: Final = 0x8018
TPM_ST_ATTEST_TIME: Final = 0x8019
TPM_ST_ATTEST_CREATION: Final = 0x801A
TPM_ST_ATTEST_NV_DIGEST: Final = 0x801C

# TPMA_OBJECT (Part 2, 8.3) bits.
TPMA_OBJECT_FIXEDTPM: Final = 1 << 1
TPMA_OBJECT_STCLEAR: Final = 1 << 2
TPMA_OBJECT_FIXEDPARENT: Final = 1 << 4
TPMA_OBJECT_SENSITIVEDATAORIGIN: Final = 1 << 5
TPMA_OBJECT_USERWITHAUTH: Final = 1 << 6
TPMA_OBJECT_ADMINWITHPOLICY: Final = 1 << 7
TPMA_OBJECT_NODA: Final = 1 << 10
TPMA_OBJECT_ENCRYPTEDDUPLICATION: Final = 1 << 11
TPMA_OBJECT_RESTRICTED: Final = 1 << 16
TPMA_OBJECT_DECRYPT: Final = 1 << 17
TPMA_OBJECT_SIGN_ENCRYPT: Final = 1 << 18

# TPMA_NV (Part 2, 13.4) bits used by trustcore.
TPMA_NV_WRITTEN: Final = 1 << 29

# TPM_ECC_CURVE (Part 2, 6.4).
TPM_ECC_NIST_P192: Final = 0x0001
TPM_ECC_NIST_P224: Final = 0x0002
TPM_ECC_NIST_P256: Final = 0x0003
TPM_ECC_NIST_P384: Final = 0x0004
TPM_ECC_NIST_P521: Final = 0x0005
TPM_ECC_BN_P256: Final = 0x0010
TPM_ECC_BN_P638: Final = 0x0011
TPM_ECC_SM2_P256: Final = 0x0020

# TPM_HT (Part 2, 7.2): the handle type in the top byte of a handle.
TPM_HT_NV_INDEX: Final = 0x01

# TPM_PT fixed properties (Part 2, 6.13: PT_FIXED = 0x100)
TPM_PT_REVISION: Final = 0x102
TPM_PT_MANUFACTURER: Final = 0x105
TPM_PT_VENDOR_STRING_1: Final = 0x106
TPM_PT_VENDOR_STRING_4: Final = 0x109
TPM_PT_FIRMWARE_VERSION_1: Final = 0x10B
TPM_PT_FIRMWARE_VERSION_2: Final = 0x10C
