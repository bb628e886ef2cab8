"""trustplane image check|encrypt|decrypt with real OCI layouts and a real docker-registry.

The registry is Debian's ``docker-registry`` on 127.0.0.1 (started here); the key provider is
the test double in tests/imagekit.py (a peer the driver under test drives; see there), run as a
process exactly as ocicrypt runs providers. Expected digests come from the fixture and from
images built here, never from the code's output.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.imagekit import (
    FIXTURE,
    build_image,
    layout_manifest,
    layout_manifest_digest,
    max_alive,
    requests_seen,
    write_provider_double,
)
from trustcore.oci import Descriptor, LayoutReference
from trustplane.cli import main
from trustplane.imagestore import (
    ImageStoreError,
    OciLayout,
    RegistryClient,
    RegistryOptions,
)
from trustplane.registryserver import RegistryServer

PLAIN_MANIFEST = "sha256:255afb3448e5f6d0c6b2ef60d26ae28cd29c1d345dfd5fb69334980ba99701e2"
# what skopeo 1.11.2 wrote decrypting (decrypted-image): the plain manifest minus its newline
SKOPEO_DECRYPTED_MANIFEST = (
    "sha256:b4901d1562fa722a93f955d99757b2628bed5db853f7a6840ada42aa585b2445"
)
PLAIN_LAYERS = [
    "sha256:e8762c9e5f0cf1a0861897accbd8c1b2514b8604358c7ab72996d5cae06658d8",
    "sha256:b725a8a6e47c17e1dd60c34db7577ff7d75ca6de7127e14cc198d2e4370c528c",
]
ENC_KEY = "provider:trustplane:policy=region-eu"
DENIAL = "trustplane: key release denied: host untrusted (flavor.platform.pcr_mismatch: PCR 0)"


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    with RegistryServer(tmp_path_factory.mktemp("registry")) as server:
        yield server


@pytest.fixture
def provider(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The provider double's state directory; OCICRYPT_KEYPROVIDER_CONFIG names its config."""
    _, config = write_provider_double(tmp_path / "provider")
    state = tmp_path / "provider-state"
    state.mkdir()
    monkeypatch.setenv("OCICRYPT_KEYPROVIDER_CONFIG", str(config))
    monkeypatch.setenv("PROVIDER_STATE", str(state))
    return state


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def plain_ref() -> str:
    return f"oci:{FIXTURE / 'plain-image'}:v1"


# --- stores ------------------------------------------------------------------------------------


@pytest.mark.parametrize("chunk", [1 << 20, 100])
def test_registry_push_and_pull_monolithic_and_chunked(
    registry: RegistryServer, tmp_path: Path, chunk: int
) -> None:
    src = OciLayout(LayoutReference(str(FIXTURE / "plain-image"), "v1"))
    data, media_type = src.get_manifest()
    manifest = json.loads(data)
    repo = RegistryClient(
        registry.host,
        f"push/chunk{chunk}",
        "v1",
        RegistryOptions(plain_http=True, upload_chunk=chunk),
    )
    blobs = [manifest["config"], *manifest["layers"]]
    for obj in blobs:
        desc = Descriptor(obj["mediaType"], obj["digest"], obj["size"])
        src.fetch_blob(desc, tmp_path / "b")
        assert not repo.has_blob(desc)
        repo.put_blob(tmp_path / "b", desc)
        assert repo.has_blob(desc)
    assert repo.put_manifest(data, media_type) == PLAIN_MANIFEST
    back, back_type = repo.get_manifest()
    assert (back, back_type) == (data, "application/vnd.oci.image.manifest.v1+json")
    by_digest = RegistryClient(registry.host, f"push/chunk{chunk}", PLAIN_MANIFEST, repo.options)
    assert by_digest.get_manifest()[0] == data
    for obj in blobs:
        desc = Descriptor(obj["mediaType"], obj["digest"], obj["size"])
        repo.fetch_blob(desc, tmp_path / "pulled")
        expected = FIXTURE / "plain-image" / "blobs" / "sha256" / obj["digest"][7:]
        assert (tmp_path / "pulled").read_bytes() == expected.read_bytes()


