"""The agent's persistent state directory: identity, enrollment, sequence, queue, status.

Layout (every file 0600, the directory 0700, every write atomic: temporary file, fsync, rename,
fsync of the directory):

- ``ak.json``: the AK's export blobs (public, private, algorithm) so identity survives restarts;
- ``enrollment.json``: host id and the hub's answer status; ``client.key`` / ``client.crt`` /
  ``hub-ca.pem``: the mTLS identity the hub issued and the CA that signs the hub;
- ``reports.json``: the next sequence number, the last acknowledged one, the queue of reports
  owed to the hub, and the event-log digests the hub has acknowledged;
- ``status.json``: what ``trustplane-agent status`` shows (written by the daemon only);
- ``binding.json``: the TPM binding key's blobs (PolicyPCR-only RSA decryption key) sent at
  enrollment; ``tag-certificate.der``: the hub's asset-tag certificate whose SHA-384 the agent
  wrote into the TPM's asset-tag NV index.
- ``trust-report.json``: the hub's last signed trust report for this host (JWS, verdict,
  ``valid_until``), rewritten after every acknowledged report; ``hub-jws.pem``: the hub's JWS
  public key that signs them (both read by ``trustplane-agent hook``);
- ``keycache/``: released layer secrets sealed to the TPM (``nodeagent.keys.cache``).

This module knows file formats and durability; it does not talk to the TPM or the hub.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nodeagent.errors import NodeAgentError


class StateError(NodeAgentError):
    """The state directory cannot be used (permissions, a corrupt file)."""

    reason = "state.unusable"


def write_atomic(path: Path, data: bytes, *, mode: int = 0o600) -> None:
    """Replace ``path`` with ``data``: temp file in the same directory, fsync, rename, fsync dir.

    Raises :class:`StateError`.
    """
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            os.fchmod(fd, mode)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        dfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError as e:
        raise StateError(f"cannot write {path}: {e.strerror or e}") from None


@dataclass(frozen=True, slots=True)
class StoredAk:
    """The AK as the TPM exported it: enough to load it again under the same EK/SRK."""

    algorithm: str
    public: bytes
    private: bytes


@dataclass(frozen=True, slots=True)
class EnrollmentState:
    """Where enrollment stands: ``pending`` (approved later) or ``enrolled`` (mTLS files exist)."""

    host_id: str
    status: str


@dataclass(frozen=True, slots=True)
class QueuedReport:
    """A report owed to the hub: its reserved sequence number and what was seen at the time."""

    sequence: int
    observed_at: float
    boot_id: str
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {
            "sequence": self.sequence,
            "observed_at": self.observed_at,
            "boot_id": self.boot_id,
            "reason": self.reason,
        }


@dataclass(slots=True)
class ReportLedger:
    """Sequence numbers, the owed-report queue and acknowledged event logs (mutable, persisted)."""

    next_sequence: int = 1
    last_acked: int = 0
    queue: list[QueuedReport] = field(default_factory=list)
    acked_logs: set[str] = field(default_factory=set)

    def to_json(self) -> dict[str, Any]:
        return {
            "next_sequence": self.next_sequence,
            "last_acked": self.last_acked,
            "queue": [q.to_json() for q in self.queue],
            "acked_logs": sorted(self.acked_logs),
        }


class StateDir:
    """The agent's state directory. Methods raise :class:`StateError` on unusable files."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def ensure(self) -> None:
        try:
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(self.root, 0o700)
        except OSError as e:
            raise StateError(f"cannot create state directory {self.root}: {e}") from None

    # --- generic JSON ----------------------------------------------------------------------

    def _load(self, name: str) -> dict[str, Any] | None:
        path = self.root / name
        try:
            text = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as e:
            raise StateError(f"cannot read {path}: {e.strerror or e}") from None
        try:
            value = json.loads(text)
        except ValueError:
            raise StateError(f"{path} is not valid JSON; move it away to start over") from None
        if not isinstance(value, dict):
            raise StateError(f"{path} does not hold a JSON object")
        return value

    def _save(self, name: str, value: dict[str, Any]) -> None:
        write_atomic(self.root / name, json.dumps(value, indent=1, sort_keys=True).encode())

    # --- identity --------------------------------------------------------------------------

    def _load_blobs(self, name: str) -> StoredAk | None:
        raw = self._load(name)
        if raw is None:
            return None
        try:
            return StoredAk(
                algorithm=str(raw["algorithm"]),
                public=base64.b64decode(raw["public"], validate=True),
                private=base64.b64decode(raw["private"], validate=True),
            )
        except (KeyError, ValueError, TypeError):
            raise StateError(f"{self.root / name} is damaged") from None

    def _save_blobs(self, name: str, key: StoredAk) -> None:
        self._save(
            name,
            {
                "algorithm": key.algorithm,
                "public": base64.b64encode(key.public).decode(),
                "private": base64.b64encode(key.private).decode(),
            },
        )

    def load_ak(self) -> StoredAk | None:
        return self._load_blobs("ak.json")

    def save_ak(self, ak: StoredAk) -> None:
        self._save_blobs("ak.json", ak)

    def load_enrollment(self) -> EnrollmentState | None:
        raw = self._load("enrollment.json")
        if raw is None:
            return None
        try:
            return EnrollmentState(host_id=str(raw["host_id"]), status=str(raw["status"]))
        except KeyError:
            raise StateError(f"{self.root / 'enrollment.json'} is damaged") from None

    def save_enrollment(
        self, state: EnrollmentState, *, cert_pem: str | None = None, ca_pem: str | None = None
    ) -> None:
        if cert_pem is not None:
            write_atomic(self.client_cert, cert_pem.encode())
        if ca_pem is not None:
            write_atomic(self.hub_ca, ca_pem.encode())
        self._save("enrollment.json", {"host_id": state.host_id, "status": state.status})

    def client_cert_validity(self) -> tuple[float, float] | None:
        """(not before, not after) of the stored client certificate as Unix times, or None.

        Raises :class:`StateError` for a certificate that cannot be parsed.
        """
        try:
            pem = self.client_cert.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as e:
            raise StateError(f"cannot read {self.client_cert}: {e.strerror or e}") from None
        from cryptography import x509  # noqa: PLC0415 - only after enrollment

        try:
            cert = x509.load_pem_x509_certificate(pem)
        except ValueError:
            raise StateError(f"{self.client_cert} is not a PEM certificate") from None
        return (
            cert.not_valid_before_utc.timestamp(),
            cert.not_valid_after_utc.timestamp(),
        )

    @property
    def client_key(self) -> Path:
        return self.root / "client.key"

    @property
    def client_cert(self) -> Path:
        return self.root / "client.crt"

    @property
    def hub_ca(self) -> Path:
        return self.root / "hub-ca.pem"

    # --- reports ---------------------------------------------------------------------------

    def load_ledger(self) -> ReportLedger:
        raw = self._load("reports.json")
        if raw is None:
            return ReportLedger()
        try:
            return ReportLedger(
                next_sequence=int(raw["next_sequence"]),
                last_acked=int(raw["last_acked"]),
                queue=[
                    QueuedReport(
                        sequence=int(q["sequence"]),
                        observed_at=float(q["observed_at"]),
                        boot_id=str(q["boot_id"]),
                        reason=str(q["reason"]),
                    )
                    for q in raw["queue"]
                ],
                acked_logs={str(d) for d in raw["acked_logs"]},
            )
        except (KeyError, ValueError, TypeError):
            raise StateError(f"{self.root / 'reports.json'} is damaged") from None

    def save_ledger(self, ledger: ReportLedger) -> None:
        self._save("reports.json", ledger.to_json())

    # --- binding key and asset tag (TPM policy features) -----------------------------------

    def load_binding(self) -> StoredAk | None:
        """The binding key's blobs (``algorithm`` ``rsa2048-pcr``), or ``None``."""
        return self._load_blobs("binding.json")

    def save_binding(self, key: StoredAk) -> None:
        self._save_blobs("binding.json", key)

    @property
    def tag_certificate(self) -> Path:
        return self.root / "tag-certificate.der"

    def load_tag_certificate(self) -> bytes | None:
        try:
            return self.tag_certificate.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as e:
            raise StateError(f"cannot read {self.tag_certificate}: {e.strerror or e}") from None

    def save_tag_certificate(self, der: bytes) -> None:
        write_atomic(self.tag_certificate, der)

    # --- the signed trust report and the hub's key (the OCI hook) ----------------------------

    @property
    def trust_report_file(self) -> Path:
        return self.root / "trust-report.json"

    def save_trust_report(self, trust_report: str, verdict: str, valid_until: float) -> None:
        self._save(
            "trust-report.json",
            {"trust_report": trust_report, "verdict": verdict, "valid_until": valid_until},
        )

    def load_trust_report(self) -> str | None:
        """The last trust report's JWS, or None when the agent has none yet."""
        raw = self._load("trust-report.json")
        if raw is None:
            return None
        token = raw.get("trust_report")
        if not isinstance(token, str):
            raise StateError(f"{self.trust_report_file} is damaged")
        return token

    @property
    def hub_jws_key(self) -> Path:
        return self.root / "hub-jws.pem"

    @property
    def key_cache(self) -> Path:
        return self.root / "keycache"

    # --- status ----------------------------------------------------------------------------

    @property
    def status_file(self) -> Path:
        return self.root / "status.json"

    def save_status(self, status: dict[str, Any]) -> None:
        write_atomic(self.status_file, json.dumps(status, indent=1, sort_keys=True).encode())

    def load_status(self) -> dict[str, Any] | None:
        return self._load("status.json")
