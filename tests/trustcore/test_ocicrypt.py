"""trustcore.ocicrypt against what a real skopeo 1.11.2 (ocicrypt 1.1.7) wrote and sent.

The fixture (tests/data/fixtures/ocicrypt, see its README) holds a plain two-layer image, the same
image encrypted by skopeo through a recording key provider, and the provider's stdin/stdout. The
recording provider wrapped ``optsdata`` with AES-256-GCM under the key 00 01 .. 1f into
``{"nonce", "ct"}``, so with that key the real annotations unwrap to ocicrypt's real private
options, which must decrypt skopeo's real encrypted layers into the plain image's layers.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from trustcore.ocicrypt import (
    PROVIDER_ANNOTATION_PREFIX,
    PUBOPTS_ANNOTATION,
    LayerDecryptor,
    LayerEncryptor,
    OcicryptError,
    PrivateOptions,
    ProviderKey,
    PublicOptions,
    decrypted_media_type,
    encrypted_media_type,
    encryption_schemes,
    keyunwrap_request,
    keywrap_request,
    parse_keyunwrap_response,
    parse_keywrap_response,
    parse_private_options,
    parse_provider_key,
    parse_public_options,
    wrapped_keys,
)

FIXTURE = Path(__file__).resolve().parent.parent / "data" / "fixtures" / "ocicrypt"
RECORDED_KEY = bytes(range(32))
PLAIN_LAYERS = [
    "sha256:e8762c9e5f0cf1a0861897accbd8c1b2514b8604358c7ab72996d5cae06658d8",
    "sha256:b725a8a6e47c17e1dd60c34db7577ff7d75ca6de7127e14cc198d2e4370c528c",
]


def blob(image: str, digest: str) -> bytes:
    return (FIXTURE / image / "blobs" / "sha256" / digest.removeprefix("sha256:")).read_bytes()


def manifest(image: str) -> dict:
    index = json.loads((FIXTURE / image / "index.json").read_text())
    return json.loads(blob(image, index["manifests"][0]["digest"]))


def recorded(name: str) -> bytes:
    return (FIXTURE / name).read_bytes().strip()


def recording_provider_unwrap(annotation: bytes) -> bytes:
    env = json.loads(annotation)
    nonce, ct = base64.b64decode(env["nonce"]), base64.b64decode(env["ct"])
    return AESGCM(RECORDED_KEY).decrypt(nonce, ct, None)


def decrypt(private: PrivateOptions, public: PublicOptions, data: bytes, chunk: int) -> bytes:
    dec = LayerDecryptor(private, public)
    out = b"".join(dec.update(data[i : i + chunk]) for i in range(0, len(data), chunk))
    assert dec.finish() == private.digest
    return out


@pytest.mark.parametrize("chunk", [1, 7, 16, 4096])
def test_real_encrypted_layers_decrypt_to_the_plain_layers(chunk: int) -> None:
    layers = manifest("encrypted-image")["layers"]
    assert [layer["mediaType"] for layer in layers] == [
        "application/vnd.oci.image.layer.v1.tar+gzip+encrypted"
    ] * 2
    for layer, plain_digest in zip(layers, PLAIN_LAYERS, strict=True):
        keys = wrapped_keys(layer["annotations"])
        assert list(keys) == ["trustplane"]
        private = parse_private_options(recording_provider_unwrap(keys["trustplane"]))
        assert private.digest == plain_digest
        public = parse_public_options(layer["annotations"][PUBOPTS_ANNOTATION])
        plain = decrypt(private, public, blob("encrypted-image", layer["digest"]), chunk)
        assert "sha256:" + hashlib.sha256(plain).hexdigest() == plain_digest
        assert plain == blob("plain-image", plain_digest)
        assert decrypted_media_type(layer["mediaType"]) == (
            "application/vnd.oci.image.layer.v1.tar+gzip"
        )


def test_our_encryption_equals_skopeos_with_the_same_key_and_nonce() -> None:
    """Same key and nonce → byte-identical ciphertext, HMAC and options as skopeo's."""
    layers = manifest("encrypted-image")["layers"]
    for layer, plain_digest in zip(layers, PLAIN_LAYERS, strict=True):
        optsdata = recording_provider_unwrap(wrapped_keys(layer["annotations"])["trustplane"])
        private = parse_private_options(optsdata)
        enc = LayerEncryptor(private.symkey, private.nonce)
        ct = enc.update(blob("plain-image", plain_digest))
        ours_private, ours_public, ct_digest = enc.finish()
        assert ct == blob("encrypted-image", layer["digest"])
        assert ct_digest == layer["digest"]
        assert ours_private == private
        assert ours_private.encode() == optsdata
        assert ours_public.annotation() == layer["annotations"][PUBOPTS_ANNOTATION]


