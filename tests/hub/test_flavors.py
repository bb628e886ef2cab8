"""Flavors on the report path: a flavor made from the sample log's platform part (with the
project's UEFI template), assigned through the admin API, evaluated against quoted PCRs and
replayed events from a real swtpm."""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from tests.hub.conftest import LOG, ca_bundle
from tests.hub.harness import Agent, FakeClock, HubProcess, make_state
from trustcore.eventlog import parse_eventlog
from trustcore.flavors.build import flavor_from_eventlog
from trustcore.flavors.document import flavor_to_json, parse_template
from trustcore.wire import EventLogEvidence, ReportResult
from trustplane.swtpm import SwtpmFactory

TEMPLATE = (
    Path(__file__).resolve().parents[2]
    / "firmware_measurements"
    / "templates"
    / "uefi-secure-boot.json"
)


@pytest.fixture(scope="module")
def hub(
    tmp_path_factory: pytest.TempPathFactory, swtpm_factory: SwtpmFactory
) -> Iterator[HubProcess]:
    """A hub whose policy requires an assigned flavor."""
    tmp = tmp_path_factory.mktemp("flavor-hub")
    bundle = ca_bundle(swtpm_factory, tmp / "ek-ca.pem")
    config = make_state(
        tmp, enrollment={"ek_ca_bundle": str(bundle)}, attestation={"require_flavor": True}
    )
    process = HubProcess(config, FakeClock())
    try:
        yield process
    finally:
        process.stop()


def platform_flavor() -> dict[str, Any]:
    template = parse_template(TEMPLATE.read_text())
    platform_only = replace(
        template, parts=tuple(p for p in template.parts if p.part == "platform")
    )
    (flavor,) = flavor_from_eventlog(parse_eventlog(LOG.read_bytes()), platform_only, "sample")
    return flavor_to_json(flavor)


def report(hub: HubProcess, agent: Agent) -> ReportResult:
    data = LOG.read_bytes()
    logs = {"uefi": EventLogEvidence(hashlib.sha256(data).digest(), data)}
    resp = agent.attest(hub, eventlogs=logs)
    assert resp.status == 200, resp.body
    return ReportResult.from_json(resp.body)


def test_no_flavor_assigned_is_untrusted_when_required(hub: HubProcess, booted: Agent) -> None:
    res = report(hub, booted)
    assert (res.verdict, res.reasons) == ("untrusted", ("flavor.none_assigned",))


def test_matching_flavor_is_trusted(hub: HubProcess, booted: Agent) -> None:
    admin = hub.client(token=hub.token("admin"))
    doc = platform_flavor()
    assert admin.request("PUT", "/v1/flavors/sample.platform", doc).status == 200
    resp = admin.request(
        "PUT", f"/v1/hosts/{booted.host_id}/flavors", {"flavors": ["sample.platform"]}
    )
    assert resp.status == 200, resp.body
    res = report(hub, booted)
    assert (res.verdict, res.reasons) == ("trusted", ())
    host = hub.client(token=hub.token("viewer")).get(f"/v1/hosts/{booted.host_id}").body
    assert host["flavors"] == ["sample.platform"]
    rules = host["rules"]
    assert rules
    assert all(r["passed"] for r in rules)
    assert {r["rule"].split("/")[0] for r in rules} == {"sample.platform"}


def test_flavor_with_another_pcr0_value_is_untrusted(hub: HubProcess, booted: Agent) -> None:
    admin = hub.client(token=hub.token("admin"))
    doc = copy.deepcopy(platform_flavor())
    doc["id"] = "other.platform"
    pcr0 = next(p for p in doc["pcrs"] if p["index"] == 0)
    pcr0["value"] = "00" * 32
    assert admin.request("PUT", "/v1/flavors/other.platform", doc).status == 200
    assert (
        admin.request(
            "PUT", f"/v1/hosts/{booted.host_id}/flavors", {"flavors": ["other.platform"]}
        ).status
        == 200
    )
    res = report(hub, booted)
    assert res.verdict == "untrusted"
    assert "flavor.platform.pcr_mismatch" in res.reasons
    payload_rules = (
        hub.client(token=hub.token("viewer")).get(f"/v1/hosts/{booted.host_id}").body["rules"]
    )
    failed = [r for r in payload_rules if not r["passed"]]
    assert [r["reason"] for r in failed] == ["flavor.platform.pcr_mismatch"]
    assert "00" * 32 in failed[0]["detail"]


