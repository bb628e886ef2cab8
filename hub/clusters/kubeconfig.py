"""Reading a kubeconfig far enough to check it (YAML, the context exists), without a client.

Kept apart from :mod:`hub.clusters.client` so ``trustplane-hub clusters add`` and the hub
itself work where kubernetes_asyncio is not installed (only the sync needs it).
"""

from __future__ import annotations

from typing import Any

from hub.clusters.errors import KubeconfigError


def parse_kubeconfig(text: bytes, context: str | None) -> dict[str, Any]:
    """The kubeconfig as a dict, checked to have ``context`` (or a current context); raises
    :class:`KubeconfigError` (never echoing the file's content)."""
    try:
        import yaml  # noqa: PLC0415 - PyYAML comes with kubernetes_asyncio; only needed here
    except ImportError:
        raise KubeconfigError(
            "reading a kubeconfig needs PyYAML (python3-pyyaml)", "cluster.client_missing"
        ) from None
    try:
        data = yaml.safe_load(text.decode("utf-8"))
    except (UnicodeDecodeError, yaml.YAMLError):
        raise KubeconfigError("the kubeconfig is not valid YAML") from None
    if not isinstance(data, dict):
        raise KubeconfigError("the kubeconfig is not a YAML mapping")
    contexts = [c.get("name") for c in data.get("contexts") or [] if isinstance(c, dict)]
    name = context or data.get("current-context")
    if not name:
        raise KubeconfigError("the kubeconfig has no current-context; pass --context")
    if name not in contexts:
        raise KubeconfigError(f"context {str(name)[:100]!r} is not in the kubeconfig")
    return data
