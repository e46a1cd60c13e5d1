"""Rate limiting by token bucket: shared in Redis, in-process, or Redis with a local fallback.

A bucket holds up to ``burst`` tokens and refills at ``rate`` tokens per second; a request
costing ``cost`` tokens passes if that many are there. ``RedisTokenBucket`` keeps the
buckets in Redis so every node process draws from the same ones; ``LocalTokenBucket`` keeps
them in this process; ``FallbackThrottle`` uses Redis and, while Redis is unreachable, the
local buckets (reporting ``degraded`` for the health endpoint) instead of failing requests.
``CallerThrottles`` holds the node's limiters, one per sort of caller.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Network, IPv6Network
from typing import Protocol

import redis

from node.auth.principal import Role
from node.exceptions import ThrottleUnavailable
from storage.backends.redis import redis_client, redis_location

__all__ = [
    "CallerThrottles",
    "FallbackThrottle",
    "LocalTokenBucket",
    "OutageSwitch",
    "RedisTokenBucket",
    "ThrottleAPI",
    "ThrottleDecision",
    "ThrottleUnavailable",
]

logger = logging.getLogger(__name__)


class Closable(Protocol):
    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class ThrottleDecision:
    """Whether a request may proceed and, if not, when to try again."""

    allowed: bool
    retry_after: float  # seconds until the tokens asked for will be there; 0.0 if allowed


class ThrottleAPI(ABC):
    """A rate limiter keyed by caller (an address, a token id, an IP)."""

    @abstractmethod
    def acquire(self, key: str, cost: int = 1) -> ThrottleDecision:
        """Take ``cost`` tokens from ``key``'s bucket if it holds that many.

        Returns the decision; a denied request takes nothing. Raises ValueError if ``cost``
        is not between 1 and the bucket's burst (it could never pass), and
        ThrottleUnavailable if the limiter's store cannot be reached.
        """

    @property
    def degraded(self) -> bool:
        """Whether the limiter runs on a stand-in (e.g. in-process buckets while its shared
        store is down); False unless a limiter has one."""
        return False

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""


def _check_limits(rate: float, burst: int) -> None:
    if not (rate > 0 and math.isfinite(rate)):
        raise ValueError("rate must be a positive number of tokens per second")
    if burst < 1:
        raise ValueError("burst must be at least 1")


def _check_cost(cost: int, burst: int) -> None:
    if not 1 <= cost <= burst:
        raise ValueError(f"cost must be between 1 and the burst ({burst})")


class LocalTokenBucket(ThrottleAPI):
    """Token buckets in this process's memory; thread-safe.

    At most ``max_keys`` buckets are kept: beyond that, full buckets (indistinguishable from
    absent ones) are dropped first, then the least recently used.
    """

    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        _check_limits(rate, burst)
        self._rate = float(rate)
        self._burst = int(burst)
        self._max_keys = max_keys
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # tokens, when

    def __repr__(self) -> str:
        return f"{type(self).__name__}(rate={self._rate:g}, burst={self._burst})"

    def acquire(self, key: str, cost: int = 1) -> ThrottleDecision:
        _check_cost(cost, self._burst)
        with self._lock:
            now = self._clock()
            tokens, then = self._buckets.pop(key, (float(self._burst), now))
            tokens = min(float(self._burst), tokens + max(0.0, now - then) * self._rate)
            if tokens >= cost:
                tokens -= cost
                decision = ThrottleDecision(True, 0.0)
            else:
                decision = ThrottleDecision(False, (cost - tokens) / self._rate)
            self._buckets[key] = (tokens, now)  # re-inserted last: most recently used
            if len(self._buckets) > self._max_keys:
                self._prune(now)
        return decision

    def _prune(self, now: float) -> None:
        full = [
            k
            for k, (tokens, then) in self._buckets.items()
            if tokens + (now - then) * self._rate >= self._burst
        ]
        for k in full:
            del self._buckets[k]
        while len(self._buckets) > self._max_keys:
            self._buckets.popitem(last=False)


# KEYS[1]: the bucket (a hash: tokens, ts in microseconds of Redis's clock).
# ARGV: rate (tokens/s), burst, cost. Returns {allowed (0/1), retry_after (string)}.
# Redis's own clock (TIME) keeps every node process on one time base, and the whole
# read-refill-take-write runs atomically in the script. Floats go out as strings: Redis
# would truncate a Lua number reply to an integer.
_TOKEN_BUCKET_LUA = """
if redis.replicate_commands then redis.replicate_commands() end
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil or ts == nil then
  tokens = burst
  ts = now
end
local elapsed = math.max(0, now - ts) / 1000000
tokens = math.min(burst, tokens + elapsed * rate)
local allowed = 0
local retry_after = 0
if tokens >= cost then
  tokens = tokens - cost
  allowed = 1
else
  retry_after = (cost - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', tokens),
           'ts', string.format('%.0f', now))
