"""Boot a software TPM from an event log: put a real host's measurements into a swtpm's PCRs.

:func:`boot_from_eventlog` does what a host's firmware did: it starts the TPM at the locality
the log's StartupLocality record names (PCR 0 starts at ``00..03`` for locality 3) and extends
every measured record's digests into its PCR, in log order, skipping what replay skips
(EV_NO_ACTION, PCR indices above 23 such as 0xFFFFFFFF). Afterwards the TPM's PCRs equal the
log's replay (:func:`trustcore.eventlog.replay_eventlog`), so an agent quoting this TPM reports
that host's boot. The demo, the benchmarks and the tests use it; real hosts never do.

H-CRTM logs (StartupLocality 4) are refused: their PCR 0 comes from the TPM's own hash sequence,
which this module does not reproduce.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Final

from nodeagent.tpm import TpmDevice
from trustcore.eventlog import EventLog, parse_eventlog, startup_locality
from trustcore.eventlog.eventtypes import EV_NO_ACTION
from trustplane.swtpm import Swtpm

__all__ = ["BootError", "boot_from_eventlog"]

MAX_PCR: Final = 23
# TPM2_Startup(TPM_SU_CLEAR): tag ST_NO_SESSIONS, size 12, TPM_CC_Startup, TPM_SU_CLEAR.
_STARTUP_CLEAR: Final = bytes.fromhex("80010000000c000001440000")
_RC_SUCCESS: Final = bytes.fromhex("80010000000a00000000")


class BootError(RuntimeError):
    """The log cannot be booted into the TPM (unsupported start locality, TPM refused)."""


def _start_at_locality(tpm: Swtpm, locality: int) -> None:
    """Power-cycle the TPM and send TPM2_Startup(CLEAR) from ``locality`` (PCR 0 = 00..loc)."""
    tpm.ioctl("-i")
    tpm.ioctl("-l", str(locality))
    with socket.create_connection(("127.0.0.1", tpm.port), timeout=10) as s:
        s.sendall(_STARTUP_CLEAR)
        answer = s.recv(64)
    tpm.ioctl("-l", "0")
    if answer != _RC_SUCCESS:
        raise BootError(f"TPM2_Startup at locality {locality} answered {answer.hex()}")


def extend_eventlog(tpm: Swtpm, log: EventLog) -> int:
    """Extend every measured record of ``log`` into ``tpm`` (already started); returns how many.

    Raises :class:`nodeagent.errors.TpmError` when the TPM refuses an extend.
    """
    count = 0
    with TpmDevice(tpm.tcti) as device:
        for event in log.events:
            if event.event_type == EV_NO_ACTION or not 0 <= event.pcr <= MAX_PCR:
                continue
            device.pcr_extend(event.pcr, dict(event.digests))
            count += 1
    return count


def boot_from_eventlog(tpm: Swtpm, log: Path | bytes | EventLog) -> int:
    """Start ``tpm`` (freshly started or restarted: PCRs at their reset values) as the log's
    firmware did and extend its records; returns the number of records extended.

    Raises :class:`BootError` for a locality-4 (H-CRTM) log, :class:`OSError` when the file
    cannot be read, :class:`~trustcore.errors.ParseError` when it is no event log, and
    :class:`nodeagent.errors.TpmError` when the TPM refuses an extend.
    """
    if isinstance(log, Path):
        log = log.read_bytes()
    parsed = parse_eventlog(log) if isinstance(log, bytes) else log
    locality = startup_locality(parsed)
    if locality == 3:  # PC Client: a TPM started from locality 3
        _start_at_locality(tpm, locality)
    elif locality != 0:
        raise BootError(f"StartupLocality {locality} (H-CRTM) logs are not supported")
    return extend_eventlog(tpm, parsed)
