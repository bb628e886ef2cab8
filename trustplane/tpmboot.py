"""Boot a software TPM from an event log: put a real host's measurements into a swtpm's PCRs.

:func:`boot_from_eventlog` does what a host's firmware did: it starts the TPM at the locality
the log's StartupLocality record names (PCR 0 starts at ``00..03`` for locality 3) and extends
every measured record's digests into its PCR, in log order, skipping what replay skips
(EV_NO_ACTION, PCR indices above 23 such as 0xFFFFFFFF). Afterwards the TPM's PCRs equal the
log's replay (:func:`trustcore.eventlog.replay_eventlog`), so an agent quoting this TPM reports
that host's boot. The demo, the benchmarks and the tests use it; real hosts never do.

Intel TXT (DRTM) logs measure into PCRs 17-22, which a TPM resets to ``ff..ff`` at startup and
lets only locality 4 (the CPU's SENTER) reset and extend. :func:`boot_from_eventlog` replays them
the way the hardware did: the log's first DRTM record, EVTYPE_HASH_START on PCR 17, carries the
bytes the CPU hashed, so ``swtpm_ioctl -h`` runs _TPM_Hash_Start/Data/End over them (PCRs 17-22
reset to 0, PCR 17 extended with their hash); every later DRTM record is extended at locality 4.
The result is trustcore's replay, which starts PCRs 17-22 at ``00..00``. A TXT log whose first
DRTM record is not such a HASH_START is refused.

An H-CRTM log (PCR 0's first record an EV_EFI_HCRTM_EVENT) is booted the same way: the TPM is
power-cycled, ``swtpm_ioctl -h`` runs _TPM_Hash_Start/Data/End over the H-CRTM record's data
*before* TPM2_Startup (PCR 0 reset to ``00..04`` and extended with its hash), then TPM2_Startup
follows from locality 0. That needs the hashed bytes, so it works for records whose digests are
their data's hash (the tests' logs); a real H-CRTM measures code that is not in its log and is
refused, as is a StartupLocality of 4 without an H-CRTM record (a PC Client TPM does not start
from locality 4).
"""

from __future__ import annotations

import hashlib
import socket
from collections.abc import Iterable
from pathlib import Path
from typing import Final

from nodeagent.tpm import TpmDevice
from trustcore.algorithms import HASH_ALGORITHMS
from trustcore.eventlog import Event, EventLog, parse_eventlog, pcr0_start
from trustcore.eventlog.eventtypes import EV_EFI_HCRTM_EVENT, EV_NO_ACTION
from trustplane.swtpm import Swtpm

__all__ = ["BootError", "boot_from_eventlog", "extend_eventlog", "launch_drtm"]

MAX_PCR: Final = 23
# TPM2_Startup(TPM_SU_CLEAR): tag ST_NO_SESSIONS, size 12, TPM_CC_Startup, TPM_SU_CLEAR.
_STARTUP_CLEAR: Final = bytes.fromhex("80010000000c000001440000")
_RC_SUCCESS: Final = bytes.fromhex("80010000000a00000000")
DRTM_PCRS: Final = range(17, 23)
EVTYPE_HASH_START: Final = 0x402
_TPM_CC_PCR_EXTEND: Final = 0x00000182
# An empty password session for TPM_RS_PW: handle, nonce size 0, attributes 0, hmac size 0.
_PASSWORD_SESSION: Final = bytes.fromhex("400000090000000000")


class BootError(RuntimeError):
    """The log cannot be booted into the TPM (unsupported start locality, TPM refused)."""


def _send_raw(tpm: Swtpm, command: bytes) -> bytes:
    """Send one TPM command on the data port (at the locality swtpm_ioctl last set)."""
    with socket.create_connection(("127.0.0.1", tpm.port), timeout=10) as s:
        s.sendall(command)
        return s.recv(4096)


def _start_at_locality(tpm: Swtpm, locality: int) -> None:
    """Power-cycle the TPM and send TPM2_Startup(CLEAR) from ``locality`` (PCR 0 = 00..loc)."""
    tpm.ioctl("-i")
    tpm.ioctl("-l", str(locality))
    answer = _send_raw(tpm, _STARTUP_CLEAR)
    tpm.ioctl("-l", "0")
    if answer != _RC_SUCCESS:
        raise BootError(f"TPM2_Startup at locality {locality} answered {answer.hex()}")


def _extend_command(pcr: int, digests: dict[int, bytes]) -> bytes:
    """TPM2_PCR_Extend of ``pcr`` with an empty password session, as raw command bytes."""
    values = b"".join(alg.to_bytes(2, "big") + value for alg, value in digests.items())
    body = (
        _TPM_CC_PCR_EXTEND.to_bytes(4, "big")
        + pcr.to_bytes(4, "big")
        + len(_PASSWORD_SESSION).to_bytes(4, "big")
        + _PASSWORD_SESSION
        + len(digests).to_bytes(4, "big")
        + values
    )
    return b"\x80\x02" + (len(body) + 6).to_bytes(4, "big") + body


