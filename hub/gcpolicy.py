"""The hub process's garbage-collector policy: keep full collections short.

A hub serving thousands of keep-alive TLS connections holds tens of GC-tracked objects per
connection for as long as the connection lives, and every full (generation 2) collection walks
all of them while the event loop waits: measured with ``bench.hub --hosts 10000``, 620 ms per
full collection (758,000 objects), which was the whole p99 (700 ms). :func:`freeze_after_full`
moves the survivors of each full collection to the permanent generation (``gc.freeze()``), so
the next full collection walks only what was allocated since (at most 60 ms in the same run;
p99 257 ms). Frozen objects are still freed by reference counting; only reference cycles
among them wait, until every ``unfreeze_every`` seconds the frozen set is handed back
(``gc.unfreeze()``) for one full collection over everything.

Only ``trustplane-hub run`` uses it (it changes the whole process); the app and the tests do not.
"""

from __future__ import annotations

import asyncio
import gc
import time
from typing import Any, Final

CHECK_EVERY: Final = 1.0  # seconds between looks for a finished full collection
UNFREEZE_EVERY: Final = 3600.0  # seconds between full collections over everything


async def freeze_after_full(
    *, check_every: float = CHECK_EVERY, unfreeze_every: float = UNFREEZE_EVERY
) -> None:
    """Run for ever (cancel to stop): after each full collection, freeze its survivors; every
    ``unfreeze_every`` seconds, unfreeze instead so that one full collection sees them all."""
    full = 0

    def count(phase: str, info: dict[str, Any]) -> None:
        nonlocal full
        if phase == "stop" and info.get("generation") == 2:  # the oldest generation
            full += 1

    gc.callbacks.append(count)
    seen = 0
    unfrozen_at = time.monotonic()
    try:
        while True:
            await asyncio.sleep(check_every)
            if full == seen:
                continue
            seen = full
            if time.monotonic() - unfrozen_at >= unfreeze_every:
                gc.unfreeze()
                unfrozen_at = time.monotonic()
            else:
                gc.freeze()
    finally:
        gc.callbacks.remove(count)
