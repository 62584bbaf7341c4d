"""Recent segments in RAM: an LRU bounded in bytes, filled as segments are published."""

from __future__ import annotations

from cachetools import LRUCache


class SegmentCache:
    """Object bytes by store key; what doesn't fit is served from disk instead."""

    def __init__(self, max_bytes: int) -> None:
        self._lru: LRUCache[str, bytes] = LRUCache(maxsize=max(1, max_bytes), getsizeof=len)
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> bytes | None:
        data = self._lru.get(key)
        if data is None:
            self.misses += 1
        else:
            self.hits += 1
        return data

    def put(self, key: str, data: bytes) -> None:
        if len(data) <= self._lru.maxsize:
            self._lru[key] = data

    def discard(self, key: str) -> None:
        self._lru.pop(key, None)

    @property
    def size_bytes(self) -> int:
        return int(self._lru.currsize)

    def __len__(self) -> int:
        return len(self._lru)
