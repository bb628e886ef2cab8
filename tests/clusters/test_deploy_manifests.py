"""deploy/: every manifest validated against the Kubernetes schemas of `kubernetes-validate`
(strict: unknown fields fail) for the versions it is meant for, the OCM objects against the
condensed CRD schemas in tests/data/ocm (kubernetes-validate has no OCM CRDs), the RBAC checked
to be exactly the least privilege the hub uses, and the ConfigurationPolicy templates rendered
for a sample cluster.

The ValidatingAdmissionPolicies' CEL is exercised in test_deploy_admission.py.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.kubefake.selectors import labels_match, parse_label_selector

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
OCM_SCHEMAS = REPO / "tests" / "data" / "ocm"
# the Kubernetes versions each directory is written for (the oldest one it supports)
VERSIONS = {"": "1.30.0", "admission/v1beta1": "1.28.0"}
OCM_SCHEMA_FILES = {
    ("policy.open-cluster-management.io/v1", "Policy"): "policy-v1.schema.json",
    ("policy.open-cluster-management.io/v1", "PlacementBinding"): "placementbinding-v1.schema.json",
    (
        "policy.open-cluster-management.io/v1",
        "ConfigurationPolicy",
    ): "configurationpolicy-v1.schema.json",
    ("cluster.open-cluster-management.io/v1beta1", "Placement"): "placement-v1beta1.schema.json",
}
HUB_SA = ("trustplane", "trustplane-hub")


def manifests() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for path in sorted(DEPLOY.rglob("*.yaml")):
        rel = str(path.relative_to(DEPLOY))
        if rel.startswith("tekton/"):  # a Tekton Task: tests/test_tekton.py checks it
            continue
        out += [(rel, doc) for doc in yaml.safe_load_all(path.read_text()) if doc is not None]
    return out


def ocm_schema(doc: dict[str, Any]) -> dict[str, Any]:
    name = OCM_SCHEMA_FILES[(doc["apiVersion"], doc["kind"])]
    schema: dict[str, Any] = json.loads((OCM_SCHEMAS / name).read_text())
    return schema


def version_for(rel: str) -> str:
    return VERSIONS["admission/v1beta1"] if rel.startswith("admission/v1beta1/") else VERSIONS[""]


def test_the_manifests_are_these() -> None:
    """Nothing added or dropped unnoticed: this list is what deploy/README.md describes."""
    assert [(rel, d["kind"], d["metadata"]["name"]) for rel, d in manifests()] == [
        (
            "admission/node-trust-fields.yaml",
            "ValidatingAdmissionPolicy",
            "trustplane-node-trust-fields",
        ),
        (
            "admission/node-trust-fields.yaml",
            "ValidatingAdmissionPolicyBinding",
            "trustplane-node-trust-fields",
        ),
        ("admission/sensitive-pods.yaml", "ValidatingAdmissionPolicy", "trustplane-sensitive-pods"),
        (
            "admission/sensitive-pods.yaml",
            "ValidatingAdmissionPolicyBinding",
            "trustplane-sensitive-pods",
        ),
        (
            "admission/v1beta1/node-trust-fields.yaml",
            "ValidatingAdmissionPolicy",
            "trustplane-node-trust-fields",
        ),
        (
            "admission/v1beta1/node-trust-fields.yaml",
            "ValidatingAdmissionPolicyBinding",
            "trustplane-node-trust-fields",
        ),
        (
            "admission/v1beta1/sensitive-pods.yaml",
            "ValidatingAdmissionPolicy",
            "trustplane-sensitive-pods",
        ),
        (
            "admission/v1beta1/sensitive-pods.yaml",
            "ValidatingAdmissionPolicyBinding",
            "trustplane-sensitive-pods",
        ),
        ("ocm/policies.yaml", "Namespace", "trustplane-policies"),
        ("ocm/policies.yaml", "Policy", "trustplane-workers-trusted"),
        ("ocm/policies.yaml", "Policy", "trustplane-sensitive-pods-trusted"),
        ("ocm/policies.yaml", "Placement", "trustplane-clusters"),
        ("ocm/policies.yaml", "PlacementBinding", "trustplane-workers-trusted"),
        ("ocm/policies.yaml", "PlacementBinding", "trustplane-sensitive-pods-trusted"),
        ("rbac.yaml", "Namespace", "trustplane"),
        ("rbac.yaml", "ServiceAccount", "trustplane-hub"),
        ("rbac.yaml", "ClusterRole", "trustplane-hub"),
        ("rbac.yaml", "ClusterRoleBinding", "trustplane-hub"),
    ]


@pytest.mark.parametrize(
    ("rel", "doc"),
    manifests(),
    ids=[f"{rel}:{d['kind']}:{d['metadata']['name']}" for rel, d in manifests()],
)
def test_manifest_is_valid(rel: str, doc: dict[str, Any]) -> None:
    """Kubernetes kinds: kubernetes-validate, strict, for the directory's version; OCM kinds:
    the condensed CRD schemas, and a Policy's ConfigurationPolicy templates too."""
    if doc["apiVersion"].split("/")[0].endswith("open-cluster-management.io"):
        jsonschema.validate(doc, ocm_schema(doc))
        for template in doc.get("spec", {}).get("policy-templates", []):
            inner = template["objectDefinition"]
            jsonschema.validate(inner, ocm_schema(inner))
        return
    assert kubernetes_validate.validate(doc, version_for(rel), strict=True) == version_for(rel)[:4]


