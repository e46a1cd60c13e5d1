"""A small SQL database API for the node's own state (credentials, directory, queues, key
audit log), with an SQLite and a MySQL / MariaDB implementation.

Stores write portable SQL: ``?`` placeholders (translated for MySQL), and the few dialect
differences behind helpers (``insert_or_ignore``, ``upsert``, ``for_update``). Schemas
differ (MySQL needs bounded ``VARCHAR`` keys and ``AUTO_INCREMENT``), so each store ships
one migration list per dialect; ``migrate`` keeps one schema version per component, so
several stores share one file or database.

SQLite: one connection per ``SQLiteDatabase``, WAL and a busy timeout, so several
processes share ``node.sqlite``; a write transaction (``BEGIN IMMEDIATE``) excludes every
other writer of the file. MySQL: a small pool of connections; a transaction naming a
``lock`` excludes every other transaction naming it, in any process.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import sqlite3
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import pymysql
import pymysql.cursors
from pymysql.connections import Connection as _Connection

from storage.backends.mysql import (
    _DATABASE_NAME,
    _SQL_MODE,
    _ConnectionPool,
    _error_code,
    _is_connection_error,
    create_database,
    translate_error,
)
from storage.exceptions import BackendUnavailable, ConstraintViolation, StorageError

__all__ = [
    "Dialect",
    "MySQLDatabase",
    "SQLiteDatabase",
    "SqlCursorAPI",
    "SqlDatabaseAPI",
    "open_database",
]

logger = logging.getLogger(__name__)

Dialect = Literal["sqlite", "mysql"]
Row = tuple[Any, ...]


class SqlCursorAPI(ABC):
    """A cursor inside one transaction (``SqlDatabaseAPI.transaction``)."""

    @abstractmethod
    def execute(self, sql: str, params: Sequence[Any] = ()) -> SqlCursorAPI:
        """Run one statement with ``?`` placeholders; return this cursor (to fetch)."""

    @abstractmethod
    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> SqlCursorAPI:
        """Run one statement once per parameter row."""

    @abstractmethod
    def fetchone(self) -> Row | None:
        """The next row of the last statement, None when there is none."""

    @abstractmethod
    def fetchall(self) -> list[Row]:
        """The remaining rows of the last statement."""

    @property
    @abstractmethod
    def rowcount(self) -> int:
        """Rows changed by the last statement."""

    @property
    @abstractmethod
    def lastrowid(self) -> int | None:
        """The auto-increment id of the last inserted row."""


class SqlDatabaseAPI(ABC):
    """A SQL database shared by the node's stores (and, through it, by its processes)."""

    @property
    @abstractmethod
    def dialect(self) -> Dialect:
        """ "sqlite" or "mysql": which migration list a store applies."""

    @abstractmethod
    def migrate(self, component: str, migrations: Sequence[str]) -> int:
        """Apply ``component``'s migrations not yet applied, in order; return its version.

        Each migration is a script of ``;``-separated statements; ``migrations[i]`` takes the
        component from version ``i`` to ``i + 1``. Shipped entries are never edited. Raises
        StorageError if a statement fails (MySQL: re-runnable statements, so a migration
        interrupted halfway completes on the next run)."""

    @abstractmethod
    def transaction(
        self, *, lock: str | None = None
    ) -> contextlib.AbstractContextManager[SqlCursorAPI]:
        """A cursor in one transaction, committed when the block ends, rolled back on error.

        ``lock`` names a mutex held until the end of the transaction: two transactions
        naming the same lock never overlap, in any process (read-then-write sections such
        as the key audit log's append). Raises ConstraintViolation for a broken constraint,
        BackendUnavailable if the database cannot be reached; errors raised by the block
        pass through unchanged."""

    @abstractmethod
    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """Run one read statement outside a transaction and return its rows."""

    @abstractmethod
    def close(self) -> None:
        """Close the connections."""

    # -- dialect helpers ---------------------------------------------------------------

    def insert_or_ignore(self, table: str, columns: Sequence[str], key: str) -> str:
        """INSERT of ``columns`` that does nothing when a row with the same ``key`` (the
        primary key) exists."""
        values = ", ".join("?" * len(columns))
        names = ", ".join(columns)
        if self.dialect == "sqlite":
            return f"INSERT OR IGNORE INTO {table} ({names}) VALUES ({values})"
        # Not INSERT IGNORE: that would also downgrade a too-long value to a warning.
        return (
            f"INSERT INTO {table} ({names}) VALUES ({values}) ON DUPLICATE KEY UPDATE {key} = {key}"
        )

    def upsert(self, table: str, columns: Sequence[str], key: str, update: Sequence[str]) -> str:
        """INSERT of ``columns``; when a row with the same ``key`` exists, its ``update``
        columns take the new values instead."""
        insert = (
            f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
        )
        if self.dialect == "sqlite":
            sets = ", ".join(f"{c} = excluded.{c}" for c in update)
            return f"{insert} ON CONFLICT({key}) DO UPDATE SET {sets}"
        sets = ", ".join(f"{c} = VALUES({c})" for c in update)
        return f"{insert} ON DUPLICATE KEY UPDATE {sets}"

    def for_update(self, *, skip_locked: bool = False) -> str:
        """The suffix of a SELECT that locks its rows until the transaction ends (MySQL;
        SQLite's write transactions already exclude every other writer). ``skip_locked``:
        rows another transaction locked are left out instead of waited for."""
        if self.dialect == "sqlite":
            return ""
        return " FOR UPDATE SKIP LOCKED" if skip_locked else " FOR UPDATE"


