"""Liveness and readiness: ``/healthz`` answers while the process serves; ``/readyz`` only
while every required component answers (index, cache when shared, chain, blob store, key
store, worker lease or the worker role)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from node.wiring import Node

# A content address nothing stores: ``has`` on it is a cheap round trip to the blob store.
_PROBE_CID = "bafkreiaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"


@dataclass(frozen=True)
class Check:
    ok: bool
    error: str | None = None


def _probe(check: Callable[[], object]) -> Check:
    try:
        result = check()
    except Exception as err:  # a probe reports; the type only (messages may name hosts)
        return Check(False, type(err).__name__)
    if result is False:
        return Check(False, "not ready")
    return Check(True)


def _worker(node: Node) -> Check:
    if node.lease is not None:  # this process runs the workers: it must hold the lease
        return Check(True) if node.lease.held else Check(False, "worker lease not held")
    if node.role == "api":
        return Check(True) if node.background.status() else Check(False, "worker unreachable")
    return Check(True)  # a hand-built node without a lease


def readiness(node: Node) -> dict[str, Check]:
    """Probe every required component now. Never raises."""
    checks = {
        "index": _probe(node.index.count_pending_anchors),
        "chain": _probe(node.chain.head_block),
        "keystore": _probe(node.keys.kek_versions),
    }
    blobs = node.health_checks.get("blobs")
    if blobs is not None:
        checks["blobs"] = _probe(lambda: blobs.check_health().ok)
    else:
        checks["blobs"] = _probe(lambda: node.blobs.has(_PROBE_CID) or True)
    cache = node.health_checks.get("cache")
    if cache is not None:
        checks["cache"] = _probe(lambda: cache.check_health().ok)
    checks["worker"] = _worker(node)
    return checks


class CachedReadiness:
    """``readiness`` at most once per ``ttl`` seconds: anonymous probes cannot drive the
    checks (they reach MySQL, the chain, IPFS, Redis and the HSM)."""

    def __init__(self, node: Node, ttl: float = 1.0) -> None:
        self._node = node
        self._ttl = ttl
        self._lock = threading.Lock()
        self._at = 0.0
        self._last: dict[str, Check] | None = None

    def __call__(self) -> dict[str, Check]:
        with self._lock:
            if self._last is None or time.monotonic() - self._at >= self._ttl:
                self._last = readiness(self._node)
                self._at = time.monotonic()
            return self._last
