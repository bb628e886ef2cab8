"""The ValidatingAdmissionPolicies of deploy/admission, their CEL parsed and evaluated with
cel-python (`celpy`, pure Python, in the dev extra: it implements the CEL spec including the
`has`/`all`/`exists`/`filter`/`map` macros these policies use, without a native build) on
allowed and refused requests, the way the API server applies a policy: match constraints
(resources, operations, namespace selector), then every matchCondition, then the variables in
order, then the validations; a false validation denies with its message.

What cel-python does not give: Kubernetes' CEL extension libraries and the type check against
the OpenAPI schema (the policies use neither extensions nor optional types), and the cost
limits. A real API server enforcing them is the real-cluster test's job (real-peers.md notes
the policy behaved as intended there).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import celpy
import pytest
import yaml

from tests.kubefake.selectors import labels_match, parse_label_selector

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "admission"
HUB = "system:serviceaccount:trustplane:trustplane-hub"
ADMIN = "kubernetes-admin"
P = "trustplane.node-restriction.kubernetes.io/"
TAINT = {"key": "trustplane.io/untrusted", "value": "true", "effect": "NoExecute"}
LABELS_MSG = (
    "only the trustplane hub may set, change or remove labels and annotations under "
    "trustplane.node-restriction.kubernetes.io/"
)
TAINT_MSG = "only the trustplane hub may add, change or remove the taint trustplane.io/untrusted"


@dataclass(frozen=True)
class Verdict:
    applies: bool
    denied: tuple[str, ...]

    @property
    def allowed(self) -> bool:
        return not self.denied


class Policy:
    """One ValidatingAdmissionPolicy, every expression compiled once with cel-python."""

    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc
        self.env = celpy.Environment()
        spec = doc["spec"]
        self.conditions = [self._compile(c["expression"]) for c in spec.get("matchConditions", [])]
        self.variables = [
            (v["name"], self._compile(v["expression"])) for v in spec.get("variables", [])
        ]
        self.validations = [
            (
                self._compile(v["expression"]),
                v.get("message"),
                self._compile(v["messageExpression"]) if "messageExpression" in v else None,
            )
            for v in spec["validations"]
        ]

    def _compile(self, expression: str) -> celpy.Runner:
        return self.env.program(self.env.compile(expression))

    def _matches(self, request: dict[str, Any], namespace_labels: dict[str, str]) -> bool:
        constraints = self.doc["spec"]["matchConstraints"]
        rules = constraints["resourceRules"]
        if not any(
            request["resource"]["resource"] in r["resources"]
            and request["operation"] in r["operations"]
            for r in rules
        ):
            return False
        selector = constraints.get("namespaceSelector", {}).get("matchLabels", {})
        text = ",".join(f"{k}={v}" for k, v in selector.items())
        return labels_match(parse_label_selector(text), namespace_labels)

    def evaluate(
        self,
        request: dict[str, Any],
        obj: dict[str, Any] | None,
        old: dict[str, Any] | None = None,
        namespace_labels: dict[str, str] | None = None,
    ) -> Verdict:
        if not self._matches(request, namespace_labels or {}):
            return Verdict(False, ())
        activation: dict[str, Any] = {
            "request": celpy.json_to_cel(request),
            "object": celpy.json_to_cel(obj),
            "oldObject": celpy.json_to_cel(old),
        }
        for condition in self.conditions:
            if not bool(condition.evaluate(activation)):
                return Verdict(False, ())
        variables: dict[str, Any] = {}
        for name, runner in self.variables:
            activation["variables"] = (
                celpy.json_to_cel({}) if not variables else variables_map(variables)
            )
            variables[name] = runner.evaluate(activation)
        activation["variables"] = variables_map(variables)
        denied = []
        for runner, message, message_expression in self.validations:
            result = runner.evaluate(activation)
            assert isinstance(result, celpy.celtypes.BoolType), result
            if not result:
                denied.append(
                    str(message_expression.evaluate(activation)) if message_expression else message
                )
        return Verdict(True, tuple(denied))


def variables_map(values: dict[str, Any]) -> Any:
    return celpy.celtypes.MapType({celpy.celtypes.StringType(k): v for k, v in values.items()})


def load(name: str, version: str = "") -> Policy:
    path = DEPLOY / version / name if version else DEPLOY / name
    doc = next(
        d for d in yaml.safe_load_all(path.read_text()) if d["kind"] == "ValidatingAdmissionPolicy"
    )
    return Policy(doc)


def request(user: str, operation: str, resource: str, namespace: str = "") -> dict[str, Any]:
    return {
        "operation": operation,
        "resource": {"group": "", "version": "v1", "resource": resource},
        "namespace": namespace,
        "userInfo": {"username": user, "groups": ["system:masters"] if user == ADMIN else []},
    }


def node(
    labels: dict[str, str] | None = None,
    taints: list[dict[str, str]] | None = None,
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "n1"}
    if labels is not None:
        meta["labels"] = labels
    if annotations is not None:
        meta["annotations"] = annotations
    spec: dict[str, Any] = {}
    if taints is not None:
        spec["taints"] = taints
    return {"apiVersion": "v1", "kind": "Node", "metadata": meta, "spec": spec}


TRUSTED = node(
    {"team": "a", P + "trusted": "true", P + "valid-until": "1800000000"},
    [{"key": "other", "effect": "NoSchedule"}],
    {P + "trust-report": "eyJ..."},
)
UNTRUSTED = node(
    {"team": "a", P + "trusted": "false"},
    [{"key": "other", "effect": "NoSchedule"}, TAINT],
    {P + "trust-report": "eyK..."},
)


def with_labels(base: dict[str, Any], **changes: str | None) -> dict[str, Any]:
    out = copy.deepcopy(base)
    labels = out["metadata"].setdefault("labels", {})
    for key, value in changes.items():
        real = key.replace("__", "/").replace("_", "-")
        if value is None:
            labels.pop(real, None)
        else:
            labels[real] = value
    return out


NODE_CASES = [
    # (id, user, operation, old, new, expected denial messages)
    ("hub-flips-trusted", HUB, "UPDATE", UNTRUSTED, TRUSTED, ()),
    ("hub-creates-labelled-node", HUB, "CREATE", None, TRUSTED, ()),
    ("admin-flips-trusted", ADMIN, "UPDATE", UNTRUSTED, TRUSTED, (LABELS_MSG, TAINT_MSG)),
    (
        "admin-sets-trusted-true",
        ADMIN,
        "UPDATE",
        UNTRUSTED,
        with_labels(UNTRUSTED, **{"trustplane.node-restriction.kubernetes.io__trusted": "true"}),
        (LABELS_MSG,),
    ),
    (
        "admin-removes-trusted",
        ADMIN,
        "UPDATE",
        UNTRUSTED,
        with_labels(UNTRUSTED, **{"trustplane.node-restriction.kubernetes.io__trusted": None}),
        (LABELS_MSG,),
    ),
    (
        "admin-adds-asset-label",
        ADMIN,
        "UPDATE",
        UNTRUSTED,
        with_labels(UNTRUSTED, **{"trustplane.node-restriction.kubernetes.io__asset-rack": "r1"}),
        (LABELS_MSG,),
    ),
    ("admin-changes-other-label", ADMIN, "UPDATE", UNTRUSTED, with_labels(UNTRUSTED, team="b"), ()),
    ("admin-creates-node-with-trusted", ADMIN, "CREATE", None, TRUSTED, (LABELS_MSG,)),
    ("admin-creates-plain-node", ADMIN, "CREATE", None, node({"team": "a"}), ()),
    ("kubelet-creates-plain-node", "system:node:n1", "CREATE", None, node(), ()),
]


@pytest.mark.parametrize("version", ["", "v1beta1"])
@pytest.mark.parametrize(
    ("case", "user", "operation", "old", "new", "denied"),
    NODE_CASES,
    ids=[c[0] for c in NODE_CASES],
)
def test_node_trust_fields_labels(
    version: str,
    case: str,
    user: str,
    operation: str,
    old: dict[str, Any] | None,
    new: dict[str, Any],
    denied: tuple[str, ...],
) -> None:
    verdict = load("node-trust-fields.yaml", version).evaluate(
        request(user, operation, "nodes"), new, old
    )
    assert verdict.denied == denied
    assert verdict.applies is (user != HUB)


def _taints(base: dict[str, Any], taints: list[dict[str, str]]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    out["spec"]["taints"] = taints
    return out


def _annotations(base: dict[str, Any], annotations: dict[str, str]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    out["metadata"]["annotations"] = annotations
    return out


TAINT_CASES = [
    (
        "admin-removes-untrusted-taint",
        ADMIN,
        _taints(UNTRUSTED, [{"key": "other", "effect": "NoSchedule"}]),
        (TAINT_MSG,),
    ),
    (
        "admin-changes-taint-effect",
        ADMIN,
        _taints(
            UNTRUSTED, [{"key": "other", "effect": "NoSchedule"}, dict(TAINT, effect="NoSchedule")]
        ),
        (TAINT_MSG,),
    ),
    (
        "admin-reorders-taints",
        ADMIN,
        _taints(UNTRUSTED, [TAINT, {"key": "other", "effect": "NoSchedule"}]),
        (),
    ),
    (
        "admin-adds-other-taint",
        ADMIN,
        _taints(
            UNTRUSTED,
            [{"key": "other", "effect": "NoSchedule"}, TAINT, {"key": "x", "effect": "NoExecute"}],
        ),
        (),
    ),
    (
        "admin-cordons",
        ADMIN,
        {**UNTRUSTED, "spec": {**UNTRUSTED["spec"], "unschedulable": True}},
        (),
    ),
    (
        "admin-changes-trust-report",
        ADMIN,
        _annotations(UNTRUSTED, {P + "trust-report": "forged"}),
        (LABELS_MSG,),
    ),
    (
        "admin-adds-other-annotation",
        ADMIN,
        _annotations(UNTRUSTED, {P + "trust-report": "eyK...", "note": "x"}),
        (),
    ),
    (
        "hub-removes-untrusted-taint",
        HUB,
        _taints(UNTRUSTED, [{"key": "other", "effect": "NoSchedule"}]),
        (),
    ),
]


@pytest.mark.parametrize(
    ("case", "user", "new", "denied"), TAINT_CASES, ids=[c[0] for c in TAINT_CASES]
)
def test_node_trust_fields_taint_and_annotation(
    case: str, user: str, new: dict[str, Any], denied: tuple[str, ...]
) -> None:
    verdict = load("node-trust-fields.yaml").evaluate(
        request(user, "UPDATE", "nodes"), new, UNTRUSTED
    )
    assert verdict.denied == denied


def test_node_policy_ignores_other_resources() -> None:
    policy = load("node-trust-fields.yaml")
    assert policy.evaluate(
        request(ADMIN, "UPDATE", "pods", "default"), {"metadata": {}}, {"metadata": {}}
    ) == Verdict(False, ())
    assert policy.evaluate(request(ADMIN, "DELETE", "nodes"), None, TRUSTED) == Verdict(False, ())


KEY = P + "trusted"
SENSITIVE = {"trustplane.io/sensitive": "true"}


def pod(
    node_selector: dict[str, str] | None = None, terms: list[list[dict[str, Any]]] | None = None
) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": "c", "image": "busybox"}]}
    if node_selector is not None:
        spec["nodeSelector"] = node_selector
    if terms is not None:
        spec["affinity"] = {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [{"matchExpressions": t} if t else {} for t in terms]
                }
            }
        }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "namespace": "vault"},
        "spec": spec,
    }


REQUIRE = {"key": KEY, "operator": "In", "values": ["true"]}
ZONE = {"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["a"]}
POD_CASES = [
    ("node-selector-trusted", pod({KEY: "true"}), True),
    ("node-selector-trusted-and-zone", pod({KEY: "true", "zone": "a"}), True),
    ("no-selector", pod(), False),
    ("node-selector-untrusted", pod({KEY: "false"}), False),
    ("node-selector-other-key", pod({"zone": "a"}), False),
    ("affinity-one-term-requires", pod(terms=[[REQUIRE, ZONE]]), True),
    ("affinity-two-terms-both-require", pod(terms=[[REQUIRE], [REQUIRE, ZONE]]), True),
    ("affinity-two-terms-one-requires", pod(terms=[[REQUIRE], [ZONE]]), False),
    ("affinity-term-without-expressions", pod(terms=[[REQUIRE], []]), False),
    (
        "affinity-notin-false",
        pod(terms=[[{"key": KEY, "operator": "NotIn", "values": ["false"]}]]),
        False,
    ),
    ("affinity-exists", pod(terms=[[{"key": KEY, "operator": "Exists"}]]), False),
    (
        "affinity-in-true-or-false",
        pod(terms=[[{"key": KEY, "operator": "In", "values": ["true", "false"]}]]),
        False,
    ),
    ("affinity-no-terms", pod(terms=[]), False),
    ("affinity-fails-but-selector-requires", pod({KEY: "true"}, terms=[[ZONE]]), True),
]


@pytest.mark.parametrize("version", ["", "v1beta1"])
@pytest.mark.parametrize(("case", "obj", "allowed"), POD_CASES, ids=[c[0] for c in POD_CASES])
def test_sensitive_pods(version: str, case: str, obj: dict[str, Any], allowed: bool) -> None:
    verdict = load("sensitive-pods.yaml", version).evaluate(
        request(
            "system:serviceaccount:kube-system:replicaset-controller", "CREATE", "pods", "vault"
        ),
        obj,
        None,
        SENSITIVE,
    )
    assert verdict.applies
    assert verdict.denied == (
        ()
        if allowed
        else (
            (
                "pods in namespace vault (trustplane.io/sensitive=true) must require "
                "trustplane.node-restriction.kubernetes.io/trusted=true in their nodeSelector "
                "or in every required node affinity term"
            ),
        )
    )


def test_sensitive_pods_policy_leaves_other_namespaces_and_updates_alone() -> None:
    policy = load("sensitive-pods.yaml")
    bare = pod()
    assert policy.evaluate(
        request(ADMIN, "CREATE", "pods", "web"), bare, None, {"trustplane.io/sensitive": "false"}
    ) == Verdict(False, ())
    assert policy.evaluate(request(ADMIN, "CREATE", "pods", "web"), bare, None, {}) == Verdict(
        False, ()
    )
    assert policy.evaluate(
        request(ADMIN, "UPDATE", "pods", "vault"), bare, bare, SENSITIVE
    ) == Verdict(False, ())


def test_cel_syntax_errors_are_caught() -> None:
    """The compile step is a real parse: a broken expression raises."""
    with pytest.raises(celpy.CELParseError):
        celpy.Environment().compile("variables.terms.all(term,")
