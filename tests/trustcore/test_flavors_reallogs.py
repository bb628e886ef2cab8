"""Flavors made from real event logs, evaluated against real logs.

guard-oss-evidence/test-before.bin and test-update.bin are the same Ubuntu host before and after
an update from kernel 5.4.0-96 to 5.4.0-100 (new kernel image in PCR 4, new GRUB menu and
command line in PCR 8, new kernel and initrd files in PCR 9). The PCRs that differ are taken
from the corpus' expected.json files (replayed by tpm2_eventlog, not by us); the events that
differ were read off `tpm2_eventlog` (tpm2-tools 5.x) output of the two logs, and are written
out below as constants.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

from tests.conftest import EVENTLOGS, REPO
from trustcore.algorithms import TPM_ALG_SHA256
from trustcore.eventlog import parse_eventlog
from trustcore.flavors import (
    DEFAULT_GROUP,
    DifferenceKind,
    Evidence,
    Flavor,
    FlavorError,
    FlavorPart,
    FlavorTemplate,
    MeasuredEvent,
    RuleKind,
    dump_flavor,
    evaluate,
    evidence_from_eventlog,
    flavor_from_eventlog,
    parse_flavor,
    parse_template,
)

TEMPLATES = REPO / "firmware_measurements" / "templates"


def template(name: str) -> FlavorTemplate:
    return parse_template((TEMPLATES / f"{name}.json").read_text())


def log_evidence(path: str) -> Evidence:
    return evidence_from_eventlog(parse_eventlog((EVENTLOGS / path).read_bytes()))


def expected_pcrs(path: str) -> dict[int, bytes]:
    doc: dict[str, Any] = json.loads((EVENTLOGS / path).read_text())
    return {int(k): bytes.fromhex(v) for k, v in doc["expected_pcrs"]["sha256"].items()}


@pytest.fixture(scope="module")
def uefi_flavors() -> dict[FlavorPart, Flavor]:
    log = parse_eventlog((EVENTLOGS / "guard-oss-evidence/test-before.bin").read_bytes())
    flavors = flavor_from_eventlog(log, template("uefi-secure-boot"), "before")
    return {f.part: f for f in flavors}


@pytest.fixture(scope="module")
def before() -> Evidence:
    return log_evidence("guard-oss-evidence/test-before.bin")


@pytest.fixture(scope="module")
def update() -> Evidence:
    return log_evidence("guard-oss-evidence/test-update.bin")


def test_uefi_flavors_hold_the_logged_pcr_values(uefi_flavors: dict[FlavorPart, Flavor]) -> None:
    pcrs = expected_pcrs("guard-oss-evidence/test-before.expected.json")
    platform = uefi_flavors[FlavorPart.PLATFORM]
    assert [f.id for f in uefi_flavors.values()] == [
        "before.platform",
        "before.host_unique",
        "before.os",
    ]
    assert [r.index for r in platform.pcrs] == list(range(8))
    assert {r.index: r.value for r in platform.pcrs} == {i: pcrs[i] for i in range(8)}
    assert {r.index: r.value for r in uefi_flavors[FlavorPart.OS].pcrs} == {8: pcrs[8], 9: pcrs[9]}
    # Event counts per PCR as tpm2_eventlog lists them (EV_NO_ACTION left out).
    counts = {r.index: len(r.events or ()) for r in platform.pcrs}
    assert counts == {0: 5, 1: 10, 2: 1, 3: 1, 4: 6, 5: 4, 6: 1, 7: 11}
    assert platform.rules[-1].kind is RuleKind.EVENTLOG_INTEGRITY


def test_flavor_from_a_log_matches_that_log(
    uefi_flavors: dict[FlavorPart, Flavor], before: Evidence
) -> None:
    verdict = evaluate(list(uefi_flavors.values()), before)
    assert verdict.trusted is True
    assert verdict.reasons == ()
    assert verdict.matched_flavors == ("before.platform", "before.os", "before.host_unique")
    assert len(verdict.rule_results()) == 15 + 4 + 4  # 14 PCR rules + integrity, 4, 4


# (log event index, PCR, type, sha256 before, sha256 after), from tpm2_eventlog output.
UPDATE_CHANGES = {
    4: [
        (
            111,
            "EV_EFI_BOOT_SERVICES_APPLICATION",
            "00ef0b9f9f904fdfac8c9288504a046adec74207772e4660c5648e81146d16ef",
            "e7b5666a694539be6656b0191e10f97f4e351901bc2f7e59206f311f1d1bede5",
        ),
    ],
    8: [
        (
            84,
            "EV_IPL",
            "516dcd6cfb0c200023dc8284bc73901d4cfec2b0488bb7a45da1ce4fda687c47",
            "827b0d1243cdf8f1d59ae6c432ba72033a43c0ebe7471470ce605783f447c221",
        ),
        (
            85,
            "EV_IPL",
            "d3f4eefd60f42580b71749b3d26445412083b94bb1e0d5f85c79def36ddd65ff",
            "a636ceec3c5764e535f0de1f8ea41e81aba50c4055eb9f9885fa4e9ed92bc4cd",
        ),
        (
            109,
            "EV_IPL",
            "ec6ece23227f43304e0f8eae938d18d08ef2a2d8bce4cc21c8296b8ed4475301",
            "2ddf9420d0b7d7bed4df590fcd4bec770bd2b10e36ae2b6427d2efc353557498",
        ),
        (
            112,
            "EV_IPL",
            "618a23c87116c9de9c002edfd6122491b8397a1acab40122669c03bbf3e341c2",
            "ca449d71805a0194828556a6a7e33da58a2a5227e18766a6cbae55b72a3c8ac9",
        ),
        (
            113,
            "EV_IPL",
            "aa10efa138dc0cd4372ceeaf02334eaa86f5ac950ed93cc3cbcbb6229712089f",
            "88e911102fa3a1572eb65884c037cd67ebfb5c7c6c65e4ad81008fe8d8ff4d64",
        ),
    ],
    9: [
        (
            47,
            "EV_IPL",
            "ae13c507687a2c414150a27bbda8e4f1a0c96c3bdce89047c4ac6408fcf4a4ad",
            "54edc0fa2d8638890bdf963542bc558f844acf191b692ae0b247a387e1755fb6",
        ),
        (
            110,
            "EV_IPL",
            "18de1abf8cc87b9de2e470702bd1008df186ef0e0de4cf24c52c4909f80cd541",
            "1447c063b2d13ca2638d384824e94326412ec758526638d859cbb20bf44e1ab0",
        ),
        (
            114,
            "EV_IPL",
            "2c22a9ca448a9caae9c3be66d22da4bf00165c696be1d6ade04262bb69d6d40d",
            "ece4e4110307fabe79347c1d0e393c81f4a6a783ebd52210c075bad550da5820",
        ),
    ],
}


def test_update_fails_on_exactly_the_pcrs_that_changed(
    uefi_flavors: dict[FlavorPart, Flavor], update: Evidence
) -> None:
    old = expected_pcrs("guard-oss-evidence/test-before.expected.json")
    new = expected_pcrs("guard-oss-evidence/test-update.expected.json")
    changed = {i for i in old if old[i] != new.get(i)}
    assert changed == {4, 8, 9}  # the corpus' own statement of what the update changed

    verdict = evaluate(list(uefi_flavors.values()), update)
    assert verdict.trusted is False
    assert verdict.reasons == (
        "flavor.none_matched",
        "flavor.os.eventlog_mismatch",
        "flavor.os.pcr_mismatch",
        "flavor.platform.eventlog_mismatch",
        "flavor.platform.pcr_mismatch",
    )
    failed = {r.pcr for r in verdict.rule_results() if not r.passed}
    assert failed == changed
    assert verdict.matched_flavors == ("before.host_unique",)
    for result in verdict.rule_results():
        if result.kind is RuleKind.PCR_MATCHES and result.pcr in changed:
            assert result.expected == f"sha256:{result.pcr}={old[result.pcr].hex()}"
            assert result.actual == f"sha256:{result.pcr}={new[result.pcr].hex()}"


@pytest.mark.parametrize("pcr", [4, 8, 9])
def test_update_names_every_changed_event(
    uefi_flavors: dict[FlavorPart, Flavor], update: Evidence, pcr: int
) -> None:
    verdict = evaluate(list(uefi_flavors.values()), update)
    (result,) = [
        r for r in verdict.rule_results() if r.kind is RuleKind.EVENTLOG_EQUALS and r.pcr == pcr
    ]
    got = [
        (d.kind, d.pcr, d.index, d.type_name, d.expected_digest, d.actual_digest)
        for d in result.differences
    ]
    want = [
        (DifferenceKind.CHANGED, pcr, index, name, bytes.fromhex(old), bytes.fromhex(new))
        for index, name, old, new in UPDATE_CHANGES[pcr]
    ]
    assert got == want


def test_update_difference_describes_the_new_kernel(
    uefi_flavors: dict[FlavorPart, Flavor], update: Evidence
) -> None:
    verdict = evaluate([uefi_flavors[FlavorPart.OS]], update, DEFAULT_GROUP_OS)
    diffs = {d.index: d for r in verdict.rule_results() for d in r.differences}
    assert "5.4.0-100" in diffs[114].description
    assert diffs[114].describe().startswith("PCR 9 event 114 EV_IPL changed: 2c22a9ca")


DEFAULT_GROUP_OS = replace(DEFAULT_GROUP, policies=DEFAULT_GROUP.policies[1:2])


def other_host(evidence: Evidence, index: int) -> Evidence:
    """The same evidence with one event's digests flipped: a host that differs only there."""
    events = tuple(
        MeasuredEvent(
            e.index,
            e.pcr,
            e.event_type,
            e.type_name,
            {alg: bytes(b ^ 0xFF for b in d) for alg, d in e.digests.items()},
            e.tags,
            e.description,
        )
        if e.index == index
        else e
        for e in evidence.events
    )
    pcrs = {alg: dict(v) for alg, v in evidence.pcrs.items()}
    pcr = next(e.pcr for e in events if e.index == index)
    pcrs[TPM_ALG_SHA256][pcr] = b"\xee" * 32  # whatever the other host's PCR holds
    return Evidence(pcrs, events, True)


