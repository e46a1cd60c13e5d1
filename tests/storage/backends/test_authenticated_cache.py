"""AuthenticatedCache: the conformance suite over an in-process cache, and forged entries
(no tag, a tag under another key, another node's key, truncated) read as misses."""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
from pathlib import Path

import pytest

from storage.abc import CacheAPI
from storage.backends.authenticated_cache import TAG_SIZE, AuthenticatedCache
from storage.backends.memory import InMemoryLRUCache
from tests.storage.conformance import CacheConformance

KEY = bytes(range(32))


class TestAuthenticatedCache(CacheConformance):
    def make_cache(self, location: Path) -> CacheAPI:
        return AuthenticatedCache(InMemoryLRUCache(1 << 20), KEY)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def inner() -> InMemoryLRUCache:
    return InMemoryLRUCache(1 << 20)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def cache(inner: InMemoryLRUCache, clock: Clock) -> AuthenticatedCache:
    return AuthenticatedCache(inner, KEY, clock=clock)


def tag(key: bytes, name: str, value: bytes) -> bytes:
    encoded = name.encode()
    return hmac.new(key, len(encoded).to_bytes(4, "big") + encoded + value, hashlib.sha256).digest()


def test_entries_are_stored_with_their_tag(
    cache: AuthenticatedCache, inner: InMemoryLRUCache
) -> None:
    cache.set("access:a", b"1:5:99", ttl=60)
    assert inner.get("access:a") == tag(KEY, "access:a", b"1:5:99") + b"1:5:99"
    assert cache.get("access:a") == b"1:5:99"
    assert cache.rejected == 0


@pytest.mark.parametrize(
    "stored",
    [
        b"1:999999999:99999999999",  # a planted grant, no tag
        b"",
        b"\x00" * (TAG_SIZE - 1),  # shorter than a tag
        tag(os.urandom(32), "access:a", b"1:9:9") + b"1:9:9",  # another node's key
        tag(KEY, "access:b", b"1:9:9") + b"1:9:9",  # a genuine entry moved to another key
        tag(KEY, "access:a", b"1:9:9") + b"1:9:8",  # value altered after tagging
    ],
)
def test_forged_entries_are_misses(
    cache: AuthenticatedCache, inner: InMemoryLRUCache, stored: bytes
) -> None:
    inner.set("access:a", stored)
    assert cache.get("access:a") is None
    assert cache.rejected == 1


def test_a_cache_under_another_key_sees_only_misses(inner: InMemoryLRUCache) -> None:
    ours = AuthenticatedCache(inner, KEY)
    theirs = AuthenticatedCache(inner, os.urandom(32))
    theirs.set("blob:x", b"ciphertext")
    assert ours.get("blob:x") is None
    ours.set("blob:x", b"ciphertext")
    assert ours.get("blob:x") == b"ciphertext"


def test_rejections_are_logged_rarely_and_without_values(
    cache: AuthenticatedCache,
    inner: InMemoryLRUCache,
    clock: Clock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="storage.backends.authenticated_cache")
    planted = b"1:999999999:99999999999 MARKER"
    for i in range(50):
        inner.set(f"access:0xPATIENT{i}", planted)
        assert cache.get(f"access:0xPATIENT{i}") is None
    assert cache.rejected == 50
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1  # once in a while, not once per entry
    clock.now += 61
    assert cache.get("access:0xPATIENT0") is None
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2 and "50 cache entries" in warnings[1].getMessage()
    for record in caplog.records:
        text = record.getMessage()
        assert "MARKER" not in text and "PATIENT" not in text  # neither value nor key
        assert "'access'" in text


def test_short_keys_are_refused(inner: InMemoryLRUCache) -> None:
    with pytest.raises(ValueError):
        AuthenticatedCache(inner, b"\x01" * 16)


def test_bytearray_values_are_copied(cache: AuthenticatedCache) -> None:
    value = bytearray(b"abc")
    cache.set("k", value)  # type: ignore[arg-type]
    value[0] = ord("X")
    assert cache.get("k") == b"abc"
