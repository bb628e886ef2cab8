"""trustcore.keyblob: the key provider's opaque blob, one canonical form, every field checked."""

from __future__ import annotations

import base64
import json

import pytest

from trustcore.keyblob import (
    MAX_KEY_BLOB_BYTES,
    KeyBlob,
    KeyBlobError,
    is_key_id,
    is_policy_name,
    parse_key_blob,
)

IV = bytes(range(12))
CT = bytes(range(100, 100 + 48))


def _blob() -> KeyBlob:
    return KeyBlob(
        key_id="k-1", policy="region-eu", hub="https://127.0.0.1:8443", iv=IV, ciphertext=CT
    )


def test_encoding_is_sorted_compact_json() -> None:
    expected = (
        '{"alg":"A256GCM","ct":"'
        + base64.b64encode(CT).decode()
        + '","hub":"https://127.0.0.1:8443",'
        '"iv":"AAECAwQFBgcICQoL","kid":"k-1","policy":"region-eu","v":1}'
    ).encode()
    assert _blob().encode() == expected
    assert parse_key_blob(expected) == _blob()


def test_associated_data_covers_identity_fields_not_iv_or_ct() -> None:
    ad = _blob().associated_data()
    assert (
        ad
        == b'{"alg":"A256GCM","hub":"https://127.0.0.1:8443","kid":"k-1","policy":"region-eu","v":1}'
    )


def _mutated(**changes: object) -> bytes:
    obj = json.loads(_blob().encode())
    for key, value in changes.items():
        if value is None:
            del obj[key]
        else:
            obj[key] = value
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xff\xfe",
        b"[]",
        b"null",
        _mutated(v=2),
        _mutated(v="1"),
        _mutated(v=True),
        _mutated(alg="A128GCM"),
        _mutated(kid=""),
        _mutated(kid="../etc"),
        _mutated(kid="k" * 65),
        _mutated(policy="Region_EU"),
        _mutated(policy=7),
        _mutated(hub=""),
        _mutated(hub="https://x\n"),
        _mutated(iv=base64.b64encode(bytes(11)).decode()),
        _mutated(iv="not base64!"),
        _mutated(ct=base64.b64encode(bytes(16)).decode()),
        _mutated(ct=None),
        _mutated(extra="x"),
        b'{"v":1,' + _blob().encode()[1:],  # duplicate key, not canonical
        _blob().encode().replace(b",", b", "),  # white space: not canonical
        b"[" * 100_000,
    ],
)
def test_malformed_blobs_are_refused_with_the_release_reason(data: bytes) -> None:
    with pytest.raises(KeyBlobError) as err:
        parse_key_blob(data)
    assert err.value.reason == "release.blob_invalid"


def test_size_limit() -> None:
    with pytest.raises(KeyBlobError, match="at most 4096"):
        parse_key_blob(b" " * (MAX_KEY_BLOB_BYTES + 1))


def test_names() -> None:
    assert is_key_id("k_2024.01-a")
    assert not is_key_id("-k")
    assert not is_key_id("k/1")
    assert is_policy_name("region-eu")
    assert not is_policy_name("-eu")
    assert not is_policy_name("EU")
