"""A py-evm key-value database kept in one SQLite file.

py-evm stores everything (trie nodes, headers, bodies, receipts, canonical-chain
lookups) as opaque ``bytes -> bytes`` pairs through ``eth.abc.DatabaseAPI``. Since
py-evm 0.12 ships no on-disk backend, :class:`SQLiteDB` provides one.

Writes are buffered in memory and reach the file only on :meth:`SQLiteDB.commit`, as
one SQLite transaction. The embedded chain commits once per mined block, so the file
always holds a whole number of blocks: a crash loses at most the block being built,
never half of one.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from eth.db.backends.base import BaseDB

__all__ = ["ChainDBError", "ChainDBLockedError", "ChainDBMismatchError", "SQLiteDB"]

# Bumped if the tables below ever change shape.
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS kv (k BLOB PRIMARY KEY, v BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value BLOB NOT NULL);
"""

# Marks a buffered deletion (py-evm values are never None).
_DELETED = None


class ChainDBError(RuntimeError):
    """The chain DB file cannot be used."""


class ChainDBLockedError(ChainDBError):
    """The chain DB file is already open, in this process or another one."""


class ChainDBMismatchError(ChainDBError):
    """The file holds something else than the chain requested."""


class SQLiteDB(BaseDB):
    """A ``DatabaseAPI`` over a SQLite file, for wrapping in ``eth.db.atomic.AtomicDB``.

    Reads see buffered writes at once; :meth:`commit` makes them durable atomically.
    The file is locked for the lifetime of the object: two chains writing the same
    file would each keep their own idea of the head and corrupt it.
    """

    def __init__(self, path: Path) -> None:
        """Open (creating if needed) the database at ``path`` and lock it."""
        self.path = Path(path)
        # isolation_level=None: the sqlite3 module must not open transactions behind
        # our back; commit() issues BEGIN/COMMIT itself. check_same_thread=False: the
        # owner serialises access (EmbeddedChain holds a lock around every request).
        self._conn: sqlite3.Connection | None = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=1.0
        )
        try:
            # EXCLUSIVE locking keeps the write lock after the first write, so a second
            # opener fails fast instead of sharing (and corrupting) the chain.
            self._conn.execute("PRAGMA locking_mode=EXCLUSIVE")
            self._refuse_foreign_file()
            # WAL + synchronous=FULL: each commit is one append and one fsync of the WAL,
            # durable against process crashes and power loss.
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.execute("BEGIN IMMEDIATE")  # takes the lock now, or fails
            self._conn.executescript(_SCHEMA)  # executescript COMMITs first
        except BaseException as exc:
            self._conn.close()
            self._conn = None
            if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
                raise ChainDBLockedError(
                    f"chain DB {self.path} is in use by another EmbeddedChain or process"
                ) from exc
            if isinstance(exc, sqlite3.DatabaseError) and "not a database" in str(exc):
                raise ChainDBMismatchError(f"{self.path} is not an embedded chain DB") from exc
            raise
        self._pending: dict[bytes, bytes | None] = {}

    def _refuse_foreign_file(self) -> None:
        """Leave alone a SQLite file that holds anything but a chain DB."""
        tables = {
            name
            for (name,) in self._connection.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'"
            )
        }
        if tables - {"kv", "meta"}:
            raise ChainDBMismatchError(
                f"{self.path} is not an embedded chain DB (it has tables {sorted(tables)})"
            )

    # -- DatabaseAPI ----------------------------------------------------------
    def __getitem__(self, key: bytes) -> bytes:
        if key in self._pending:
            value = self._pending[key]
            if value is _DELETED:
                raise KeyError(key)
            return value
        row = self._connection.execute("SELECT v FROM kv WHERE k = ?", (key,)).fetchone()
        if row is None:
            raise KeyError(key)
        return row[0]

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self._pending[key] = value

    def __delitem__(self, key: bytes) -> None:
        if not self._exists(key):
            raise KeyError(key)
        self._pending[key] = _DELETED

    def _exists(self, key: bytes) -> bool:
        try:
            self[key]
        except KeyError:
            return False
        return True

    # -- transactions ---------------------------------------------------------
    def commit(self, meta: dict[str, bytes] | None = None) -> None:
        """Write all buffered changes, and ``meta`` entries, in one SQLite transaction."""
        if not self._pending and not meta:
            return
        conn = self._connection
        upserts = [(k, v) for k, v in self._pending.items() if v is not _DELETED]
        deletes = [(k,) for k, v in self._pending.items() if v is _DELETED]
        conn.execute("BEGIN")
        try:
            conn.executemany("INSERT OR REPLACE INTO kv (k, v) VALUES (?, ?)", upserts)
            conn.executemany("DELETE FROM kv WHERE k = ?", deletes)
            conn.executemany(
                "INSERT OR REPLACE INTO meta (name, value) VALUES (?, ?)",
                (meta or {}).items(),
            )
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:  # SQLite may have rolled back already (I/O errors)
                conn.execute("ROLLBACK")
            raise  # the buffer is kept: the next commit retries it
        self._pending.clear()

    def close(self) -> None:
        """Close the file, dropping uncommitted changes; idempotent."""
        if self._conn is not None:
            self._pending.clear()
            self._conn.close()
            self._conn = None

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._conn is None

    # -- metadata (outside py-evm's key space) --------------------------------
    def get_meta(self, name: str) -> bytes | None:
        """A committed metadata value, or None."""
        row = self._connection.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        return None if row is None else row[0]

    def is_empty(self) -> bool:
        """Whether nothing was ever committed to the file."""
        conn = self._connection
        return all(
            conn.execute(f"SELECT 1 FROM {table} LIMIT 1").fetchone() is None
            for table in ("kv", "meta")
        )

    @property
    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise sqlite3.ProgrammingError(f"chain DB {self.path} is closed")
        return self._conn
