"""The node agent's error hierarchy.

:class:`NodeAgentError` is the base of every error the agent raises on purpose; like
:class:`trustcore.errors.TrustcoreError` it carries a stable ``reason`` id and describes itself
in one line. :class:`TpmError` is what every TPM failure becomes: the TPM software stack's
exceptions never leave :mod:`nodeagent.tpm`. Turning errors into exit codes or log lines is the
CLI's and the daemon loop's job.
"""

from __future__ import annotations

__all__ = ["NodeAgentError", "TpmError"]


class NodeAgentError(Exception):
    """Base of every error the node agent raises on purpose."""

    reason: str = "agent.error"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""

    def describe(self) -> str:
        """One line for a person: the reason id and what went wrong."""
        return f"{self.reason}: {self.message}"


class TpmError(NodeAgentError):
    """A TPM command (or the TPM software stack around it) failed.

    ``operation`` names what the agent was doing (``quote``, ``activate_credential``);
    ``rc`` is the TSS2/TPM response code (0 when the failure did not come from the TPM stack)
    and ``description`` the stack's decoding of it.
    """

    reason = "tpm.error"

    def __init__(self, operation: str, rc: int, description: str) -> None:
        super().__init__(f"TPM {operation} failed: {description} (rc 0x{rc:08x})")
        self.operation = operation
        self.rc = rc
        self.description = description