def test_recorded_requests_are_byte_for_byte_ours() -> None:
    wrap_key = parse_provider_key("provider:trustplane:policy=region-eu")
    assert wrap_key == ProviderKey("trustplane", b"policy=region-eu")
    unwrap_key = parse_provider_key("provider:trustplane")
    assert unwrap_key == ProviderKey("trustplane", b"Enabled")
    annotation = parse_keywrap_response(recorded("keywrap-response-layer1.json"))
    for n in (1, 2):
        request = json.loads(recorded(f"keywrap-request-layer{n}.json"))
        optsdata = base64.b64decode(request["keywrapparams"]["optsdata"])
        assert keywrap_request(wrap_key, optsdata) == recorded(f"keywrap-request-layer{n}.json")
        unwrap = json.loads(recorded(f"keyunwrap-request-layer{n}.json"))
        blob_bytes = base64.b64decode(unwrap["keyunwrapparams"]["annotation"])
        assert keyunwrap_request(unwrap_key, blob_bytes) == recorded(
            f"keyunwrap-request-layer{n}.json"
        )
    layer1 = manifest("encrypted-image")["layers"][0]["annotations"]
    assert annotation == wrapped_keys(layer1)["trustplane"]


def test_hmac_catches_one_flipped_bit_and_a_wrong_digest() -> None:
    layer = manifest("encrypted-image")["layers"][0]
    private = parse_private_options(
        recording_provider_unwrap(wrapped_keys(layer["annotations"])["trustplane"])
    )
    public = parse_public_options(layer["annotations"][PUBOPTS_ANNOTATION])
    data = bytearray(blob("encrypted-image", layer["digest"]))
    data[100] ^= 1
    dec = LayerDecryptor(private, public)
    dec.update(bytes(data))
    with pytest.raises(OcicryptError) as err:
        dec.finish()
    assert err.value.reason == "ocicrypt.hmac_mismatch"
    other = PrivateOptions(private.symkey, PLAIN_LAYERS[1], private.nonce)
    dec = LayerDecryptor(other, public)
    dec.update(blob("encrypted-image", layer["digest"]))
    with pytest.raises(OcicryptError) as err:
        dec.finish()
    assert err.value.reason == "ocicrypt.digest_mismatch"


def test_round_trip_of_a_large_layer_in_chunks() -> None:
    data = bytes(range(256)) * 4099
    enc = LayerEncryptor(b"k" * 32, b"n" * 16)
    ct = b"".join(enc.update(data[i : i + 65536]) for i in range(0, len(data), 65536))
    private, public, _ = enc.finish()
    assert len(ct) == len(data)
    assert ct != data
    assert decrypt(private, public, ct, 1000) == data


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "ocicrypt.options_invalid"),
        (b"\xff\xfe", "ocicrypt.options_invalid"),
        (b"[]", "ocicrypt.options_invalid"),
        (
            b'{"symkey":"AA==","digest":"sha256:'
            + b"0" * 64
            + b'","cipheroptions":{"nonce":"'
            + base64.b64encode(b"n" * 16)
            + b'"}}',
            "ocicrypt.options_invalid",
        ),
        (
            b'{"symkey":"' + base64.b64encode(b"k" * 32) + b'","digest":"md5:00",'
            b'"cipheroptions":{"nonce":"' + base64.b64encode(b"n" * 16) + b'"}}',
            "ocicrypt.options_invalid",
        ),
        (
            b'{"symkey":"'
            + base64.b64encode(b"k" * 32)
            + b'","digest":"sha256:'
            + b"0" * 64
            + b'","cipheroptions":null}',
            "ocicrypt.options_invalid",
        ),
        (b"{" + b" " * 5000 + b"}", "ocicrypt.options_invalid"),
    ],
)
def test_malformed_private_options(data: bytes, reason: str) -> None:
    with pytest.raises(OcicryptError) as err:
        parse_private_options(data)
    assert err.value.reason == reason


