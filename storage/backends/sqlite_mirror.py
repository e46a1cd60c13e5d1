"""The audit mirror of the embedded default: chain events in SQLite, one table."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from storage.abc import AuditMirrorAPI
from storage.event_rows import EVENT_COLUMNS, EVENT_SELECT, event_filters, event_row, row_event
from storage.exceptions import BackendUnavailable

_SCHEMA = [
    f"CREATE TABLE IF NOT EXISTS mirror_events ({EVENT_COLUMNS.replace(', ', ' , ')},"
    " PRIMARY KEY (block_number, log_index))",
    "CREATE INDEX IF NOT EXISTS mirror_patient ON mirror_events (patient, block_time)",
    "CREATE INDEX IF NOT EXISTS mirror_subject ON mirror_events (subject, block_time)",
    "CREATE INDEX IF NOT EXISTS mirror_actor ON mirror_events (actor, block_time)",
    "CREATE TABLE IF NOT EXISTS mirror_cursor (id INTEGER PRIMARY KEY CHECK (id = 1),"
    " block INTEGER NOT NULL)",
]


class SQLiteAuditMirror(AuditMirrorAPI):
    def __init__(self, path: Path) -> None:
        self._lock = threading.Lock()
        try:
            self._conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA busy_timeout=10000")
            for statement in _SCHEMA:
                self._conn.execute(statement)
        except sqlite3.Error as err:
            raise BackendUnavailable(f"cannot open the audit mirror {path.name}") from err

    def mirror_events(self, events: Sequence[Mapping[str, Any]], up_to_block: int) -> None:
        rows = []
        for event in events:
            _table, row = event_row(event)
            if row[0] > up_to_block:
                raise ValueError(f"event in block {row[0]} is beyond block {up_to_block}")
            rows.append(row)
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.executemany(
                    f"INSERT OR REPLACE INTO mirror_events ({EVENT_COLUMNS})"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    rows,
                )
                self._conn.execute(
                    "INSERT INTO mirror_cursor VALUES (1, ?) ON CONFLICT(id) DO UPDATE"
                    " SET block = MAX(block, excluded.block)",
                    (up_to_block,),
                )
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def mirrored_events(
        self,
        *,
        patient: str | None = None,
        record_id: bytes | None = None,
        actor: str | None = None,
        since: int | None = None,
        until: int | None = None,
        limit: int = 1000,
    ) -> list[dict[str, Any]]:
        clauses, params = event_filters(
            "?", patient=patient, record_id=record_id, actor=actor, since=since, until=until
        )
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        with self._lock:
            rows = self._conn.execute(
                f"SELECT {EVENT_SELECT} FROM mirror_events{where}"
                " ORDER BY block_number, log_index LIMIT ?",
                [*params, int(limit)],
            ).fetchall()
        return [row_event(r) for r in rows]

    def mirror_cursor(self) -> int:
        with self._lock:
            row = self._conn.execute("SELECT block FROM mirror_cursor WHERE id = 1").fetchone()
        return int(row[0]) if row else -1

    def close(self) -> None:
        with self._lock:
            self._conn.close()
