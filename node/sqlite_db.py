"""A small thread-safe SQLite wrapper with versioned migrations, for the node's own state."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any


class SQLiteDatabase:
    """One connection guarded by a lock: the node's own tables are small and hot, and a
    single writer avoids SQLITE_BUSY under FastAPI's thread pool."""

    def __init__(self, path: Path, component: str, migrations: Sequence[str]) -> None:
        """Open ``path`` and apply ``component``'s migrations not yet applied. Several
        components may share one file; each keeps its own schema version."""
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA busy_timeout=10000")
        # FULL: an acknowledged write (token, queued audit entry) survives power loss.
        self._conn.execute("PRAGMA synchronous=FULL")
        self._migrate(component, migrations)

    def _migrate(self, component: str, migrations: Sequence[str]) -> None:
        with self.transaction() as cur:
            cur.execute(
                "CREATE TABLE IF NOT EXISTS schema_versions"
                " (component TEXT PRIMARY KEY, version INTEGER NOT NULL)"
            )
            row = cur.execute(
                "SELECT version FROM schema_versions WHERE component = ?", (component,)
            ).fetchone()
            version = row[0] if row else 0
            for number, script in enumerate(migrations[version:], start=version + 1):
                for statement in filter(None, (s.strip() for s in script.split(";"))):
                    cur.execute(statement)
                cur.execute(
                    "INSERT OR REPLACE INTO schema_versions VALUES (?, ?)", (component, number)
                )

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Cursor]:
        with self._lock:
            cur = self._conn.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                yield cur
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            cur.execute("COMMIT")

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    def close(self) -> None:
        with self._lock:
            self._conn.close()