def open_database(target: Path | SqlDatabaseAPI) -> tuple[SqlDatabaseAPI, bool]:
    """``target`` itself, or an SQLite database opened on the path; the flag says whether
    the caller opened it (and so closes it)."""
    if isinstance(target, SqlDatabaseAPI):
        return target, False
    return SQLiteDatabase(Path(target)), True


def _statements(script: str) -> list[str]:
    return [s for s in (part.strip() for part in script.split(";")) if s]


# -- SQLite --------------------------------------------------------------------------------


def _sqlite_error(err: sqlite3.Error) -> StorageError:
    if isinstance(err, sqlite3.IntegrityError):
        return ConstraintViolation(f"state database constraint failed: {err}")
    message = str(err)
    if isinstance(err, sqlite3.OperationalError) and ("locked" in message or "busy" in message):
        return BackendUnavailable("state database stayed locked by another process")
    return StorageError(f"state database error: {message}")


class _SQLiteCursor(SqlCursorAPI):
    def __init__(self, cur: sqlite3.Cursor) -> None:
        self._cur = cur

    def execute(self, sql: str, params: Sequence[Any] = ()) -> SqlCursorAPI:
        self._cur.execute(sql, tuple(params))
        return self

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> SqlCursorAPI:
        self._cur.executemany(sql, [tuple(r) for r in rows])
        return self

    def fetchone(self) -> Row | None:
        row: Row | None = self._cur.fetchone()
        return row

    def fetchall(self) -> list[Row]:
        return list(self._cur.fetchall())

    @property
    def rowcount(self) -> int:
        return self._cur.rowcount

    @property
    def lastrowid(self) -> int | None:
        return self._cur.lastrowid


