"""The cluster package's errors: one base, a refusal with a reason id, an API server's answer."""

from __future__ import annotations


class ClusterError(Exception):
    """Base of this package's errors; ``reason`` is a stable id."""

    reason = "cluster.error"

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason


class KubeconfigError(ClusterError):
    """A kubeconfig that cannot be read, parsed or unsealed, or names no usable context."""

    reason = "cluster.kubeconfig_invalid"


class ApiServerError(ClusterError):
    """An API server answered with an error status (``status`` 0: it could not be reached)."""

    reason = "cluster.api_error"

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
