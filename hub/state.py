"""The hub application's shared state, its typed app keys, and the verdict event bus.

:class:`HubState` is built once per application in :func:`hub.app.create_app`'s cleanup context
and reached by handlers through ``request.app[STATE]``. The other app keys expose its parts to
code built on top of the app (status page, metrics, webhooks) without reaching into it.
:class:`VerdictEvents` is the seam for those: every verdict change (of any hub process, read from
the :mod:`hub.bus`) reaches it.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web
from cryptography import x509

from hub.bus import (
    VerdictBus,
    VerdictChange,
)
from hub.config import HubConfig
from hub.fanout import Fanout
from hub.statedir import HubKeys
from hub.store import Store
from hub.verification import ReportVerifier

log = logging.getLogger("trustplane.hub")

Clock = Callable[[], float]
RandomBytes = Callable[[int], bytes]


class VerdictEvents(Fanout[VerdictChange]):
    """Fan-out of :class:`VerdictChange` to subscribers, each with a bounded queue.

    A subscriber that falls behind loses events (logged), it never blocks the hub. It carries
    every change of every process: :func:`hub.app.create_app` feeds it from the
    :class:`~hub.bus.VerdictBus` (publish there, not here).
    """

    def __init__(self, queue_size: int = 256) -> None:
        super().__init__("verdict event", queue_size)


class RateLimiter:
    """At most ``per_minute`` events in any 60-second window (sliding)."""

    def __init__(self, per_minute: int, clock: Clock) -> None:
        self._limit = per_minute
        self._clock = clock
        self._times: deque[float] = deque()  # allowed events, oldest first

    def allow(self) -> bool:
        return self.retry_after() is None

    def retry_after(self) -> float | None:
        """``None`` when the event is allowed (and counted), else the seconds until the window
        has room again."""
        now = self._clock()
        while self._times and now - self._times[0] >= 60.0:
            self._times.popleft()
        if len(self._times) >= self._limit:
            return 60.0 - (now - self._times[0])
        self._times.append(now)
        return None

    @property
    def idle(self) -> bool:
        """No event in the window (the limiter can be forgotten)."""
        now = self._clock()
        return not self._times or now - self._times[-1] >= 60.0


class KeyedRateLimiter:
    """A :class:`RateLimiter` per key (a client address, an EK): one key's flood never uses
    another's budget. At most ``max_keys`` keys are tracked: idle ones are dropped first, and
    when every tracked key is busy a new key is refused (a flood from many addresses cannot
    grow the hub's memory without bound)."""

    def __init__(self, per_minute: int, clock: Clock, max_keys: int = 10000) -> None:
        self._per_minute = per_minute
        self._clock = clock
        self._max_keys = max_keys
        self._limiters: dict[str, RateLimiter] = {}

    def retry_after(self, key: str) -> float | None:
        limiter = self._limiters.get(key)
        if limiter is None:
            if len(self._limiters) >= self._max_keys:
                for old in [k for k, v in self._limiters.items() if v.idle]:
                    del self._limiters[old]
                if len(self._limiters) >= self._max_keys:
                    return 60.0
            limiter = self._limiters[key] = RateLimiter(self._per_minute, self._clock)
        return limiter.retry_after()

    def __len__(self) -> int:
        return len(self._limiters)


@dataclass(slots=True)
class HubState:
    config: HubConfig
    store: Store
    keys: HubKeys
    clock: Clock
    verifier: ReportVerifier
    events: VerdictEvents
    bus: VerdictBus  # verdict changes are published here (all processes read them)
    enroll_limiter: KeyedRateLimiter  # anonymous requests, per client address
    ek_limiter: KeyedRateLimiter  # per EK (host id) once the body is parsed, renewals per host
    ek_anchors: tuple[x509.Certificate, ...]
    random_bytes: RandomBytes = field(default=os.urandom)


STATE = web.AppKey("trustplane_state", HubState)
CONFIG = web.AppKey("trustplane_config", HubConfig)
STORE = web.AppKey("trustplane_store", Store)
EVENTS = web.AppKey("trustplane_events", VerdictEvents)
BUS = web.AppKey("trustplane_bus", VerdictBus)
CLOCK: web.AppKey[Clock] = web.AppKey("trustplane_clock")
