"""trustcore.wire: round trips, the one canonical body encoding, and named bad inputs."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import pytest

from trustcore import wire
from trustcore.algorithms import TPM_ALG_SHA1, TPM_ALG_SHA256
from trustcore.wire import Challenge, ReportResult, WireError

HOST = "ab" * 32
NONCE = bytes(range(32))


def body(**over: Any) -> wire.ReportBody:
    fields: dict[str, Any] = {
        "host_id": HOST,
        "boot_id": "0b5c3c2e-2f64-4a8e-9d0e-3c1f00000001",
        "nonce": NONCE,
        "pcr_selection": {TPM_ALG_SHA256: (0, 7)},
        "pcr_values": {TPM_ALG_SHA256: {0: b"\x01" * 32, 7: b"\x07" * 32}},
        "eventlogs": {"uefi": wire.EventLogEvidence(hashlib.sha256(b"log").digest(), b"log")},
        "facts": {"hostname": "node1"},
        "agent_version": "0.1.0",
        "sequence": 5,
    }
    fields.update(over)
    return wire.ReportBody(**fields)


def test_canonical_body_is_sorted_compact_ascii() -> None:
    raw = wire.encode_report_body(body(facts={"hostname": "nöde"}))
    assert b" " not in raw
    assert raw.isascii()
    assert b'"hostname":"n\\u00f6de"' in raw
    decoded = json.loads(raw)
    assert list(decoded) == sorted(decoded)
    assert decoded["pcr_values"] == {"sha256": {"0": "01" * 32, "7": "07" * 32}}
    assert decoded["pcr_selection"] == {"sha256": [0, 7]}


def test_qualifying_data_is_sha256_of_nonce_and_body_hash() -> None:
    raw = b'{"x":1}'
    expected = hashlib.sha256(NONCE + hashlib.sha256(raw).digest()).digest()
    assert wire.report_qualifying_data(NONCE, raw) == expected


def test_report_round_trip_keeps_exact_body_bytes() -> None:
    raw = wire.encode_report_body(body())
    report = wire.Report(body_bytes=raw, attest=b"\xff\x54", signature=b"\x00\x18")
    again = wire.Report.from_json(json.loads(json.dumps(report.to_json())))
    assert again.body_bytes == raw
    assert again.body() == body()


def test_host_id_is_sha256_of_ek_public() -> None:
    assert wire.host_id_from_ek(b"ek") == hashlib.sha256(b"ek").hexdigest()


def body_json(**over: Any) -> dict[str, Any]:
    value = body().to_json()
    value.update(over)
    return value


@pytest.mark.parametrize(
    ("over", "field"),
    [
        ({"type": "report"}, "type"),
        ({"version": 2}, "version"),
        ({"host_id": "AB" * 32}, "host_id"),
        ({"host_id": "ab" * 31}, "host_id"),
        ({"nonce": base64.b64encode(b"x" * 31).decode()}, "nonce"),
        ({"nonce": "!!!"}, "nonce"),
        ({"pcr_selection": {"md5": [0]}}, "pcr_selection.md5"),
        ({"pcr_selection": {"sha256": [7, 0]}}, "pcr_selection.sha256"),
        ({"pcr_selection": {"sha256": [24]}}, "pcr_selection.sha256"),
        ({"pcr_values": {"sha256": {"0": "01" * 20}}}, "pcr_values.sha256.0"),
        ({"pcr_values": {"sha256": {"00": "01" * 32}}}, "pcr_values.sha256.00"),
        ({"pcr_values": {"sha256": {"0": "AA" * 32}}}, "pcr_values.sha256.0"),
        ({"eventlogs": {"uefi": {"sha256": "00" * 32, "data": "bG9n"}}}, "eventlogs.uefi"),
        ({"sequence": -1}, "sequence"),
        ({"sequence": True}, "sequence"),
        ({"boot_id": "x" * 65}, "boot_id"),
    ],
)
def test_bad_report_bodies_name_the_field(over: dict[str, Any], field: str) -> None:
    with pytest.raises(wire.WireError) as err:
        wire.ReportBody.from_json(body_json(**over))
    assert err.value.field_name == field
    assert err.value.reason == "wire.malformed"


def test_missing_field_is_named() -> None:
    value = body_json()
    del value["pcr_values"]
    with pytest.raises(wire.WireError, match="pcr_values: missing"):
        wire.ReportBody.from_json(value)


def test_oversized_eventlog_is_refused_before_decoding() -> None:
    value = body_json(
        eventlogs={"uefi": {"sha256": "00" * 32, "data": "A" * (wire.MAX_EVENTLOG_BYTES * 2)}}
    )
    with pytest.raises(wire.WireError) as err:
        wire.ReportBody.from_json(value)
    assert err.value.field_name == "eventlogs.uefi.data"


def test_body_that_is_not_json_is_a_wire_error() -> None:
    report = wire.Report(body_bytes=b"{not json", attest=b"", signature=b"")
    with pytest.raises(wire.WireError, match="not valid JSON"):
        report.body()


def test_enroll_request_round_trip_and_challenge_status() -> None:
    req = wire.EnrollRequest(
        ek_public=b"ek", ak_public=b"ak", hostname="h", ek_certificate=b"cert", node_name="n"
    )
    assert wire.EnrollRequest.from_json(req.to_json()) == req
    bad = wire.EnrollChallenge(host_id=HOST, status="maybe").to_json()
    with pytest.raises(wire.WireError) as err:
        wire.EnrollChallenge.from_json(bad)
    assert err.value.field_name == "status"


def test_pcr_values_cover_sha1_bank() -> None:
    values = wire.decode_pcr_values({"sha1": {"17": "11" * 20}})
    assert values == {TPM_ALG_SHA1: {17: b"\x11" * 20}}
    assert wire.encode_pcr_values(values) == {"sha1": {"17": "11" * 20}}


def _result(**extra: Any) -> dict[str, Any]:
    return {
        "type": "report_result",
        "version": 1,
        "verdict": "trusted",
        "reasons": [],
        "trust_report": "a.b.c",
        "valid_until": 1700000600.0,
        "next_report_in": 60.0,
        "missing_eventlogs": [],
        **extra,
    }


def test_report_result_carries_the_next_challenge() -> None:
    ahead = Challenge(nonce=bytes(range(32)), expires_at=1700000180.0)
    decoded = ReportResult.from_json(_result(next_challenge=ahead.to_json()))
    assert decoded.next_challenge == ahead
    assert decoded.to_json()["next_challenge"] == {
        "type": "challenge",
        "version": 1,
        "nonce": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
        "expires_at": 1700000180.0,
    }
    # an older hub sends none (and null means none)
    assert ReportResult.from_json(_result()).next_challenge is None
    assert ReportResult.from_json(_result(next_challenge=None)).next_challenge is None
    assert "next_challenge" not in ReportResult.from_json(_result()).to_json()


@pytest.mark.parametrize(
    "bad",
    [
        "nonce",
        {"type": "challenge", "version": 1, "nonce": "AAEC", "expires_at": 1},
        {"type": "report_result", "version": 1},
        {"type": "challenge", "version": 1, "nonce": "A" * 44, "expires_at": "soon"},
    ],
)
def test_a_malformed_next_challenge_is_a_wire_error(bad: object) -> None:
    with pytest.raises(WireError):
        ReportResult.from_json(_result(next_challenge=bad))
