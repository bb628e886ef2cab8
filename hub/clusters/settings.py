"""The cluster sync's settings (from the hub's ``[clusters]`` config) and its counters (totals
since start, exposed as metrics by :mod:`hub.clusters.metrics`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class SyncSettings:
    taint_effect: str = "NoExecute"  # NoExecute | NoSchedule | none
    resync_interval: float = 60.0
    request_timeout: float = 10.0
    reconcile_concurrency: int = 8  # nodes a full reconcile works on at once, per cluster
    verdict_concurrency: int = 32  # requests in flight for verdict changes, per cluster
    holder: str = "trustplane-hub"  # reportingInstance of Events


def _ignore(_seconds: float) -> None:
    return None


@dataclass(slots=True)
class SyncCounters:
    """Totals since start (this process), exposed as metrics; ``observe_delay`` takes the
    seconds from each verdict change to its node written (a histogram, :mod:`.metrics`)."""

    applies: int = 0
    taint_patches: int = 0
    conflicts: int = 0
    events: int = 0
    errors: int = 0
    tags_skipped: int = 0
    observe_delay: Callable[[float], None] = field(default=_ignore)
