"""PLACEHOLDER until wt/keys-hub's nodeagent/keys/release.py is merged: the contract's types."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from nodeagent.errors import NodeAgentError


@dataclass(frozen=True)
class ReleasedSecret:
    annotation_sha256: bytes
    secret: bytes
    expires_at: float


class KeyReleaseRefused(NodeAgentError):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message, reason=reason)


class KeyReleaser:
    async def release(
        self, annotations: Sequence[bytes]
    ) -> list[ReleasedSecret | KeyReleaseRefused]:
        raise NotImplementedError
