"""Wrap and release against the real hub with real swtpm hosts: secrets, every refusal's reason
id, the audit row, roles, bounds. (Binding keys across reboots: test_keys_binding.py.)"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator

import pytest

from hub.store import KeyEvent
from nodeagent.errors import TpmError
from tests.hub.conftest import ca_bundle
from tests.hub.harness import Client, FakeClock, HubProcess, make_state
from tests.hub.keyharness import KeyHost, annotation, key_host, wrap
from tests.hub.weblib import base_url, login
from trustcore.keyblob import KeyBlob, parse_key_blob
from trustcore.wire import KeyReleaseRequest, KeyReleaseResult
from trustplane.swtpm import SwtpmFactory

OPTSDATA = [
    b'{"symkey":"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=","digest":"sha256:00"}',
    b'{"symkey":"ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=","digest":"sha256:11"}',
]


@pytest.fixture(scope="module")
def hub(
    tmp_path_factory: pytest.TempPathFactory, swtpm_factory: SwtpmFactory
) -> Iterator[HubProcess]:
    tmp = tmp_path_factory.mktemp("keys-hub")
    bundle = ca_bundle(swtpm_factory, tmp / "ek-ca.pem")
    process = HubProcess(make_state(tmp, enrollment={"ek_ca_bundle": str(bundle)}), FakeClock())
    try:
        for name, predicate, max_age in (
            ("open", "", 300.0),
            ("strict-age", "", 30.0),
            ("retiring", "", 300.0),
        ):
            process.call(process.state.store.put_key_policy(name, predicate, max_age, 1.0))
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def host_a(
    hub: HubProcess, swtpm_factory: SwtpmFactory, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[KeyHost]:
    yield from key_host(hub, swtpm_factory, tmp_path_factory.mktemp("a"), tag="host-a")


@pytest.fixture(scope="module")
def host_b(
    hub: HubProcess, swtpm_factory: SwtpmFactory, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[KeyHost]:
    yield from key_host(hub, swtpm_factory, tmp_path_factory.mktemp("b"), tag="host-b")


@pytest.fixture(scope="module")
def pipeline(hub: HubProcess) -> Client:
    return hub.client(token=hub.token("pipeline", "ci"))


def test_wrap_then_release_secret_equals_optsdata(
    hub: HubProcess, host_a: KeyHost, pipeline: Client
) -> None:
    blobs = [annotation(pipeline, s, "open") for s in OPTSDATA]
    decoded = [parse_key_blob(b) for b in blobs]
    assert {b.policy for b in decoded} == {"open"}
    assert decoded[0].key_id == decoded[1].key_id  # the policy's key, made on first wrap
    assert decoded[0].hub == f"https://{hub.config.server.listen}"
    audit_before = len(hub.call(hub.state.store.list_audit()))
    now = hub.clock()
    result = host_a.release(blobs)
    assert result.report.verdict == "trusted"
    assert [r.ok for r in result.results] == [True, True]
    assert [r.expires_at for r in result.results] == [now + 3600, now + 3600]
    assert result.authorization is not None
    clear = [
        host_a.decrypt(r.secret or b"", result.authorization, b)
        for r, b in zip(result.results, blobs, strict=True)
    ]
    assert clear == OPTSDATA
    # the release's report is recorded like any report
    reports = hub.call(hub.state.store.list_reports(host_a.host_id))
    assert reports[-1].sequence == host_a.agent.sequence
    # one audit row for the request, listing each blob's outcome
    rows = hub.call(hub.state.store.list_audit())[audit_before:]
    assert [r["action"] for r in rows] == ["keys.release"]
    details = json.loads(rows[0]["details"])
    assert (details["released"], details["refused"], details["verdict"]) == (2, 0, "trusted")
    assert [o["ok"] for o in details["outcomes"]] == [True, True]
    key = hub.call(hub.state.store.get_key(decoded[0].key_id))
    assert key is not None
    assert (key.releases, key.refusals, key.last_use) == (2, 0, now)


def test_secret_for_host_a_cannot_be_decrypted_by_host_b(
    hub: HubProcess, host_a: KeyHost, host_b: KeyHost, pipeline: Client
) -> None:
    blob = annotation(pipeline, OPTSDATA[0], "open")
    for_a = host_a.release([blob])
    for_b = host_b.release([blob])
    assert for_a.authorization is not None
    assert for_b.authorization is not None
    secret_a = for_a.results[0].secret or b""
    with pytest.raises(TpmError):
        host_b.decrypt(secret_a, for_b.authorization, blob)
    with pytest.raises(TpmError):
        host_b.decrypt(secret_a, for_a.authorization, blob)
    assert host_b.decrypt(for_b.results[0].secret or b"", for_b.authorization, blob) == OPTSDATA[0]


def test_refusals_each_with_its_reason(hub: HubProcess, host_a: KeyHost, pipeline: Client) -> None:
    good = annotation(pipeline, OPTSDATA[0], "open")
    blob = parse_key_blob(good)
    unknown = KeyBlob(
        key_id="open.000000000000",
        policy="open",
        hub=blob.hub,
        iv=blob.iv,
        ciphertext=blob.ciphertext,
    ).encode()
    # one byte of the ciphertext changed (the blob still parses: canonical base64)
    text = good.decode()
    at = text.index('"ct":"') + 10
    flipped = "B" if text[at] != "B" else "C"
    tampered = (text[:at] + flipped + text[at + 1 :]).encode()
    assert parse_key_blob(tampered).ciphertext != blob.ciphertext
    garbage = b"not a blob"
    result = host_a.release([good, unknown, tampered, garbage])
    got = [(r.ok, r.reason) for r in result.results]
    assert got == [
        (True, ""),
        (False, "release.unknown_key"),
        (False, "release.blob_invalid"),
        (False, "release.blob_invalid"),
    ]
    assert result.results[1].message == "unknown key open.000000000000"
    assert result.results[2].message == f"the blob does not open under key {blob.key_id}"


def test_stale_evidence_is_refused_by_the_keys_max_age(
    hub: HubProcess, host_a: KeyHost, pipeline: Client
) -> None:
    strict = annotation(pipeline, OPTSDATA[0], "strict-age")
    relaxed = annotation(pipeline, OPTSDATA[1], "open")
    result = host_a.release([strict, relaxed], advance=45.0)
    assert [(r.ok, r.reason) for r in result.results] == [
        (False, "release.report_stale"),
        (True, ""),
    ]
    assert result.results[0].message == "the evidence is 45s old; policy strict-age allows 30s"
    fresh = host_a.release([strict])
    assert fresh.results[0].ok


def test_untrusted_host_is_refused(hub: HubProcess, host_a: KeyHost, pipeline: Client) -> None:
    blob = annotation(pipeline, OPTSDATA[0], "open")
    nonce = host_a.key_challenge()
    report = host_a.agent.build_report(nonce, tamper_values=True)
    resp = host_a.agent.mtls(hub).post(
        "/v1/keys/release", KeyReleaseRequest(report, (blob,)).to_json()
    )
    assert resp.status == 200, resp.body
    result = KeyReleaseResult.from_json(resp.body)
    assert result.report.verdict == "untrusted"
    assert [(r.ok, r.reason, r.message) for r in result.results] == [
        (False, "release.host_untrusted", "host untrusted (quote.pcr_digest_mismatch)")
    ]
    assert result.authorization is None
    events = hub.call(hub.state.store.list_key_events(host_a.host_id, refusals_only=True))
    assert events[0] == KeyEvent(
        hub.clock(),
        host_a.host_id,
        parse_key_blob(blob).key_id,
        False,
        "release.host_untrusted",
        "host untrusted (quote.pcr_digest_mismatch)",
    )
    assert host_a.release([blob]).results[0].ok  # trusted again with honest evidence


def test_rotation_and_retirement(hub: HubProcess, host_a: KeyHost, pipeline: Client) -> None:
    admin = hub.client(token=hub.token("admin", "ops"))
    old = annotation(pipeline, OPTSDATA[0], "retiring")
    old_id = parse_key_blob(old).key_id
    resp = admin.post("/v1/keys/policies/retiring/rotate", {})
    assert resp.status == 201, resp.body
    assert resp.body["version"] == 2
    new = annotation(pipeline, OPTSDATA[1], "retiring")
    new_id = parse_key_blob(new).key_id
    assert new_id == resp.body["id"] != old_id
    result = host_a.release([old, new])
    assert [r.ok for r in result.results] == [True, True]  # the old version still unwraps
    assert admin.post(f"/v1/keys/{old_id}/retire", {}).status == 200
    result = host_a.release([old, new])
    assert [(r.ok, r.reason) for r in result.results] == [
        (False, "release.key_retired"),
        (True, ""),
    ]
    assert result.results[0].message == f"key {old_id} was retired"
    refused = wrap(pipeline, OPTSDATA[0], key_id=old_id)
    assert (refused.status, refused.code) == (409, "keys.key_retired")
    again = admin.post(f"/v1/keys/{old_id}/retire", {})
    assert (again.status, again.code) == (409, "keys.key_retired")


def test_roles_pipeline_cannot_release_host_cannot_wrap(
    hub: HubProcess, host_a: KeyHost, pipeline: Client
) -> None:
    blob = annotation(pipeline, OPTSDATA[0], "open")
    body = {
        "type": "key_release",
        "version": 1,
        "report": {},
        "annotations": [base64.b64encode(blob).decode()],
    }
    resp = pipeline.post("/v1/keys/release", body)
    assert (resp.status, resp.code) == (401, "auth.client_certificate_required")
    assert pipeline.post("/v1/keys/challenge", {}).code == "auth.client_certificate_required"
    as_host = host_a.agent.mtls(hub).post(
        "/v1/keys/wrap", {"policy": "open", "optsdata": base64.b64encode(b"x").decode()}
    )
    assert (as_host.status, as_host.code) == (401, "auth.required")
    viewer = hub.client(token=hub.token("viewer"))
    as_viewer = wrap(viewer, b"x", policy="open")
    assert (as_viewer.status, as_viewer.code) == (403, "auth.forbidden")


def test_wrap_errors(hub: HubProcess, pipeline: Client) -> None:
    cases = [
        ({"policy": "nope", "optsdata": "eA=="}, 404, "keys.unknown_policy"),
        ({"policy": "NOT A NAME", "optsdata": "eA=="}, 404, "keys.unknown_policy"),
        ({"key_id": "open.ffffffffffff", "optsdata": "eA=="}, 404, "keys.unknown_key"),
        ({"policy": "open", "optsdata": "%%%"}, 400, "keys.optsdata_invalid"),
        ({"policy": "open", "optsdata": ""}, 400, "keys.optsdata_invalid"),
        (
            {"policy": "open", "optsdata": base64.b64encode(bytes(2049)).decode()},
            400,
            "keys.optsdata_invalid",
        ),
        ({"policy": "open", "key_id": "x", "optsdata": "eA=="}, 400, "keys.request_invalid"),
        ({"optsdata": "eA=="}, 400, "keys.request_invalid"),
        ({"policy": 7, "optsdata": "eA=="}, 400, "keys.request_invalid"),
        ([1, 2], 400, "keys.request_invalid"),
    ]
    for body, status, code in cases:
        resp = pipeline.post("/v1/keys/wrap", body)
        assert (resp.status, resp.code) == (status, code), body
    resp = pipeline.post("/v1/keys/wrap", raw=b"\xff\xfe{")
    assert (resp.status, resp.code) == (400, "http.malformed_json")


def test_release_bounds_and_nonces(hub: HubProcess, host_a: KeyHost, pipeline: Client) -> None:
    blob = annotation(pipeline, OPTSDATA[0], "open")
    client = host_a.agent.mtls(hub)
    nonce = host_a.key_challenge()
    report = host_a.agent.build_report(nonce).to_json()
    for listed, what in (([], "none"), ([base64.b64encode(blob).decode()] * 65, "65")):
        body = {"type": "key_release", "version": 1, "report": report, "annotations": listed}
        resp = client.post("/v1/keys/release", body)
        assert (resp.status, resp.code) == (400, "wire.malformed"), what
    too_big = base64.b64encode(bytes(4097)).decode()
    body = {"type": "key_release", "version": 1, "report": report, "annotations": [too_big]}
    assert client.post("/v1/keys/release", body).code == "wire.malformed"
    # an ordinary report nonce is not a release nonce: the evidence's age would be unknown
    plain = host_a.agent.challenge(hub)
    resp = host_a.release_response([blob], nonce=plain)
    assert (resp.status, resp.code) == (409, "nonce.unknown")
    # a release nonce is single use
    nonce = host_a.key_challenge()
    assert host_a.release_response([blob], nonce=nonce).status == 200
    again = host_a.release_response([blob], nonce=nonce)
    assert (again.status, again.code) == (409, "nonce.replayed")
    assert client.post("/v1/keys/release", raw=b"\x00\xff").code == "http.malformed_json"


def test_secrets_never_in_logs_answers_or_audit(
    hub: HubProcess, host_a: KeyHost, pipeline: Client, caplog: pytest.LogCaptureFixture
) -> None:
    secret = b'{"symkey":"c2VjcmV0LWxheWVyLWtleS1uZXZlci1sb2dnZWQ="}'
    caplog.set_level("DEBUG")
    blob = annotation(pipeline, secret, "open")
    result = host_a.release([blob, b"junk"])
    assert result.authorization is not None
    assert host_a.decrypt(result.results[0].secret or b"", result.authorization, blob) == secret
    viewer = hub.client(token=hub.token("viewer"))
    listing = json.dumps(viewer.get("/v1/keys").body)
    audit = json.dumps(hub.call(hub.state.store.list_audit()))
    for needle in (secret, base64.b64encode(secret)):
        assert needle.decode() not in caplog.text
        assert needle.decode() not in listing
        assert needle.decode() not in audit
        assert needle not in blob


def test_keys_page_api_twin_and_host_refusals(
    hub: HubProcess, host_a: KeyHost, pipeline: Client
) -> None:
    hub.call(hub.state.store.put_key_policy("page-eu", "region = EU", 60.0, hub.clock()))
    blob = annotation(pipeline, OPTSDATA[0], "page-eu")
    key_id = parse_key_blob(blob).key_id
    result = host_a.release([blob])  # host_a has no tags: refused
    assert [(r.reason, r.message) for r in result.results] == [
        (
            "release.assettag_mismatch",
            "asset tags (none) do not satisfy policy page-eu: region = EU",
        )
    ]
    viewer_token = hub.token("viewer")
    listing = hub.client(token=viewer_token).get("/v1/keys").body
    policy = next(p for p in listing["policies"] if p["name"] == "page-eu")
    assert (policy["predicate"], policy["max_age"]) == ("region = EU", 60.0)
    assert [(k["id"], k["releases"], k["refusals"]) for k in policy["keys"]] == [(key_id, 0, 1)]
    shown = hub.client(token=viewer_token).get(f"/v1/keys/{key_id}")
    assert (shown.status, shown.body["refusals"], shown.body["last_use"]) == (200, 1, hub.clock())
    missing = hub.client(token=viewer_token).get("/v1/keys/page-eu.000000000000")
    assert (missing.status, missing.code) == (404, "keys.unknown_key")
    browser = login(hub, viewer_token)
    page = browser.get(base_url(hub) + "/keys").text
    row = re.search(rf"<td><code>{re.escape(key_id)}</code>(.*?)</tr>", page, re.S)
    assert row, "no row for the key"
    cells = [c.strip() for c in re.findall(r"<td>(.*?)</td>", row.group(1), re.S)]
    assert cells[:3] == ["page-eu", "<code>region = EU</code>", "60 s"]
    assert cells[4:6] == ["0", "1"]
    host_page = browser.get(base_url(hub) + f"/hosts/{host_a.host_id}").text
    refusals = host_page[host_page.index('id="key-refusals"') :]
    assert f"<code>{key_id}</code>" in refusals
    assert "<code>release.assettag_mismatch</code>" in refusals
    assert "asset tags (none) do not satisfy policy page-eu: region = EU" in refusals
