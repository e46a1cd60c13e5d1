"""Cache in Redis, shared by every node process of a hospital.

A cache never fails a request: while Redis is unreachable every read is a miss and every
write a no-op. The outage is logged once, ``available`` turns false (for the health
endpoint), and Redis is probed again after a backoff that doubles up to ``max_backoff``.

Invalidation needs no pub/sub: every process reads the same Redis, so ``delete`` or
``delete_prefix`` in one process is seen by all.

Credentials (Redis AUTH, or an ACL user) come in the URL (``redis://user:password@host``,
``rediss://`` for TLS) or as ``username`` / ``password``; they never appear in ``repr``,
logs or errors. Wrong credentials are a configuration error, raised by ``check_access`` at
start rather than served as an endless outage.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from storage.abc import CacheAPI, Health, HealthCheckAPI
from storage.exceptions import CredentialsRefused

__all__ = ["RedisCache", "redis_client", "redis_location"]

logger = logging.getLogger(__name__)

_T = TypeVar("_T")
_SCAN_COUNT = 1000
_UNLINK_BATCH = 500
# Errors that mean "Redis is not reachable", as opposed to a refused command.
_OUTAGE_ERRORS: tuple[type[Exception], ...] = (
    redis.ConnectionError,
    redis.TimeoutError,
    OSError,
)


def redis_client(
    url: str,
    *,
    socket_timeout: float,
    username: str | None = None,
    password: str | None = None,
) -> redis.Redis:
    """Return a client for ``url`` that fails fast when Redis is down.

    ``username`` / ``password`` authenticate (AUTH, or an ACL user) when the URL carries no
    credentials of its own (the URL's win).

    redis-py 6+ retries a failed command up to 10 times with backoff by default, which
    would stall every request during an outage. One immediate retry remains: it replaces a
    pooled connection that Redis closed (a restart) without reporting an outage.
    """
    credentials: dict[str, str] = {}
    if username:
        credentials["username"] = username
    if password:
        credentials["password"] = password
    return redis.Redis.from_url(
        url,
        socket_timeout=socket_timeout,
        socket_connect_timeout=socket_timeout,
        retry=Retry(NoBackoff(), 1),
        **credentials,
    )


def redis_location(client: redis.Redis) -> str:
    """Where ``client`` connects, for messages: host:port/db or the socket path, never a
    password."""
    kwargs = client.connection_pool.connection_kwargs
    if kwargs.get("path"):
        return f"unix:{kwargs['path']}/{kwargs.get('db', 0)}"
    return f"{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}/{kwargs.get('db', 0)}"


def _glob_escape(text: str) -> str:
    # SCAN MATCH is a glob: a literal *, ?, [ or ] in a prefix must not widen the match.
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


class RedisCache(CacheAPI, HealthCheckAPI):
    """CacheAPI over Redis; every key is stored under ``prefix``.

    Args:
        url: ``redis://[[user]:password@]host:port/db`` (or ``rediss://``, ``unix://``).
        username, password: credentials when the URL has none.
        prefix: namespace of this cache's keys, so several caches can share a database.
        socket_timeout: seconds a command (and a connection attempt) may take; a cache
            slower than that is treated as down.
        backoff: seconds before Redis is probed again after a failure; doubles on every
            failed probe, up to ``max_backoff``.
    """

    def __init__(
        self,
        url: str,
        *,
        username: str | None = None,
        password: str | None = None,
        prefix: str = "emr:",
        socket_timeout: float = 0.5,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
    ) -> None:
        if backoff <= 0 or max_backoff < backoff:
            raise ValueError("need 0 < backoff <= max_backoff")
        self._client = redis_client(
            url, socket_timeout=socket_timeout, username=username, password=password
        )
        self._where = redis_location(self._client)
        self._prefix = prefix
        self._initial_backoff = backoff
        self._max_backoff = max_backoff
        self._lock = threading.Lock()
        self._available = True
        self._backoff = backoff
        self._retry_at = 0.0
        self._down_since = 0.0
        self._last_error_log = -math.inf

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._where!r}, prefix={self._prefix!r})"

    @property
    def available(self) -> bool:
        """Whether the last command reached Redis (false during an outage)."""
        return self._available

    def ping(self) -> bool:
        """Probe Redis now, ignoring the backoff; return (and record) whether it answers."""
        try:
            self._client.ping()
        except (redis.RedisError, OSError) as err:
            self._failed(err)
            return False
        self._succeeded()
        return True

    def check_health(self) -> Health:
        return Health(self.ping(), {"backend": "redis"})

    def check_access(self) -> None:
        """Check that Redis accepts this client's credentials and lets it read and write
        its keys (a short-lived probe key under the prefix).

        Raises CredentialsRefused when it does not (no password, a wrong one, an ACL user
        without the commands or keys it needs). An unreachable Redis is not an error here:
        the cache serves misses until it is back.
        """
        probe = self._prefix + "access-check"
        try:
            self._client.set(probe, b"", px=1000)
            self._client.get(probe)
            self._client.unlink(probe)
        except (redis.AuthenticationError, redis.exceptions.AuthenticationWrongNumberOfArgsError):
            raise CredentialsRefused(
                f"Redis at {self._where} refused the credentials: set the ACL user and password "
                "in EMR_STORAGE__REDIS_USERNAME / EMR_STORAGE__REDIS_PASSWORD (or in the URL)"
            ) from None
        except redis.exceptions.NoPermissionError as err:
            raise CredentialsRefused(
                f"Redis at {self._where} denied a command the cache needs ({err}); see the "
                "ACL in the README"
            ) from None
        except (redis.RedisError, OSError) as err:
            self._failed(err)
            return
        self._succeeded()

    # -- outage bookkeeping ---------------------------------------------------------------

    def _may_try(self) -> bool:
        if self._available:
            return True
        now = time.monotonic()
        with self._lock:
            if self._available:
                return True
            if now < self._retry_at:
                return False
            # This caller probes; the others keep serving misses until it is known.
            self._retry_at = now + self._backoff
            return True

    def _failed(self, err: Exception) -> None:
        if not isinstance(err, _OUTAGE_ERRORS):
            # Redis answered but refused (OOM, READONLY, ...): still a miss, not an outage.
            # Rate-limited: a refused command can repeat on every request.
            now = time.monotonic()
            if now - self._last_error_log > 60:
                self._last_error_log = now
                logger.warning("redis cache at %s refused a command: %s", self._where, err)
            return
        now = time.monotonic()
        with self._lock:
            if self._available:
                self._available = False
                self._down_since = now
                self._backoff = self._initial_backoff
                logger.warning(
                    "redis cache at %s is unavailable (%s); serving misses until it returns",
                    self._where,
                    type(err).__name__,
                )
            else:
                self._backoff = min(self._backoff * 2, self._max_backoff)
            self._retry_at = now + self._backoff

    def _succeeded(self) -> None:
        if self._available:
            return
        with self._lock:
            if not self._available:
                self._available = True
                self._backoff = self._initial_backoff
                logger.info(
                    "redis cache at %s is back after %.1f s",
                    self._where,
                    time.monotonic() - self._down_since,
                )

    def _call(self, command: Callable[[redis.Redis], _T], default: _T) -> _T:
        if not self._may_try():
            return default
        try:
            result = command(self._client)
        except (redis.RedisError, OSError) as err:
            self._failed(err)
            return default
        self._succeeded()
        return result

    # -- CacheAPI -------------------------------------------------------------------------

    def get(self, key: str) -> bytes | None:
        value = self._call(lambda r: r.get(self._prefix + key), None)
        if isinstance(value, str):  # only with decode_responses, which we never set
            return value.encode()
        return value

    def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        name = self._prefix + key
        if ttl is not None and ttl <= 0:
            # Already expired: drop any older value rather than keep serving it.
            self._call(lambda r: r.unlink(name), None)
            return
        data = bytes(value)  # a caller's bytearray must not change under us
        # PX: millisecond TTLs, rounded up so a short TTL never becomes "no expiry".
        px = None if ttl is None else max(1, math.ceil(ttl * 1000))
        self._call(lambda r: r.set(name, data, px=px), None)

    def delete(self, key: str) -> None:
        # UNLINK frees the value in the background: no stall on a large entry.
        self._call(lambda r: r.unlink(self._prefix + key), None)

    def delete_prefix(self, prefix: str) -> int:
        """Drop every key of this cache that starts with ``prefix`` ("" drops them all).

        Walks the keyspace with SCAN (never blocking Redis like KEYS would) and UNLINKs in
        batches. Keys written meanwhile may survive. Returns how many keys were dropped
        (0 while Redis is unavailable).
        """
        pattern = _glob_escape(self._prefix + prefix) + "*"

        def sweep(r: redis.Redis) -> int:
            dropped = 0
            batch: list[bytes] = []
            for name in r.scan_iter(match=pattern, count=_SCAN_COUNT):
                batch.append(name)
                if len(batch) >= _UNLINK_BATCH:
                    dropped += int(r.unlink(*batch))
                    batch.clear()
            if batch:
                dropped += int(r.unlink(*batch))
            return dropped

        return self._call(sweep, 0)

    def close(self) -> None:
        self._client.close()
