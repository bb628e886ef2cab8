"""Seals on the audit log: a signed head, signed checkpoints, and copies of them kept elsewhere.

The audit log is hash-chained (:mod:`hub.store`): each row's hash covers the previous one, so a
changed row breaks every later link, and the head file names the last row. Someone who can write
the database and the state directory could still recompute the chain and the head. So:

- the head (last row id and hash) is signed with the hub's signing key (the JWS key, P-256);
- every ``audit.checkpoint_every`` rows a checkpoint ``{"id", "hash", "at"}`` is signed, stored
  in the ``audit_checkpoints`` table and exported: one INFO line to the log (the journal, when
  systemd runs the hub) and, with ``audit.export_file``, one line appended to that file;
- ``trustplane-hub audit verify`` checks the chain, the head's signature, every checkpoint's
  signature and hash, and every exported checkpoint against the chain.

What that leaves an attacker with write access to the database (docs/hub-config.md, "Audit log"):
without the signing key, any change to a row, or deleting rows, is found. With the hub's own
privileges (which can read the key) rows written after the last exported checkpoint can be
rewritten unnoticed by the database alone, but never rows at or before a checkpoint that reached
the journal or an export file the hub user cannot rewrite (e.g. a file kept by a log shipper).
"""

from __future__ import annotations

import base64
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from hub.config import HubConfig

log = logging.getLogger("trustplane.hub.audit")


def _canonical(obj: object) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def verify_seal(public_key: ec.EllipticCurvePublicKey, sealed: dict[str, Any]) -> bool:
    """Whether ``sealed`` (a head or checkpoint with its ``sig``) was signed by ``public_key``."""
    sig = sealed.get("sig")
    if not isinstance(sig, str):
        return False
    body = {k: v for k, v in sealed.items() if k != "sig"}
    try:
        public_key.verify(base64.b64decode(sig, validate=True), _canonical(body), _ECDSA)
    except (InvalidSignature, ValueError):
        return False
    return True


_ECDSA = ec.ECDSA(hashes.SHA256())


@dataclass
class AuditSealer:
    """Signs heads and checkpoints with ``key`` and exports checkpoints (see the module)."""

    key: ec.EllipticCurvePrivateKey
    checkpoint_every: int = 100
    export_file: Path | None = None

    def seal(self, body: dict[str, Any]) -> dict[str, Any]:
        """``body`` with its signature (``sig``, base64 DER ECDSA-SHA256 of its canonical JSON)."""
        sig = self.key.sign(_canonical(body), _ECDSA)
        return {**body, "sig": base64.b64encode(sig).decode("ascii")}

    def export(self, checkpoint: dict[str, Any]) -> None:
        """Write a checkpoint outside the database: the log and the export file. A file that
        cannot be written is logged, never fatal to the audit write itself."""
        line = _canonical(checkpoint).decode("ascii")
        log.info("audit checkpoint %s", line)
        if self.export_file is None:
            return
        try:
            fd = os.open(self.export_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
            with os.fdopen(fd, "a") as f:
                f.write(line + "\n")
        except OSError as e:
            log.warning("cannot append the audit checkpoint to %s: %s", self.export_file, e)


def audit_sealer(config: HubConfig, key: ec.EllipticCurvePrivateKey) -> AuditSealer:
    """The sealer ``[audit]`` asks for, signing with ``key`` (the hub's JWS key)."""
    export = Path(config.audit.export_file) if config.audit.export_file else None
    return AuditSealer(key, config.audit.checkpoint_every, export)


def read_exported(path: Path) -> list[dict[str, Any]]:
    """The checkpoints of an export file, in order; raises ``OSError`` and ``ValueError``
    (a line that is not JSON, ``TypeError`` one that is no object)."""
    out = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        value = json.loads(line)
        if not isinstance(value, dict):
            raise TypeError(f"{path}:{number}: not a checkpoint")
        out.append(value)
    return out
