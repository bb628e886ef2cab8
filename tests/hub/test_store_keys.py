"""hub.store.keys on SQLite and on PostgreSQL: policies, versions (first wrap, rotation,
retirement), counters and bounded per-host outcomes, release nonces; concurrent first wraps
number one version."""

from __future__ import annotations

import asyncio
from typing import Any

from hub.store import KeyEvent, Store
from hub.store.keys import EVENTS_PER_HOST

HOST = "cd" * 32


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_keys_aggregate(store_target: str) -> None:
    async def go() -> None:
        store = await Store.open(store_target)
        try:
            policy, created = await store.put_key_policy("eu", "region = EU", 60.0, 1.0)
            assert (policy.name, policy.predicate, policy.max_age, created) == (
                "eu",
                "region = EU",
                60.0,
                True,
            )
            again, created = await store.put_key_policy("eu", "", 30.0, 2.0)
            assert (again.predicate, again.max_age, again.created, again.updated, created) == (
                "",
                30.0,
                1.0,
                2.0,
                False,
            )
            assert await store.current_key("eu", None, 3.0) is None
            # two first wraps at once get one key
            first, second = await asyncio.gather(
                store.current_key("eu", ("eu.a", b"sealed-a"), 3.0),
                store.current_key("eu", ("eu.b", b"sealed-b"), 3.0),
            )
            assert first is not None
            assert second is not None
            assert first.id == second.id
            assert (first.version, first.material) in ((1, b"sealed-a"), (1, b"sealed-b"))
            rotated = await store.add_key_version("eu", ("eu.c", b"sealed-c"), 4.0)
            assert rotated.version == 2
            current = await store.current_key("eu", None, 5.0)
            assert current is not None
            assert current.id == "eu.c"
            assert await store.retire_key("eu.c", 6.0)
            assert not await store.retire_key("eu.c", 7.0)
            current = await store.current_key("eu", None, 8.0)
            assert current is not None
            assert current.id == first.id
            found = await store.get_keys([first.id, "eu.c", "nope"])
            assert set(found) == {first.id, "eu.c"}
            assert found["eu.c"].retired == 6.0
            events = [
                KeyEvent(10.0 + i, HOST, first.id, i % 2 == 0, "r", "m")
                for i in range(EVENTS_PER_HOST + 5)
            ]
            await store.record_key_events(events)
            key = await store.get_key(first.id)
            assert key is not None
            assert (key.releases, key.refusals, key.last_use) == (28, 27, 10.0 + 54)
            kept = await store.list_key_events(HOST)
            assert len(kept) == EVENTS_PER_HOST
            assert kept[0].at == 10.0 + 54
            refusals = await store.list_key_events(HOST, refusals_only=True)
            assert {e.ok for e in refusals} == {False}
            await store.put_key_nonce(b"\x01" * 32, HOST, 100.0)
            assert await store.key_nonce_issued(b"\x01" * 32, HOST) == 100.0
            assert await store.key_nonce_issued(b"\x01" * 32, "other") is None
            await store.put_key_nonce(b"\x02" * 32, HOST, 100.0 + 3601)  # prunes the old one
            assert await store.key_nonce_issued(b"\x01" * 32, HOST) is None
            assert [p.name for p in await store.list_key_policies()] == ["eu"]
            assert [k.version for k in await store.list_keys("eu")] == [1, 2]
        finally:
            await store.close()

    run(go())