def test_excluded_boot_entry_leaves_platform_trusted_and_host_unique_not(
    uefi_flavors: dict[FlavorPart, Flavor], before: Evidence
) -> None:
    boot0007 = next(e for e in before.events if "Boot0007" in e.tags)
    assert boot0007.type_name == "EV_EFI_VARIABLE_BOOT"
    host2 = other_host(before, boot0007.index)
    platform = evaluate([uefi_flavors[FlavorPart.PLATFORM]], host2)
    assert platform.trusted is True
    verdict = evaluate(list(uefi_flavors.values()), host2)
    assert verdict.reasons == (
        "flavor.host_unique.eventlog_mismatch",
        "flavor.host_unique.pcr_mismatch",
        "flavor.none_matched",
    )
    (diff,) = [d for r in verdict.rule_results() for d in r.differences]
    assert (diff.kind, diff.pcr, diff.index) == (DifferenceKind.CHANGED, 1, boot0007.index)


def test_a_changed_secure_boot_variable_is_not_excluded(
    uefi_flavors: dict[FlavorPart, Flavor], before: Evidence
) -> None:
    db = next(e for e in before.events if e.pcr == 7 and "db" in e.tags)
    verdict = evaluate(list(uefi_flavors.values()), other_host(before, db.index))
    assert verdict.reasons == (
        "flavor.none_matched",
        "flavor.platform.eventlog_mismatch",
        "flavor.platform.pcr_mismatch",
    )


