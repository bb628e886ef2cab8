"""Evidence the host offers besides the quote: event logs and host facts.

:func:`collect_evidence` reads the UEFI (TCG PC Client) event log the kernel exports, the Intel
TXT event log from the TXT heap (through ``/dev/mem``: the public TXT configuration registers
give the heap's base and size; :func:`trustcore.eventlog.locate_txt_eventlog` walks the heap to
find the log), and host facts (DMI product UUID, boot id, kernel, hostname). A source that is
absent or unreadable (no TXT, kernel lockdown, no permission) is never an error and never
faked: it becomes a :class:`~trustcore.wire.MissingEvidence` whose reason starts with a stable
id (``not_present``, ``permission_denied``, ``locked_down``, ``unreadable``, ``malformed``,
``too_large``, ``disabled``) followed by the detail.

Parsing and judging the logs is the hub's business (trustcore); this module only reads bytes,
bounded in size. TPM facts (vendor, firmware) come from the TPM worker, not from here.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from nodeagent.config import EvidenceConfig
from nodeagent.errors import NodeAgentError
from trustcore.errors import ParseError
from trustcore.wire import MAX_EVENTLOG_BYTES, MissingEvidence

UEFI: Final = "uefi"
TXT: Final = "txt"


class EvidenceUnavailable(NodeAgentError):
    """One evidence source could not be read; ``reason_id`` is stable, the message explains."""

    reason = "evidence.unavailable"

    def __init__(self, source: str, reason_id: str, detail: str) -> None:
        super().__init__(f"{source}: {reason_id}: {detail}")
        self.source = source
        self.reason_id = reason_id
        self.detail = detail

    def to_missing(self) -> MissingEvidence:
        return MissingEvidence(source=self.source, reason=f"{self.reason_id}: {self.detail}")


@dataclass(frozen=True, slots=True)
class Evidence:
    """What one collection found: raw logs by name, what is missing and why, host facts."""

    eventlogs: dict[str, bytes]
    missing: tuple[MissingEvidence, ...]
    facts: dict[str, str]
    boot_id: str


def _os_reason(source: str, path: Path, err: OSError) -> EvidenceUnavailable:
    code = err.errno
    if code == errno.ENOENT:
        return EvidenceUnavailable(source, "not_present", f"{path} does not exist")
    if code == errno.EACCES:
        return EvidenceUnavailable(source, "permission_denied", f"{path}: no permission to read")
    if code == errno.EPERM:
        return EvidenceUnavailable(
            source, "locked_down", f"{path}: operation not permitted (kernel lockdown or policy)"
        )
    return EvidenceUnavailable(source, "unreadable", f"{path}: {err.strerror or err}")


def read_uefi_log(path: Path, *, limit: int = MAX_EVENTLOG_BYTES) -> bytes:
    """The kernel's binary_bios_measurements bytes. Raises :class:`EvidenceUnavailable`."""
    try:
        with path.open("rb") as f:
            data = f.read(limit + 1)
    except OSError as e:
        raise _os_reason(UEFI, path, e) from None
    if len(data) > limit:
        raise EvidenceUnavailable(UEFI, "too_large", f"{path} is larger than {limit} bytes")
    if not data.strip():  # systemd passes an absent log as a credential of one newline
        raise EvidenceUnavailable(UEFI, "not_present", f"{path} is empty")
    return data


def _pread_exact(fd: int, size: int, offset: int, path: Path) -> bytes:
    out = bytearray()
    while len(out) < size:
        chunk = os.pread(fd, size - len(out), offset + len(out))
        if not chunk:
            raise EvidenceUnavailable(
                TXT, "unreadable", f"{path}: short read at {offset + len(out):#x}"
            )
        out += chunk
    return bytes(out)


def read_txt_log(cfg: EvidenceConfig, *, limit: int = MAX_EVENTLOG_BYTES) -> bytes:
    """The TXT event log read from memory (``cfg.txt_memory``, normally ``/dev/mem``).

    Reads TXT.HEAP.BASE and TXT.HEAP.SIZE from the public configuration registers, reads the
    heap (at most ``cfg.txt_heap_max_bytes``), finds the event log pointer with trustcore's heap
    walk and reads the log it points to (a physical address, or heap-relative when
    ``cfg.txt_log_pointer`` says so, as in intel-secl's test image); the log must start with a
    Spec ID header. Raises :class:`EvidenceUnavailable`.
    """
    path = cfg.txt_memory
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        raise _os_reason(TXT, path, e) from None
    try:
        return _read_txt_from(fd, cfg, limit)
    except OSError as e:
        raise _os_reason(TXT, path, e) from None
    finally:
        os.close(fd)


