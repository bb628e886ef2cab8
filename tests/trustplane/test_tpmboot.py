"""trustplane.tpmboot: a swtpm booted from a real log holds the PCR values tpm2-tools computed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nodeagent.tpm import TpmDevice
from tests.conftest import EVENTLOGS
from tests.trustcore.test_eventlog import agile_record, header
from trustcore.algorithms import TPM_ALG_SHA1, TPM_ALG_SHA256
from trustcore.eventlog.eventtypes import EV_NO_ACTION
from trustcore.tpm.pcrs import PcrSelection
from trustplane.swtpm import Swtpm
from trustplane.tpmboot import BootError, boot_from_eventlog

PCRS = list(range(10))


def expected(log: Path) -> dict[int, str]:
    """The log's SHA-256 PCRs as tpm2-tools' replay gives them (the corpus' expected.json)."""
    raw = json.loads(log.with_name(log.stem + ".expected.json").read_text())["expected_pcrs"]
    return {int(k): v.lower().removeprefix("0x") for k, v in raw["sha256"].items()}


def read_pcrs(tpm: Swtpm) -> dict[int, str]:
    with TpmDevice(tpm.tcti) as device:
        values = device.pcr_read(PcrSelection.of({TPM_ALG_SHA256: PCRS}))
    return {pcr: v.hex() for pcr, v in values[TPM_ALG_SHA256].items()}


@pytest.mark.parametrize(
    "log",
    [
        "guard-oss-evidence/test-before.bin",  # no StartupLocality: PCR 0 starts at 0
        "go-tpm-tools/gdc-host.bin",  # StartupLocality 3: PCR 0 starts at 00..03
    ],
)
def test_pcrs_equal_the_logs_replay(swtpm: Swtpm, log: str) -> None:
    path = EVENTLOGS / log
    boot_from_eventlog(swtpm, path)
    want = {pcr: v for pcr, v in expected(path).items() if pcr in PCRS}
    got = read_pcrs(swtpm)
    assert {pcr: got[pcr] for pcr in want} == want


def test_hcrtm_logs_are_refused(swtpm: Swtpm) -> None:
    locality4 = agile_record(
        0,
        EV_NO_ACTION,
        {TPM_ALG_SHA1: bytes(20), TPM_ALG_SHA256: bytes(32)},
        b"StartupLocality\0\x04",
    )
    with pytest.raises(BootError, match="StartupLocality 4"):
        boot_from_eventlog(swtpm, header() + locality4)
    assert set(read_pcrs(swtpm).values()) == {"00" * 32}