def test_registry_refusals(registry: RegistryServer, tmp_path: Path) -> None:
    options = RegistryOptions(plain_http=True)
    with pytest.raises(ImageStoreError) as err:
        RegistryClient(registry.host, "no/such", "v1", options).get_manifest()
    assert err.value.reason == "image.not_found"
    assert "MANIFEST_UNKNOWN" in err.value.message or "NAME_UNKNOWN" in err.value.message
    src = OciLayout(LayoutReference(str(FIXTURE / "plain-image"), "v1"))
    layer = Descriptor("application/vnd.oci.image.layer.v1.tar+gzip", PLAIN_LAYERS[0], 167)
    src.fetch_blob(layer, tmp_path / "l")
    lying = Descriptor(layer.media_type, PLAIN_LAYERS[1], 167)
    repo = RegistryClient(registry.host, "lies/here", "v1", options)
    with pytest.raises(ImageStoreError) as err:
        repo.put_blob(tmp_path / "l", lying)
    assert err.value.reason == "image.registry_failed"
    assert "DIGEST_INVALID" in err.value.message
    with pytest.raises(ImageStoreError) as err:
        src.fetch_blob(Descriptor(layer.media_type, PLAIN_LAYERS[0], 166), tmp_path / "x")
    assert err.value.reason == "image.blob_mismatch"
    unreachable = RegistryClient("127.0.0.1:1", "a/b", "v1", options)
    with pytest.raises(ImageStoreError) as err:
        unreachable.get_manifest()
    assert err.value.reason == "image.registry_unreachable"


# --- encrypt, check, decrypt -----------------------------------------------------------------


