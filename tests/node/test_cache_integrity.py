"""Whoever can write to the node's cache (Redis in production) cannot plant a consent
decision or a blob: every entry carries an HMAC under a key derived from the node's key
store, and a missing or wrong tag is a miss. And Redis AUTH / ACL users work for the cache
and the throttle buckets, while missing credentials stop the node with a clear error.

The Redis tests run an embedded node with its cache in Redis: the machine's Redis for the
forged entries, and a private ``redis-server --requirepass`` (with an ACL user) for AUTH.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from eth_account import Account

from node.client import ApiError, EmrClient, Scope
from node.consent.typed_data import category_hash
from node.settings import Settings, StorageSettings, ThrottleSettings
from node.wiring import CACHE_KEY_LABEL, build_node
from storage.backends.authenticated_cache import AuthenticatedCache
from storage.exceptions import CredentialsRefused
from tests.node.conftest import RunningNode, make_settings, start_node
from tests.node.production import free_port

FORGED_GRANT = b"1:1000000000:99999999999"  # record consent, decided at block 1e9, no expiry


def decision_key(patient: str, grantee: str, record_id: str, category: str) -> str:
    rid = bytes.fromhex(record_id.removeprefix("0x"))
    return f"access:{patient}:{grantee}:{rid.hex()}:{category_hash(category).hex()}"


def tagged(key: bytes, name: str, value: bytes) -> bytes:
    encoded = name.encode()
    mac = hmac.new(key, len(encoded).to_bytes(4, "big") + encoded + value, hashlib.sha256)
    return mac.digest() + value


def with_storage(data_dir: Path, *, throttle: bool = False, **storage: object) -> Settings:
    base = make_settings(data_dir)
    update: dict[str, object] = {"storage": StorageSettings(**storage)}  # type: ignore[arg-type]
    if throttle:
        update["throttle"] = ThrottleSettings(enabled=True)
    return base.model_copy(update=update)


def _setup(rn: RunningNode) -> tuple[EmrClient, EmrClient, str, object, object]:
    admin = rn.client(rn.admin_token)
    hospital = rn.client(admin.create_token("ehr", "hospital"))
    public = rn.client()
    patient = Account.create()
    rid = hospital.upload(patient.address, b"MARKER-cache-integrity", category="lab")["record_id"]
    return hospital, public, rid, patient, Account.create()


# -- embedded: the in-process cache is authenticated too ---------------------------------


def test_a_forged_grant_in_the_cache_is_refused(embedded_node: RunningNode) -> None:
    _hospital, public, rid, patient, stranger = _setup(embedded_node)
    node = embedded_node.node
    assert isinstance(node.cache, AuthenticatedCache)
    key = decision_key(patient.address, stranger.address, rid, "lab")  # type: ignore[attr-defined]
    node.cache.inner.set(key, FORGED_GRANT)
    session = public.login(stranger)  # type: ignore[arg-type]
    with pytest.raises(ApiError) as denied:
        public.read(rid, session)
    assert denied.value.status == 403
    assert node.cache.rejected >= 1
    # The miss asked the chain, whose answer (no consent) replaced the forged entry.
    assert node.cache.get(key) is not None and node.cache.get(key).startswith(b"0:")  # type: ignore[union-attr]


def test_the_cache_key_comes_from_the_key_store(embedded_node: RunningNode) -> None:
    node = embedded_node.node
    node.cache.set("probe", b"v")
    stored = node.cache.inner.get("probe")  # type: ignore[attr-defined]
    assert stored == tagged(node.keys.derive_secret(CACHE_KEY_LABEL), "probe", b"v")
    # derived at start, so the key audit log shows it (never the secret itself)
    assert [e.subject for e in node.key_audit.entries(action="key.derive")] == [
        CACHE_KEY_LABEL
    ] * 2  # start, and this test's own derivation


# -- the machine's Redis ---------------------------------------------------------------

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture
def redis_node(tmp_path: Path) -> Iterator[RunningNode]:
    try:
        redis.Redis.from_url(REDIS_URL, socket_timeout=2).ping()
    except redis.RedisError as err:
        pytest.fail(f"Redis is not reachable at {REDIS_URL} ({err}); run scripts/services.sh start")
    data_dir = tmp_path / "node"
    rn = start_node(data_dir, with_storage(data_dir, cache_backend="redis", redis_url=REDIS_URL))
    yield rn
    rn.stop()


@pytest.mark.integration
def test_forged_redis_entries_are_misses(redis_node: RunningNode) -> None:
    hospital, public, rid, patient, stranger = _setup(redis_node)
    raw = redis.Redis.from_url(REDIS_URL)
    session = public.login(stranger)  # type: ignore[arg-type]
    name = decision_key(patient.address, stranger.address, rid, "lab")  # type: ignore[attr-defined]

    # 1. a plain planted grant, as anyone with write access to Redis could
    raw.set("emr:" + name, FORGED_GRANT)
    with pytest.raises(ApiError) as denied:
        public.read(rid, session)
    assert denied.value.status == 403
    # the node replaced it with its own, authenticated answer: no consent
    stored = raw.get("emr:" + name)
    assert stored is not None and stored != FORGED_GRANT and stored[32:].startswith(b"0:")

    # 2. a grant with a valid tag, but under another node's key
    raw.set("emr:" + name, tagged(os.urandom(32), name, FORGED_GRANT))
    with pytest.raises(ApiError) as denied:
        public.read(rid, session)
    assert denied.value.status == 403

    # 3. a genuine grant of this node, moved from another record to this one
    other = hospital.upload(patient.address, b"other", category="lab")["record_id"]  # type: ignore[attr-defined]
    public.grant(patient, stranger.address, Scope.record(other))  # type: ignore[arg-type]
    assert public.read(other, session).status_code == 200  # caches a real grant
    genuine = raw.get("emr:" + decision_key(patient.address, stranger.address, other, "lab"))  # type: ignore[attr-defined]
    assert genuine is not None and genuine[32:].startswith(b"1:")
    raw.set("emr:" + name, genuine)
    with pytest.raises(ApiError) as denied:
        public.read(rid, session)
    assert denied.value.status == 403
    assert redis_node.node.cache.rejected >= 3  # type: ignore[attr-defined]
    raw.close()


@pytest.mark.integration
def test_a_planted_blob_is_a_miss_and_the_record_still_reads(redis_node: RunningNode) -> None:
    hospital, public, rid, patient, _stranger = _setup(redis_node)
    cid = hospital.record(rid)["cid"]
    session = public.login(patient)  # type: ignore[arg-type]
    assert public.read(rid, session).content == b"MARKER-cache-integrity"  # now cached
    raw = redis.Redis.from_url(REDIS_URL)
    for planted in (b"not the ciphertext", os.urandom(64), b""):
        raw.set(f"emr:blob:{cid}", planted)
        response = public.read(rid, session)
        assert response.status_code == 200
        assert response.content == b"MARKER-cache-integrity"
    raw.close()


# -- a private Redis with a password and an ACL user -----------------------------------

PASSWORD = "redis-" + secrets.token_hex(8)
ACL_PASSWORD = "acl-" + secrets.token_hex(8)
# What the node needs, and nothing else (README: production Redis).
NODE_ACL = [
    "on",
    f">{ACL_PASSWORD}",
    "~emr:*",
    "resetchannels",
    "-@all",
    *(
        f"+{c}"
        for c in (
            "ping",
            "get",
            "set",
            "unlink",
            "evalsha",
            "script|load",
            "time",
            "hmget",
            "hset",
            "pexpire",
        )
    ),
]


@pytest.fixture(scope="module")
def secured_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A redis-server of this test module: requirepass, plus the ACL user ``emr``."""
    server = shutil.which("redis-server")
    if server is None:
        pytest.fail("redis-server is not installed (apt-get install redis-server)")
    port = free_port()
    workdir = tmp_path_factory.mktemp("redis")
    args = ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    args += ["--requirepass", PASSWORD, "--dir", str(workdir)]
    proc = subprocess.Popen(
        [server, *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        client = redis.Redis(port=port, password=PASSWORD, socket_timeout=2)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        client.acl_setuser("emr", reset=True)
        client.execute_command("ACL", "SETUSER", "emr", *NODE_ACL)
        client.close()
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _exercise(rn: RunningNode) -> None:
    """Consent decisions and blobs through the cache, requests through the throttle."""
    hospital, public, rid, patient, doc = _setup(rn)
    public.grant(patient, doc.address, Scope.record(rid))  # type: ignore[attr-defined]
    session = public.login(doc)  # type: ignore[arg-type]
    for _ in range(3):
        assert public.read(rid, session).content == b"MARKER-cache-integrity"
    admin = rn.client(rn.admin_token)
    health = admin.health()
    assert health["components"]["cache"]["ok"] is True
    assert health["components"]["throttle"] == {"ok": True, "mode": "shared"}
    assert rn.node.access.hits >= 1  # type: ignore[attr-defined]
    hospital.close()
    public.close()
    admin.close()


@pytest.mark.integration
def test_the_node_runs_with_the_redis_password(secured_redis: int, tmp_path: Path) -> None:
    data_dir = tmp_path / "node"
    settings = with_storage(
        data_dir,
        throttle=True,
        cache_backend="redis",
        redis_url=f"redis://127.0.0.1:{secured_redis}/0",
        redis_password=PASSWORD,
    )
    rn = start_node(data_dir, settings)
    try:
        _exercise(rn)
        keys = redis.Redis(port=secured_redis, password=PASSWORD).keys("emr:*")
        assert any(k.startswith(b"emr:access:") for k in keys)
        assert any(k.startswith(b"emr:throttle:") for k in keys)  # buckets in Redis too
    finally:
        rn.stop()


@pytest.mark.integration
def test_an_acl_user_limited_to_the_node_keys_and_commands(
    secured_redis: int, tmp_path: Path
) -> None:
    data_dir = tmp_path / "node"
    settings = with_storage(
        data_dir,
        throttle=True,
        cache_backend="redis",
        redis_url=f"redis://emr:{ACL_PASSWORD}@127.0.0.1:{secured_redis}/0",  # in the URL
    )
    rn = start_node(data_dir, settings)
    try:
        _exercise(rn)
        assert "acl-" not in repr(rn.node.cache)
    finally:
        rn.stop()
    # and the user really is limited: no other keys, no other commands
    limited = redis.Redis(port=secured_redis, username="emr", password=ACL_PASSWORD)
    with pytest.raises(redis.exceptions.NoPermissionError):
        limited.get("other:key")
    with pytest.raises(redis.exceptions.NoPermissionError):
        limited.flushall()
    limited.close()


@pytest.mark.integration
@pytest.mark.parametrize(
    "credentials",
    [{}, {"redis_password": "wrong"}, {"redis_username": "emr", "redis_password": "wrong"}],
)
def test_without_the_right_credentials_the_node_does_not_start(
    secured_redis: int,
    tmp_path: Path,
    credentials: dict[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    data_dir = tmp_path / "node"
    settings = with_storage(
        data_dir,
        throttle=True,
        cache_backend="redis",
        redis_url=f"redis://127.0.0.1:{secured_redis}/0",
        **credentials,
    )
    with pytest.raises(CredentialsRefused) as refused:
        build_node(settings)
    message = str(refused.value)
    assert f"127.0.0.1:{secured_redis}" in message and "refused the credentials" in message
    assert "EMR_STORAGE__REDIS_PASSWORD" in message
    for secret in (PASSWORD, ACL_PASSWORD, "wrong"):
        assert secret not in message
        assert all(secret not in r.getMessage() for r in caplog.records)


def test_credentials_in_the_url_and_the_settings_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not both"):
        StorageSettings(redis_url="redis://:a@127.0.0.1/0", redis_password="b")
    with pytest.raises(ValueError, match="64 hex"):
        StorageSettings(cache_key="abc")
