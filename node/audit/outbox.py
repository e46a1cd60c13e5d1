"""The access-log outbox: a read is logged durably before its data is returned, and reaches
the chain in a batched ``AccessLog.recordAccesses`` call.

The queue lives in the node's state DB (SQLite ``node.sqlite`` or the MySQL index
database), so every API process enqueues into it and the worker drains it. Workers claim
rows (see ``SqlAccessLogQueue.pending``): two workers never hold the same row. Delivery is
at least once: a worker that dies between its ``recordAccesses`` transaction and
``remove`` leaves its rows claimed; once the claim lapses the next worker sends them again,
so the on-chain trail may show one read twice, never none.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from node.audit.abc import AccessLogQueueAPI
from node.chain.models import AccessEntry
from node.coalescer import Coalescer
from node.consent.typed_data import AccessBasis
from storage.sql import SqlDatabaseAPI, open_database

__all__ = [
    "DEFAULT_CLAIM_TTL",
    "GroupCommitAccessLogQueue",
    "SQLiteAccessLogQueue",
    "SqlAccessLogQueue",
]

DEFAULT_CLAIM_TTL = 60.0  # seconds a claim keeps rows from another worker

_MIGRATIONS = [
    """
    CREATE TABLE access_outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, patient TEXT NOT NULL,
        record_id BLOB NOT NULL, actor TEXT NOT NULL, granted INTEGER NOT NULL,
        basis INTEGER NOT NULL, queued_at INTEGER NOT NULL)
    """,
    # Claims: the lease fence of the worker sending the row and when it claimed it.
    """
    ALTER TABLE access_outbox ADD COLUMN claimed_by INTEGER;
    ALTER TABLE access_outbox ADD COLUMN claimed_at REAL
    """,
]
_MYSQL_MIGRATIONS = [
    """
    CREATE TABLE IF NOT EXISTS access_outbox (id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
        patient VARCHAR(64) NOT NULL, record_id VARBINARY(32) NOT NULL,
        actor VARCHAR(64) NOT NULL, granted TINYINT NOT NULL, basis INT NOT NULL,
        queued_at BIGINT NOT NULL, claimed_by BIGINT NULL, claimed_at DOUBLE NULL)
        ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin
    """,
]
_COLUMNS = "id, patient, record_id, actor, granted, basis"


class SqlAccessLogQueue(AccessLogQueueAPI):
    """The outbox in the node's state DB.

    Args:
        db: the state database (SQLite or MySQL), or the path of an SQLite file that the
            queue opens and closes itself.
        claim_ttl: seconds rows claimed by one worker stay out of another's reach (a
            worker that lost its lease and died leaves claims behind; they lapse after
            this). Longer than the slowest ``recordAccesses`` transaction.
    """

    def __init__(self, db: Path | SqlDatabaseAPI, *, claim_ttl: float = DEFAULT_CLAIM_TTL) -> None:
        self._db, self._owns_db = open_database(db)
        self._db.migrate(
            "access_outbox", _MIGRATIONS if self._db.dialect == "sqlite" else _MYSQL_MIGRATIONS
        )
        self.claim_ttl = claim_ttl

    def enqueue(self, entries: Sequence[AccessEntry]) -> None:
        now = int(time.time())
        with self._db.transaction() as cur:
            cur.executemany(
                "INSERT INTO access_outbox (patient, record_id, actor, granted, basis, queued_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (e.patient, e.record_id, e.actor, int(e.granted), int(e.basis), now)
                    for e in entries
                ],
            )

    def pending(self, limit: int, fence: int | None = None) -> list[tuple[int, AccessEntry]]:
        """Claim up to ``limit`` entries for the worker holding lease ``fence`` and return
        them, oldest first.

        A row is claimable when nobody claimed it, when ``fence`` itself did (a send that
        failed is retried by the same worker), or when its claim is older than
        ``claim_ttl`` and was made under an older fence (its worker lost the lease). A row
        claimed under a newer fence is never returned to an older one. On MySQL rows
        another claimer has locked are skipped (SKIP LOCKED); on SQLite claims are
        serialised by the write lock. ``fence=None`` reads without claiming (one process
        alone with the queue, as before the lease existed)."""
        if fence is None:
            rows = self._db.query(
                f"SELECT {_COLUMNS} FROM access_outbox ORDER BY id LIMIT ?", (limit,)
            )
            return [_entry(r) for r in rows]
        now = time.time()
        with self._db.transaction() as cur:
            rows = cur.execute(
                f"SELECT {_COLUMNS} FROM access_outbox WHERE claimed_by IS NULL"
                " OR claimed_by = ? OR (claimed_by < ? AND claimed_at < ?)"
                " ORDER BY id LIMIT ?" + self._db.for_update(skip_locked=True),
                (fence, fence, now - self.claim_ttl, limit),
            ).fetchall()
            if rows:
                cur.executemany(
                    "UPDATE access_outbox SET claimed_by = ?, claimed_at = ? WHERE id = ?",
                    [(fence, now, r[0]) for r in rows],
                )
        return [_entry(r) for r in rows]

    def remove(self, ids: Sequence[int]) -> None:
        with self._db.transaction() as cur:
            cur.executemany("DELETE FROM access_outbox WHERE id = ?", [(i,) for i in ids])

    def count(self) -> int:
        return int(self._db.query("SELECT COUNT(*) FROM access_outbox")[0][0])

    def close(self) -> None:
        """Close the database if this queue opened it (from a path)."""
        if self._owns_db:
            self._db.close()


def _entry(r: tuple[Any, ...]) -> tuple[int, AccessEntry]:
    return int(r[0]), AccessEntry(str(r[1]), bytes(r[2]), str(r[3]), bool(r[4]), AccessBasis(r[5]))


SQLiteAccessLogQueue = SqlAccessLogQueue  # the name before MySQL (issue 11)


DEFAULT_GROUP_WINDOW = 0.002  # seconds an enqueue waits for company before its commit


class GroupCommitAccessLogQueue(AccessLogQueueAPI):
    """Group commit in front of any queue: ``enqueue`` calls from many threads (one per
    read) share one ``inner.enqueue`` transaction, so N concurrent reads pay one commit
    rather than N. The audit promise holds: ``enqueue`` returns only once its entries are
    durable, and raises if their transaction failed (then none of the batch was stored).
    Claims, removal and counts go straight to ``inner``.

    Args:
        inner: the queue that stores the entries.
        window: seconds the first enqueue of a batch waits for others (a lone read pays
            at most this on top of its commit).
        max_batch: enqueue calls per transaction at most.
    """

    def __init__(
        self,
        inner: AccessLogQueueAPI,
        *,
        window: float = DEFAULT_GROUP_WINDOW,
        max_batch: int = 512,
    ) -> None:
        self._inner = inner
        self._batcher: Coalescer[Sequence[AccessEntry], None] = Coalescer(
            self._commit, window=window, max_batch=max_batch, name="access-log-commit"
        )

    @property
    def inner(self) -> AccessLogQueueAPI:
        return self._inner

    def _commit(self, batches: Sequence[Sequence[AccessEntry]]) -> list[None]:
        self._inner.enqueue([entry for entries in batches for entry in entries])
        return [None] * len(batches)

    def enqueue(self, entries: Sequence[AccessEntry]) -> None:
        if entries:
            self._batcher.submit(list(entries))

    async def enqueue_async(self, entries: Sequence[AccessEntry]) -> None:
        """Await the commit on the event loop: no thread waits for the batch."""
        if entries:
            await self._batcher.submit_async(list(entries))

    def pending(self, limit: int, fence: int | None = None) -> list[tuple[int, AccessEntry]]:
        return self._inner.pending(limit, fence)

    def remove(self, ids: Sequence[int]) -> None:
        self._inner.remove(ids)

    def count(self) -> int:
        return self._inner.count()

    def close(self) -> None:
        """Commit what is queued and stop the committer (``inner`` is closed by whoever
        opened it)."""
        self._batcher.close()