def test_encrypt_check_decrypt_round_trip_in_layouts(
    provider: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    enc, dec = f"oci:{tmp_path / 'enc'}:v1", f"oci:{tmp_path / 'dec'}:v1"
    code, _, err = run(capsys, "image", "encrypt", plain_ref(), enc, "--encryption-key", ENC_KEY)
    assert code == 0, err
    layers = layout_manifest(tmp_path / "enc", "v1")["layers"]
    assert [layer["mediaType"] for layer in layers] == [
        "application/vnd.oci.image.layer.v1.tar+gzip+encrypted"
    ] * 2
    assert [layer["size"] for layer in layers] == [167, 151]
    assert not {layer["digest"] for layer in layers} & set(PLAIN_LAYERS)
    assert sorted(layers[0]["annotations"]) == [
        "org.opencontainers.image.enc.keys.provider.trustplane",
        "org.opencontainers.image.enc.pubopts",
    ]

    # the provider got exactly the recorded request shape, nulls included
    recorded = json.loads((FIXTURE / "keywrap-request-layer1.json").read_bytes())
    seen = requests_seen(provider)
    assert len(seen) == 2
    for request in seen:
        optsdata = json.loads(base64.b64decode(request["keywrapparams"]["optsdata"]))
        assert sorted(optsdata) == ["cipheroptions", "digest", "symkey"]
        assert request == {
            **recorded,
            "keywrapparams": {
                **recorded["keywrapparams"],
                "optsdata": request["keywrapparams"]["optsdata"],
            },
        }
    assert sorted(
        json.loads(base64.b64decode(r["keywrapparams"]["optsdata"]))["digest"] for r in seen
    ) == sorted(PLAIN_LAYERS)

    code, out, _ = run(capsys, "image", "check", enc)
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == (
        f"layer 1 {layers[0]['digest']}: encrypted, key k-test-1, policy region-eu, "
        "hub https://127.0.0.1:8443"
    )
    assert lines[-1] == f"{enc}: ok: all 2 layers are encrypted for trustplane"

    code, _, err = run(
        capsys, "image", "decrypt", enc, dec, "--decryption-key", "provider:trustplane"
    )
    assert code == 0, err
    assert layout_manifest_digest(tmp_path / "dec", "v1") == SKOPEO_DECRYPTED_MANIFEST
    for digest in PLAIN_LAYERS:
        got = (tmp_path / "dec" / "blobs" / "sha256" / digest[7:]).read_bytes()
        assert got == (FIXTURE / "plain-image" / "blobs" / "sha256" / digest[7:]).read_bytes()
    unwraps = [r for r in requests_seen(provider) if r["op"] == "keyunwrap"]
    recorded_unwrap = json.loads((FIXTURE / "keyunwrap-request-layer1.json").read_bytes())
    assert len(unwraps) == 2
    for request in unwraps:
        assert (
            request["keywrapparams"]
            == recorded_unwrap["keywrapparams"]
            == {"ec": None, "optsdata": None}
        )
        assert request["keyunwrapparams"]["dc"] == recorded_unwrap["keyunwrapparams"]["dc"]


def test_decrypts_skopeos_real_encrypted_image(
    provider: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PROVIDER_MODE", "recording")
    src = f"oci:{FIXTURE / 'encrypted-image'}:v1"
    code, _, err = run(
        capsys,
        "image",
        "decrypt",
        src,
        f"oci:{tmp_path / 'out'}:v1",
        "--decryption-key",
        "provider:trustplane",
    )
    assert code == 0, err
    manifest = layout_manifest(tmp_path / "out", "v1")
    assert [layer["digest"] for layer in manifest["layers"]] == PLAIN_LAYERS
    assert layout_manifest_digest(tmp_path / "out", "v1") == SKOPEO_DECRYPTED_MANIFEST
    recorded = sorted(
        (FIXTURE / f"keyunwrap-request-layer{n}.json").read_bytes().strip() for n in (1, 2)
    )
    assert sorted(p.read_bytes() for p in (provider / "requests").glob("*.json")) == recorded


def test_ten_layers_through_the_registry_six_providers_at_once(
    provider: Path,
    registry: RegistryServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    originals = build_image(tmp_path / "ten", "v1", 10, layer_bytes=300_000)
    monkeypatch.setenv("PROVIDER_TOTAL", "10")
    remote = f"docker://{registry.host}/ten/app:enc"
    code, _, err = run(
        capsys,
        "image",
        "encrypt",
        f"oci:{tmp_path / 'ten'}:v1",
        remote,
        "--encryption-key",
        ENC_KEY,
        "--plain-http",
    )
    assert code == 0, err
    assert len(requests_seen(provider)) == 10
    assert max_alive(provider) == 6
    code, out, _ = run(capsys, "image", "check", remote, "--plain-http", "--json")
    assert code == 0
    verdict = json.loads(out)
    assert verdict["ok"] is True
    assert [(v["key_id"], v["policy"]) for v in verdict["layers"]] == [
        ("k-test-1", "region-eu")
    ] * 10

    state2 = tmp_path / "state2"
    state2.mkdir()
    monkeypatch.setenv("PROVIDER_STATE", str(state2))
    code, _, err = run(
        capsys,
        "image",
        "decrypt",
        remote,
        f"oci:{tmp_path / 'back'}:v1",
        "--decryption-key",
        "provider:trustplane",
        "--plain-http",
    )
    assert code == 0, err
    assert max_alive(state2) == 6
    back = layout_manifest(tmp_path / "back", "v1")
    assert [layer["digest"] for layer in back["layers"]] == originals
    assert back["config"] == layout_manifest(tmp_path / "ten", "v1")["config"]


def test_a_refusing_provider_fails_with_its_line_and_writes_no_manifest(
    provider: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    enc = f"oci:{tmp_path / 'enc'}:v1"
    assert run(capsys, "image", "encrypt", plain_ref(), enc, "--encryption-key", ENC_KEY)[0] == 0
    monkeypatch.setenv("PROVIDER_REFUSE", DENIAL)
    code, out, err = run(
        capsys,
        "image",
        "decrypt",
        enc,
        f"oci:{tmp_path / 'dec'}:v1",
        "--decryption-key",
        "provider:trustplane",
    )
    assert code == 1
    assert out == ""
    assert err.endswith(f": {DENIAL}\n")
    assert err.startswith("trustplane: key provider trustplane failed (exit status 1): ")
    assert len(err.splitlines()) == 1
    assert not (tmp_path / "dec" / "index.json").exists() or layout_manifest_digest_missing(
        tmp_path / "dec"
    )


def layout_manifest_digest_missing(root: Path) -> bool:
    return json.loads((root / "index.json").read_text())["manifests"] == []


def test_a_tampered_layer_is_refused(
    provider: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    enc_dir = tmp_path / "enc"
    assert (
        run(
            capsys,
            "image",
            "encrypt",
            plain_ref(),
            f"oci:{enc_dir}:v1",
            "--encryption-key",
            ENC_KEY,
        )[0]
        == 0
    )
    layer = layout_manifest(enc_dir, "v1")["layers"][1]
    path = enc_dir / "blobs" / "sha256" / layer["digest"][7:]
    data = bytearray(path.read_bytes())
    data[40] ^= 0x01
    path.write_bytes(bytes(data))
    code, _, err = run(
        capsys,
        "image",
        "decrypt",
        f"oci:{enc_dir}:v1",
        f"oci:{tmp_path / 'dec'}:v1",
        "--decryption-key",
        "provider:trustplane",
    )
    assert code == 1
    assert "image.blob_mismatch" in err or "has another digest" in err
    # the same ciphertext under its own (recomputed) digest: the HMAC catches it
    import hashlib  # noqa: PLC0415

    new_digest = "sha256:" + hashlib.sha256(bytes(data)).hexdigest()
    (enc_dir / "blobs" / "sha256" / new_digest[7:]).write_bytes(bytes(data))
    manifest = layout_manifest(enc_dir, "v1")
    manifest["layers"][1]["digest"] = new_digest
    raw = json.dumps(manifest).encode()
    mdigest = hashlib.sha256(raw).hexdigest()
    (enc_dir / "blobs" / "sha256" / mdigest).write_bytes(raw)
    (enc_dir / "index.json").write_text(
        json.dumps(
            {
                "schemaVersion": 2,
                "manifests": [
                    {
                        "mediaType": "application/vnd.oci.image.manifest.v1+json",
                        "digest": f"sha256:{mdigest}",
                        "size": len(raw),
                        "annotations": {"org.opencontainers.image.ref.name": "v1"},
                    }
                ],
            }
        )
    )
    code, _, err = run(
        capsys,
        "image",
        "decrypt",
        f"oci:{enc_dir}:v1",
        f"oci:{tmp_path / 'dec2'}:v1",
        "--decryption-key",
        "provider:trustplane",
    )
    assert code == 2
    assert "ocicrypt.hmac_mismatch" in err


# --- the gate on images that must fail ------------------------------------------------------


def rewrite_layer(root: Path, index: int, **changes: object) -> str:
    """Rewrite one layer descriptor of root:v1 into root:bad; returns the reference."""
    import hashlib  # noqa: PLC0415

    manifest = layout_manifest(root, "v1")
    layer = manifest["layers"][index]
    for key, value in changes.items():
        if key == "annotations":
            layer["annotations"] = value
        else:
            layer[key] = value
    raw = json.dumps(manifest).encode()
    digest = hashlib.sha256(raw).hexdigest()
    (root / "blobs" / "sha256" / digest).write_bytes(raw)
    index_doc = json.loads((root / "index.json").read_text())
    index_doc["manifests"].append(
        {
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": f"sha256:{digest}",
            "size": len(raw),
            "annotations": {"org.opencontainers.image.ref.name": "bad"},
        }
    )
    (root / "index.json").write_text(json.dumps(index_doc))
    return f"oci:{root}:bad"


@pytest.fixture
def encrypted(provider: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    root = tmp_path / "enc"
    assert (
        run(capsys, "image", "encrypt", plain_ref(), f"oci:{root}:v1", "--encryption-key", ENC_KEY)[
            0
        ]
        == 0
    )
    return root


PROVIDER_KEY = "org.opencontainers.image.enc.keys.provider.trustplane"
PUBOPTS = "org.opencontainers.image.enc.pubopts"


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("plain", "image.layer_plain"),
        ("other_provider", "image.layer_other_provider"),
        ("extra_jwe", "image.layer_extra_recipient"),
        ("blob_one_byte", "image.key_blob_invalid"),
        ("blob_not_base64", "image.key_blob_invalid"),
        ("pubopts_garbage", "image.pubopts_invalid"),
    ],
)
def test_gate_refuses_with_reason(
    encrypted: Path, capsys: pytest.CaptureFixture[str], case: str, reason: str
) -> None:
    layer = layout_manifest(encrypted, "v1")["layers"][1]
    ann = dict(layer["annotations"])
    blob = base64.b64decode(ann[PROVIDER_KEY])
    changes: dict[str, object] = {}
    if case == "plain":
        changes = {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "annotations": {}}
    elif case == "other_provider":
        changes = {
            "annotations": {
                "org.opencontainers.image.enc.keys.provider.attacker": ann[PROVIDER_KEY],
                PUBOPTS: ann[PUBOPTS],
            }
        }
    elif case == "extra_jwe":
        changes = {"annotations": {**ann, "org.opencontainers.image.enc.keys.jwe": "eyJ9"}}
    elif case == "blob_one_byte":
        tampered = blob.replace(b'"v":1', b'"v":2')
        changes = {"annotations": {**ann, PROVIDER_KEY: base64.b64encode(tampered).decode()}}
    elif case == "blob_not_base64":
        changes = {"annotations": {**ann, PROVIDER_KEY: "\u00e9t\u00e9"}}
    elif case == "pubopts_garbage":
        changes = {"annotations": {**ann, PUBOPTS: base64.b64encode(b"\xff\x00").decode()}}
    ref = rewrite_layer(encrypted, 1, **changes)
    code, out, _ = run(capsys, "image", "check", ref, "--json")
    assert code == 1
    verdict = json.loads(out)
    assert verdict["ok"] is False
    assert verdict["reason"] == reason
    assert [v["ok"] for v in verdict["layers"]] == [True, False]
    assert verdict["layers"][1]["reason"] == reason
    assert verdict["layers"][0]["policy"] == "region-eu"
    assert verdict["message"] == "1 of 2 layers are not encrypted for trustplane"


def test_gate_on_the_fixtures_and_an_empty_image(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "image", "check", plain_ref())
    assert code == 1
    assert out.splitlines() == [
        f"layer 1 {PLAIN_LAYERS[0]}: image.layer_plain: layer is not encrypted",
        f"layer 2 {PLAIN_LAYERS[1]}: image.layer_plain: layer is not encrypted",
        f"{plain_ref()}: refused: 2 of 2 layers are not encrypted for trustplane",
    ]
    # skopeo's image, encrypted for a provider named trustplane whose blob is not ours
    code, out, _ = run(capsys, "image", "check", f"oci:{FIXTURE / 'encrypted-image'}:v1", "--json")
    assert code == 1
    assert [v["reason"] for v in json.loads(out)["layers"]] == ["image.key_blob_invalid"] * 2
    build_image(tmp_path / "empty", "v1", 0)
    code, out, _ = run(capsys, "image", "check", f"oci:{tmp_path / 'empty'}:v1", "--json")
    assert code == 1
    assert json.loads(out)["reason"] == "image.no_layers"


@pytest.mark.parametrize(
    ("argv", "code", "text"),
    [
        (["image", "check", "oci:/nonexistent/x:v1"], 1, "not an OCI layout"),
        (["image", "check", "ftp://x/y"], 2, "oci.reference_invalid"),
        (["image", "check", "docker://127.0.0.1:5000/UPPER:v1"], 2, "malformed repository"),
        (
            ["image", "check", "oci:" + str(FIXTURE / "plain-image") + ":nope"],
            1,
            "no image tagged nope",
        ),
        (
            ["image", "encrypt", "oci:a:v1", "oci:b:v1", "--encryption-key", "jwe:/k.pem"],
            2,
            "ocicrypt.key_spec_invalid",
        ),
    ],
)
def test_bad_references_and_keys(
    argv: list[str], code: int, text: str, capsys: pytest.CaptureFixture[str]
) -> None:
    got, out, err = run(capsys, *argv)
    assert (got, out) == (code, "")
    assert text in err
    assert len(err.splitlines()) == 1


def test_provider_config_problems(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    argv = [
        "image",
        "encrypt",
        plain_ref(),
        f"oci:{tmp_path / 'o'}:v1",
        "--encryption-key",
        ENC_KEY,
    ]
    monkeypatch.delenv("OCICRYPT_KEYPROVIDER_CONFIG", raising=False)
    code, _, err = run(capsys, *argv)
    assert code == 1
    assert "set OCICRYPT_KEYPROVIDER_CONFIG" in err
    config = tmp_path / "c.json"
    for body, text in [
        ("{}", "not {"),
        ('{"key-providers":{"trustplane":{"grpc":"localhost:1"}}}', "has no cmd"),
        ('{"key-providers":{"trustplane":{"cmd":{"path":"rel/path"}}}}', "must be absolute"),
        ('{"key-providers":{"other":{"cmd":{"path":"/bin/true"}}}}', "'trustplane' is not in"),
        ('{"key-providers":{"trustplane":{"cmd":{"path":"/nonexistent/p"}}}}', "cannot run"),
        ('{"key-providers":{"trustplane":{"cmd":{"path":"/bin/true"}}}}', "reply is not JSON"),
    ]:
        config.write_text(body)
        code, _, err = run(capsys, *argv, "--keyprovider-config", str(config))
        assert code == 1, body
        assert text in err, (body, err)
    assert not (tmp_path / "o" / "index.json").exists() or layout_manifest_digest_missing(
        tmp_path / "o"
    )
    assert os.environ.get("OCICRYPT_KEYPROVIDER_CONFIG") is None


def test_a_docker_schema2_image_is_encrypted_as_an_oci_image(
    provider: Path, registry: RegistryServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """ocicrypt encrypts OCI images; skopeo converts a Docker schema 2 image on the way, so do
    we: the same blobs under OCI media types."""
    originals = build_image(tmp_path / "docker", "v1", 3, docker=True)
    remote = f"docker://{registry.host}/docker/app:v1"
    enc = f"docker://{registry.host}/docker/app:enc"
    assert (
        run(
            capsys,
            "image",
            "decrypt",
            f"oci:{tmp_path / 'docker'}:v1",
            remote,
            "--decryption-key",
            "provider:trustplane",
            "--plain-http",
        )[0]
        == 0
    )
    code, _, err = run(
        capsys, "image", "encrypt", remote, enc, "--encryption-key", ENC_KEY, "--plain-http"
    )
    assert code == 0, err
    code, out, _ = run(capsys, "image", "check", enc, "--plain-http", "--json")
    assert code == 0
    assert [v["media_type"] for v in json.loads(out)["layers"]] == [
        "application/vnd.oci.image.layer.v1.tar+gzip+encrypted"
    ] * 3
    code, _, err = run(
        capsys,
        "image",
        "decrypt",
        enc,
        f"oci:{tmp_path / 'back'}:v1",
        "--decryption-key",
        "provider:trustplane",
        "--plain-http",
    )
    assert code == 0, err
    back = layout_manifest(tmp_path / "back", "v1")
    assert back["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert back["config"]["mediaType"] == "application/vnd.oci.image.config.v1+json"
    assert (
        back["config"]["digest"] == layout_manifest(tmp_path / "docker", "v1")["config"]["digest"]
    )
    assert [(d["mediaType"], d["digest"]) for d in back["layers"]] == [
        ("application/vnd.oci.image.layer.v1.tar+gzip", digest) for digest in originals
    ]