class SQLiteDatabase(SqlDatabaseAPI):
    """One connection guarded by a lock: the node's own tables are small and hot, and a
    single writer avoids SQLITE_BUSY under FastAPI's thread pool. WAL and a 10 s busy
    timeout let several processes share the file (each write waits for the others).

    ``component`` and ``migrations`` (optional) are applied at once, as ``migrate`` does.
    """

    def __init__(
        self, path: Path, component: str | None = None, migrations: Sequence[str] = ()
    ) -> None:
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA busy_timeout=10000")
        # FULL: an acknowledged write (token, queued audit entry) survives power loss.
        self._conn.execute("PRAGMA synchronous=FULL")
        if component is not None:
            self.migrate(component, migrations)

    @property
    def dialect(self) -> Dialect:
        return "sqlite"

    def migrate(self, component: str, migrations: Sequence[str]) -> int:
        with self.transaction() as cur:
            cur.execute(
                "CREATE TABLE IF NOT EXISTS schema_versions"
                " (component TEXT PRIMARY KEY, version INTEGER NOT NULL)"
            )
            row = cur.execute(
                "SELECT version FROM schema_versions WHERE component = ?", (component,)
            ).fetchone()
            version = int(row[0]) if row else 0
            for number, script in enumerate(migrations[version:], start=version + 1):
                for statement in _statements(script):
                    cur.execute(statement)
                cur.execute(
                    "INSERT OR REPLACE INTO schema_versions VALUES (?, ?)", (component, number)
                )
                version = number
            return version

    @contextmanager
    def transaction(self, *, lock: str | None = None) -> Iterator[SqlCursorAPI]:
        # ``lock`` needs nothing more: BEGIN IMMEDIATE already excludes every other writer.
        with self._lock:
            cur = self._conn.cursor()
            try:
                cur.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as err:
                raise _sqlite_error(err) from err
            try:
                yield _SQLiteCursor(cur)
            except sqlite3.Error as err:
                cur.execute("ROLLBACK")
                raise _sqlite_error(err) from err
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            try:
                cur.execute("COMMIT")
            except sqlite3.Error as err:
                with contextlib.suppress(sqlite3.Error):
                    cur.execute("ROLLBACK")
                raise _sqlite_error(err) from err

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        with self._lock:
            try:
                return self._conn.execute(sql, tuple(params)).fetchall()
            except sqlite3.Error as err:
                raise _sqlite_error(err) from err

    def close(self) -> None:
        with self._lock:
            self._conn.close()


# -- MySQL / MariaDB -----------------------------------------------------------------------


@functools.lru_cache(maxsize=512)
def _mysql_sql(sql: str) -> str:
    """``?`` placeholders to pymysql's ``%s`` (outside quoted literals); ``%`` doubled,
    since pymysql formats the whole statement."""
    out: list[str] = []
    quote: str | None = None
    for ch in sql:
        if quote is not None:
            if ch == quote:
                quote = None
        elif ch in "'\"`":
            quote = ch
        elif ch == "?":
            out.append("%s")
            continue
        out.append("%%" if ch == "%" else ch)
    return "".join(out)


class _MySQLCursor(SqlCursorAPI):
    def __init__(self, cur: pymysql.cursors.Cursor) -> None:
        self._cur = cur

    def execute(self, sql: str, params: Sequence[Any] = ()) -> SqlCursorAPI:
        self._cur.execute(_mysql_sql(sql), tuple(params))
        return self

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> SqlCursorAPI:
        if rows:
            self._cur.executemany(_mysql_sql(sql), [tuple(r) for r in rows])
        return self

    def fetchone(self) -> Row | None:
        row = self._cur.fetchone()
        return None if row is None else tuple(row)

    def fetchall(self) -> list[Row]:
        return [tuple(r) for r in self._cur.fetchall()]

    @property
    def rowcount(self) -> int:
        return int(self._cur.rowcount)

    @property
    def lastrowid(self) -> int | None:
        return self._cur.lastrowid


_MYSQL_TABLE_OPTIONS = "ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"
# Tolerated while re-running a migration interrupted halfway (DDL commits one statement at a
# time): table exists, duplicate column, duplicate key name, trigger exists.
_RERUN_CODES = frozenset({1050, 1060, 1061, 1359})


