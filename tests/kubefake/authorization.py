"""RBAC for users the test grants rules to, the way the API server's RBAC authorizer decides.

Users without grants are cluster admins (like `system:masters`): everything is allowed, which
is all the fake did before. A user with grants (`FakeApiServer.grant(user, rules)`, the rules
of a ClusterRole bound to the user cluster-wide) may do exactly what the rules allow; other
resource requests get the API server's 403 Forbidden Status. Discovery and /openapi (non-resource
URLs) stay open to every authenticated user, as the default `system:discovery` role grants.
Not modelled: namespaced Roles, resourceNames, aggregation, nonResourceURLs rules.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .status import ApiError


@dataclass(frozen=True)
class Attributes:
    """What RBAC looks at in a resource request."""

    verb: str
    group: str
    resource: str  # "nodes", "nodes/status"
    name: str
    namespace: str


def attributes(method: str, path: str, watch: bool) -> Attributes | None:
    """The request's RBAC attributes, or None for a non-resource URL."""
    parts = [p for p in path.split("/") if p]
    if parts[:2] == ["api", "v1"]:
        group, rest = "", parts[2:]
    elif len(parts) >= 3 and parts[0] == "apis":
        group, rest = parts[1], parts[3:]
    else:
        return None
    if rest[:1] == ["watch"]:
        watch, rest = True, rest[1:]
    namespace = ""
    if len(rest) >= 3 and rest[0] == "namespaces":
        namespace, rest = rest[1], rest[2:]
    if not rest:
        return None
    resource = rest[0]
    name = rest[1] if len(rest) > 1 else ""
    if len(rest) > 2:
        resource += "/" + rest[2]
    if resource == "namespaces" and not name and namespace:
        resource, name, namespace = "namespaces", namespace, ""
    verbs = {"POST": "create", "PUT": "update", "PATCH": "patch"}
    if method == "GET":
        verb = "watch" if watch else ("get" if name else "list")
    elif method == "DELETE":
        verb = "delete" if name else "deletecollection"
    else:
        verb = verbs.get(method, method.lower())
    return Attributes(verb, group, resource, name, namespace)


def _allows(rule: dict[str, Any], attrs: Attributes) -> bool:
    def has(key: str, value: str) -> bool:
        values = rule.get(key) or []
        return "*" in values or value in values

    return (
        has("apiGroups", attrs.group)
        and has("resources", attrs.resource)
        and has("verbs", attrs.verb)
    )


def authorize(user: str, rules: list[dict[str, Any]], attrs: Attributes) -> None:
    """Raise the API server's 403 unless one of `rules` allows the request."""
    if any(_allows(rule, attrs) for rule in rules):
        return
    what = f'{attrs.resource} "{attrs.name}"' if attrs.name else attrs.resource
    scope = f'in the namespace "{attrs.namespace}"' if attrs.namespace else "at the cluster scope"
    details: dict[str, Any] = {}
    if attrs.name:
        details["name"] = attrs.name
    if attrs.group:
        details["group"] = attrs.group
    details["kind"] = attrs.resource.split("/")[0]
    raise ApiError(
        403,
        "Forbidden",
        f'{what} is forbidden: User "{user}" cannot {attrs.verb} resource "{attrs.resource}" '
        f'in API group "{attrs.group}" {scope}',
        details,
    )
