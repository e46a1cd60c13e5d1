"""LeaseKeeper over the SQLite index: take, renew, hand over, and notice a loss at once."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from node.roles.lease import LeaseKeeper
from storage.backends.sqlite import SQLiteRecordIndex


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[tuple[SQLiteRecordIndex, SQLiteRecordIndex]]:
    one = SQLiteRecordIndex(tmp_path / "index.sqlite")
    two = SQLiteRecordIndex(tmp_path / "index.sqlite")
    yield one, two
    one.close()
    two.close()


def test_keeper_holds_by_renewing_and_a_standby_takes_over_on_stop(
    stores: tuple[SQLiteRecordIndex, SQLiteRecordIndex],
) -> None:
    one, two = stores
    first = LeaseKeeper(one, "worker", "a", "http://a", ttl=0.6, renew=0.1)
    lease = first.wait_acquire(5)
    assert lease is not None and first.held and first.fence == lease.fence
    standby = LeaseKeeper(two, "worker", "b", "http://b", ttl=0.6, renew=0.1)
    assert standby.wait_acquire(1.0) is None  # renewals keep it beyond several ttls
    assert one.current("worker") is not None and first.valid_for() > 0.3
    first.stop()  # released: the standby needs no expiry
    took = standby.wait_acquire(2.0)
    assert took is not None and took.fence > lease.fence and took.url == "http://b"
    assert first.fence == lease.fence and not first.held
    standby.stop()
    assert two.current("worker") is None


def test_on_lost_fires_when_another_holder_took_it(
    stores: tuple[SQLiteRecordIndex, SQLiteRecordIndex],
) -> None:
    one, two = stores
    lost = threading.Event()
    keeper = LeaseKeeper(one, "worker", "a", "", ttl=0.6, renew=0.1, on_lost=lost.set)
    lease = keeper.wait_acquire(5)
    assert lease is not None
    two.release(lease)  # e.g. an operator, or a lease that expired while paused
    assert two.acquire("worker", "b", "", 30.0) is not None
    assert lost.wait(2.0)
    assert keeper.lost and not keeper.held and keeper.lease is None
    assert keeper.fence == lease.fence  # fenced writes stay refused, never unfenced
    keeper.stop()
    assert two.current("worker") is not None  # stop() did not release someone else's lease


def test_keeper_gives_up_before_its_deadline_when_the_store_is_unreachable(
    stores: tuple[SQLiteRecordIndex, SQLiteRecordIndex], monkeypatch: pytest.MonkeyPatch
) -> None:
    one, _two = stores
    lost = threading.Event()
    keeper = LeaseKeeper(one, "worker", "a", "", ttl=0.5, renew=0.1, on_lost=lost.set)
    lease = keeper.wait_acquire(5)
    assert lease is not None
    started = time.monotonic()

    from storage.exceptions import BackendUnavailable

    def down(*_args: object) -> bool:
        raise BackendUnavailable("record index database is unavailable")

    monkeypatch.setattr(one, "renew", down)
    assert lost.wait(2.0)
    # Declared lost no later than the lease could expire in the database.
    assert time.monotonic() - started < 0.5 + 0.15
    keeper.stop()


def test_bad_timing_is_refused(stores: tuple[SQLiteRecordIndex, SQLiteRecordIndex]) -> None:
    with pytest.raises(ValueError):
        LeaseKeeper(stores[0], "worker", "a", "", ttl=1.0, renew=1.0)
