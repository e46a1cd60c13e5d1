"""Token buckets: in-process (fake clock), in the real Redis on 127.0.0.1:6379, and the
Redis-with-local-fallback composite (Redis cut through a TCP proxy, never stopped)."""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Iterator

import pytest
import redis

from node.throttle import (
    FallbackThrottle,
    LocalTokenBucket,
    RedisTokenBucket,
    ThrottleAPI,
    ThrottleDecision,
    ThrottleUnavailable,
)
from tests.tcp_proxy import CutProxy

REDIS_PORT = 6379
REDIS_URL = f"redis://127.0.0.1:{REDIS_PORT}/0"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _hammer(throttle: ThrottleAPI, key: str, threads: int, seconds: float) -> tuple[int, float]:
    """Acquire from ``threads`` threads for ``seconds``; return (allowed, elapsed)."""
    allowed = [0] * threads
    errors: list[BaseException] = []
    start = threading.Barrier(threads + 1)

    def work(i: int) -> None:
        try:
            start.wait()
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                if throttle.acquire(key).allowed:
                    allowed[i] += 1
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for t in workers:
        t.start()
    start.wait()
    began = time.monotonic()
    for t in workers:
        t.join()
    elapsed = time.monotonic() - began
    assert errors == []
    return sum(allowed), elapsed


# -- local --------------------------------------------------------------------------------


def test_local_burst_then_denied_then_refilled() -> None:
    clock = FakeClock()
    bucket = LocalTokenBucket(rate=2, burst=3, clock=clock)
    assert [bucket.acquire("a").allowed for _ in range(3)] == [True, True, True]
    denied = bucket.acquire("a")
    assert not denied.allowed and denied.retry_after == pytest.approx(0.5)
    assert bucket.acquire("b").allowed  # keys are independent
    clock.now += 0.5
    assert bucket.acquire("a").allowed
    assert not bucket.acquire("a").allowed
    clock.now += 100  # refills to the burst, no further
    assert [bucket.acquire("a").allowed for _ in range(4)] == [True, True, True, False]


def test_local_cost() -> None:
    clock = FakeClock()
    bucket = LocalTokenBucket(rate=1, burst=5, clock=clock)
    assert bucket.acquire("a", cost=4).allowed
    decision = bucket.acquire("a", cost=3)  # 1 token left: 2 more needed
    assert not decision.allowed and decision.retry_after == pytest.approx(2.0)
    assert bucket.acquire("a", cost=1).allowed  # a denied request took nothing
    for cost in (0, 6, -1):
        with pytest.raises(ValueError):
            bucket.acquire("a", cost=cost)


def test_local_rejects_bad_limits() -> None:
    for rate, burst in ((0, 1), (-1, 1), (float("inf"), 1), (1, 0)):
        with pytest.raises(ValueError):
            LocalTokenBucket(rate, burst)


def test_local_keeps_at_most_max_keys() -> None:
    clock = FakeClock()
    bucket = LocalTokenBucket(rate=1, burst=2, max_keys=100, clock=clock)
    for n in range(1000):
        bucket.acquire(f"k{n}")
    assert len(bucket._buckets) <= 100
    assert bucket.acquire("k999").allowed  # the most recent survive (1 token left)
    assert not bucket.acquire("k999").allowed


def test_local_is_atomic_under_threads() -> None:
    bucket = LocalTokenBucket(rate=50, burst=20)
    allowed, elapsed = _hammer(bucket, "hot", threads=8, seconds=0.4)
    assert 20 <= allowed <= 20 + 50 * elapsed + 1


# -- redis --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def redis_raw() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=2)
    try:
        client.ping()
    except redis.RedisError as err:
        pytest.fail(f"Redis is not reachable at {REDIS_URL} ({err}); run scripts/services.sh start")
    yield client
    client.close()


@pytest.fixture
def prefix(redis_raw: redis.Redis) -> Iterator[str]:
    prefix = f"emr_test:throttle:{secrets.token_hex(6)}:"
    yield prefix
    keys = list(redis_raw.scan_iter(match=prefix + "*"))
    if keys:
        redis_raw.unlink(*keys)


@pytest.fixture
def proxy() -> Iterator[CutProxy]:
    proxy = CutProxy(REDIS_PORT)
    yield proxy
    proxy.close()


@pytest.mark.integration
def test_redis_burst_then_denied_then_refilled(redis_raw: redis.Redis, prefix: str) -> None:
    bucket = RedisTokenBucket(REDIS_URL, rate=20, burst=5, prefix=prefix)
    try:
        assert [bucket.acquire("a").allowed for _ in range(5)] == [True] * 5
        denied = bucket.acquire("a")
        assert not denied.allowed
        assert 0 < denied.retry_after <= 1 / 20 + 0.01
        assert bucket.acquire("b").allowed  # keys are independent
        time.sleep(denied.retry_after + 0.01)
        assert bucket.acquire("a").allowed
        assert not bucket.acquire("a").allowed
        time.sleep(0.3)  # 6 tokens' worth: capped at the burst
        assert [bucket.acquire("a").allowed for _ in range(6)] == [True] * 5 + [False]
        # The bucket expires once it would be full again anyway (5 / 20 s + 1 s margin).
        assert 0 < redis_raw.pttl(prefix + "a") <= 1250
    finally:
        bucket.close()


