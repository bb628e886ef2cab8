"""What a node should carry for its host: trustplane's labels, annotation and taint.

Every key is under ``trustplane.node-restriction.kubernetes.io/`` (the NodeRestriction
admission plugin forbids a kubelet to set labels under a ``node-restriction.kubernetes.io/``
prefix on its own node, so a compromised host cannot claim trust):

- ``trusted``: ``"true"`` when the host's verdict is ``trusted``, else ``"false"``;
- ``valid-until``: unix seconds until which the last trust report is valid (trusted only);
- ``asset-<key>``: ``<value>`` per asset tag of a trusted host (tags the TPM vouched for in the
  last report); and the annotation ``trustplane.node-restriction.kubernetes.io/trust-report``:
  the hub's signed trust report (JWS).

Asset tags to labels: a tag key is ``[a-z0-9]([a-z0-9_.-]{0,45}[a-z0-9])?`` and a value
``([A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?)?`` (:mod:`trustcore.assettag` refuses anything
else), so ``asset-<key>`` is a valid label name of at most 53 characters and every value is a
valid label value: a tag maps unchanged. :func:`asset_label` still checks both against the label
syntax (a database written by an older hub may hold other tags); a tag that cannot be
represented is left out (never truncated or rewritten, which could make two tags collide or a
value lie) and counted in ``trustplane_cluster_tags_skipped_total``.

Untrusted, stale or never-reported hosts (and nodes whose system UUID does not match the
attested one) get the taint ``trustplane.io/untrusted`` with the configured effect; trusted
hosts none. A node no enrolled host maps to keeps nothing of ours.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final

PREFIX: Final = "trustplane.node-restriction.kubernetes.io/"
TRUSTED: Final = PREFIX + "trusted"
VALID_UNTIL: Final = PREFIX + "valid-until"
ASSET: Final = PREFIX + "asset-"
REPORT_ANNOTATION: Final = PREFIX + "trust-report"
TAINT_KEY: Final = "trustplane.io/untrusted"
FIELD_MANAGER: Final = "trustplane-hub"
EVENT_NAMESPACE: Final = "default"  # where node Events go (as the kubelet's own)

_NAME: Final = re.compile(r"[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?")
_VALUE: Final = re.compile(r"([A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?)?")


def asset_label(key: str, value: str) -> tuple[str, str] | None:
    """``(label name, value)`` for an asset tag, or ``None`` when label syntax cannot hold it."""
    name = "asset-" + key
    if _NAME.fullmatch(name) is None or _VALUE.fullmatch(value) is None:
        return None
    return PREFIX + name, value


@dataclass(frozen=True, slots=True)
class Desired:
    """The labels (our keys only), whether the taint belongs, and the state Events speak of."""

    labels: dict[str, str]
    tainted: bool
    state: str  # trusted | untrusted | stale | pending | mismatch | none (no host)
    reasons: tuple[str, ...]
    skipped_tags: int = 0


def desired_for(
    verdict: str | None,
    reasons: tuple[str, ...],
    tags: dict[str, str],
    valid_until: float | None,
    *,
    mismatch: bool = False,
) -> Desired:
    """What a node mapped to a host with ``verdict`` should carry (``None``: no host)."""
    if verdict is None:
        return Desired({}, False, "none", ())
    if mismatch:
        return Desired({}, True, "mismatch", reasons)
    if verdict != "trusted":
        state = verdict if verdict in {"untrusted", "stale"} else "pending"
        return Desired({TRUSTED: "false"}, True, state, reasons)
    labels = {TRUSTED: "true"}
    if valid_until is not None:
        labels[VALID_UNTIL] = str(int(valid_until))
    skipped = 0
    for key, value in sorted(tags.items()):
        label = asset_label(key, value)
        if label is None:
            skipped += 1
        else:
            labels[label[0]] = label[1]
    return Desired(labels, False, "trusted", reasons, skipped)


def our_labels(node: dict[str, Any]) -> dict[str, str]:
    """The node's labels under our prefix."""
    labels = node.get("metadata", {}).get("labels") or {}
    return {k: str(v) for k, v in labels.items() if k.startswith(PREFIX)}


def has_taint(node: dict[str, Any]) -> bool:
    return any(t.get("key") == TAINT_KEY for t in node.get("spec", {}).get("taints") or [])


def taints_with(
    taints: list[dict[str, Any]], *, tainted: bool, effect: str, now_rfc3339: str
) -> list[dict[str, Any]] | None:
    """``taints`` with ours added, changed to ``effect``, or removed; ``None`` when nothing
    changes. Every other taint is kept as it is, in its order."""
    others = [t for t in taints if t.get("key") != TAINT_KEY]
    ours = [t for t in taints if t.get("key") == TAINT_KEY]
    if not tainted:
        return others if ours else None
    if len(ours) == 1 and ours[0].get("effect") == effect:
        return None
    taint: dict[str, Any] = {"key": TAINT_KEY, "value": "true", "effect": effect}
    if effect == "NoExecute":
        taint["timeAdded"] = now_rfc3339
    return [*others, taint]


def event_for(previous: str, state: str) -> tuple[str, str] | None:
    """The Event ``(reason, type)`` a change of announced state calls for, or ``None``."""
    if state == previous:
        return None
    if state in {"untrusted", "mismatch"}:
        return "TrustLost", "Warning"
    if state == "stale":
        return "TrustStale", "Warning"
    if state == "trusted" and previous in {"untrusted", "stale", "mismatch"}:
        return "TrustRestored", "Normal"
    return None
