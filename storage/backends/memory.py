"""In-process cache: LRU bounded by the total size of the cached values, with per-key TTL."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from storage.abc import CacheAPI

__all__ = ["InMemoryLRUCache"]


class InMemoryLRUCache(CacheAPI):
    """Thread-safe LRU cache holding at most ``max_bytes`` bytes of values.

    ``clock`` must be monotonic (wall-clock jumps would expire or revive entries); tests
    inject a fake one.
    """

    def __init__(self, max_bytes: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        if max_bytes <= 0:
            raise ValueError("max_bytes must be positive")
        self._max_bytes = max_bytes
        self._clock = clock
        self._lock = threading.Lock()
        # key -> (value, expiry or None); order = recency, least recent first.
        self._entries: OrderedDict[str, tuple[bytes, float | None]] = OrderedDict()
        self._size = 0

    def __repr__(self) -> str:
        return f"{type(self).__name__}(max_bytes={self._max_bytes})"

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    @property
    def size(self) -> int:
        """Total bytes of the cached values (expired entries count until dropped)."""
        with self._lock:
            return self._size

    def _drop(self, key: str) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._size -= len(entry[0])

    def get(self, key: str) -> bytes | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            value, expires = entry
            if expires is not None and self._clock() >= expires:
                self._drop(key)
                return None
            self._entries.move_to_end(key)
            return value

    def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        value = bytes(value)  # a caller's bytearray must not change under us
        with self._lock:
            self._drop(key)
            if (ttl is not None and ttl <= 0) or len(value) > self._max_bytes:
                # Already expired, or could never fit: caching it would only evict others.
                return
            expires = None if ttl is None else self._clock() + ttl
            self._entries[key] = (value, expires)
            self._size += len(value)
            while self._size > self._max_bytes:
                _, (evicted, _) = self._entries.popitem(last=False)
                self._size -= len(evicted)

    def delete(self, key: str) -> None:
        with self._lock:
            self._drop(key)

    def close(self) -> None:
        with self._lock:
            self._entries.clear()
            self._size = 0
