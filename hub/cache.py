"""Bounded in-memory caches for the report path (decoded AKs, replayed logs, flavor verdicts).

:class:`LruCache` is a plain least-recently-used mapping with a fixed size; it knows nothing of
what it holds. Keeping entries correct is the owner's job: cache only values that are a pure
function of the key (content digests, not names), or drop entries when their source changes.
Not thread-safe: each cache is used from one thread (the event loop).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class LruCache(Generic[K, V]):
    """A bounded mapping that forgets the least recently used entry (``size`` >= 1)."""

    def __init__(self, size: int) -> None:
        self._size = max(1, size)
        self._data: OrderedDict[K, V] = OrderedDict()

    @property
    def size(self) -> int:
        return self._size

    def get(self, key: K) -> V | None:
        value = self._data.get(key)
        if value is not None:
            self._data.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        self._data[key] = value
        self._data.move_to_end(key)
        while len(self._data) > self._size:
            self._data.popitem(last=False)

    def discard(self, key: K) -> None:
        self._data.pop(key, None)

    def clear(self) -> None:
        self._data.clear()

    def cached_keys(self) -> list[K]:
        """The keys, least recently used first (a copy)."""
        return list(self._data)

    def __len__(self) -> int:
        return len(self._data)
