"""A cache whose entries are authenticated: whoever can write to the cache's store (Redis)
but does not hold the node's key cannot plant an entry the node will believe.

Each value is stored as ``HMAC-SHA256(key, len(cache_key) || cache_key || value) || value``:
the tag binds the value to its cache key, so a genuine entry moved under another key (a
grant for one record copied to another) fails too. A missing, short or wrong tag is a miss,
never an error: the caller recomputes the value from the source of truth and overwrites the
entry. Rejections are counted and logged (rate-limited, without the value).

What the tag cannot stop is a replay of an older genuine entry under the same key; values
that can go stale carry their own freshness (consent decisions record the block they were
decided at, blobs are checked against their CID).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import threading
import time
from collections.abc import Callable

from storage.abc import CacheAPI

__all__ = ["TAG_SIZE", "AuthenticatedCache"]

logger = logging.getLogger(__name__)

TAG_SIZE = 32
_MIN_KEY_SIZE = 32
_LOG_INTERVAL = 60.0


def _namespace(key: str) -> str:
    """The part of a cache key that names what it holds (``access``, ``blob``): logged
    instead of the key, which may name a patient's address or a record."""
    return key.split(":", 1)[0][:32]


class AuthenticatedCache(CacheAPI):
    """``inner`` with every entry HMAC-authenticated under ``key`` (32 bytes or more).

    Several processes share entries only if they hold the same key (the node derives it
    from its key store, so every process of one node does).
    """

    def __init__(
        self, inner: CacheAPI, key: bytes, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if len(key) < _MIN_KEY_SIZE:
            raise ValueError(f"a cache key is at least {_MIN_KEY_SIZE} bytes")
        self._inner = inner
        self._key = bytes(key)
        self._clock = clock
        self._lock = threading.Lock()
        self._rejected = 0
        self._unlogged = 0
        self._last_log = -math.inf

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._inner!r})"

    @property
    def inner(self) -> CacheAPI:
        return self._inner

    @property
    def rejected(self) -> int:
        """How many entries failed authentication since start (each was served as a miss)."""
        return self._rejected

    def _tag(self, key: str, value: bytes | memoryview) -> bytes:
        name = key.encode("utf-8")
        mac = hmac.new(self._key, len(name).to_bytes(4, "big"), hashlib.sha256)
        mac.update(name)
        mac.update(value)
        return mac.digest()

    def _reject(self, key: str) -> None:
        now = self._clock()
        with self._lock:
            self._rejected += 1
            self._unlogged += 1
            if now - self._last_log < _LOG_INTERVAL:
                return
            count, self._unlogged, self._last_log = self._unlogged, 0, now
        logger.warning(
            "%d cache entr%s failed authentication (latest under %r) and were treated as "
            "misses: something other than this node writes to the cache, or its key changed",
            count,
            "y" if count == 1 else "ies",
            _namespace(key),
        )

    def get(self, key: str) -> bytes | None:
        stored = self._inner.get(key)
        if stored is None:
            return None
        if len(stored) >= TAG_SIZE:
            value = memoryview(stored)[TAG_SIZE:]
            if hmac.compare_digest(stored[:TAG_SIZE], self._tag(key, value)):
                return bytes(value)
        self._reject(key)
        return None

    def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        data = bytes(value)  # a caller's bytearray must not change between tag and store
        self._inner.set(key, self._tag(key, data) + data, ttl)

    def delete(self, key: str) -> None:
        self._inner.delete(key)

    def close(self) -> None:
        self._inner.close()
