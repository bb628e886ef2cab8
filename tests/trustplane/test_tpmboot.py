"""trustplane.tpmboot: a swtpm booted from a real log holds the PCR values tpm2-tools computed."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from nodeagent.config import EvidenceConfig, TpmConfig
from nodeagent.evidence import collect_evidence
from nodeagent.state import StateDir
from nodeagent.tpm import TpmDevice
from nodeagent.tpmsession import TpmSession
from tests.conftest import EVENTLOGS
from tests.trustcore.test_eventlog import agile_record, header
from trustcore.algorithms import TPM_ALG_SHA1, TPM_ALG_SHA256
from trustcore.attestation import verify_events
from trustcore.eventlog import parse_eventlog, replay_eventlog
from trustcore.eventlog.eventtypes import EV_EFI_HCRTM_EVENT, EV_NO_ACTION
from trustcore.quote import AttestationKey, verify_quote
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


def test_locality_4_without_an_hcrtm_record_is_refused(swtpm: Swtpm) -> None:
    locality4 = agile_record(
        0,
        EV_NO_ACTION,
        {TPM_ALG_SHA1: bytes(20), TPM_ALG_SHA256: bytes(32)},
        b"StartupLocality\0\x04",
    )
    with pytest.raises(BootError, match="StartupLocality 4 without an H-CRTM record"):
        boot_from_eventlog(swtpm, header() + locality4)
    assert set(read_pcrs(swtpm).values()) == {"00" * 32}


@pytest.mark.parametrize("with_locality_record", [False, True])
def test_an_hcrtm_boot_of_a_real_tpm_gives_pcr0_as_trustcore_replays_it(
    swtpm: Swtpm, with_locality_record: bool
) -> None:
    """The TPM's own H-CRTM sequence (libtpms in swtpm: _TPM_Hash_Start/Data/End before
    TPM2_Startup) against trustcore's PCR 0 rule: start at 00..04, extend the H-CRTM record."""
    code = b"trustplane test H-CRTM code"
    digests = {TPM_ALG_SHA1: hashlib.sha1(code).digest(), TPM_ALG_SHA256: sha256(code)}
    crtm = b"crtm 1.0"
    log = (
        header()
        + (
            agile_record(
                0,
                EV_NO_ACTION,
                {TPM_ALG_SHA1: bytes(20), TPM_ALG_SHA256: bytes(32)},
                b"StartupLocality\0\x04",
            )
            if with_locality_record
            else b""
        )
        + agile_record(0, EV_EFI_HCRTM_EVENT, digests, code)
        + agile_record(
            0,
            8,
            {TPM_ALG_SHA1: hashlib.sha1(crtm).digest(), TPM_ALG_SHA256: sha256(crtm)},
            crtm,
        )
    )
    assert boot_from_eventlog(swtpm, log) == 2
    want = sha256(sha256(bytes(31) + b"\x04" + sha256(code)) + sha256(crtm))
    assert read_pcrs(swtpm)[0] == want.hex()
    assert replay_eventlog(parse_eventlog(log))[TPM_ALG_SHA256][0] == want


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


TXT_LOG = EVENTLOGS / "intel-secl" / "txt_heap_eventlog.bin"
TXT_IMAGE = EVENTLOGS / "intel-secl" / "txt_heap_info.bin"
BANKS = {"sha1": TPM_ALG_SHA1, "sha256": TPM_ALG_SHA256}


def txt_expected() -> dict[int, dict[int, str]]:
    """The TXT log's PCR 17/18 per bank as tpm2-tools replays them (from expected.json)."""
    raw = json.loads(TXT_LOG.with_name(TXT_LOG.stem + ".expected.json").read_text())
    return {
        BANKS[bank]: {int(k): v.lower().removeprefix("0x") for k, v in values.items()}
        for bank, values in raw["expected_pcrs"].items()
    }


def read_drtm(tpm: Swtpm) -> dict[int, dict[int, str]]:
    with TpmDevice(tpm.tcti) as device:
        values = device.pcr_read(PcrSelection.of({alg: range(17, 23) for alg in BANKS.values()}))
    return {alg: {pcr: v.hex() for pcr, v in bank.items()} for alg, bank in values.items()}


def test_txt_log_boots_pcrs_17_and_18_at_locality_4(swtpm: Swtpm) -> None:
    before = read_drtm(swtpm)
    assert set(before[TPM_ALG_SHA256].values()) == {"ff" * 32}  # DRTM PCRs before SENTER
    assert boot_from_eventlog(swtpm, TXT_LOG) == 19  # 20 records less the Spec ID header
    got = read_drtm(swtpm)
    want = txt_expected()
    for alg, bank in want.items():
        assert {pcr: got[alg][pcr] for pcr in bank} == bank
        # The hash sequence reset the untouched DRTM PCRs 19-22 to zero.
        assert {got[alg][pcr] for pcr in range(19, 23)} == {"00" * len(bytes.fromhex(bank[17]))}


def test_txt_log_without_hash_start_is_refused(swtpm: Swtpm) -> None:
    digests = {TPM_ALG_SHA1: bytes(20), TPM_ALG_SHA256: bytes(32)}
    log = header() + agile_record(18, 0x40B, digests, b"\0\0\0\0")
    with pytest.raises(BootError, match="event type 0x40b on PCR 18, not EVTYPE_HASH_START"):
        boot_from_eventlog(swtpm, log)
    assert set(read_drtm(swtpm)[TPM_ALG_SHA256].values()) == {"ff" * 32}


def test_hash_start_whose_digest_is_not_its_data_is_refused(swtpm: Swtpm) -> None:
    digests = {TPM_ALG_SHA1: bytes(20), TPM_ALG_SHA256: bytes(32)}
    log = header() + agile_record(17, 0x402, digests, b"sinit")
    with pytest.raises(BootError, match="algorithm 0x0004 is not its data's hash"):
        boot_from_eventlog(swtpm, log)


def test_agent_quote_of_the_txt_log_verifies(swtpm: Swtpm, tmp_path: Path) -> None:
    """The agent reads the TXT log from a heap image standing in for /dev/mem, quotes PCRs 17
    and 18 of a TPM booted from that log, and trustcore verifies the quote and the replay."""
    evidence = collect_evidence(
        EvidenceConfig(
            uefi_log=tmp_path / "absent",
            txt_memory=TXT_IMAGE,
            txt_registers=0,
            txt_heap_base_offset=0,
            txt_heap_size_offset=8,
            txt_log_pointer="heap-relative",
            dmi_uuid=tmp_path / "absent",
            boot_id=tmp_path / "absent",
        )
    )
    log = parse_eventlog(evidence.eventlogs["txt"])
    boot_from_eventlog(swtpm, log)
    nonce = hashlib.sha256(b"txt nonce").digest()
    want = txt_expected()
    state = StateDir(tmp_path / "state")
    state.ensure()
    for bank, alg in BANKS.items():
        cfg = TpmConfig(tcti=swtpm.tcti, pcr_bank=bank, pcrs=(17, 18))
        session = TpmSession(cfg, state)
        try:
            signed = session.quote(nonce)
            quote = verify_quote(
                AttestationKey.from_tpmt_public(session.ak_public),
                signed.attest,
                signed.signature,
                qualifying_data=nonce,
                pcr_selection=session.selection(),
                pcr_values=session.pcr_read(),
            )
        finally:
            session.close()
        events = verify_events(log, quote)
        assert events.verified == {alg: frozenset({17, 18})}
        assert {pcr: v.hex() for pcr, v in quote.pcr_values[alg].items()} == want[alg]
