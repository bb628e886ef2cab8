"""hub.store.keys on both backends: policies, key versions, release outcomes and nonces, and
the first key of a policy made once when several connections (hub processes) want it at once."""

from __future__ import annotations

import asyncio

from hub.store import Store
from hub.store.keys import EVENTS_PER_HOST, KeyEvent

HOST = "ab" * 32


def test_policies_keys_events_and_nonces(store_target: str) -> None:
    async def go() -> None:
        store = await Store.open(store_target)
        policy, created = await store.put_key_policy("db", 'tag("env") == "prod"', 300.0, 1.0)
        assert (policy.name, policy.max_age, created) == ("db", 300.0, True)
        policy, created = await store.put_key_policy("db", 'tag("env") == "dev"', 60.0, 2.0)
        assert (policy.predicate, policy.created, policy.updated, created) == (
            'tag("env") == "dev"',
            1.0,
            2.0,
            False,
        )
        first = await store.current_key("db", ("k1", b"\x00sealed-1"), 3.0)
        assert first is not None
        assert (first.id, first.version, first.material) == ("k1", 1, b"\x00sealed-1")
        assert await store.current_key("db", ("k9", b"x"), 4.0) == first  # no second first
        second = await store.add_key_version("db", ("k2", b"\xffsealed-2"), 5.0)
        assert (second.version, await store.current_key("db", None, 6.0)) == (2, second)
        assert await store.retire_key("k2", 7.0) is True
        assert await store.retire_key("k2", 8.0) is False
        assert (await store.current_key("db", None, 9.0)) == first
        events = [
            KeyEvent(10.0 + i, HOST, "k1", i % 2 == 0, "ok" if i % 2 == 0 else "key.refused", "")
            for i in range(EVENTS_PER_HOST + 3)
        ]
        await store.record_key_events(events)
        kept = await store.list_key_events(HOST)
        assert len(kept) == EVENTS_PER_HOST
        assert kept[0] == events[-1]
        assert {e.ok for e in await store.list_key_events(HOST, refusals_only=True)} == {False}
        k1 = await store.get_key("k1")
        assert k1 is not None
        assert (k1.releases, k1.refusals, k1.last_use) == (27, 26, 10.0 + EVENTS_PER_HOST + 2)
        assert set(await store.get_keys(["k1", "k2", "nope"])) == {"k1", "k2"}
        await store.put_key_nonce(b"\x01" * 32, HOST, 100.0)
        assert await store.key_nonce_issued(b"\x01" * 32, HOST) == 100.0
        assert await store.key_nonce_issued(b"\x01" * 32, "cd" * 32) is None
        await store.put_key_nonce(b"\x02" * 32, HOST, 100.0 + 3601.0)  # prunes the old one
        assert await store.key_nonce_issued(b"\x01" * 32, HOST) is None
        await store.close()

    asyncio.run(go())


def test_concurrent_first_wraps_through_two_connections_get_one_key(store_target: str) -> None:
    async def go() -> None:
        one = await Store.open(store_target)
        two = await Store.open(store_target)
        for p in range(30):  # many races: each policy's first key wanted by both at once
            await one.put_key_policy(f"p{p}", "true", 300.0, 1.0)
        got = await asyncio.gather(
            *(
                store.current_key(f"p{p}", (f"k{p}-{n}", b"sealed"), 2.0)
                for p in range(30)
                for n, store in enumerate((one, two))
            ),
            return_exceptions=True,
        )
        errors = [g for g in got if isinstance(g, BaseException)]
        assert errors == []
        for p in range(30):
            first, second = got[2 * p], got[2 * p + 1]
            assert first == second, p  # one key made, both got it
        await one.put_key_policy("db", "true", 300.0, 1.0)
        rotated = await asyncio.gather(
            *(
                store.add_key_version("db", (f"r{i}-{n}", b"s"), 3.0)
                for i in range(10)
                for n, store in enumerate((one, two))
            )
        )
        assert sorted(k.version for k in rotated) == list(range(1, 21))
        await one.close()
        await two.close()

    asyncio.run(go())
