"""Reading a kubeconfig far enough to check it (YAML, the context exists), without a client,
and making it self-contained for storage.

:func:`self_contained` keeps only the chosen context with its cluster and user (other
clusters' credentials are not stored) and inlines every file it names, as
``kubectl config view --minify --flatten`` does: ``certificate-authority``, ``client-certificate``
and ``client-key`` become their ``*-data`` twins, ``tokenFile`` its ``token``; relative paths
are relative to the kubeconfig's directory. The hub (another user, maybe another machine) then
needs none of the operator's files. Exec credential plugins stay as they are (their command
runs as the hub's user when the sync connects).

Kept apart from :mod:`hub.clusters.client` so ``trustplane-hub clusters add`` and the hub
itself work where kubernetes_asyncio is not installed (only the sync needs it).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any, Final

from hub.clusters.errors import KubeconfigError

MAX_FILE_BYTES: Final = 1024 * 1024
_INLINE: Final = (
    ("cluster", "certificate-authority", "certificate-authority-data"),
    ("user", "client-certificate", "client-certificate-data"),
    ("user", "client-key", "client-key-data"),
)


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


def _named(data: dict[str, Any], section: str, name: object) -> dict[str, Any]:
    for entry in data.get(section) or []:
        if isinstance(entry, dict) and entry.get("name") == name:
            return entry
    raise KubeconfigError(f"{section[:-1]} {str(name)[:100]!r} is not in the kubeconfig")


def _read(base: Path, value: object, what: str) -> bytes:
    path = base / str(value)
    try:
        with path.open("rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except OSError as e:
        raise KubeconfigError(f"{what} {path}: cannot read: {e.strerror}") from None
    if len(data) > MAX_FILE_BYTES:
        raise KubeconfigError(f"{what} {path}: larger than {MAX_FILE_BYTES} bytes")
    return data


def self_contained(data: dict[str, Any], context: str | None, base: Path) -> tuple[bytes, str]:
    """The kubeconfig reduced to ``context`` (or its current one) with every file it names
    inlined, as JSON (valid YAML), and the context's name; raises :class:`KubeconfigError`."""
    name = str(context or data.get("current-context"))
    ctx = _named(data, "contexts", name)
    spec = ctx.get("context")
    if not isinstance(spec, dict):
        raise KubeconfigError(f"context {name[:100]!r} has no cluster and user")
    cluster = json.loads(json.dumps(_named(data, "clusters", spec.get("cluster"))))
    user = (
        json.loads(json.dumps(_named(data, "users", spec.get("user"))))
        if spec.get("user")
        else {"name": "", "user": {}}
    )
    for part, entry in (("cluster", cluster), ("user", user)):
        body = entry.get(part)
        if not isinstance(body, dict):
            raise KubeconfigError(f"{part} {str(entry.get('name'))[:100]!r} is empty")
        for kind, key, inline in _INLINE:
            if kind == part and body.get(key) and not body.get(inline):
                body[inline] = base64.b64encode(_read(base, body[key], key)).decode()
            if kind == part:
                body.pop(key, None)
        if part == "user" and body.get("tokenFile") and not body.get("token"):
            body["token"] = _read(base, body.pop("tokenFile"), "tokenFile").decode().strip()
    out = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [cluster],
        "users": [user],
        "contexts": [ctx],
        "current-context": name,
    }
    return json.dumps(out, sort_keys=True).encode(), name
