"""PCR 0's starting value (trustcore.eventlog.replay.pcr0_start), case by case against the TCG PC
Client Platform Firmware Profile (1.05: 3.3.4.1 "PCR[0]", 10.4.5.3 "StartupLocality Event",
10.4.5.4 "H-CRTM Event"). Each log is built here; the expected PCR values are computed here with
hashlib from the rule's text, not by the code under test."""

from __future__ import annotations

import pytest

from tests.trustcore.test_eventlog import agile_record, extend, header, measured
from trustcore.algorithms import TPM_ALG_SHA1, TPM_ALG_SHA256
from trustcore.eventlog import ReplayError, parse_eventlog, pcr0_start, replay_eventlog
from trustcore.eventlog.eventtypes import (
    EV_EFI_HCRTM_EVENT,
    EV_NO_ACTION,
    EV_POST_CODE,
    EV_S_CRTM_VERSION,
    EV_SEPARATOR,
)

ZERO = {TPM_ALG_SHA1: bytes(20), TPM_ALG_SHA256: bytes(32)}
HCRTM_DATA = b"HCRTM"
CRTM = measured(b"crtm version")
POST = measured(b"post code")


def locality(value: int, pcr: int = 0) -> bytes:
    return agile_record(pcr, EV_NO_ACTION, ZERO, b"StartupLocality\0" + bytes([value]))


def hcrtm() -> bytes:
    # the H-CRTM's measurement (its digest) of code not in the log; the data is "HCRTM"
    return agile_record(0, EV_EFI_HCRTM_EVENT, measured(b"the H-CRTM image"), HCRTM_DATA)


def crtm() -> bytes:
    return agile_record(0, EV_S_CRTM_VERSION, CRTM, b"crtm version")


def post() -> bytes:
    return agile_record(0, EV_POST_CODE, POST, b"post code")


def pcr0(start: int, *digests: dict[int, bytes]) -> dict[int, bytes]:
    return {
        alg: extend(alg, bytes(size - 1) + bytes([start]), *(d[alg] for d in digests))
        for alg, size in ((TPM_ALG_SHA1, 20), (TPM_ALG_SHA256, 32))
    }


def replayed_pcr0(log: bytes) -> dict[int, bytes]:
    banks = replay_eventlog(parse_eventlog(log))
    return {alg: values[0] for alg, values in banks.items()}


HCRTM_IMAGE = measured(b"the H-CRTM image")


@pytest.mark.parametrize(
    ("records", "start", "digests"),
    [
        # no StartupLocality record: TPM2_Startup from locality 0, PCR 0 at zeros
        ((crtm(), post()), 0, (CRTM, POST)),
        # StartupLocality 0 says the same explicitly
        ((locality(0), crtm()), 0, (CRTM,)),
        # locality 3: 00..03 (the usual Intel platform)
        ((locality(3), crtm(), post()), 3, (CRTM, POST)),
        # locality 4 without an H-CRTM record: 00..04
        ((locality(4), crtm()), 4, (CRTM,)),
        # an H-CRTM sequence: PCR 0 reset to 00..04 and extended by the H-CRTM measurement,
        # which is PCR 0's first record; with or without a StartupLocality 4 record
        ((hcrtm(), crtm(), post()), 4, (HCRTM_IMAGE, CRTM, POST)),
        ((locality(4), hcrtm(), crtm()), 4, (HCRTM_IMAGE, CRTM)),
        # records of other PCRs before PCR 0's first do not matter
        (
            (agile_record(7, EV_SEPARATOR, measured(b"\0" * 4), b"\0" * 4), hcrtm()),
            4,
            (HCRTM_IMAGE,),
        ),
        # a StartupLocality record in another PCR is not PCR 0's
        ((locality(3, pcr=1), crtm()), 0, (CRTM,)),
    ],
)
def test_pcr0_starting_value(records: tuple[bytes, ...], start: int, digests: tuple) -> None:
    log = header() + b"".join(records)
    assert pcr0_start(parse_eventlog(log)) == start
    assert replayed_pcr0(log) == pcr0(start, *digests)


@pytest.mark.parametrize(
    ("records", "reason"),
    [
        ((locality(3), hcrtm()), "eventlog.hcrtm_locality_conflict"),
        ((locality(0), hcrtm()), "eventlog.hcrtm_locality_conflict"),
        ((crtm(), hcrtm()), "eventlog.hcrtm_misplaced"),
        ((hcrtm(), hcrtm()), "eventlog.hcrtm_misplaced"),
        ((crtm(), locality(3)), "eventlog.startup_locality_misplaced"),
        ((locality(3), locality(3), crtm()), "eventlog.startup_locality_repeated"),
        ((locality(2), crtm()), "eventlog.bad_startup_locality"),
        ((locality(255),), "eventlog.bad_startup_locality"),
    ],
)
def test_records_that_break_the_rules_are_errors(records: tuple[bytes, ...], reason: str) -> None:
    log = parse_eventlog(header() + b"".join(records))
    with pytest.raises(ReplayError) as err:
        replay_eventlog(log)
    assert err.value.reason == reason
