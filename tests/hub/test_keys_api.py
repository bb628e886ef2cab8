"""The key API's admin routes with bad input (400/404/409, never 500), the per-host release
rate limit, and asset-tag predicates against tags a real swtpm vouches for."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.hub.conftest import ca_bundle
from tests.hub.harness import Agent, Client, FakeClock, HubProcess, make_state
from tests.hub.keyharness import KeyHost, annotation, key_host
from trustcore.assettag import ASSET_TAG_NV_ATTRIBUTES, ASSET_TAG_NV_INDEX, ASSET_TAG_NV_SIZE
from trustplane.swtpm import SwtpmFactory

SECRET = b'{"symkey":"dGFnZ2VkLWxheWVyLWtleS0wMTIzNDU2Nzg5YWJjZGVm"}'


@pytest.fixture(scope="module")
def hub(
    tmp_path_factory: pytest.TempPathFactory, swtpm_factory: SwtpmFactory
) -> Iterator[HubProcess]:
    tmp = tmp_path_factory.mktemp("keys-api-hub")
    bundle = ca_bundle(swtpm_factory, tmp / "ek-ca.pem")
    process = HubProcess(make_state(tmp, enrollment={"ek_ca_bundle": str(bundle)}), FakeClock())
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def admin(hub: HubProcess) -> Client:
    return hub.client(token=hub.token("admin", "ops"))


@pytest.fixture(scope="module")
def tagged(
    hub: HubProcess, swtpm_factory: SwtpmFactory, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[KeyHost]:
    for host in key_host(hub, swtpm_factory, tmp_path_factory.mktemp("tagged"), tag="tagged-1"):
        host.agent.device.nv_define(ASSET_TAG_NV_INDEX, ASSET_TAG_NV_SIZE, ASSET_TAG_NV_ATTRIBUTES)
        yield host


def test_policy_api_create_set_and_bad_input(hub: HubProcess, admin: Client) -> None:
    created = admin.post(
        "/v1/keys/policies",
        {"name": "api-eu", "predicate": "region in [EU,CH]", "max_age": 90},
    )
    assert created.status == 201, created.body
    assert (created.body["predicate"], created.body["max_age"], created.body["keys"]) == (
        "region in [EU, CH]",
        90.0,
        [],
    )
    changed = admin.request("PUT", "/v1/keys/policies/api-eu", {"max_age": 30})
    assert (changed.status, changed.body["predicate"], changed.body["max_age"]) == (
        200,
        "region in [EU, CH]",
        30.0,
    )
    cases = [
        ("POST", "/v1/keys/policies", {"name": "api-eu"}, 409, "keys.policy_exists"),
        ("POST", "/v1/keys/policies", {"name": "Bad Name"}, 400, "keys.policy_name_invalid"),
        ("POST", "/v1/keys/policies", {"name": "x\u0000y"}, 400, "keys.policy_name_invalid"),
        ("POST", "/v1/keys/policies", {"name": 12}, 400, "keys.request_invalid"),
        ("POST", "/v1/keys/policies", {}, 400, "keys.request_invalid"),
        ("POST", "/v1/keys/policies", [], 400, "keys.request_invalid"),
        (
            "POST",
            "/v1/keys/policies",
            {"name": "p2", "predicate": "region = (EU"},
            400,
            "keys.policy_invalid",
        ),
        ("POST", "/v1/keys/policies", {"name": "p2", "max_age": 0}, 400, "keys.max_age_invalid"),
        (
            "POST",
            "/v1/keys/policies",
            {"name": "p2", "max_age": 10**400},
            400,
            "keys.max_age_invalid",
        ),
        ("POST", "/v1/keys/policies", {"name": "p2", "max_age": True}, 400, "keys.max_age_invalid"),
        ("POST", "/v1/keys/policies", {"name": "p2", "max_age": "5"}, 400, "keys.max_age_invalid"),
        ("PUT", "/v1/keys/policies/nope", {"max_age": 5}, 404, "keys.unknown_policy"),
        ("PUT", "/v1/keys/policies/NOPE%00", {"max_age": 5}, 404, "keys.unknown_policy"),
        ("POST", "/v1/keys/policies/nope/rotate", {}, 404, "keys.unknown_policy"),
        ("POST", "/v1/keys/nope.000000000000/retire", {}, 404, "keys.unknown_key"),
        ("POST", "/v1/keys/%E2%80%AE/retire", {}, 404, "keys.unknown_key"),
        ("GET", "/v1/keys/" + "a" * 300, None, 404, "keys.unknown_key"),
    ]
    for method, path, body, status, code in cases:
        resp = admin.request(method, path, body)
        assert (resp.status, resp.code) == (status, code), (method, path, body)
    nan = admin.request("POST", "/v1/keys/policies", raw=b'{"name": "p3", "max_age": NaN}')
    assert (nan.status, nan.code) == (400, "keys.max_age_invalid")
    bad_utf8 = admin.request("POST", "/v1/keys/policies", raw=b'{"name": "\xff\xfe"}')
    assert (bad_utf8.status, bad_utf8.code) == (400, "http.malformed_json")
    viewer = hub.client(token=hub.token("viewer"))
    refused = viewer.post("/v1/keys/policies", {"name": "v1"})
    assert (refused.status, refused.code) == (403, "auth.forbidden")
    pipeline = hub.client(token=hub.token("pipeline"))
    assert pipeline.post("/v1/keys/policies/api-eu/rotate", {}).code == "auth.forbidden"


def test_tag_predicates_against_tpm_vouched_tags(
    hub: HubProcess, admin: Client, tagged: KeyHost
) -> None:
    assert (
        admin.post(
            "/v1/keys/policies",
            {"name": "eu-rack7", "predicate": "region in [EU, CH] and rack = 7"},
        ).status
        == 201
    )
    assert (
        admin.post("/v1/keys/policies", {"name": "us-only", "predicate": "region = US"}).status
        == 201
    )
    pipeline = hub.client(token=hub.token("pipeline"))
    eu = annotation(pipeline, SECRET, "eu-rack7")
    us = annotation(pipeline, SECRET, "us-only")
    resp = admin.request(
        "PUT", f"/v1/hosts/{tagged.host_id}/tags", {"tags": {"region": "EU", "rack": "7"}}
    )
    assert resp.status == 200, resp.body
    der = base64.b64decode(resp.body["certificate"])
    tagged.agent.device.nv_write(ASSET_TAG_NV_INDEX, hashlib.sha384(der).digest())
    result = tagged.release([eu, us], asset_tag_certificate=der)
    assert result.report.verdict == "trusted"
    assert [(r.ok, r.reason, r.message) for r in result.results] == [
        (True, "", ""),
        (
            False,
            "release.assettag_mismatch",
            "asset tags (rack=7, region=EU) do not satisfy policy us-only: region = US",
        ),
    ]
    assert result.authorization is not None
    assert tagged.decrypt(result.results[0].secret or b"", result.authorization, eu) == SECRET
    # retagged: the same blobs, the other way round
    resp = admin.request("PUT", f"/v1/hosts/{tagged.host_id}/tags", {"tags": {"region": "US"}})
    der = base64.b64decode(resp.body["certificate"])
    tagged.agent.device.nv_write(ASSET_TAG_NV_INDEX, hashlib.sha384(der).digest())
    result = tagged.release([eu, us], asset_tag_certificate=der)
    assert [(r.ok, r.reason) for r in result.results] == [
        (False, "release.assettag_mismatch"),
        (True, ""),
    ]
    # a report without the tag evidence is untrusted: nothing is released
    result = tagged.release([eu, us])
    assert result.report.reasons == ("assettag.missing",)
    assert {r.reason for r in result.results} == {"release.host_untrusted"}


def test_release_routes_are_rate_limited_per_host(
    swtpm_factory: SwtpmFactory, tmp_path: Path
) -> None:
    config = make_state(tmp_path, keys={"release_rate_per_minute": 2})
    hub = HubProcess(config, FakeClock())
    tpm = swtpm_factory.start()
    agent = Agent(tpm, tmp_path / "agent")
    try:
        agent.enroll_direct(hub)
        client = agent.mtls(hub)
        assert [client.post("/v1/keys/challenge", {}).status for _ in range(2)] == [200, 200]
        limited = client.post("/v1/keys/challenge", {})
        assert (limited.status, limited.code) == (429, "keys.rate_limited")
        release = client.post("/v1/keys/release", {"type": "key_release"})
        assert (release.status, release.code) == (429, "keys.rate_limited")
        assert client.post("/v1/challenge", {}).status == 200  # reports are not limited by it
        hub.clock.advance(61)
        assert client.post("/v1/keys/challenge", {}).status == 200
    finally:
        agent.close()
        tpm.stop()
        hub.stop()