def test_admission_v1_needs_1_30_and_v1beta1_serves_1_28_and_1_29() -> None:
    """admissionregistration.k8s.io/v1 ValidatingAdmissionPolicy exists from 1.30 on; the
    v1beta1 copies are valid for 1.28 and 1.29 (and stay so in later versions' schemas)."""
    v1 = [d for rel, d in manifests() if rel.startswith("admission/") and "v1beta1" not in rel]
    beta = [d for rel, d in manifests() if rel.startswith("admission/v1beta1/")]
    for doc in v1:
        with pytest.raises(kubernetes_validate.SchemaNotFoundError):
            kubernetes_validate.validate(doc, "1.29.0", strict=True)
    for doc in beta:
        for version in ("1.28.0", "1.29.0", "1.31.0"):
            kubernetes_validate.validate(doc, version, strict=True)


def test_v1beta1_copies_are_the_v1_policies() -> None:
    """The v1beta1 files differ from the v1 ones only in apiVersion (and their comments)."""
    for name in ("node-trust-fields.yaml", "sensitive-pods.yaml"):
        v1 = list(yaml.safe_load_all((DEPLOY / "admission" / name).read_text()))
        beta = list(yaml.safe_load_all((DEPLOY / "admission" / "v1beta1" / name).read_text()))
        assert [d["apiVersion"] for d in beta] == ["admissionregistration.k8s.io/v1beta1"] * 2
        for doc in beta:
            doc["apiVersion"] = "admissionregistration.k8s.io/v1"
        assert beta == v1


def test_strict_validation_can_fail() -> None:
    """The schemas bite: an unknown field in a ClusterRole rule and a misspelt remediation
    action in a Policy are refused."""
    role = next(d for _, d in manifests() if d["kind"] == "ClusterRole")
    bad = copy.deepcopy(role)
    bad["rules"][0]["verb"] = ["get"]
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, VERSIONS[""], strict=True)
    policy = next(d for _, d in manifests() if d["kind"] == "Policy")
    bad = copy.deepcopy(policy)
    bad["spec"]["remediationAction"] = "warn"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, ocm_schema(bad))