def test_flavor_documents_are_validated(hub: HubProcess) -> None:
    admin = hub.client(token=hub.token("admin"))
    resp = admin.request("PUT", "/v1/flavors/bad", {"schema": "nope"})
    assert resp.status == 400
    assert resp.code == "flavor.invalid"
    resp = admin.request("PUT", "/v1/flavors/wrong-name", platform_flavor())
    assert (resp.status, resp.code) == (400, "flavor.id_mismatch")
    viewer = hub.client(token=hub.token("viewer"))
    resp = viewer.request("PUT", "/v1/flavors/sample.platform", platform_flavor())
    assert (resp.status, resp.code) == (403, "auth.forbidden")


def test_assigning_unknown_flavor_is_refused(hub: HubProcess, booted: Agent) -> None:
    admin = hub.client(token=hub.token("admin"))
    resp = admin.request("PUT", f"/v1/hosts/{booted.host_id}/flavors", {"flavors": ["nope"]})
    assert (resp.status, resp.code) == (400, "flavor.unknown")


def test_group_flavors_apply_to_its_hosts(hub: HubProcess, booted: Agent) -> None:
    admin = hub.client(token=hub.token("admin", "grouper"))
    viewer = hub.client(token=hub.token("viewer"))
    assert admin.request("PUT", "/v1/flavors/sample.platform", platform_flavor()).status == 200
    resp = admin.request("PUT", f"/v1/hosts/{booted.host_id}/flavors", {"flavors": []})
    assert resp.status == 200, resp.body
    assert report(hub, booted).reasons == ("flavor.none_assigned",)

    resp = admin.request("PUT", "/v1/groups/rack-7/flavors", {"flavors": ["sample.platform"]})
    assert (resp.status, resp.body) == (200, {"name": "rack-7", "flavors": ["sample.platform"]})
    resp = admin.request("PUT", f"/v1/hosts/{booted.host_id}/group", {"group": "rack-7"})
    assert (resp.status, resp.body) == (200, {"id": booted.host_id, "group": "rack-7"})
    res = report(hub, booted)
    assert (res.verdict, res.reasons) == ("trusted", ())
    host = viewer.get(f"/v1/hosts/{booted.host_id}").body
    assert (host["flavors"], host["group"]) == ([], "rack-7")
    assert {r["rule"].split("/")[0] for r in host["rules"]} == {"sample.platform"}
    groups = viewer.get("/v1/groups").body["groups"]
    assert {"name": "rack-7", "flavors": ["sample.platform"], "hosts": [booted.host_id]} in groups

    resp = admin.request("PUT", f"/v1/hosts/{booted.host_id}/group", {"group": None})
    assert (resp.status, resp.body) == (200, {"id": booted.host_id, "group": None})
    res = report(hub, booted)
    assert (res.verdict, res.reasons) == ("untrusted", ("flavor.none_assigned",))
    audit = [
        (r["action"], r["subject"], r["details"])
        for r in hub.call(hub.state.store.list_audit())
        if r["actor"] == "token:grouper" and r["action"] in ("host.group", "group.flavors")
    ]
    assert audit == [
        ("group.flavors", "rack-7", '{"flavors": ["sample.platform"]}'),
        ("host.group", booted.host_id, '{"group": "rack-7"}'),
        ("host.group", booted.host_id, '{"group": null}'),
    ]


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code"),
    [
        ("PUT", "/v1/groups/Bad_Name/flavors", {"flavors": []}, 400, "group.name_invalid"),
        ("PUT", "/v1/groups/rack-9/flavors", {"flavors": ["nope"]}, 400, "flavor.unknown"),
        ("PUT", "/v1/groups/rack-9/flavors", {"flavors": "x"}, 400, "flavor.assignment_invalid"),
        ("PUT", "/v1/hosts/{host}/group", {"group": "-x"}, 400, "group.name_invalid"),
        ("PUT", "/v1/hosts/{host}/group", {"group": 7}, 400, "group.invalid"),
        ("PUT", "/v1/hosts/{host}/group", {}, 400, "group.invalid"),
        ("PUT", "/v1/hosts/" + "ef" * 32 + "/group", {"group": "rack-9"}, 404, "host.unknown"),
    ],
)
def test_group_refusals(
    hub: HubProcess, booted: Agent, method: str, path: str, body: object, status: int, code: str
) -> None:
    admin = hub.client(token=hub.token("admin"))
    resp = admin.request(method, path.format(host=booted.host_id), body)
    assert (resp.status, resp.code) == (status, code)
    viewer = hub.client(token=hub.token("viewer"))
    resp = viewer.request("PUT", "/v1/groups/rack-9/flavors", {"flavors": []})
    assert (resp.status, resp.code) == (403, "auth.forbidden")
    assert "rack-9" not in [g["name"] for g in viewer.get("/v1/groups").body["groups"]]
