"""SQLite-backed access-log queue: a read is logged durably before its data is returned,
and reaches the chain in a batched ``AccessLog.recordAccesses`` call."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from node.audit.abc import AccessLogQueueAPI
from node.chain.models import AccessEntry
from node.consent.typed_data import AccessBasis
from node.sqlite_db import SQLiteDatabase

_MIGRATIONS = [
    """
    CREATE TABLE access_outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, patient TEXT NOT NULL,
        record_id BLOB NOT NULL, actor TEXT NOT NULL, granted INTEGER NOT NULL,
        basis INTEGER NOT NULL, queued_at INTEGER NOT NULL)
    """,
]


class SQLiteAccessLogQueue(AccessLogQueueAPI):
    def __init__(self, path: Path) -> None:
        self._db = SQLiteDatabase(path, "access_outbox", _MIGRATIONS)

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

    def pending(self, limit: int) -> list[tuple[int, AccessEntry]]:
        rows = self._db.query(
            "SELECT id, patient, record_id, actor, granted, basis FROM access_outbox"
            " ORDER BY id LIMIT ?",
            (limit,),
        )
        return [
            (r[0], AccessEntry(r[1], bytes(r[2]), r[3], bool(r[4]), AccessBasis(r[5])))
            for r in rows
        ]

    def remove(self, ids: Sequence[int]) -> None:
        with self._db.transaction() as cur:
            cur.executemany("DELETE FROM access_outbox WHERE id = ?", [(i,) for i in ids])

    def count(self) -> int:
        return int(self._db.query("SELECT COUNT(*) FROM access_outbox")[0][0])

    def close(self) -> None:
        self._db.close()
