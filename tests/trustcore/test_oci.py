"""trustcore.oci and trustcore.imagegate: manifests, references and the gate's verdicts on
garbage; every malformed input raises OciError (never anything else), the gate never raises."""

from __future__ import annotations

import base64
import contextlib
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trustcore.imagegate import check_layer, check_layers
from trustcore.oci import (
    Descriptor,
    LayoutReference,
    OciError,
    RegistryReference,
    parse_image_reference,
    parse_index,
    parse_manifest,
)

D1 = "sha256:" + "a" * 64
LAYER = {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": D1, "size": 3}
CONFIG = {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": D1, "size": 2}


def doc(**changes: object) -> bytes:
    base: dict[str, object] = {"schemaVersion": 2, "config": CONFIG, "layers": [LAYER]}
    base.update(changes)
    return json.dumps(base).encode()


def test_a_manifest_keeps_its_other_fields_when_layers_change() -> None:
    m = parse_manifest(doc(annotations={"a": "b"}))
    new = Descriptor(LAYER["mediaType"] + "+encrypted", "sha256:" + "b" * 64, 3, {"k": "v"})
    out = json.loads(m.with_layers([new]))
    assert out == {
        "schemaVersion": 2,
        "config": CONFIG,
        "layers": [
            {**LAYER, "mediaType": new.media_type, "digest": new.digest, "annotations": {"k": "v"}}
        ],
        "annotations": {"a": "b"},
    }
    with pytest.raises(OciError):
        m.with_layers([])


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "oci.manifest_invalid"),
        (b"\xff", "oci.manifest_invalid"),
        (b"[]", "oci.manifest_invalid"),
        (doc(schemaVersion=1), "oci.manifest_invalid"),
        (doc(layers=None), "oci.manifest_invalid"),
        (doc(layers=[LAYER] * 1025), "oci.manifest_invalid"),
        (doc(layers=[{**LAYER, "size": -1}]), "oci.manifest_invalid"),
        (doc(layers=[{**LAYER, "size": 10**30}]), "oci.manifest_invalid"),
        (doc(layers=[{**LAYER, "size": True}]), "oci.manifest_invalid"),
        (doc(layers=[{**LAYER, "digest": "sha256:AA"}]), "oci.manifest_invalid"),
        (doc(layers=[{**LAYER, "mediaType": "x\n/y"}]), "oci.manifest_invalid"),
        (doc(layers=[{**LAYER, "annotations": {"k": 1}}]), "oci.manifest_invalid"),
        (doc(mediaType="application/vnd.oci.image.index.v1+json"), "oci.index_not_supported"),
        (doc(manifests=[]), "oci.index_not_supported"),
        (doc(mediaType="text/plain"), "oci.manifest_invalid"),
        (b"[" * 100000, "oci.manifest_invalid"),
        (b" " * (4 * 1024 * 1024 + 1), "oci.manifest_invalid"),
    ],
)
def test_malformed_manifests(data: bytes, reason: str) -> None:
    with pytest.raises(OciError) as err:
        parse_manifest(data)
    assert err.value.reason == reason


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("oci:/tmp/x:v1", LayoutReference("/tmp/x", "v1")),
        ("oci:/tmp/x", LayoutReference("/tmp/x", "latest")),
        ("oci:rel/dir:1.0-enc", LayoutReference("rel/dir", "1.0-enc")),
        ("docker://127.0.0.1:5000/a/b:v1", RegistryReference("127.0.0.1:5000", "a/b", "v1")),
        ("docker://reg.example/app", RegistryReference("reg.example", "app", "latest")),
        ("docker://[::1]:5000/app:t", RegistryReference("[::1]:5000", "app", "t")),
        (f"docker://h:1/app@{D1}", RegistryReference("h:1", "app", D1)),
    ],
)
def test_references(text: str, expected: LayoutReference | RegistryReference) -> None:
    assert parse_image_reference(text) == expected
    assert parse_image_reference(str(expected)) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "oci:",
        "oci::v1",
        "docker://",
        "docker://h",
        "docker://h/UP:v1",
        "docker://h/a:b:c/d",
        "docker://h/a@sha256:00",
        "docker://h/a:\x00",
        "docker://h/a:" + "t" * 200,
        "docker://bad host/a",
        "dir:/x",
        "oci:/x:v1\n",
        "docker://h/" + "a" * 300,
    ],
)
def test_bad_references(text: str) -> None:
    with pytest.raises(OciError) as err:
        parse_image_reference(text)
    assert err.value.reason == "oci.reference_invalid"


def test_index_parsing() -> None:
    entry = {**LAYER, "annotations": {"org.opencontainers.image.ref.name": "v1"}}
    assert parse_index(json.dumps({"schemaVersion": 2, "manifests": [entry]}).encode()) == [
        Descriptor(LAYER["mediaType"], D1, 3, {"org.opencontainers.image.ref.name": "v1"})
    ]
    with pytest.raises(OciError):
        parse_index(b'{"schemaVersion":2}')


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_manifest_parser_only_raises_its_error(data: bytes) -> None:
    with contextlib.suppress(OciError):
        parse_manifest(data)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_reference_parser_only_raises_its_error(text: str) -> None:
    with contextlib.suppress(OciError):
        parse_image_reference(text)


annotation_values = st.one_of(
    st.text(max_size=60),
    st.binary(max_size=60).map(lambda b: base64.b64encode(b).decode()),
)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(
        [
            "application/vnd.oci.image.layer.v1.tar+gzip+encrypted",
            "application/vnd.oci.image.layer.v1.tar",
        ]
    ),
    st.dictionaries(
        st.sampled_from(
            [
                "org.opencontainers.image.enc.keys.provider.trustplane",
                "org.opencontainers.image.enc.pubopts",
                "org.opencontainers.image.enc.keys.jwe",
                "other",
            ]
        ),
        annotation_values,
    ),
)
def test_the_gate_never_raises_and_never_passes_garbage(
    media_type: str, ann: dict[str, str]
) -> None:
    verdict = check_layer(1, Descriptor(media_type, D1, 1, ann))
    assert verdict.ok is False
    assert verdict.reason is not None
    assert verdict.reason.startswith("image.")


def test_an_empty_image_is_not_a_pass() -> None:
    verdict = check_layers([])
    assert (verdict.ok, verdict.reason) == (False, "image.no_layers")


def test_docker_schema2_maps_to_oci_and_unknown_types_are_refused() -> None:
    docker = doc(
        mediaType="application/vnd.docker.distribution.manifest.v2+json",
        config={**CONFIG, "mediaType": "application/vnd.docker.container.image.v1+json"},
        layers=[{**LAYER, "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip"}],
    )
    oci = parse_manifest(docker).to_oci()
    assert oci.media_type == "application/vnd.oci.image.manifest.v1+json"
    assert oci.config == Descriptor("application/vnd.oci.image.config.v1+json", D1, 2)
    assert oci.layers == (Descriptor("application/vnd.oci.image.layer.v1.tar+gzip", D1, 3),)
    assert json.loads(oci.with_layers(list(oci.layers))) == {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {**CONFIG, "mediaType": "application/vnd.oci.image.config.v1+json"},
        "layers": [{**LAYER, "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip"}],
    }
    odd = doc(
        mediaType="application/vnd.docker.distribution.manifest.v2+json",
        layers=[{**LAYER, "mediaType": "application/vnd.docker.plugin.v1+json"}],
    )
    with pytest.raises(OciError) as err:
        parse_manifest(odd).to_oci()
    assert err.value.reason == "oci.media_type_unsupported"