class MySQLDatabase(SqlDatabaseAPI):
    """The state tables in MySQL 8 / MariaDB 10.6+ (InnoDB), through a small pool.

    Safe to share between threads and stores (one per process is enough). Errors reaching
    the server map to ``BackendUnavailable``; messages carry host, port and database, never
    the password. Schema versions per component live in ``schema_versions``; named locks
    (``transaction(lock=...)``) are rows of ``sql_locks``, locked exclusively.

    Args:
        host, port, user, password, database: where the state lives (the index database).
        pool_size: the most connections open at once (threads beyond it wait).
        connect_timeout, read_timeout, write_timeout: socket timeouts in seconds.
        pool_timeout: seconds a caller waits for a free connection.
        ping_after: a pooled connection idle this long is pinged before use.
        create_database_if_missing: ``CREATE DATABASE IF NOT EXISTS`` first (tests).
    """

    def __init__(
        self,
        *,
        host: str,
        port: int,
        user: str,
        password: str,
        database: str,
        pool_size: int = 8,
        connect_timeout: float = 5,
        read_timeout: float = 30,
        write_timeout: float = 30,
        pool_timeout: float = 30,
        ping_after: float = 1.0,
        create_database_if_missing: bool = False,
    ) -> None:

        if not _DATABASE_NAME.fullmatch(database):
            raise ValueError("database name must be 1-64 letters, digits or underscores")
        if pool_size < 1:
            raise ValueError("pool_size must be at least 1")
        self._database = database
        self._where = f"{host}:{port}/{database}"

        def connect(database: str | None = database) -> _Connection:
            return pymysql.connect(
                host=host,
                port=port,
                user=user,
                password=password,
                database=database,
                charset="utf8mb4",
                connect_timeout=connect_timeout,
                read_timeout=read_timeout,
                write_timeout=write_timeout,
                sql_mode=_SQL_MODE,
                autocommit=True,  # reads alone; writes in an explicit transaction
                binary_prefix=True,
            )

        self._connect = connect
        self._pool = _ConnectionPool(connect, pool_size, pool_timeout, ping_after)
        try:
            if create_database_if_missing:
                self._create_database()
            for statement in (
                "CREATE TABLE IF NOT EXISTS schema_versions (component VARCHAR(64) NOT NULL"
                f" PRIMARY KEY, version INT NOT NULL) {_MYSQL_TABLE_OPTIONS}",
                "CREATE TABLE IF NOT EXISTS sql_locks (name VARCHAR(64) NOT NULL PRIMARY KEY)"
                f" {_MYSQL_TABLE_OPTIONS}",
            ):
                self.query(statement)
        except BaseException:
            self._pool.close()
            raise

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._where!r})"

    @property
    def dialect(self) -> Dialect:
        return "mysql"

    # -- plumbing ------------------------------------------------------------------------

    def _translate(self, err: BaseException) -> Exception:
        code = _error_code(err)
        if isinstance(err, pymysql.err.IntegrityError) or code == 1644:  # 1644: SIGNAL
            return ConstraintViolation(f"state database constraint failed ({code})")
        return translate_error(err, name="state database", where=self._where)

    def _create_database(self) -> None:
        create_database(self._connect, self._database, self._translate)

    def _stale(self, err: BaseException, verified: bool) -> bool:
        """A pooled connection used unpinged was dead before anything was done on it."""

        timed_out = isinstance(err.__context__, TimeoutError)
        return not verified and _is_connection_error(err) and not timed_out

    def _acquire(self) -> tuple[_Connection, bool]:
        """A pooled connection; a server that cannot be reached is ``BackendUnavailable``
        (a new connection is made here when the pool has no idle one)."""
        try:
            return self._pool.acquire()
        except (pymysql.err.Error, OSError) as err:
            raise self._translate(err) from err

    def _begin(self) -> _Connection:
        """A pooled connection with a transaction begun (a dead idle one is replaced)."""

        for attempt in (1, 2):
            conn, verified = self._acquire()
            try:
                conn.begin()
                return conn
            except (pymysql.err.Error, OSError) as err:
                self._pool.release(conn, reusable=False)
                if attempt == 1 and self._stale(err, verified):
                    self._pool.distrust_idle()
                    continue
                raise self._translate(err) from err
        raise AssertionError("unreachable")  # pragma: no cover

    @contextmanager
    def transaction(self, *, lock: str | None = None) -> Iterator[SqlCursorAPI]:

        conn = self._begin()
        reusable = False
        try:
            try:
                with conn.cursor() as raw:
                    cur = _MySQLCursor(raw)
                    if lock is not None:
                        # An exclusive lock on the row, held until commit or rollback.
                        cur.execute(
                            "INSERT INTO sql_locks (name) VALUES (?)"
                            " ON DUPLICATE KEY UPDATE name = name",
                            (lock,),
                        )
                    yield cur
            except BaseException as err:
                reusable = self._rollback(conn)
                if isinstance(err, pymysql.err.Error | OSError):
                    raise self._translate(err) from err
                raise
            try:
                conn.commit()
            except (pymysql.err.Error, OSError) as err:
                raise BackendUnavailable(
                    f"lost the state database at {self._where} while committing; "
                    "the write may or may not have been applied"
                ) from err
            reusable = True
        finally:
            self._pool.release(conn, reusable=reusable)

    @staticmethod
    def _rollback(conn: _Connection) -> bool:
        try:
            conn.rollback()
        except Exception:
            return False  # the link is gone: the server rolls back on disconnect
        return True

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:

        for attempt in (1, 2):
            conn, verified = self._acquire()
            reusable = False
            try:
                with conn.cursor() as cur:
                    cur.execute(_mysql_sql(sql), tuple(params))
                    rows = [tuple(r) for r in cur.fetchall()]
                reusable = True
                return rows
            except (pymysql.err.Error, OSError) as err:
                reusable = not _is_connection_error(err)
                if attempt == 1 and self._stale(err, verified):
                    self._pool.distrust_idle()
                    continue
                raise self._translate(err) from err
            finally:
                self._pool.release(conn, reusable=reusable)
        raise AssertionError("unreachable")  # pragma: no cover

    def migrate(self, component: str, migrations: Sequence[str]) -> int:
        """See ``SqlDatabaseAPI.migrate``; concurrent callers (processes starting at once)
        are serialised by a server-side named lock."""

        lock_name = f"emr_state_migrate:{self._database}"[:64]
        conn, _verified = self._acquire()
        reusable = False
        try:
            with conn.cursor() as raw:
                cur = _MySQLCursor(raw)
                row = cur.execute("SELECT GET_LOCK(?, ?)", (lock_name, 60)).fetchone()
                if not row or row[0] != 1:
                    raise StorageError("timed out waiting for another process's migration")
                try:
                    found = cur.execute(
                        "SELECT version FROM schema_versions WHERE component = ?", (component,)
                    ).fetchone()
                    version = int(found[0]) if found else 0
                    for number, script in enumerate(migrations[version:], start=version + 1):
                        for statement in _statements(script):
                            try:
                                cur.execute(statement)
                            except pymysql.err.MySQLError as err:
                                if _error_code(err) not in _RERUN_CODES:
                                    raise
                        cur.execute(
                            "INSERT INTO schema_versions (component, version) VALUES (?, ?)"
                            " ON DUPLICATE KEY UPDATE version = VALUES(version)",
                            (component, number),
                        )
                        logger.info("state database: %s migrated to v%d", component, number)
                        version = number
                finally:
                    with contextlib.suppress(pymysql.err.Error, OSError):
                        cur.execute("SELECT RELEASE_LOCK(?)", (lock_name,))
            reusable = True
            return version
        except (pymysql.err.Error, OSError) as err:
            raise self._translate(err) from err
        finally:
            self._pool.release(conn, reusable=reusable)

    def close(self) -> None:
        self._pool.close()
