"""InMemoryLRUCache: the conformance suite plus LRU-by-bytes and TTL with a fake clock."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from storage.abc import CacheAPI
from storage.backends.memory import InMemoryLRUCache
from tests.storage.conformance import CacheConformance


class TestInMemoryLRUCache(CacheConformance):
    def make_cache(self, location: Path) -> CacheAPI:
        return InMemoryLRUCache(1 << 20)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_evicts_least_recently_used_by_bytes() -> None:
    cache = InMemoryLRUCache(10)
    cache.set("a", b"aaaa")
    cache.set("b", b"bbbb")
    assert cache.get("a") == b"aaaa"  # b is now the least recently used
    cache.set("c", b"cccc")
    assert cache.get("b") is None
    assert cache.get("a") == b"aaaa"
    assert cache.get("c") == b"cccc"
    assert cache.size == 8


def test_one_large_value_evicts_several() -> None:
    cache = InMemoryLRUCache(10)
    for key in "abcde":
        cache.set(key, b"xx")
    cache.set("big", b"y" * 9)
    assert [cache.get(k) for k in "abcde"] == [None, None, None, None, None]
    assert cache.get("big") == b"y" * 9
    assert cache.size == 9


def test_value_larger_than_the_cache_is_not_cached() -> None:
    cache = InMemoryLRUCache(10)
    cache.set("a", b"aa")
    cache.set("a", b"z" * 11)  # also drops the stale value
    assert cache.get("a") is None
    assert cache.size == 0


def test_overwrite_accounts_bytes() -> None:
    cache = InMemoryLRUCache(10)
    cache.set("a", b"aaaaaaaa")
    cache.set("a", b"a")
    assert cache.size == 1
    cache.delete("a")
    assert cache.size == 0


def test_ttl_with_monotonic_clock() -> None:
    clock = FakeClock()
    cache = InMemoryLRUCache(100, clock=clock)
    cache.set("k", b"v", ttl=5)
    cache.set("p", b"v")
    clock.now += 4.9
    assert cache.get("k") == b"v"
    clock.now += 0.1
    assert cache.get("k") is None
    assert cache.get("p") == b"v"
    assert cache.size == 1


@pytest.mark.parametrize("ttl", [0, -1])
def test_non_positive_ttl_is_not_cached(ttl: float) -> None:
    cache = InMemoryLRUCache(100)
    cache.set("k", b"old")
    cache.set("k", b"v", ttl=ttl)
    assert cache.get("k") is None


def test_value_is_copied() -> None:
    cache = InMemoryLRUCache(100)
    value = bytearray(b"abc")
    cache.set("k", value)  # type: ignore[arg-type]
    value[0] = 0
    assert cache.get("k") == b"abc"


def test_rejects_non_positive_size() -> None:
    with pytest.raises(ValueError):
        InMemoryLRUCache(0)


def test_threads_keep_the_byte_bound() -> None:
    cache = InMemoryLRUCache(1000)
    errors: list[BaseException] = []

    def worker(t: int) -> None:
        try:
            for i in range(2000):
                key = f"{t}-{i % 50}"
                cache.set(key, bytes(i % 40))
                cache.get(f"{(t + 1) % 4}-{i % 50}")
                if i % 7 == 0:
                    cache.delete(key)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert 0 <= cache.size <= 1000
