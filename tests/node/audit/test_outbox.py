"""The access-log outbox on SQLite and MySQL: order, removal, claims by lease fence (two
workers never hold the same row), lapsed claims taken over, two connections."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from node.audit.outbox import SqlAccessLogQueue, SQLiteAccessLogQueue
from node.chain.models import AccessEntry
from node.consent.typed_data import AccessBasis
from tests.storage.sql_fixtures import SQL_BACKENDS, SqlDatabases, sql_databases


@pytest.fixture(params=SQL_BACKENDS)
def dbs(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlDatabases]:
    yield from sql_databases(request.param, tmp_path)


def _entries(n: int, start: int = 0) -> list[AccessEntry]:
    return [
        AccessEntry(
            "0x" + f"{i:040x}", i.to_bytes(32, "big"), "0xActor", i % 2 == 0, AccessBasis(i % 3)
        )
        for i in range(start, start + n)
    ]


def test_entries_come_out_in_order_until_removed(dbs: SqlDatabases) -> None:
    queue = SqlAccessLogQueue(dbs.connect())
    queue.enqueue(_entries(5))
    assert queue.count() == 5
    pending = queue.pending(3)
    assert [e for _, e in pending] == _entries(3)
    queue.remove([i for i, _ in pending])
    assert [e for _, e in queue.pending(10)] == _entries(2, start=3)
    assert queue.count() == 2
    assert SQLiteAccessLogQueue is SqlAccessLogQueue  # the old name still imports
    queue.close()


def test_two_workers_never_hold_the_same_rows(dbs: SqlDatabases) -> None:
    old, new = SqlAccessLogQueue(dbs.connect()), SqlAccessLogQueue(dbs.connect())
    old.enqueue(_entries(6))
    first = old.pending(4, fence=1)
    assert [e for _, e in first] == _entries(4)
    # Another worker (a newer lease) gets only the rest while the claim holds.
    assert [e for _, e in new.pending(10, fence=2)] == _entries(2, start=4)
    # The first worker's send failed: it gets its own rows again, not the newer claim's.
    assert [i for i, _ in old.pending(10, fence=1)] == [i for i, _ in first]
    old.remove([i for i, _ in first])
    assert new.count() == 2


def test_a_lapsed_claim_of_an_older_fence_is_taken_over(dbs: SqlDatabases) -> None:
    dead = SqlAccessLogQueue(dbs.connect(), claim_ttl=0.0)
    heir = SqlAccessLogQueue(dbs.connect(), claim_ttl=0.0)
    dead.enqueue(_entries(3))
    claimed = dead.pending(3, fence=1)
    taken = heir.pending(3, fence=2)  # the claim lapsed (ttl 0): at least once, resent
    assert [i for i, _ in taken] == [i for i, _ in claimed]
    assert dead.pending(3, fence=1) == []  # never back to the older fence


def test_concurrent_claimers_split_the_rows(dbs: SqlDatabases) -> None:
    """Two connections claim in a loop under different fences (claims never lapse): every
    row goes to exactly one of them."""
    queues = [SqlAccessLogQueue(dbs.connect()) for _ in range(2)]
    queues[0].enqueue(_entries(300))
    got: dict[int, list[int]] = {0: [], 1: []}

    def claim(n: int) -> None:
        while batch := queues[n].pending(7, fence=10 + n):
            ids = [i for i, _ in batch]
            got[n].extend(ids)
            queues[n].remove(ids)

    threads = [threading.Thread(target=claim, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got[0]) + len(got[1]) == 300
    assert not set(got[0]) & set(got[1])
    assert queues[0].count() == 0


def test_a_write_through_one_connection_is_seen_by_another(dbs: SqlDatabases) -> None:
    api, worker = SqlAccessLogQueue(dbs.connect()), SqlAccessLogQueue(dbs.connect())
    api.enqueue(_entries(2))
    assert worker.count() == 2
    ids = [i for i, _ in worker.pending(10, fence=1)]
    worker.remove(ids)
    assert api.count() == 0


def test_an_outbox_from_before_claims_is_upgraded(tmp_path: Path) -> None:
    from node.audit.outbox import _MIGRATIONS
    from storage.sql import SQLiteDatabase

    old = SQLiteDatabase(tmp_path / "node.sqlite", "access_outbox", _MIGRATIONS[:1])
    with old.transaction() as cur:
        cur.execute(
            "INSERT INTO access_outbox (patient, record_id, actor, granted, basis, queued_at)"
            " VALUES ('0xP', ?, '0xA', 1, 0, 1)",
            (b"\x01" * 32,),
        )
    old.close()
    queue = SqlAccessLogQueue(tmp_path / "node.sqlite")
    [(_, entry)] = queue.pending(10, fence=1)
    assert entry == AccessEntry("0xP", b"\x01" * 32, "0xA", True, AccessBasis(0))
    queue.close()
