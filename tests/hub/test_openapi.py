"""The OpenAPI document against the real application: every registered route is described and
every described operation is registered; the served document needs a token; and Schemathesis
(property-based requests generated from the served document) never gets a 5xx from the hub,
neither with a bearer token nor, on the agent operations, with an enrolled agent's client
certificate."""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import partial
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from jsonschema import Draft202012Validator
from schemathesis import GenerationMode

from hub.openapi import build_openapi
from tests.hub.conftest import running_agent
from tests.hub.harness import Agent, HubProcess
from tests.hub.weblib import base_url, http, report_verdict, seed_host, start_hub
from trustplane.swtpm import SwtpmFactory

METHODS = {"get", "post", "put", "delete", "patch"}
STREAMS = {("GET", "/v1/events")}  # endless by design: checked in test_web instead
EXAMPLES = 12


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    process = start_hub(tmp_path_factory.mktemp("openapi"))
    try:
        seed_host(process, "a" * 64, flavors=["x.platform"])
        report_verdict(process, "a" * 64, "trusted")
        report_verdict(process, "a" * 64, "untrusted", ("quote.pcr_digest_mismatch",))
        process.call(process.state.store.set_host_group("a" * 64, "rack-1", 1.0))
        yield process
    finally:
        process.stop()


def registered(hub: HubProcess) -> set[tuple[str, str]]:
    out = set()
    for route in hub.app.router.routes():
        info = route.resource.get_info() if route.resource else {}
        path = info.get("path") or info.get("formatter")
        if route.method != "HEAD" and path:
            out.add((route.method, path))
    return out


def described(doc: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (method.upper(), path)
        for path, item in doc["paths"].items()
        for method in item
        if method in METHODS
    }


def test_every_route_is_described_and_every_description_is_routed(hub: HubProcess) -> None:
    doc = build_openapi()
    assert registered(hub) - described(doc) == set(), "routes missing from hub/openapi/paths.py"
    assert described(doc) - registered(hub) == set(), "described but not served"


def test_every_operation_names_its_security_and_errors_use_the_error_schema() -> None:
    doc = build_openapi()
    schemes = set(doc["components"]["securitySchemes"])
    assert schemes == {"bearer", "mtls", "session"}
    assert doc["components"]["securitySchemes"]["mtls"]["type"] == "mutualTLS"
    for path, item in doc["paths"].items():
        for method, op in item.items():
            assert "security" in op, (method, path)
            for requirement in op["security"]:
                assert set(requirement) <= schemes, (method, path)
            for status, answer in op["responses"].items():
                if int(status) >= 400:
                    assert answer == {"$ref": f"#/components/responses/E{status}"}
    for answer in doc["components"]["responses"].values():
        schema = answer["content"]["application/json"]["schema"]
        assert schema == {"$ref": "#/components/schemas/Error"}


def test_every_reference_resolves() -> None:
    doc = build_openapi()
    refs = re.findall(r"'\$ref': '#/([^']+)'", repr(doc))
    assert refs
    for ref in refs:
        node: Any = doc
        for part in ref.split("/"):
            node = node[part]
        assert isinstance(node, dict)


def test_served_document_needs_a_token_and_is_the_built_one(hub: HubProcess) -> None:
    s = http(hub)
    url = base_url(hub) + "/v1/openapi.json"
    assert s.get(url).status_code == 401
    served = s.get(url, headers={"Authorization": f"Bearer {hub.token('viewer')}"})
    assert served.status_code == 200
    assert served.json() == build_openapi()
    assert served.json()["openapi"] == "3.1.0"


def test_generated_requests_never_get_a_server_error(hub: HubProcess) -> None:
    token = hub.token("admin", "schemathesis")
    session = http(hub)
    doc = session.get(
        base_url(hub) + "/v1/openapi.json", headers={"Authorization": f"Bearer {token}"}
    ).json()
    schema = schemathesis.openapi.from_dict(doc)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == len(described(doc))
    positive = negative = 0
    for op in operations:
        if (op.method.upper(), op.path) in STREAMS:
            continue
        fuzz = partial(_fuzz, session=session, base=base_url(hub), token=token, ca=str(hub.ca_file))
        fuzz(op.as_strategy(generation_mode=GenerationMode.POSITIVE))
        positive += 1
        try:
            fuzz(op.as_strategy(generation_mode=GenerationMode.NEGATIVE))
        except Unsatisfiable:  # nothing to make invalid: no parameters and no body
            assert not op.body, op.path
            assert not op.path_parameters, op.path
            assert not op.query, op.path
            continue
        negative += 1
    assert positive == len(operations) - len(STREAMS)
    assert negative >= 10


