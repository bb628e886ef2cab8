"""The additive wire fields for asset tags: ReportBody.asset_tag and ReportResult.tag_certificate
(absent from the encodings when unused, so older bodies keep their exact bytes)."""

from __future__ import annotations

import base64
import json

import pytest

from trustcore.wire import (
    MAX_CERT_BYTES,
    AssetTagEvidence,
    ReportBody,
    ReportResult,
    WireError,
    encode_report_body,
)

HOST = "ab" * 32


def body(asset_tag: AssetTagEvidence | None = None) -> ReportBody:
    return ReportBody(
        host_id=HOST,
        boot_id="b",
        nonce=b"\x01" * 32,
        pcr_selection={0x000B: (0,)},
        pcr_values={0x000B: {0: b"\x00" * 32}},
        asset_tag=asset_tag,
    )


def test_body_without_evidence_has_no_asset_tag_key() -> None:
    encoded = encode_report_body(body())
    assert b"asset_tag" not in encoded
    assert ReportBody.from_json(json.loads(encoded)).asset_tag is None


def test_evidence_round_trips_in_the_canonical_body() -> None:
    evidence = AssetTagEvidence(b"cert", b"attest", b"sig")
    encoded = encode_report_body(body(evidence))
    assert (
        b'"asset_tag":{"certificate":"Y2VydA==","nv_attest":"YXR0ZXN0","nv_signature":"c2ln"}'
        in (encoded)
    )
    assert ReportBody.from_json(json.loads(encoded)).asset_tag == evidence


@pytest.mark.parametrize(
    ("asset_tag", "field"),
    [
        ({"nv_attest": "", "nv_signature": ""}, "asset_tag.certificate"),
        ({"certificate": "!!", "nv_attest": "", "nv_signature": ""}, "asset_tag.certificate"),
        (
            {
                "certificate": base64.b64encode(b"x" * (MAX_CERT_BYTES + 1)).decode(),
                "nv_attest": "",
                "nv_signature": "",
            },
            "asset_tag.certificate",
        ),
        ({"certificate": "", "nv_attest": "", "nv_signature": 5}, "asset_tag.nv_signature"),
        ("text", "asset_tag"),
    ],
)
def test_bad_evidence_names_its_field(asset_tag: object, field: str) -> None:
    value = json.loads(encode_report_body(body()))
    value["asset_tag"] = asset_tag
    with pytest.raises(WireError) as info:
        ReportBody.from_json(value)
    assert info.value.field_name == field


def test_report_result_tag_certificate_is_optional() -> None:
    plain = ReportResult("trusted", (), "jws", 1.0, 2.0)
    assert "tag_certificate" not in plain.to_json()
    assert ReportResult.from_json(plain.to_json()).tag_certificate is None
    tagged = ReportResult("untrusted", ("assettag.missing",), "jws", 1.0, 2.0, (), b"\x30\x82")
    assert tagged.to_json()["tag_certificate"] == "MII="
    assert ReportResult.from_json(tagged.to_json()) == tagged
