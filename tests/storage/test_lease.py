"""WorkerLeaseAPI and the fenced anchor claims, against every index backend.

SQLite: two index objects on one file stand for two processes. MySQL: the real MariaDB on
127.0.0.1:3306, a throwaway database per test, two index objects (two pools) on it.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from storage.abc import RecordIndexAPI, WorkerLeaseAPI
from storage.backends.sqlite import SQLiteRecordIndex
from storage.exceptions import LeaseLost, StorageError
from tests.storage.conformance import make_batch, make_receipts, make_row


class Store(RecordIndexAPI, WorkerLeaseAPI):
    """What both backends are (for typing only)."""


Opener = Callable[[], Any]


@pytest.fixture(params=["sqlite", pytest.param("mysql", marks=pytest.mark.integration)])
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    """Opens another handle on one shared index (another 'process')."""
    opened: list[Any] = []
    if request.param == "sqlite":

        def open_store() -> Any:
            store = SQLiteRecordIndex(tmp_path / "index.sqlite")
            opened.append(store)
            return store

        yield open_store
    else:
        from tests.storage.backends.test_mysql import _admin, open_index

        db_name = f"emr_test_{secrets.token_hex(6)}"

        def open_store() -> Any:
            store = open_index(db_name)
            opened.append(store)
            return store

        try:
            yield open_store
        finally:
            for store in opened:
                store.close()
            conn = _admin()
            try:
                with conn.cursor() as cur:
                    cur.execute(f"DROP DATABASE IF EXISTS `{db_name}`")
            finally:
                conn.close()
        return
    for store in opened:
        store.close()


@pytest.fixture
def store(opener: Opener) -> Any:
    return opener()


# -- leases ---------------------------------------------------------------------------------


def test_acquire_free_then_refused_to_another_holder(store: Any) -> None:
    assert store.current("worker") is None
    lease = store.acquire("worker", "a", "http://a", 5.0)
    assert lease is not None and lease.holder == "a" and lease.url == "http://a"
    assert lease.expires_at > time.time() + 3  # the DB's clock: same machine here
    assert store.acquire("worker", "b", "http://b", 5.0) is None
    assert store.current("worker") == lease
    assert store.check(lease)


def test_holder_reacquiring_keeps_its_fence(store: Any) -> None:
    first = store.acquire("worker", "a", "http://a", 5.0)
    again = store.acquire("worker", "a", "http://a2", 5.0)
    assert again is not None and again.fence == first.fence and again.url == "http://a2"
    assert again.expires_at >= first.expires_at


def test_renew_extends_until_expiry(store: Any) -> None:
    lease = store.acquire("worker", "a", "", 0.6)
    time.sleep(0.3)
    assert store.renew(lease, 0.6)
    time.sleep(0.4)  # past the first expiry, within the renewed one
    assert store.check(lease)
    assert store.current("worker") is not None
    time.sleep(0.4)
    assert not store.check(lease)
    assert store.current("worker") is None
    assert not store.renew(lease, 5.0)  # an expired lease stays lost


def test_expired_lease_is_taken_over_with_a_greater_fence(opener: Opener) -> None:
    one, two = opener(), opener()
    old = one.acquire("worker", "a", "http://a", 0.3)
    assert two.acquire("worker", "b", "http://b", 5.0) is None
    time.sleep(0.4)
    new = two.acquire("worker", "b", "http://b", 5.0)
    assert new is not None and new.fence == old.fence + 1
    assert not one.renew(old, 5.0)
    assert not one.check(old)
    assert one.current("worker") == new
    # The old holder cannot take it back while the new one is live.
    assert one.acquire("worker", "a", "http://a", 5.0) is None


def test_release_hands_over_at_once(opener: Opener) -> None:
    one, two = opener(), opener()
    old = one.acquire("worker", "a", "", 60.0)
    one.release(old)
    assert one.current("worker") is None
    new = two.acquire("worker", "b", "", 60.0)
    assert new is not None and new.fence > old.fence
    one.release(old)  # releasing a lost lease: no effect
    assert two.check(new)


def test_same_holder_after_expiry_gets_a_new_fence(store: Any) -> None:
    old = store.acquire("worker", "a", "", 0.2)
    time.sleep(0.3)
    new = store.acquire("worker", "a", "", 5.0)
    assert new.fence > old.fence
    assert not store.check(old)


def test_fences_are_unique_and_grow_across_names(store: Any) -> None:
    fences = []
    for i in range(3):
        for name in ("worker", "other"):
            lease = store.acquire(name, f"h{i}", "", 5.0)
            fences.append(lease.fence)
            store.release(lease)
    assert fences == sorted(fences) and len(set(fences)) == len(fences)


def test_concurrent_acquirers_get_one_lease(opener: Opener) -> None:
    stores = [opener() for _ in range(4)]
    results: list[Any] = []
    barrier = threading.Barrier(len(stores))

    def take(i: int) -> None:
        barrier.wait()
        try:
            results.append(stores[i].acquire("worker", f"h{i}", "", 5.0))
        except StorageError:  # MySQL deadlock retries ran out: LeaseKeeper reads it as not won
            results.append(None)

    threads = [threading.Thread(target=take, args=(i,)) for i in range(len(stores))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == len(stores)
    won = [r for r in results if r is not None]
    assert len(won) == 1


def test_bad_ttl_is_refused(store: Any) -> None:
    with pytest.raises(ValueError):
        store.acquire("worker", "a", "", 0)


# -- fenced claims and intents -----------------------------------------------------------------


def _queue(store: Any, n: int) -> list[Any]:
    rows = [make_row(i + 1) for i in range(n)]
    store.add_records(rows)
    return rows


def test_claims_never_overlap_and_stale_fences_are_refused(opener: Opener) -> None:
    one, two = opener(), opener()
    rows = _queue(one, 6)
    old = one.acquire("worker", "a", "", 0.3)
    assert one.claim_pending_anchors(2, old.fence) == rows[:2]
    assert one.claim_pending_anchors(2, old.fence) == rows[2:4]  # not the same ones again
    intent = one.record_anchor_intent(old.fence, b"\x01" * 32, [r.record_id for r in rows[:2]])
    time.sleep(0.4)
    new = two.acquire("worker", "b", "", 5.0)
    # The old holder is fenced out of every write.
    with pytest.raises(LeaseLost):
        one.claim_pending_anchors(10, old.fence)
    with pytest.raises(LeaseLost):
        one.record_anchor_intent(old.fence, b"\x02" * 32, [rows[2].record_id])
    with pytest.raises(LeaseLost):
        one.mark_anchored(make_batch(1, 2), make_receipts(rows[:2]), old.fence)
    with pytest.raises(LeaseLost):
        one.release_anchor_intent(intent, old.fence)
    assert one.get_receipt(rows[0].record_id) is None  # nothing was written
    # The new holder takes what the old one claimed without an intent, never what is under
    # an intent (recovery decides those).
    assert two.claim_pending_anchors(10, new.fence) == rows[2:]
    [open_intent] = two.open_anchor_intents()
    assert open_intent.intent_id == intent and open_intent.fence == old.fence
    assert open_intent.record_ids == tuple(r.record_id for r in rows[:2])
    assert open_intent.root == b"\x01" * 32
    # Found on the chain: marked under the new fence, the intent closes.
    two.mark_anchored(make_batch(1, 2), make_receipts(rows[:2]), new.fence)
    assert two.open_anchor_intents() == []
    assert two.get_receipt(rows[0].record_id) is not None
    assert two.count_pending_anchors() == 4


def test_intent_needs_an_unexpired_lease_and_own_claims(store: Any) -> None:
    rows = _queue(store, 3)
    lease = store.acquire("worker", "a", "", 0.3)
    store.claim_pending_anchors(1, lease.fence)
    with pytest.raises(StorageError):  # rows[1] is not claimed by this fence
        store.record_anchor_intent(lease.fence, b"\x01" * 32, [rows[1].record_id])
    assert store.open_anchor_intents() == []
    time.sleep(0.4)  # expired but not taken: claims still pass, the pre-send check does not
    with pytest.raises(LeaseLost):
        store.record_anchor_intent(lease.fence, b"\x01" * 32, [rows[0].record_id])
    assert store.open_anchor_intents() == []


def test_released_intent_and_claims_return_to_the_queue(store: Any) -> None:
    rows = _queue(store, 4)
    lease = store.acquire("worker", "a", "", 30.0)
    assert store.claim_pending_anchors(4, lease.fence) == rows
    assert store.claim_pending_anchors(4, lease.fence) == []
    intent = store.record_anchor_intent(lease.fence, b"\x01" * 32, [rows[0].record_id])
    assert store.release_anchor_claims(lease.fence) == 3  # not the one under the intent
    assert store.claim_pending_anchors(4, lease.fence) == rows[1:]
    store.release_anchor_intent(intent, lease.fence)
    assert store.open_anchor_intents() == []
    assert store.claim_pending_anchors(4, lease.fence) == rows[:1]
    store.release_anchor_intent(intent, lease.fence)  # already closed: no error
    assert store.count_pending_anchors() == 4


def test_unfenced_mark_still_works_and_closes_intents(store: Any) -> None:
    rows = _queue(store, 2)
    lease = store.acquire("worker", "a", "", 30.0)
    store.claim_pending_anchors(2, lease.fence)
    store.record_anchor_intent(lease.fence, b"\x01" * 32, [r.record_id for r in rows])
    store.mark_anchored(make_batch(1, 2), make_receipts(rows))
    assert store.open_anchor_intents() == []
    assert store.count_pending_anchors() == 0


def test_concurrent_claimers_never_get_the_same_rows(opener: Opener) -> None:
    stores = [opener() for _ in range(3)]
    rows = _queue(stores[0], 90)
    lease = stores[0].acquire("worker", "a", "", 30.0)
    got: list[list[bytes]] = [[] for _ in stores]
    barrier = threading.Barrier(len(stores))

    def claim(i: int) -> None:
        barrier.wait()
        while True:
            batch = stores[i].claim_pending_anchors(7, lease.fence)
            if not batch:
                return
            got[i].extend(r.record_id for r in batch)

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(len(stores))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    everything = [rid for ids in got for rid in ids]
    assert len(everything) == len(set(everything)) == len(rows)