AGENT_OPERATIONS = {("POST", "/v1/challenge"), ("POST", "/v1/report"), ("POST", "/v1/tags")}


@pytest.fixture(scope="module")
def agent(
    hub: HubProcess, swtpm_factory: SwtpmFactory, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Agent]:
    """An enrolled agent (real swtpm keys, client certificate issued by the hub's CA)."""
    yield from running_agent(hub, swtpm_factory, tmp_path_factory.mktemp("openapi-agent"))


def test_agent_operations_fuzzed_with_a_client_certificate(hub: HubProcess, agent: Agent) -> None:
    token = hub.token("admin", "schemathesis-agent")
    doc = (
        http(hub)
        .get(base_url(hub) + "/v1/openapi.json", headers={"Authorization": f"Bearer {token}"})
        .json()
    )
    schema = schemathesis.openapi.from_dict(doc)
    operations = [
        op
        for op in (result.ok() for result in schema.get_all_operations())
        if (op.method.upper(), op.path) in AGENT_OPERATIONS
    ]
    assert {(op.method.upper(), op.path) for op in operations} == AGENT_OPERATIONS
    assert agent.cert_files is not None
    session = http(hub)
    session.cert = (str(agent.cert_files[0]), str(agent.cert_files[1]))
    for op in operations:
        statuses: list[int] = []
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            _fuzz(
                op.as_strategy(generation_mode=mode),
                session=session,
                base=base_url(hub),
                token=None,
                ca=str(hub.ca_file),
                statuses=statuses,
            )
        # the certificate was accepted: the requests reached the handlers, not only auth
        assert len(statuses) >= EXAMPLES, op.path
        assert 401 not in statuses, (op.path, sorted(set(statuses)))
    # the agent's own calls still work after the fuzzing
    assert agent.mtls(hub).post("/v1/challenge", {}).status == 200


def _fuzz(
    strategy: st.SearchStrategy[Any],
    *,
    session: requests.Session,
    base: str,
    token: str | None,
    ca: str,
    statuses: list[int] | None = None,
) -> None:
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def run(case: Any) -> None:
        tries = ({"Authorization": f"Bearer {token}"}, {}) if token is not None else ({},)
        for headers in tries:
            resp = case.call(base_url=base, session=session, headers=headers, timeout=10, verify=ca)
            assert resp.status_code < 500, (
                f"{case.method} {case.formatted_path} -> {resp.status_code}: {resp.text[:300]}"
            )
            if statuses is not None:
                statuses.append(resp.status_code)

    run()


def test_json_answers_match_their_described_schemas(hub: HubProcess) -> None:
    doc = build_openapi()
    token = hub.token("viewer", "schema-check")
    s = http(hub)
    checked = []
    for path, item in doc["paths"].items():
        op = item.get("get")
        if op is None or "{" in path.replace("{host_id}", ""):
            continue
        content = op["responses"]["200"].get("content", {})
        if "application/json" not in content:
            continue
        url = base_url(hub) + path.replace("{host_id}", "a" * 64)
        resp = s.get(url, headers={"Authorization": f"Bearer {token}"})
        assert resp.status_code == 200, path
        schema = {"components": doc["components"], **content["application/json"]["schema"]}
        Draft202012Validator(schema).validate(resp.json())
        checked.append(path)
    assert set(checked) == {
        "/health",
        "/v1/hosts",
        "/v1/hosts/{host_id}",
        "/v1/alerts",
        "/v1/flavors",
        "/v1/groups",
        "/v1/clusters",
        "/v1/openapi.json",
        "/v1/keys",
        "/v1/enroll/policy-key",
        "/v1/trust-report-key",
    }


def test_error_answers_match_the_error_schema(hub: HubProcess) -> None:
    doc = build_openapi()
    schema = {"components": doc["components"], "$ref": "#/components/schemas/Error"}
    s = http(hub)
    for method, path in (("GET", "/v1/hosts"), ("POST", "/v1/report"), ("GET", "/metrics")):
        resp = s.request(method, base_url(hub) + path, json={})
        assert resp.status_code == 401
        Draft202012Validator(schema).validate(resp.json())
