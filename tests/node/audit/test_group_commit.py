"""Group commit in front of the key audit log and the access-log outbox (issue 11, P2):
many threads share a transaction, each caller returns only once its entry is durable, the
key audit log stays one valid hash chain, and a failed commit fails every caller of the
batch with nothing stored."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from node.audit.abc import AccessLogQueueAPI
from node.audit.key_log import (
    GroupCommitKeyAuditLog,
    KeyAction,
    SqlKeyAuditLog,
    acting_as,
    verify_key_audit,
)
from node.audit.outbox import GroupCommitAccessLogQueue, SqlAccessLogQueue
from node.chain.models import AccessEntry
from node.consent.typed_data import AccessBasis
from tests.storage.sql_fixtures import SQL_BACKENDS, SqlDatabases, sql_databases

THREADS = 16
PER_THREAD = 25


@pytest.fixture(params=SQL_BACKENDS)
def dbs(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlDatabases]:
    yield from sql_databases(request.param, tmp_path)


def _entry(i: int) -> AccessEntry:
    return AccessEntry("0x" + f"{i:040x}", i.to_bytes(32, "big"), "0xActor", True, AccessBasis(1))


def _in_threads(work: list[threading.Thread]) -> None:
    for t in work:
        t.start()
    for t in work:
        t.join()


def test_concurrent_appends_keep_one_valid_chain(dbs: SqlDatabases) -> None:
    log = GroupCommitKeyAuditLog(SqlKeyAuditLog(dbs.connect()), window=0.005)
    returned: list[tuple[int, str, str]] = []
    lock = threading.Lock()

    def appender(n: int) -> None:
        with acting_as(f"token-{n}"):
            for i in range(PER_THREAD):
                entry = log.append(KeyAction.UNWRAP_BATCH, f"count=1 t{n} i{i}")
                # Durable on return: the stored log already holds it.
                assert log.entries(after=entry.seq - 1, limit=1)[0] == entry
                with lock:
                    returned.append((entry.seq, entry.actor, entry.subject))

    _in_threads([threading.Thread(target=appender, args=(n,)) for n in range(THREADS)])
    check = verify_key_audit(log, [])
    assert check.valid and check.entries == THREADS * PER_THREAD
    stored = {(e.seq, e.actor, e.subject) for e in log.entries(limit=10_000)}
    assert stored == set(returned)  # one entry per append, with the caller's own actor
    assert all(subject.split()[1] == "t" + actor.split("-")[1] for _, actor, subject in returned)
    log.close()


def test_append_many_continues_the_chain_of_single_appends(dbs: SqlDatabases) -> None:
    log = SqlKeyAuditLog(dbs.connect())
    log.append(KeyAction.KEK_GENERATE, "v1")
    batch = log.append_many([(KeyAction.UNWRAP_BATCH, "count=1", "a"), ("sign", "0xab", "b")])
    assert [e.seq for e in batch] == [2, 3]
    assert batch[0].prev_hash == log.entries(limit=1)[0].hash
    log.append(KeyAction.KEK_ROTATE, "v1 -> v2")
    assert log.append_many([]) == []
    assert verify_key_audit(log, []).valid
    log.close()


def test_concurrent_enqueues_are_all_durable(dbs: SqlDatabases) -> None:
    inner = SqlAccessLogQueue(dbs.connect())
    queue = GroupCommitAccessLogQueue(inner, window=0.005)

    def reader(n: int) -> None:
        for i in range(PER_THREAD):
            queue.enqueue([_entry(n * PER_THREAD + i)])

    _in_threads([threading.Thread(target=reader, args=(n,)) for n in range(THREADS)])
    assert inner.count() == THREADS * PER_THREAD
    got = {e.record_id for _, e in queue.pending(10_000)}
    assert got == {_entry(i).record_id for i in range(THREADS * PER_THREAD)}
    queue.close()


def test_enqueue_async_returns_once_durable(dbs: SqlDatabases) -> None:
    inner = SqlAccessLogQueue(dbs.connect())
    queue = GroupCommitAccessLogQueue(inner, window=0.005)

    async def readers() -> None:
        await asyncio.gather(*(queue.enqueue_async([_entry(i)]) for i in range(40)))
        assert inner.count() == 40  # every awaited enqueue is stored

    asyncio.run(readers())
    queue.close()


class _FailingQueue(AccessLogQueueAPI):
    def __init__(self) -> None:
        self.calls = 0

    def enqueue(self, entries: Sequence[AccessEntry]) -> None:
        self.calls += 1
        raise RuntimeError("disk full")

    def pending(self, limit: int, fence: int | None = None) -> list[tuple[int, AccessEntry]]:
        return []

    def remove(self, ids: Sequence[int]) -> None:
        return None

    def count(self) -> int:
        return 0


def test_a_failed_commit_fails_every_caller() -> None:
    queue = GroupCommitAccessLogQueue(_FailingQueue(), window=0.005)
    errors: list[BaseException] = []

    def reader(i: int) -> None:
        try:
            queue.enqueue([_entry(i)])
        except RuntimeError as err:
            errors.append(err)

    _in_threads([threading.Thread(target=reader, args=(i,)) for i in range(8)])
    assert len(errors) == 8

    async def one() -> None:
        with pytest.raises(RuntimeError, match="disk full"):
            await queue.enqueue_async([_entry(99)])

    asyncio.run(one())
    queue.close()


def test_the_default_enqueue_async_runs_enqueue(dbs: SqlDatabases) -> None:
    queue = SqlAccessLogQueue(dbs.connect())
    asyncio.run(queue.enqueue_async([_entry(1), _entry(2)]))
    assert queue.count() == 2
