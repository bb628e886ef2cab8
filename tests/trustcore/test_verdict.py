"""trustcore.verdict: the invariants of verdict values and how reasons combine."""

from __future__ import annotations

import pytest

from trustcore.errors import TrustcoreError
from trustcore.verdict import Reason, TrustStatus, TrustVerdict, trusted, untrusted


def test_trusted_has_no_reasons() -> None:
    verdict = trusted()
    assert (verdict.status, verdict.trusted, verdict.reason_ids) == (TrustStatus.TRUSTED, True, ())
    with pytest.raises(TrustcoreError) as err:
        TrustVerdict(TrustStatus.TRUSTED, (Reason("quote.signature_invalid"),))
    assert err.value.reason == "verdict.invalid"


@pytest.mark.parametrize("status", [TrustStatus.UNTRUSTED, TrustStatus.STALE])
def test_untrusted_and_stale_need_a_reason(status: TrustStatus) -> None:
    with pytest.raises(TrustcoreError) as err:
        TrustVerdict(status)
    assert err.value.reason == "verdict.invalid"


def test_pending_may_have_no_reason() -> None:
    assert TrustVerdict(TrustStatus.PENDING).trusted is False


def test_untrusted_sorts_and_deduplicates_by_id_keeping_the_first_detail() -> None:
    verdict = untrusted(
        [
            Reason("flavor.platform.pcr_mismatch", "PCR 4"),
            Reason("eventlog.replay_mismatch", "PCR 0"),
            Reason("flavor.platform.pcr_mismatch", "PCR 7"),
        ]
    )
    assert verdict.status is TrustStatus.UNTRUSTED
    assert verdict.reasons == (
        Reason("eventlog.replay_mismatch", "PCR 0"),
        Reason("flavor.platform.pcr_mismatch", "PCR 4"),
    )
    with pytest.raises(TrustcoreError):
        untrusted([])


@pytest.mark.parametrize("rid", ["", "flavor", "Flavor.platform", "flavor..x", "flavor.x y"])
def test_reason_ids_are_dotted_lower_case(rid: str) -> None:
    with pytest.raises(TrustcoreError) as err:
        Reason(rid)
    assert err.value.reason == "verdict.invalid"
