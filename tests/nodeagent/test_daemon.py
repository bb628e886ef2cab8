"""nodeagent.daemon: backoff and jitter tables, the hub's early next report, and the loop
boundary that survives an unexpected exception (against the real hub on loopback)."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hub.config import HubConfig
from nodeagent.daemon import Backoff, Daemon, jittered
from tests.hub.conftest import ca_bundle
from tests.hub.harness import make_state
from tests.nodeagent.conftest import LoopbackHub, RunningDaemon, agent_config, wait_for
from trustcore.errors import TrustcoreError
from trustplane.swtpm import Swtpm, SwtpmFactory

# --- Backoff and jitter (seeded) -------------------------------------------------------------


@pytest.mark.parametrize(
    ("initial", "maximum", "ceilings"),
    [
        (1.0, 8.0, [1, 2, 4, 8, 8, 8]),  # doubling, then capped
        (0.05, 0.2, [0.05, 0.1, 0.2, 0.2]),  # the test configs' values
        (3.0, 10.0, [3, 6, 10, 10]),  # the cap need not be a power of two of initial
        (5.0, 5.0, [5, 5, 5]),
    ],
)
def test_backoff_doubles_to_its_cap_with_jitter_in_the_upper_half(
    initial: float, maximum: float, ceilings: list[float]
) -> None:
    for seed in range(20):
        backoff = Backoff(initial, maximum, rng=random.Random(seed))
        oracle = random.Random(seed)  # the same stream, drawn independently
        got = [backoff.next() for _ in ceilings]
        want = [oracle.uniform(c / 2, c) for c in ceilings]
        assert got == pytest.approx(want, rel=1e-12)
        assert all(c / 2 <= g <= c for g, c in zip(got, ceilings, strict=True))
        assert backoff.failures == len(ceilings)


def test_backoff_reset_starts_again_at_initial() -> None:
    backoff = Backoff(1.0, 60.0, rng=random.Random(1))
    for _ in range(10):
        backoff.next()
    assert backoff.next() <= 60.0
    backoff.reset()
    assert backoff.failures == 0
    assert 0.5 <= backoff.next() <= 1.0


def test_backoff_jitter_covers_its_range() -> None:
    rng = random.Random(42)
    draws = []
    for _ in range(2000):
        backoff = Backoff(4.0, 4.0, rng=rng)
        draws.append(backoff.next())
    assert 2.0 <= min(draws) < 2.05
    assert 3.95 < max(draws) <= 4.0


@pytest.mark.parametrize(
    ("interval", "jitter", "low", "high"),
    [(60.0, 0.1, 54.0, 66.0), (3600.0, 0.5, 1800.0, 5400.0), (10.0, 0.0, 10.0, 10.0)],
)
def test_jittered_spreads_the_interval_both_ways(
    interval: float, jitter: float, low: float, high: float
) -> None:
    rng = random.Random(7)
    oracle = random.Random(7)
    got = [jittered(interval, jitter, rng) for _ in range(500)]
    assert got[:5] == pytest.approx(
        [interval * (1 + oracle.uniform(-jitter, jitter)) for _ in range(5)], rel=1e-12
    )
    assert all(low <= g <= high for g in got)
    if jitter:
        assert min(got) < interval < max(got)  # both earlier and later than the interval
    else:
        assert set(got) == {interval}


# --- against the real hub ----------------------------------------------------------------


@pytest.fixture
def eager_hub(tmp_path: Path, swtpm_factory: SwtpmFactory) -> Iterator[LoopbackHub]:
    """A hub whose answer to every report asks for the next one within 1 s."""
    tmp = tmp_path / "hub"
    tmp.mkdir()
    bundle = ca_bundle(swtpm_factory, tmp / "ek-ca.pem")
    config: HubConfig = make_state(
        tmp, enrollment={"ek_ca_bundle": str(bundle)}, attestation={"interval": 1}
    )
    running = LoopbackHub(config)
    try:
        yield running
    finally:
        running.stop()


def test_hub_asking_for_an_early_report_gets_it(
    tmp_path: Path, booted_tpm: Swtpm, eager_hub: LoopbackHub
) -> None:
    # The agent's own interval is an hour (at least 54 min with jitter): only the hub's
    # next_report_in = 1 s can bring the second report within the wait below.
    cfg = agent_config(tmp_path, booted_tpm, eager_hub.url, eager_hub.ca_file, interval=3600)

    async def scenario() -> tuple[str, float]:
        async with RunningDaemon(cfg) as daemon:
            await wait_for(lambda: daemon.last is not None)
            assert daemon.last is not None
            assert daemon.last.result.next_report_in == 1.0
            first_at = time.monotonic()
            await wait_for(lambda: daemon.last is not None and daemon.last.sequence == 2, 20)
            assert daemon.enrollment is not None
            return daemon.enrollment.host_id, time.monotonic() - first_at

    host_id, gap = asyncio.run(scenario())
    assert gap < 20  # far below the agent's own interval
    assert eager_hub.sequences(host_id)[:2] == [1, 2]


def test_unexpected_exceptions_are_logged_retried_and_recovered(
    tmp_path: Path, booted_tpm: Swtpm, hub: LoopbackHub, caplog: pytest.LogCaptureFixture
) -> None:
    """An OSError and a TrustcoreError escape a step (injected where the step reads the boot
    id): the daemon logs each with its traceback, says so, backs off, and then attests."""
    cfg = agent_config(tmp_path, booted_tpm, hub.url, hub.ca_file)
    injected: list[Exception] = [
        OSError(5, "Input/output error"),
        TrustcoreError("cannot encode the report", reason="wire.encode"),
    ]
    seen_status: list[str] = []
    seen_problem: list[str] = []

    async def scenario() -> None:
        running = RunningDaemon(cfg)
        daemon: Daemon = running.daemon
        real_boot_id = daemon._boot_id
        real_status = daemon.notifier.status

        def flaky_boot_id() -> str:
            if injected:
                raise injected.pop(0)
            return real_boot_id()

        def record_status(text: str) -> None:
            seen_status.append(text)
            seen_problem.append(daemon.agent_problem)
            real_status(text)

        daemon._boot_id = flaky_boot_id  # type: ignore[method-assign]
        daemon.notifier.status = record_status  # type: ignore[method-assign]
        async with running:
            await wait_for(lambda: daemon.last is not None)
            assert daemon.last is not None
            assert daemon.last.result.verdict == "trusted"
            assert daemon.agent_problem == ""
            assert running.task is not None
            assert not running.task.done()

    with caplog.at_level(logging.ERROR, logger="trustplane.agent"):
        asyncio.run(scenario())
    assert injected == []
    errors = [r for r in caplog.records if r.message == "unexpected error in the attestation loop"]
    assert [type(r.exc_info[1]) for r in errors if r.exc_info] == [OSError, TrustcoreError]
    internal = [s for s in seen_status if s.startswith("internal error, retrying in ")]
    assert len(internal) == 2
    assert internal[0].endswith(": OSError: [Errno 5] Input/output error")
    assert internal[1].endswith(": TrustcoreError: cannot encode the report")
    assert seen_problem[seen_status.index(internal[1])] == (
        "TrustcoreError: cannot encode the report"
    )