def test_replay_failure_fails_the_platform_part(
    uefi_flavors: dict[FlavorPart, Flavor], before: Evidence
) -> None:
    verdict = evaluate(list(uefi_flavors.values()), replace(before, replay_ok=False))
    assert verdict.reasons == ("flavor.none_matched", "flavor.replay_integrity")


# --- TXT + tboot -----------------------------------------------------------------------------

TXT = "intel-secl/txt_heap_eventlog.bin"
TBOOT = {  # the 0x501 events (tboot: policy into 17 and 18, kernel, initrd), per tpm2_eventlog
    16: "71be5852a14eabefebf0df0e1acc5da291883b6d4c5ab20914ed987c1daf3f91",
    17: "71be5852a14eabefebf0df0e1acc5da291883b6d4c5ab20914ed987c1daf3f91",
    18: "d4b319df2b01841ab98398dca33d8fcefcada45c40456711fa9b8551cf832649",
    19: "a356ece1bd8ce87a671f15d302d6b1a33ff9e9be1094fcb17efdd01dd6c7a5b9",
}
LCP_CONTROL = "df3f619804a92fdb4057192dc43dd748ea778adc52bc498ce80524c014b81119"


@pytest.fixture(scope="module")
def txt_flavors() -> dict[FlavorPart, Flavor]:
    log = parse_eventlog((EVENTLOGS / TXT).read_bytes())
    return {f.part: f for f in flavor_from_eventlog(log, template("txt-tboot"), "txt")}