@pytest.mark.parametrize(
    ("annotation", "reason"),
    [
        ("not base64!", "ocicrypt.pubopts_invalid"),
        (
            base64.b64encode(b'{"cipher":"AES_256_CTR_HMAC_SHA256","hmac":"AA=="}').decode(),
            "ocicrypt.pubopts_invalid",
        ),
        (
            base64.b64encode(
                b'{"cipher":"AES_128_GCM","hmac":"' + base64.b64encode(b"h" * 32) + b'"}'
            ).decode(),
            "ocicrypt.cipher_unsupported",
        ),
        ("A" * 5000, "ocicrypt.pubopts_invalid"),
    ],
)
def test_malformed_public_options(annotation: str, reason: str) -> None:
    with pytest.raises(OcicryptError) as err:
        parse_public_options(annotation)
    assert err.value.reason == reason


@pytest.mark.parametrize(
    "spec", ["jwe:/key.pem", "provider:", "provider:bad name", "provider:x:\x00", "pgp:a@b"]
)
def test_key_specs_refused(spec: str) -> None:
    with pytest.raises(OcicryptError) as err:
        parse_provider_key(spec)
    assert err.value.reason == "ocicrypt.key_spec_invalid"


@pytest.mark.parametrize(
    "reply",
    [
        b"",
        b"null",
        b'{"keywrapresults":null}',
        b'{"keywrapresults":{"annotation":""}}',
        b'{"keywrapresults":{"annotation":"%%%"}}',
        b'{"keyunwrapresults":{"optsdata":"AA=="}}',
    ],
)
def test_malformed_keywrap_replies(reply: bytes) -> None:
    with pytest.raises(OcicryptError) as err:
        parse_keywrap_response(reply)
    assert err.value.reason == "ocicrypt.provider_reply_invalid"


def test_keyunwrap_reply_and_media_types_and_schemes() -> None:
    assert parse_keyunwrap_response(b'{"keyunwrapresults":{"optsdata":"YWJj"}}') == b"abc"
    assert encrypted_media_type("application/vnd.oci.image.layer.v1.tar") == (
        "application/vnd.oci.image.layer.v1.tar+encrypted"
    )
    with pytest.raises(OcicryptError) as err:
        encrypted_media_type("application/vnd.oci.image.layer.v1.tar+encrypted")
    assert err.value.reason == "ocicrypt.already_encrypted"
    with pytest.raises(OcicryptError) as err:
        decrypted_media_type("application/vnd.oci.image.layer.v1.tar")
    assert err.value.reason == "ocicrypt.not_encrypted"
    annotations = {
        PROVIDER_ANNOTATION_PREFIX + "x": "YQ==",
        "org.opencontainers.image.enc.keys.jwe": "e",
    }
    assert encryption_schemes(annotations) == ["jwe", "provider.x"]
    with pytest.raises(OcicryptError) as err:
        wrapped_keys({PROVIDER_ANNOTATION_PREFIX + "x": "@@"})
    assert err.value.reason == "ocicrypt.annotation_invalid"
    assert "symkey" not in repr(PrivateOptions(b"k" * 32, PLAIN_LAYERS[0], b"n" * 16))
