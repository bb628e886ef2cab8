"""The one error base of the ``trustplane`` package (image commands, the demo's helpers).

Like :class:`trustcore.errors.TrustcoreError`, every error carries a stable ``reason`` id and
describes itself in one line; only :mod:`trustplane.cli` turns errors into exit codes.
"""

from __future__ import annotations


class TrustplaneError(Exception):
    """Base of the errors the trustplane package raises; ``reason`` is a stable dotted id."""

    reason: str = "trustplane.error"

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
