"""Cached access decisions that a revocation invalidates from the next block on.

Every cached decision records the block it was decided at and when its consent expires.
Before serving from the cache the node catches up on consent events up to the chain's
current head, and a decision older than the patient's latest grant, revocation or
break-glass is ignored. So a revoke mined in block B is honoured by every read that sees
head >= B; no decision outlives its consent's own expiry either, by the chain's clock or
the wall clock, whichever comes first.

The cache is shared (Redis in production) and so is not trusted: the node wraps it in an
``AuthenticatedCache``, where an entry nobody with the node's key wrote is a miss, and an
entry that does not parse is a miss here too. A miss asks the chain.
"""

from __future__ import annotations

import threading
import time

from node.chain.abc import ChainClientAPI
from node.consent.abc import AccessDeciderAPI
from node.consent.typed_data import AccessBasis
from storage.abc import CacheAPI

_MAX_TRACKED_PATIENTS = 1_000_000


class CachedAccessDecider(AccessDeciderAPI):
    def __init__(self, chain: ChainClientAPI, cache: CacheAPI, *, ttl: float = 300.0) -> None:
        self._chain = chain
        self._cache = cache
        self._ttl = ttl
        self._lock = threading.Lock()
        self._start = chain.head_block()  # decisions cached before this process are not trusted
        self._seen = self._start  # consent events up to here are reflected in _changed
        self._changed: dict[str, int] = {}  # patient -> block of their latest consent event
        self.hits = 0
        self.misses = 0

    def _catch_up(self, head: int) -> None:
        with self._lock:
            if head <= self._seen:
                return
            changes = self._chain.consent_changes(self._seen + 1, head)
            if len(self._changed) > _MAX_TRACKED_PATIENTS:
                # Forget, and distrust everything cached so far: correct, just colder.
                self._changed.clear()
                self._start = head
            for patient, block in changes:
                self._changed[patient] = max(block, self._changed.get(patient, 0))
            self._seen = head

    def basis(
        self, patient: str, grantee: str, record_id: bytes, category_hash: bytes
    ) -> AccessBasis:
        head = self._chain.head_block()
        self._catch_up(head)
        key = f"access:{patient}:{grantee}:{record_id.hex()}:{category_hash.hex()}"
        cached = _parse(self._cache.get(key))
        now = time.time()
        if cached is not None:
            basis, block, expires = cached
            fresh = block >= self._start and block >= self._changed.get(patient, 0)
            if fresh and (basis is AccessBasis.NONE or expires > now):
                self.hits += 1
                return basis
        self.misses += 1
        decided = self._chain.access_basis(patient, grantee, record_id, category_hash)
        expires = 0
        ttl = self._ttl
        if decided is not AccessBasis.NONE:
            expires = self._chain.access_expiry(patient, grantee, record_id, category_hash, decided)
            if expires <= now:
                # The chain's clock only moves with blocks (a quiet dev chain may lag the wall
                # clock); a consent past its expiry by the wall clock is refused all the same.
                decided, expires = AccessBasis.NONE, 0
            else:
                ttl = min(ttl, expires - now)
        if ttl > 0:
            self._cache.set(key, f"{int(decided)}:{head}:{expires}".encode(), ttl)
        return decided


def _parse(value: bytes | None) -> tuple[AccessBasis, int, int] | None:
    """``basis:block:expires`` as written by ``basis``, or None for anything else."""
    if value is None:
        return None
    try:
        basis, block, expires = (int(x) for x in value.decode("ascii").split(":"))
        return AccessBasis(basis), block, expires
    except ValueError:  # also UnicodeDecodeError and a wrong number of fields
        return None
