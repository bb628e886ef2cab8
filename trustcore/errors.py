"""The one error hierarchy of trustcore.

Two kinds of "no" exist in trustplane (see STYLE.md): an *error* means the input could not be
evaluated (malformed bytes, a bad signature) and is raised as a subclass of
:class:`TrustcoreError`; a *verdict* means the input was evaluated and does not satisfy policy,
and is a value, not an exception. Every error carries a stable ``reason`` id that the hub stores
and shows, and can describe itself in one line for a person.
"""

from __future__ import annotations


class TrustcoreError(Exception):
    """Base of every error trustcore raises.

    ``reason`` is a stable, dotted identifier (``eventlog.truncated``,
    ``quote.signature_invalid``) suitable for storage and for tests; ``str(err)`` is the human
    sentence.
    """

    reason: str = "trustcore.error"

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


class ParseError(TrustcoreError):
    """Bytes that are not a well-formed instance of the structure being decoded.

    ``offset`` is the byte offset (from the start of the buffer handed to the parser) where the
    problem was found.
    """

    reason = "parse.malformed"

    def __init__(self, message: str, *, offset: int, reason: str | None = None) -> None:
        super().__init__(f"{message} (at offset {offset})", reason=reason)
        self.offset = offset


class VerificationError(TrustcoreError):
    """Evidence that is well formed but cannot be trusted (signature, nonce, digest, replay)."""

    reason = "verification.failed"


class CredentialError(TrustcoreError):
    """MakeCredential could not be performed for the given keys."""

    reason = "credential.invalid"
