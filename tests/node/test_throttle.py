"""Token buckets: in-process (fake clock), in the real Redis on 127.0.0.1:6379, and the
Redis-with-local-fallback composite (Redis cut through a TCP proxy, never stopped); and the
middleware choosing a bucket by authenticated caller (issue 10, item 3)."""

from __future__ import annotations

import asyncio
import logging
import secrets
import threading
import time
from collections.abc import Iterator
from ipaddress import ip_network
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
import redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from node.api.throttling import ThrottleMiddleware, client_address
from node.auth.principal import Role
from node.auth.store import AuthStore
from node.settings import Settings, ThrottleSettings
from node.throttle import (
    CallerThrottles,
    FallbackThrottle,
    LocalTokenBucket,
    OutageSwitch,
    RedisTokenBucket,
    ThrottleAPI,
    ThrottleDecision,
    ThrottleUnavailable,
)
from node.wiring import _throttles
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


def test_buckets_sharing_a_switch_fail_over_and_recover_together(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock()

    class Flaky(ThrottleAPI):
        up = True

        def acquire(self, key: str, cost: int = 1) -> ThrottleDecision:
            if not Flaky.up:
                raise ThrottleUnavailable("down")
            return ThrottleDecision(True, 0.0)

    switch = OutageSwitch(retry_interval=5, clock=clock)
    a, b = (
        FallbackThrottle(Flaky(), LocalTokenBucket(1, 100, clock=clock), switch=switch)
        for _ in range(2)
    )
    caplog.set_level(logging.INFO, logger="node.throttle")
    Flaky.up = False
    a.acquire("k")
    b.acquire("k")
    assert a.degraded and b.degraded  # b never probed: it follows the shared switch
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1
    Flaky.up = True
    clock.now += 5
    a.acquire("k")  # one probe restores every bucket of the store
    assert not a.degraded and not b.degraded


# -- by caller (issue 10, item 3) ---------------------------------------------------------


def test_client_address_believes_forwarded_for_only_from_trusted_proxies() -> None:
    def scope(peer: str, *forwarded: str) -> dict[str, object]:
        headers = [(b"x-forwarded-for", f.encode()) for f in forwarded]
        return {"client": (peer, 5555), "headers": headers}

    proxies = (ip_network("10.0.0.0/8"), ip_network("192.0.2.7/32"))
    # No trusted proxies, or an untrusted peer: the header is the caller's own invention.
    assert client_address(scope("203.0.113.9", "1.1.1.1"), ()) == "203.0.113.9"
    assert client_address(scope("203.0.113.9", "1.1.1.1"), proxies) == "203.0.113.9"
    # From a trusted proxy: the right-most address that is not a proxy. What the client
    # wrote to the left of it changes nothing.
    assert client_address(scope("10.1.2.3", "1.1.1.1"), proxies) == "1.1.1.1"
    assert client_address(scope("10.1.2.3", "6.6.6.6, 1.1.1.1"), proxies) == "1.1.1.1"
    assert client_address(scope("10.1.2.3", "6.6.6.6", "1.1.1.1, 192.0.2.7"), proxies) == (
        "1.1.1.1"
    )
    assert client_address(scope("10.1.2.3", "2001:db8::1"), proxies) == "2001:db8::1"
    assert client_address(scope("::ffff:10.1.2.3", "1.1.1.1:443"), proxies) == "1.1.1.1"
    # Nothing usable: the proxy's own address (all such callers share one bucket).
    assert client_address(scope("10.1.2.3"), proxies) == "10.1.2.3"
    assert client_address(scope("10.1.2.3", "6.6.6.6, garbage"), proxies) == "10.1.2.3"
    assert client_address(scope("10.1.2.3", "10.9.9.9, 192.0.2.7"), proxies) == "10.9.9.9"


class _Harness:
    """The throttle middleware in front of a one-route app, with a real AuthStore and
    in-process buckets on a fake clock (nothing refills unless the test says so)."""

    def __init__(self, tmp_path: Path, **limits: object) -> None:
        settings = ThrottleSettings(enabled=True, **limits)  # type: ignore[arg-type]
        self.clock = FakeClock()
        self.auth = AuthStore(tmp_path / "node.sqlite")

        def bucket(rate: float, burst: int) -> LocalTokenBucket:
            return LocalTokenBucket(rate, burst, clock=self.clock)

        t = settings
        self.throttles = CallerThrottles(
            tokens={
                Role.HOSPITAL: bucket(t.hospital_token_rate, t.hospital_token_burst),
                Role.ADMIN: bucket(t.admin_token_rate, t.admin_token_burst),
                Role.AUDITOR: bucket(t.auditor_token_rate, t.auditor_token_burst),
            },
            wallet=bucket(t.wallet_rate, t.wallet_burst),
            anonymous=bucket(t.anonymous_rate, t.anonymous_burst),
            hospital=bucket(t.hospital_rate, t.hospital_burst),
            trusted_proxies=tuple(ip_network(p) for p in t.trusted_proxies),
        )

        async def ok(request: Request) -> PlainTextResponse:
            # Routes see the caller the middleware resolved (no second lookup).
            principal = request.scope["state"].get("emr_principal")
            return PlainTextResponse(type(principal).__name__)

        app = Starlette(routes=[Route("/info", ok)])
        node = SimpleNamespace(auth=self.auth)
        app.add_middleware(ThrottleMiddleware, node=node, throttles=self.throttles)
        self.app = app

    def client(self, peer: str = "198.51.100.1") -> _Peer:
        return _Peer(self.app, peer)

    def status(self, client: _Peer, token: str | None = None, **headers: str) -> int:
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return client.get("/info", headers=headers).status_code


class _Peer:
    """Requests to an ASGI app from one TCP peer address."""

    def __init__(self, app: Starlette, peer: str) -> None:
        self._app = app
        self._peer = peer

    def __enter__(self) -> _Peer:
        return self

    def __exit__(self, *_exc: object) -> None:
        pass

    def get(self, path: str, headers: dict[str, str]) -> httpx.Response:
        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=self._app, client=(self._peer, 40000))
            async with httpx.AsyncClient(transport=transport, base_url="http://node") as c:
                return await c.get(path, headers=headers)

        return asyncio.run(go())