def _hashed_data(event: Event, what: str) -> bytes:
    """``event``'s data, when its every digest is that data's hash (so a TPM hash sequence over
    it reproduces the record); else :class:`BootError`."""
    for alg, digest in event.digests.items():
        known = HASH_ALGORITHMS.get(alg)
        name = known.hashlib_name if known else None
        if name is None or name not in hashlib.algorithms_available:
            raise BootError(f"{what} digest for algorithm 0x{alg:04x} cannot be reproduced")
        if hashlib.new(name, event.data).digest() != digest:
            raise BootError(f"{what} digest for algorithm 0x{alg:04x} is not its data's hash")
    return event.data


def _hash_start_data(events: list[Event]) -> bytes:
    """The bytes the CPU hashed at SENTER: the first DRTM record's data, when it is a
    HASH_START on PCR 17 whose every digest is the hash of that data."""
    first = events[0]
    if first.event_type != EVTYPE_HASH_START or first.pcr != DRTM_PCRS[0]:
        raise BootError(
            f"DRTM log starts with event type 0x{first.event_type:x} on PCR {first.pcr}, "
            "not EVTYPE_HASH_START on PCR 17"
        )
    return _hashed_data(first, "HASH_START")


def _start_after_hcrtm(tpm: Swtpm, data: bytes) -> None:
    """Power-cycle, run the H-CRTM hash sequence over ``data`` before TPM2_Startup (PCR 0 =
    extend(00..04, H(data))), then TPM2_Startup(CLEAR) from locality 0."""
    tpm.ioctl("-i")
    tpm.ioctl("-h", "-", stdin=data)
    tpm.ioctl("-l", "0")
    answer = _send_raw(tpm, _STARTUP_CLEAR)
    if answer != _RC_SUCCESS:
        raise BootError(f"TPM2_Startup after the H-CRTM sequence answered {answer.hex()}")


def launch_drtm(tpm: Swtpm, events: Iterable[Event]) -> int:
    """Replay TXT (DRTM) records as SENTER and SINIT/tboot did: the hash sequence over the
    HASH_START data, then every later record extended at locality 4; returns how many records.

    Raises :class:`BootError` when the first record is no usable HASH_START or the TPM refuses
    an extend, and :class:`subprocess.CalledProcessError` when swtpm_ioctl fails.
    """
    drtm = list(events)
    if not drtm:
        return 0
    tpm.ioctl("-h", "-", stdin=_hash_start_data(drtm))
    tpm.ioctl("-l", "4")
    try:
        for event in drtm[1:]:
            answer = _send_raw(tpm, _extend_command(event.pcr, dict(event.digests)))
            if answer[6:10] != bytes(4):
                raise BootError(f"PCR {event.pcr} extend at locality 4 answered {answer.hex()}")
    finally:
        tpm.ioctl("-l", "0")
    return len(drtm)


def extend_eventlog(tpm: Swtpm, log: EventLog, *, skip: Event | None = None) -> int:
    """Extend every measured record of ``log`` (but ``skip``, already in the TPM) into ``tpm``
    (already started); returns how many. Records on PCRs 17-22 go through :func:`launch_drtm`.

    Raises :class:`nodeagent.errors.TpmError` when the TPM refuses a locality-0 extend, and what
    :func:`launch_drtm` raises.
    """
    measured = [
        event
        for event in log.events
        if event.event_type != EV_NO_ACTION and 0 <= event.pcr <= MAX_PCR and event is not skip
    ]
    with TpmDevice(tpm.tcti) as device:
        for event in measured:
            if event.pcr not in DRTM_PCRS:
                device.pcr_extend(event.pcr, dict(event.digests))
    launch_drtm(tpm, (event for event in measured if event.pcr in DRTM_PCRS))
    return len(measured)


def boot_from_eventlog(tpm: Swtpm, log: Path | bytes | EventLog) -> int:
    """Start ``tpm`` (freshly started or restarted: PCRs at their reset values) as the log's
    firmware did and extend its records; returns the number of records extended.

    Raises :class:`BootError` for an H-CRTM record whose digests are not its data's hash, a
    StartupLocality of 4 without one, or a DRTM log without a usable HASH_START record;
    :class:`OSError` when the file cannot be read, :class:`~trustcore.errors.ParseError` when it
    is no event log, :class:`~trustcore.eventlog.ReplayError` when its PCR 0 records break the
    start rules, and :class:`nodeagent.errors.TpmError` when the TPM refuses an extend.
    """
    if isinstance(log, Path):
        log = log.read_bytes()
    parsed = parse_eventlog(log) if isinstance(log, bytes) else log
    locality = pcr0_start(parsed)
    first = next((e for e in parsed.events if e.pcr == 0 and e.event_type != EV_NO_ACTION), None)
    if first is not None and first.event_type == EV_EFI_HCRTM_EVENT:
        _start_after_hcrtm(tpm, _hashed_data(first, "H-CRTM"))
        return 1 + extend_eventlog(tpm, parsed, skip=first)
    if locality == 3:  # PC Client: a TPM started from locality 3
        _start_at_locality(tpm, locality)
    elif locality != 0:
        raise BootError(
            f"StartupLocality {locality} without an H-CRTM record: a PC Client TPM starts "
            "from locality 0 or 3"
        )
    return extend_eventlog(tpm, parsed)