@pytest.mark.integration
def test_redis_cost_and_limits(redis_raw: redis.Redis, prefix: str) -> None:
    bucket = RedisTokenBucket(redis_raw, rate=1, burst=5, prefix=prefix)
    assert bucket.acquire("a", cost=4).allowed
    decision = bucket.acquire("a", cost=3)
    assert not decision.allowed and 1.9 < decision.retry_after <= 2.0
    assert bucket.acquire("a", cost=1).allowed
    with pytest.raises(ValueError):
        bucket.acquire("a", cost=6)
    bucket.close()
    assert redis_raw.ping()  # a client passed in is not closed with the bucket


@pytest.mark.integration
def test_redis_is_atomic_across_threads_and_clients(prefix: str) -> None:
    # Two buckets with their own connection pools stand for two node processes.
    buckets = [RedisTokenBucket(REDIS_URL, rate=20, burst=10, prefix=prefix) for _ in range(2)]

    class Both(ThrottleAPI):
        def __init__(self) -> None:
            self.n = 0

        def acquire(self, key: str, cost: int = 1) -> ThrottleDecision:
            self.n += 1
            return buckets[self.n % 2].acquire(key, cost)

    try:
        allowed, elapsed = _hammer(Both(), "hot", threads=8, seconds=0.5)
        assert 10 <= allowed <= 10 + 20 * elapsed + 1
    finally:
        for b in buckets:
            b.close()


@pytest.mark.integration
def test_redis_down_raises_throttle_unavailable(proxy: CutProxy, prefix: str) -> None:
    proxy.cut()
    bucket = RedisTokenBucket(f"redis://:hunter2@127.0.0.1:{proxy.port}/0", rate=1, burst=1)
    started = time.monotonic()
    with pytest.raises(ThrottleUnavailable) as caught:
        bucket.acquire("a")
    assert time.monotonic() - started < 1
    assert "hunter2" not in str(caught.value)
    bucket.close()


# -- fallback -----------------------------------------------------------------------------


@pytest.mark.integration
def test_fallback_while_redis_is_cut(
    proxy: CutProxy, redis_raw: redis.Redis, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    primary = RedisTokenBucket(
        f"redis://127.0.0.1:{proxy.port}/0", rate=100, burst=3, prefix=prefix
    )
    throttle = FallbackThrottle(primary, LocalTokenBucket(rate=100, burst=2), retry_interval=0.1)
    try:
        assert throttle.acquire("a").allowed
        assert not throttle.degraded
        assert redis_raw.exists(prefix + "a")

        caplog.set_level(logging.INFO, logger="node.throttle")
        proxy.cut()
        started = time.monotonic()
        decisions = [throttle.acquire("b") for _ in range(3)]
        assert time.monotonic() - started < 1
        assert throttle.degraded
        assert [d.allowed for d in decisions] == [True, True, False]  # the local burst is 2
        assert not redis_raw.exists(prefix + "b")  # never reached Redis
        for _ in range(5):
            throttle.acquire("c")
            time.sleep(0.03)  # probes every 0.1 s keep failing: still one warning
        assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1

        proxy.restore()
        time.sleep(0.15)
        assert throttle.acquire("d").allowed
        assert not throttle.degraded
        assert redis_raw.exists(prefix + "d")
        assert any("back" in r.getMessage() for r in caplog.records)
    finally:
        throttle.close()


def test_fallback_retries_the_primary_after_the_interval() -> None:
    clock = FakeClock()

    class Flaky(ThrottleAPI):
        def __init__(self) -> None:
            self.up = True
            self.calls = 0

        def acquire(self, key: str, cost: int = 1) -> ThrottleDecision:
            self.calls += 1
            if not self.up:
                raise ThrottleUnavailable("down")
            return ThrottleDecision(True, 0.0)

    primary = Flaky()
    throttle = FallbackThrottle(
        primary, LocalTokenBucket(1, 100, clock=clock), retry_interval=5, clock=clock
    )
    primary.up = False
    throttle.acquire("a")
    assert throttle.degraded and primary.calls == 1
    for _ in range(10):
        throttle.acquire("a")
    assert primary.calls == 1  # not retried within the interval
    clock.now += 5
    primary.up = True
    throttle.acquire("a")
    assert primary.calls == 2 and not throttle.degraded