def test_made_up_authorization_headers_share_the_anonymous_bucket(tmp_path: Path) -> None:
    h = _Harness(tmp_path, anonymous_rate=1, anonymous_burst=3)
    with h.client() as c:
        assert [h.status(c) for _ in range(3)] == [200] * 3
        # Before: each distinct header had a fresh bucket of its own.
        made_up = [
            {"Authorization": f"Bearer emr_{secrets.token_urlsafe(32)}"},
            {"Authorization": f"Bearer emrs_{secrets.token_urlsafe(32)}"},
            {"Authorization": f"Bearer {secrets.token_hex(16)}"},
            {"Authorization": f"Basic {secrets.token_hex(8)}"},
            {"Authorization": "Bearer"},
        ]
        for headers in made_up:
            response = c.get("/info", headers=headers)
            assert response.status_code == 429
            assert response.headers["Retry-After"] == "1"
            assert response.json()["error"] == "rate_limited"
    with h.client("198.51.100.2") as other:
        assert h.status(other) == 200  # per client address


def test_fake_hospital_tokens_do_not_drain_the_real_one(tmp_path: Path) -> None:
    h = _Harness(
        tmp_path,
        anonymous_rate=1,
        anonymous_burst=5,
        hospital_token_burst=200,
        hospital_rate=1,
        hospital_burst=100,
    )
    real = h.auth.create_token("ehr", Role.HOSPITAL)
    with h.client("203.0.113.66") as attacker:
        flood = [h.status(attacker, f"emr_{secrets.token_urlsafe(32)}") for _ in range(300)]
    assert flood.count(200) == 5 and flood.count(429) == 295  # the attacker's address only
    with h.client("198.51.100.10") as ehr:
        # Before: every fake 'Bearer emr_' drew from the hospital bucket, so this was 429.
        assert [h.status(ehr, real) for _ in range(100)] == [200] * 100
        assert h.status(ehr, real) == 429  # the hospital-wide bucket is the real limit


