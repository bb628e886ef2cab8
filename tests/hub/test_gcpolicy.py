"""hub.gcpolicy: survivors of a full collection are frozen; unfreeze_every hands them back."""

from __future__ import annotations

import asyncio
import gc

from hub.gcpolicy import freeze_after_full


async def _after_full_collection(unfreeze_every: float) -> int:
    task = asyncio.create_task(freeze_after_full(check_every=0.01, unfreeze_every=unfreeze_every))
    await asyncio.sleep(0.05)  # the policy is watching
    gc.collect()  # a full collection
    await asyncio.sleep(0.1)
    frozen = gc.get_freeze_count()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return frozen


def test_survivors_of_a_full_collection_are_frozen() -> None:
    gc.unfreeze()
    try:
        assert asyncio.run(_after_full_collection(3600.0)) > 0
        callbacks = len(gc.callbacks)
        gc.unfreeze()
        assert asyncio.run(_after_full_collection(0.0)) == 0  # due: unfrozen instead
        assert len(gc.callbacks) == callbacks  # the callback left with the task
    finally:
        gc.unfreeze()


def test_without_a_full_collection_nothing_is_frozen() -> None:
    async def go() -> int:
        task = asyncio.create_task(freeze_after_full(check_every=0.01))
        await asyncio.sleep(0.05)
        frozen = gc.get_freeze_count()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return frozen

    gc.unfreeze()
    assert asyncio.run(go()) == 0
