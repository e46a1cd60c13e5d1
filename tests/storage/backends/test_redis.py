"""RedisCache against the real Redis on 127.0.0.1:6379 (scripts/services.sh start).

Each test works under its own key prefix, swept afterwards. Outages go through a cut-able
TCP proxy (``CutProxy``); the machine's Redis is never stopped.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from storage.abc import CacheAPI
from storage.backends.redis import RedisCache
from tests.storage.conformance import CacheConformance
from tests.tcp_proxy import CutProxy

pytestmark = pytest.mark.integration

REDIS_PORT = 6379
REDIS_URL = f"redis://127.0.0.1:{REDIS_PORT}/0"


@pytest.fixture(scope="module", autouse=True)
def redis_server() -> None:
    try:
        redis.Redis.from_url(REDIS_URL, socket_timeout=2).ping()
    except redis.RedisError as err:
        pytest.fail(f"Redis is not reachable at {REDIS_URL} ({err}); run scripts/services.sh start")


@pytest.fixture
def prefix() -> Iterator[str]:
    prefix = f"emr_test:{secrets.token_hex(6)}:"
    yield prefix
    sweeper = RedisCache(REDIS_URL, prefix=prefix)
    sweeper.delete_prefix("")
    sweeper.close()


@pytest.fixture
def proxy() -> Iterator[CutProxy]:
    proxy = CutProxy(REDIS_PORT)
    yield proxy
    proxy.close()


class TestRedisCache(CacheConformance):
    @pytest.fixture(autouse=True)
    def _prefix(self, prefix: str) -> None:
        self.prefix = prefix

    def make_cache(self, location: Path) -> CacheAPI:
        return RedisCache(REDIS_URL, prefix=self.prefix)


def test_keys_live_under_the_prefix(prefix: str) -> None:
    cache = RedisCache(REDIS_URL, prefix=prefix)
    other = RedisCache(REDIS_URL, prefix=prefix + "other:")
    try:
        cache.set("k", b"mine", ttl=30)
        other.set("k", b"theirs")
        assert cache.get("k") == b"mine"
        assert other.get("k") == b"theirs"
        raw = redis.Redis.from_url(REDIS_URL)
        assert raw.get(prefix + "k") == b"mine"
        assert 0 < raw.pttl(prefix + "k") <= 30_000
        raw.close()
    finally:
        cache.close()
        other.close()


def test_bytearray_values_are_copied(prefix: str) -> None:
    cache = RedisCache(REDIS_URL, prefix=prefix)
    value = bytearray(b"abc")
    cache.set("k", value)  # type: ignore[arg-type]
    value[0] = ord("X")
    assert cache.get("k") == b"abc"
    cache.set("k", b"v", ttl=0)  # an already-expired value drops the key
    assert cache.get("k") is None
    cache.close()


def test_delete_prefix(prefix: str) -> None:
    cache = RedisCache(REDIS_URL, prefix=prefix)
    try:
        for n in range(1200):  # more than one SCAN page and one UNLINK batch
            cache.set(f"record:{n}", b"x")
        cache.set("decision:1", b"y")
        cache.set("rec*rd:1", b"z")  # glob characters in a key are literal
        assert cache.delete_prefix("record:") == 1200
        assert cache.get("record:7") is None
        assert cache.get("decision:1") == b"y"
        assert cache.delete_prefix("rec*") == 1
        assert cache.get("rec*rd:1") is None
        assert cache.delete_prefix("") == 1
        assert cache.get("decision:1") is None
    finally:
        cache.close()


def test_other_processes_see_an_invalidation(prefix: str) -> None:
    # Two node processes share one Redis: a delete in one is a miss in the other.
    first = RedisCache(REDIS_URL, prefix=prefix)
    second = RedisCache(REDIS_URL, prefix=prefix)
    first.set("record:1", b"ciphertext")
    assert second.get("record:1") == b"ciphertext"
    first.delete_prefix("record:")
    assert second.get("record:1") is None
    first.close()
    second.close()


def test_unreachable_at_start_is_a_miss(proxy: CutProxy) -> None:
    proxy.cut()
    cache = RedisCache(f"redis://:hunter2-secret@127.0.0.1:{proxy.port}/0")
    started = time.monotonic()
    assert cache.get("k") is None
    cache.set("k", b"v")
    cache.delete("k")
    assert cache.delete_prefix("") == 0
    assert time.monotonic() - started < 1
    assert not cache.available
    assert "hunter2" not in repr(cache)
    cache.close()


def test_outage_is_a_miss_logged_once_then_recovers(
    proxy: CutProxy, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    cache = RedisCache(
        f"redis://127.0.0.1:{proxy.port}/0", prefix=prefix, backoff=0.05, max_backoff=0.2
    )
    try:
        cache.set("k", b"v")
        assert cache.get("k") == b"v"
        assert cache.available

        caplog.set_level(logging.INFO, logger="storage.backends.redis")
        proxy.cut()
        started = time.monotonic()
        for _ in range(20):
            assert cache.get("k") is None
            cache.set("k2", b"v2")
            cache.delete("k")
            time.sleep(0.01)  # lets several backoff periods pass: probes keep failing
        assert time.monotonic() - started < 3
        assert not cache.available
        outages = [r for r in caplog.records if "unavailable" in r.getMessage()]
        assert len(outages) == 1
        assert outages[0].levelno == logging.WARNING

        proxy.restore()
        deadline = time.monotonic() + 2
        while cache.get("k") is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert cache.get("k") == b"v"  # Redis kept it; the no-op delete did not reach it
        assert cache.available
        assert cache.get("k2") is None  # the set during the outage was dropped
        assert any("is back" in r.getMessage() for r in caplog.records)
    finally:
        cache.close()


def test_ping_probes_now(proxy: CutProxy, prefix: str) -> None:
    cache = RedisCache(f"redis://127.0.0.1:{proxy.port}/0", prefix=prefix, backoff=30)
    try:
        assert cache.ping()
        proxy.cut()
        assert cache.get("k") is None
        assert not cache.available
        proxy.restore()
        assert cache.get("k") is None  # within the 30 s backoff: not even tried
        assert not cache.available
        assert cache.ping()  # a health check probes regardless of the backoff
        assert cache.available
    finally:
        cache.close()


def test_hung_redis_costs_one_timeout_then_instant_misses(proxy: CutProxy, prefix: str) -> None:
    cache = RedisCache(
        f"redis://127.0.0.1:{proxy.port}/0", prefix=prefix, socket_timeout=0.2, backoff=30
    )
    try:
        cache.set("k", b"v")
        proxy.stall()
        started = time.monotonic()
        assert cache.get("k") is None  # times out (one retry included)
        assert time.monotonic() - started < 1.5
        started = time.monotonic()
        for _ in range(100):
            assert cache.get("k") is None
        assert time.monotonic() - started < 0.1  # within the backoff: not even tried
        assert not cache.available
    finally:
        cache.close()