def test_each_token_and_wallet_has_its_own_bucket(tmp_path: Path) -> None:
    h = _Harness(
        tmp_path,
        hospital_token_rate=1,
        hospital_token_burst=3,
        auditor_token_rate=1,
        auditor_token_burst=2,
        wallet_rate=1,
        wallet_burst=2,
        anonymous_rate=1,
        anonymous_burst=1,
    )
    ehr, lab = (h.auth.create_token(n, Role.HOSPITAL) for n in ("ehr", "lab"))
    audit = h.auth.create_token("audit", Role.AUDITOR)
    alice, _ = h.auth.create_session("0x" + "a1" * 20, 3600)
    bob, _ = h.auth.create_session("0x" + "b2" * 20, 3600)
    with h.client() as c:
        assert [h.status(c, ehr) for _ in range(4)] == [200, 200, 200, 429]
        assert [h.status(c, lab) for _ in range(4)] == [200, 200, 200, 429]
        assert [h.status(c, audit) for _ in range(3)] == [200, 200, 429]  # its role's size
        assert [h.status(c, alice) for _ in range(3)] == [200, 200, 429]
        assert [h.status(c, bob) for _ in range(3)] == [200, 200, 429]
        assert [h.status(c) for _ in range(2)] == [200, 429]  # anonymous: untouched so far
        h.clock.now += 1
        assert h.status(c, ehr) == 200  # refilled at the token's rate
        assert c.get("/info", headers={"Authorization": f"Bearer {lab}"}).text == ("TokenPrincipal")


def test_revoked_and_expired_credentials_count_as_anonymous(tmp_path: Path) -> None:
    h = _Harness(tmp_path, anonymous_rate=1, anonymous_burst=2)
    token = h.auth.issue_token("old", Role.HOSPITAL)
    h.auth.revoke_token(token.id)
    session, _ = h.auth.create_session("0x" + "c3" * 20, 3600)
    h.auth.end_session(session)
    with h.client() as c:
        assert [h.status(c, token.token), h.status(c, session), h.status(c)] == [200, 200, 429]


def test_forwarded_for_from_untrusted_peer_is_ignored(tmp_path: Path) -> None:
    h = _Harness(tmp_path, anonymous_rate=1, anonymous_burst=2)
    with h.client("198.51.100.7") as c:
        statuses = [h.status(c, **{"X-Forwarded-For": f"203.0.113.{n}"}) for n in range(1, 5)]
    assert statuses == [200, 200, 429, 429]  # one bucket: the peer's


def test_forwarded_for_from_trusted_proxy_names_the_client(tmp_path: Path) -> None:
    h = _Harness(tmp_path, anonymous_rate=1, anonymous_burst=2, trusted_proxies=["10.0.0.0/8"])
    with h.client("10.0.0.2") as proxy:
        for n in range(1, 5):  # each client behind the proxy has its own bucket
            assert h.status(proxy, **{"X-Forwarded-For": f"203.0.113.{n}"}) == 200
        # A client cannot escape by writing its own entries left of the proxy's.
        spoofed = [
            h.status(proxy, **{"X-Forwarded-For": f"6.6.6.{n}, 203.0.113.9"}) for n in range(4)
        ]
        assert spoofed == [200, 200, 429, 429]


def test_production_defaults_let_a_hospital_token_run_at_the_node_targets() -> None:
    settings = Settings(
        mode="production",
        api={"public_url": "https://emr.hospital.example"},
        storage={"cache_backend": "memory"},  # in-process buckets: no Redis needed here
    )
    t = settings.throttle
    assert t.enabled
    # Issue 11: 1,500 uploads/s and 3,000 hot reads/s per node, from the hospital's systems.
    assert t.hospital_token_rate >= 1500 + 3000 and t.hospital_rate >= t.hospital_token_rate
    assert t.anonymous_rate < t.wallet_rate < t.hospital_token_rate
    throttles = _throttles(settings)
    assert throttles is not None
    try:
        bucket = throttles.tokens[Role.HOSPITAL]
        # Before: 50 requests/s with a burst of 100 per credential in production mode.
        allowed = sum(bucket.acquire("token:ehr").allowed for _ in range(5000))
        assert allowed == 5000
        assert sum(throttles.hospital.acquire("hospital").allowed for _ in range(5000)) == 5000
        assert sum(throttles.anonymous.acquire("ip:x").allowed for _ in range(100)) < 100
    finally:
        throttles.close()


