"""trustcore.assettag: the tag extension's encoding and the expected NV public area (the TPM
and the hub's whole path are tested in tests/nodeagent/test_tpm_policy.py and
tests/hub/test_assettags.py)."""

from __future__ import annotations

import contextlib
import hashlib
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trustcore.assettag import (
    AssetTagError,
    assettag_qualifying_data,
    check_tags,
    decode_tags_extension,
    encode_tags_extension,
    expected_nv_public,
)
from trustcore.errors import ParseError
from trustcore.tpm import parse_nv_public


def test_extension_is_a_der_utf8string_of_canonical_json() -> None:
    text = b'{"rack":"7","region":"EU"}'
    assert encode_tags_extension({"region": "EU", "rack": "7"}) == b"\x0c\x1a" + text
    assert decode_tags_extension(encode_tags_extension({"region": "EU"})) == {"region": "EU"}


def test_long_extension_uses_long_form_length() -> None:
    tags = {f"k{i}": "v" * 60 for i in range(10)}
    data = encode_tags_extension(tags)
    assert data[1] == 0x82
    assert decode_tags_extension(data) == tags


@pytest.mark.parametrize(
    "tags",
    [{"Region": "EU"}, {"": "x"}, {"a": "-x"}, {"a" * 48: "x"}, {f"k{i}": "" for i in range(65)}],
)
def test_bad_tags_are_refused(tags: dict[str, str]) -> None:
    with pytest.raises(AssetTagError) as info:
        check_tags(tags)
    assert info.value.reason == "assettag.tags_invalid"


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x04\x02{}",  # OCTET STRING, not UTF8String
        b"\x0c\x03{}",  # length says 3, 2 follow
        b"\x0c\x81\x02{}",  # non-minimal length
        b"\x0c\x02[]",  # not an object
        b'\x0c\x0b{"A":"EU"}',  # a key check_tags refuses
        b"\x0c\x02\xff\xfe",
    ],
)
def test_bad_extensions_are_parse_errors(data: bytes) -> None:
    with pytest.raises(ParseError) as info:
        decode_tags_extension(data)
    assert info.value.reason == "assettag.certificate_invalid"


@given(st.binary(max_size=300))
def test_decoding_random_bytes_raises_only_parse_errors(data: bytes) -> None:
    with contextlib.suppress(ParseError):
        decode_tags_extension(data)


def test_expected_nv_public_layout() -> None:
    raw = expected_nv_public()
    assert raw == struct.pack(">IHIHH", 0x01800110, 0x000B, 0x22060002, 0, 48)
    parsed = parse_nv_public(raw)
    assert parsed.data_size == 48
    assert parsed.name() == b"\x00\x0b" + hashlib.sha256(raw).digest()


def test_qualifying_data_differs_from_the_quotes() -> None:
    nonce = b"\x01" * 32
    assert (
        assettag_qualifying_data(nonce)
        == hashlib.sha256(b"trustplane-assettag-v1" + nonce).digest()
    )