def test_rbac_is_exactly_what_the_hub_uses() -> None:
    """nodes get/list/watch/patch and events create: no update, delete, nodes/status, pods or
    secrets; bound to the hub's service account only."""
    docs = {d["kind"]: d for rel, d in manifests() if rel == "rbac.yaml"}
    assert docs["ClusterRole"]["rules"] == [
        {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list", "watch", "patch"]},
        {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
    ]
    assert (
        docs["ServiceAccount"]["metadata"]["namespace"],
        docs["ServiceAccount"]["metadata"]["name"],
    ) == HUB_SA
    binding = docs["ClusterRoleBinding"]
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": "trustplane-hub",
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": HUB_SA[1], "namespace": HUB_SA[0]}
    ]


def test_admission_policies_name_the_hub_account_of_the_rbac() -> None:
    policy = next(
        d for _, d in manifests() if d["metadata"]["name"] == "trustplane-node-trust-fields"
    )
    [condition] = policy["spec"]["matchConditions"]
    assert f"'system:serviceaccount:{HUB_SA[0]}:{HUB_SA[1]}'" in condition["expression"]


def test_bindings_and_placements_refer_to_what_exists() -> None:
    docs = [d for _, d in manifests()]
    names = {(d["kind"], d["metadata"]["name"]) for d in docs}
    for d in docs:
        if d["kind"] == "ValidatingAdmissionPolicyBinding":
            assert ("ValidatingAdmissionPolicy", d["spec"]["policyName"]) in names
            assert d["spec"]["validationActions"] == ["Deny"]
        if d["kind"] == "PlacementBinding":
            assert (d["placementRef"]["kind"], d["placementRef"]["name"]) in names
            assert all((s["kind"], s["name"]) in names for s in d["subjects"])
            assert d["metadata"]["namespace"] == "trustplane-policies"
        if d["kind"] in ("Policy", "Placement"):
            assert d["metadata"]["namespace"] == "trustplane-policies"
        if d["kind"] == "Policy":
            assert d["spec"]["remediationAction"] == "inform"
            assert (
                d["spec"]["policy-templates"][0]["objectDefinition"]["spec"]["remediationAction"]
                == "inform"
            )


# ---- the ConfigurationPolicies' object-templates-raw, rendered for a sample cluster -------------

_RANGE = re.compile(
    r"^\s*\{\{- range \$(\w+) := "
    r'\(lookup "v1" "(\w+)" (\$[\w.]+|"[^"]*") "" ?("[^"]*")?\)\.items \}\}$'
)


def render(raw: str, cluster: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """A renderer of exactly the Go-template constructs these policies use (nested `range`
    over `lookup` with a label selector, `{{ $var.metadata.name }}`), evaluating the label
    selector with the fake API server's parser; anything else in the template fails here."""
    lines = raw.splitlines()

    def block(start: int, scope: dict[str, Any]) -> tuple[list[str], int]:
        out: list[str] = []
        i = start
        while i < len(lines):
            line = lines[i]
            m = _RANGE.match(line)
            if m:
                var, kind, ns, selector = m.groups()
                namespace = (
                    scope[ns[1:].split(".")[0]]["metadata"]["name"]
                    if ns.startswith("$")
                    else ns.strip('"')
                )
                reqs = parse_label_selector((selector or '""').strip('"'))
                items = [
                    o
                    for o in cluster[kind]
                    if o["metadata"].get("namespace", "") == namespace
                    and labels_match(reqs, o["metadata"].get("labels") or {})
                ]
                end = i + 1
                for item in items:
                    body, end = block(i + 1, scope | {var: item})
                    out += body
                if not items:
                    _, end = block(
                        i + 1, scope | {var: {"metadata": {"name": "", "namespace": ""}}}
                    )
                i = end
                continue
            if line.strip() == "{{- end }}":
                return out, i + 1

            def value(match: re.Match[str]) -> str:
                name = scope[match.group(1)]["metadata"][match.group(2)]
                return str(name)

            rendered = re.sub(r"\{\{ \$(\w+)\.metadata\.(\w+) \}\}", value, line)
            assert "{{" not in rendered, f"unsupported template construct: {line}"
            out.append(rendered)
            i += 1
        return out, i

    text, _ = block(0, {})
    return list(yaml.safe_load("\n".join(text)) or [])


def _configuration_policy(name: str) -> dict[str, Any]:
    policy = next(
        d for _, d in manifests() if d["kind"] == "Policy" and d["metadata"]["name"] == name
    )
    inner: dict[str, Any] = policy["spec"]["policy-templates"][0]["objectDefinition"]
    return inner


def _obj(
    kind: str, name: str, namespace: str = "", labels: dict[str, str] | None = None
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": labels or {}}
    if namespace:
        meta["namespace"] = namespace
    return {"kind": kind, "metadata": meta}


def test_workers_trusted_policy_renders_one_musthave_per_worker() -> None:
    raw = _configuration_policy("trustplane-workers-trusted")["spec"]["object-templates-raw"]
    cluster = {
        "Node": [
            _obj("Node", "cp-1", labels={"node-role.kubernetes.io/control-plane": ""}),
            _obj("Node", "w-1", labels={"node-role.kubernetes.io/worker": ""}),
            _obj("Node", "w-2"),
        ]
    }
    templates = render(raw, cluster)
    assert templates == [
        {
            "complianceType": "musthave",
            "objectDefinition": {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {
                    "name": name,
                    "labels": {"trustplane.node-restriction.kubernetes.io/trusted": "true"},
                },
            },
        }
        for name in ("w-1", "w-2")
    ]
    schema = ocm_schema(_configuration_policy("trustplane-workers-trusted"))
    as_list = copy.deepcopy(_configuration_policy("trustplane-workers-trusted"))
    del as_list["spec"]["object-templates-raw"]
    as_list["spec"]["object-templates"] = templates
    jsonschema.validate(as_list, schema)
    for template in templates:
        kubernetes_validate.validate(template["objectDefinition"], VERSIONS[""], strict=True)


def test_sensitive_pods_policy_renders_pods_of_sensitive_namespaces_only() -> None:
    raw = _configuration_policy("trustplane-sensitive-pods-trusted")["spec"]["object-templates-raw"]
    cluster = {
        "Namespace": [
            _obj("Namespace", "vault", labels={"trustplane.io/sensitive": "true"}),
            _obj("Namespace", "web", labels={"trustplane.io/sensitive": "false"}),
        ],
        "Pod": [
            _obj("Pod", "v-0", "vault"),
            _obj("Pod", "v-1", "vault"),
            _obj("Pod", "w-0", "web"),
        ],
    }
    templates = render(raw, cluster)
    assert [
        (t["objectDefinition"]["metadata"]["namespace"], t["objectDefinition"]["metadata"]["name"])
        for t in templates
    ] == [
        ("vault", "v-0"),
        ("vault", "v-1"),
    ]
    assert {json.dumps(t["objectDefinition"]["spec"]) for t in templates} == {
        '{"nodeSelector": {"trustplane.node-restriction.kubernetes.io/trusted": "true"}}'
    }
    assert {t["complianceType"] for t in templates} == {"musthave"}