@pytest.mark.integration
def test_production_throttles_share_redis_and_fail_over_together(
    redis_raw: redis.Redis, proxy: CutProxy
) -> None:
    settings = Settings(
        mode="production",
        api={"public_url": "https://emr.hospital.example"},
        storage={"redis_url": f"redis://127.0.0.1:{proxy.port}/0"},
    )
    throttles = _throttles(settings)
    assert throttles is not None
    key = f"token:test-{secrets.token_hex(6)}"
    try:
        bucket = throttles.tokens[Role.HOSPITAL]
        assert sum(bucket.acquire(key).allowed for _ in range(500)) == 500
        assert redis_raw.exists("emr:throttle:token:" + key)  # shared by every process
        assert not throttles.degraded
        proxy.cut()
        assert throttles.anonymous.acquire("ip:test").allowed
        assert throttles.degraded and all(b.degraded for b in throttles)
    finally:
        throttles.close()
        redis_raw.unlink("emr:throttle:token:" + key)


def test_a_running_node_throttles_by_caller(tmp_path: Path) -> None:
    """Through uvicorn: made-up credentials and X-Forwarded-For from an untrusted peer land
    in the caller's anonymous bucket, while the hospital's real token is served."""
    from tests.node.conftest import make_settings, start_node

    settings = make_settings(tmp_path / "node")
    throttle = ThrottleSettings(enabled=True, anonymous_rate=0.001, anonymous_burst=3)
    rn = start_node(tmp_path / "node", settings.model_copy(update={"throttle": throttle}))
    try:
        with rn.client(rn.admin_token) as admin:
            token = admin.create_token("ehr", "hospital")
        with httpx.Client(base_url=rn.url) as http:
            statuses = [
                http.get(
                    "/info",
                    headers={
                        "Authorization": f"Bearer emr_{secrets.token_urlsafe(32)}",
                        "X-Forwarded-For": f"203.0.113.{n}",
                    },
                ).status_code
                for n in range(20)
            ]
            assert statuses == [200] * 3 + [429] * 17
            assert http.get("/health").status_code == 200  # exempt
            real = {"Authorization": f"Bearer {token}"}
            assert all(http.get("/records", headers=real).status_code == 200 for _ in range(50))
    finally:
        rn.stop()


def test_emr_node_run_leaves_forwarded_headers_to_the_throttle(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """uvicorn would otherwise rewrite the client address from X-Forwarded-For for any
    peer on 127.0.0.1, whatever throttle.trusted_proxies says."""
    import uvicorn
    from typer.testing import CliRunner

    import node.api.app
    import node.cli.main as cli

    served: dict[str, object] = {}
    monkeypatch.setattr(cli, "_build", lambda _s: SimpleNamespace(notes=[], hospital="0x0"))
    monkeypatch.setattr(node.api.app, "create_app", lambda _node: "app")
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: served.update(kw, app=app))
    # One process: the app object itself.
    result = CliRunner().invoke(cli.app, ["run", "--single-process", "--data-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert served["app"] == "app" and served["proxy_headers"] is False
    # A worker and API processes: uvicorn's process manager with the app factory.
    served.clear()
    monkeypatch.setattr(cli, "_serve_api", cli._serve_api)  # the real one, uvicorn.run faked
    import node.roles.supervisor as supervisor

    monkeypatch.setattr(supervisor.WorkerSupervisor, "start", lambda _self, ready_timeout: True)
    monkeypatch.setattr(supervisor.WorkerSupervisor, "stop", lambda _self: None)
    result = CliRunner().invoke(cli.app, ["run", "--processes", "2", "--data-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert served["app"] == "node.api.asgi:create_api_app" and served["factory"] is True
    assert served["workers"] == 2 and served["proxy_headers"] is False