def _read_txt_from(fd: int, cfg: EvidenceConfig, limit: int) -> bytes:
    from trustcore.eventlog.specid import SPEC_ID_SIGNATURE_03  # noqa: PLC0415 - TXT only
    from trustcore.eventlog.txtheap import locate_txt_eventlog  # noqa: PLC0415

    path, regs = cfg.txt_memory, cfg.txt_registers
    (base,) = struct.unpack("<Q", _pread_exact(fd, 8, regs + cfg.txt_heap_base_offset, path))
    (size,) = struct.unpack("<Q", _pread_exact(fd, 8, regs + cfg.txt_heap_size_offset, path))
    if base in (0, 2**64 - 1) or size in (0, 2**64 - 1):
        raise EvidenceUnavailable(
            TXT, "not_present", f"TXT heap registers read {base:#x}/{size:#x}: TXT is off"
        )
    if size > cfg.txt_heap_max_bytes:
        raise EvidenceUnavailable(
            TXT, "too_large", f"TXT heap of {size} bytes exceeds txt_heap_max_bytes"
        )
    heap = _pread_exact(fd, size, base, path)
    try:
        where = locate_txt_eventlog(heap, heap_base=base)
    except ParseError as e:
        raise EvidenceUnavailable(TXT, "malformed", f"TXT heap: {e.describe()}") from None
    if where.size > limit:
        raise EvidenceUnavailable(TXT, "too_large", f"TXT log of {where.size} bytes")
    start = where.address + (base if cfg.txt_log_pointer == "heap-relative" else 0)
    log = _pread_exact(fd, where.size, start, path)
    if log[32:48] != SPEC_ID_SIGNATURE_03:
        raise EvidenceUnavailable(
            TXT, "malformed", f"no Spec ID header at {start:#x}: not a TPM 2.0 TXT log"
        )
    return log


def _read_text(path: Path, limit: int = 256) -> str:
    """A short sysfs/procfs text value. Raises OSError."""
    with path.open("rb") as f:
        return f.read(limit).decode("ascii", errors="replace").strip()


def read_host_facts(cfg: EvidenceConfig) -> tuple[str, dict[str, str], list[MissingEvidence]]:
    """(boot id, facts, missing) from DMI, procfs and uname; never raises."""
    missing: list[MissingEvidence] = []
    uname = os.uname()
    facts = {
        "hostname": socket.gethostname(),
        "kernel": uname.release,
        "kernel_version": uname.version,
        "machine": uname.machine,
    }
    try:
        uuid = _read_text(cfg.dmi_uuid).lower()
    except OSError as e:
        missing.append(_os_reason("dmi_uuid", cfg.dmi_uuid, e).to_missing())
    else:
        if uuid:
            facts["dmi_uuid"] = uuid
        else:
            missing.append(MissingEvidence("dmi_uuid", f"not_present: {cfg.dmi_uuid} is empty"))
    try:
        boot_id = _read_text(cfg.boot_id)
    except OSError as e:
        missing.append(_os_reason("boot_id", cfg.boot_id, e).to_missing())
        boot_id = "unknown"
    return boot_id or "unknown", facts, missing


def collect_evidence(cfg: EvidenceConfig) -> Evidence:
    """Everything readable now; what is not readable is listed in ``missing``. Never raises."""
    boot_id, facts, missing = read_host_facts(cfg)
    logs: dict[str, bytes] = {}
    try:
        logs[UEFI] = read_uefi_log(cfg.uefi_log)
    except EvidenceUnavailable as e:
        missing.append(e.to_missing())
    if not cfg.txt:
        missing.append(MissingEvidence(TXT, "disabled: evidence.txt is false in the config"))
    else:
        try:
            logs[TXT] = read_txt_log(cfg)
        except EvidenceUnavailable as e:
            missing.append(e.to_missing())
    return Evidence(eventlogs=logs, missing=tuple(missing), facts=facts, boot_id=boot_id)