def test_txt_flavors_from_the_txt_heap_log(txt_flavors: dict[FlavorPart, Flavor]) -> None:
    pcrs = expected_pcrs(TXT.replace(".bin", ".expected.json"))
    platform = txt_flavors[FlavorPart.PLATFORM]
    assert {r.index: r.value for r in platform.pcrs} == {17: pcrs[17], 18: pcrs[18]}
    assert [len(r.events or ()) for r in platform.pcrs] == [12, 7]
    os_refs = {
        r.index: [e.digest.hex() for e in r.events or ()] for r in txt_flavors[FlavorPart.OS].pcrs
    }
    assert os_refs == {17: [TBOOT[16], TBOOT[18], TBOOT[19]], 18: [TBOOT[17]]}
    unique = {
        r.index: [e.digest.hex() for e in r.events or ()]
        for r in txt_flavors[FlavorPart.HOST_UNIQUE].pcrs
    }
    assert unique == {17: [LCP_CONTROL], 18: [LCP_CONTROL]}


def test_txt_flavors_match_their_own_log(txt_flavors: dict[FlavorPart, Flavor]) -> None:
    verdict = evaluate(list(txt_flavors.values()), log_evidence(TXT))
    assert verdict.trusted is True
    equals = [r for r in verdict.rule_results() if r.kind is RuleKind.EVENTLOG_EQUALS]
    # 12 + 7 events, minus the LCP control hash and the tboot measurements in each PCR.
    assert [r.expected.split(" ")[0] for r in equals] == ["8", "5"]


def test_txt_new_kernel_fails_os_only(txt_flavors: dict[FlavorPart, Flavor]) -> None:
    host = other_host(log_evidence(TXT), 18)
    verdict = evaluate(list(txt_flavors.values()), host)
    assert verdict.reasons == ("flavor.none_matched", "flavor.os.eventlog_missing")
    (diff,) = [d for r in verdict.rule_results() for d in r.differences]
    assert (diff.kind, diff.pcr, diff.type_name, diff.expected_digest) == (
        DifferenceKind.MISSING,
        17,
        "TPM_EVT_TBOOT_HASH",
        bytes.fromhex(TBOOT[18]),
    )


def test_txt_other_launch_policy_fails_host_unique_only(
    txt_flavors: dict[FlavorPart, Flavor],
) -> None:
    lcp = [e.index for e in log_evidence(TXT).events if e.type_name == "EVTYPE_LCP_CONTROL_HASH"]
    assert lcp == [4, 13]
    host = other_host(other_host(log_evidence(TXT), 4), 13)
    verdict = evaluate(list(txt_flavors.values()), host)
    assert verdict.reasons == ("flavor.host_unique.eventlog_missing", "flavor.none_matched")


def test_txt_other_sinit_fails_platform(txt_flavors: dict[FlavorPart, Flavor]) -> None:
    host = other_host(log_evidence(TXT), 10)  # EVTYPE_SINIT_PUBKEY_HASH
    verdict = evaluate(list(txt_flavors.values()), host)
    assert verdict.reasons == ("flavor.none_matched", "flavor.platform.eventlog_mismatch")
    (diff,) = [d for r in verdict.rule_results() for d in r.differences]
    assert (diff.kind, diff.pcr, diff.index, diff.type_name) == (
        DifferenceKind.CHANGED,
        18,
        10,
        "EVTYPE_SINIT_PUBKEY_HASH",
    )


def test_uefi_template_cannot_make_a_flavor_from_a_txt_log() -> None:
    log = parse_eventlog((EVENTLOGS / TXT).read_bytes())
    with pytest.raises(FlavorError) as err:
        flavor_from_eventlog(log, template("uefi-secure-boot"), "txt")
    assert err.value.reason == "flavor.evidence_incomplete"


def test_flavors_from_real_logs_round_trip(
    uefi_flavors: dict[FlavorPart, Flavor], txt_flavors: dict[FlavorPart, Flavor]
) -> None:
    for flavor in [*uefi_flavors.values(), *txt_flavors.values()]:
        assert parse_flavor(dump_flavor(flavor)) == flavor