-- A bucket left alone refills completely in burst / rate seconds; after that it equals
-- an absent one, so let Redis drop it.
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return {allowed, string.format('%.17g', retry_after)}
"""


class RedisTokenBucket(ThrottleAPI):
    """Token buckets in Redis, shared by every process using the same Redis and prefix.

    Each acquire is one atomic Lua script (EVALSHA) on one key, so concurrent callers never
    take more tokens than the bucket holds. Raises ThrottleUnavailable when Redis cannot be
    reached (wrap it in ``FallbackThrottle`` to keep serving).

    Args:
        client_or_url: a redis-py client (not closed by ``close``) or a ``redis://`` URL.
        rate: tokens added per second.
        burst: bucket capacity: the most requests allowed at once after a quiet period.
        prefix: namespace of the bucket keys.
        socket_timeout: seconds a call may take when a URL is given.
    """

    def __init__(
        self,
        client_or_url: redis.Redis | str,
        *,
        rate: float,
        burst: int,
        prefix: str = "emr:throttle:",
        socket_timeout: float = 0.5,
    ) -> None:
        _check_limits(rate, burst)
        if isinstance(client_or_url, str):
            self._client = redis_client(client_or_url, socket_timeout=socket_timeout)
            self._owns_client = True
        else:
            self._client = client_or_url
            self._owns_client = False
        self._where = redis_location(self._client)
        self._rate = float(rate)
        self._burst = int(burst)
        self._prefix = prefix
        self._script = self._client.register_script(_TOKEN_BUCKET_LUA)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self._where!r}, rate={self._rate:g}, "
            f"burst={self._burst}, prefix={self._prefix!r})"
        )

    def acquire(self, key: str, cost: int = 1) -> ThrottleDecision:
        _check_cost(cost, self._burst)
        try:
            allowed, retry_after = self._script(
                keys=[self._prefix + key], args=[repr(self._rate), self._burst, cost]
            )
        except (redis.RedisError, OSError) as err:
            raise ThrottleUnavailable(f"rate limiter at {self._where} is unavailable") from err
        return ThrottleDecision(bool(allowed), float(retry_after))

    def close(self) -> None:
        if self._owns_client:
            self._client.close()


class OutageSwitch:
    """Whether a shared limiter store is down, for every ``FallbackThrottle`` using it.

    Buckets sharing one Redis share one switch: one outage is logged once, one request
    probes the store every ``retry_interval`` seconds, and its recovery restores them all.
    """

    def __init__(
        self, *, retry_interval: float = 1.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._retry_interval = retry_interval
        self._clock = clock
        self._lock = threading.Lock()
        self._degraded = False
        self._retry_at = 0.0

    @property
    def degraded(self) -> bool:
        """Whether requests are being limited by local fallbacks."""
        return self._degraded

    def should_try(self) -> bool:
        """Whether this caller should use the shared store (it is up, or it is time to
        probe it again)."""
        if not self._degraded:
            return True
        with self._lock:
            now = self._clock()
            if not self._degraded or now >= self._retry_at:
                self._retry_at = now + self._retry_interval  # this caller probes
                return True
            return False

    def failed(self, err: Exception) -> None:
        with self._lock:
            if not self._degraded:
                self._degraded = True
                logger.warning("%s; limiting with in-process buckets", err)
            self._retry_at = self._clock() + self._retry_interval

    def succeeded(self) -> None:
        if self._degraded:
            with self._lock:
                if self._degraded:
                    self._degraded = False
                    logger.info("shared rate limiter is back")


class FallbackThrottle(ThrottleAPI):
    """``primary`` (normally a RedisTokenBucket), or ``fallback`` while it is unreachable.

    The switch is logged once per outage; ``degraded`` is true meanwhile. The primary is
    tried again every ``retry_interval`` seconds, by one request. Pass one ``switch`` to the
    fallbacks of buckets in the same store to switch them together. Note that local buckets
    are per process: size the fallback's rate for one process's share of the traffic.
    """

    def __init__(
        self,
        primary: ThrottleAPI,
        fallback: LocalTokenBucket,
        *,
        retry_interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        switch: OutageSwitch | None = None,
    ) -> None:
        self._primary = primary
        self._fallback = fallback
        self._switch = switch or OutageSwitch(retry_interval=retry_interval, clock=clock)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._primary!r}, {self._fallback!r})"

    @property
    def degraded(self) -> bool:
        """Whether requests are being limited by the local fallback."""
        return self._switch.degraded

    def acquire(self, key: str, cost: int = 1) -> ThrottleDecision:
        if self._switch.should_try():
            try:
                decision = self._primary.acquire(key, cost)
            except ThrottleUnavailable as err:
                self._switch.failed(err)
            else:
                self._switch.succeeded()
                return decision
        return self._fallback.acquire(key, cost)

    def close(self) -> None:
        self._primary.close()
        self._fallback.close()


@dataclass(frozen=True)
class CallerThrottles:
    """The node's buckets, one kind per sort of caller (see ``ThrottleSettings``).

    ``tokens`` has one limiter per API token role, keyed by token id; ``wallet`` is keyed
    by wallet address and ``anonymous`` by client address; ``hospital`` is the one bucket
    every valid API token of this hospital also draws from. ``trusted_proxies`` are the
    peers whose X-Forwarded-For is believed. ``resources`` are closed with the buckets
    (e.g. a Redis client they share).
    """

    tokens: Mapping[Role, ThrottleAPI]
    wallet: ThrottleAPI
    anonymous: ThrottleAPI
    hospital: ThrottleAPI
    trusted_proxies: tuple[IPv4Network | IPv6Network, ...] = ()
    resources: tuple[Closable, ...] = field(default=(), repr=False)

    def __iter__(self) -> Iterator[ThrottleAPI]:
        """Every limiter, each once."""
        seen: list[ThrottleAPI] = []
        for bucket in (*self.tokens.values(), self.wallet, self.anonymous, self.hospital):
            if not any(bucket is s for s in seen):
                seen.append(bucket)
        return iter(seen)

    @property
    def degraded(self) -> bool:
        """Whether any limiter is running on its in-process fallback."""
        return any(b.degraded for b in self)

    def close(self) -> None:
        for bucket in self:
            bucket.close()
        for resource in self.resources:
            resource.close()
