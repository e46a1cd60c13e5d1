"""Record index in MySQL / MariaDB (the production backend shared by a hospital's nodes).

Besides ``RecordIndexAPI`` the index mirrors the chain's consent and audit events
(``mirror_events``), so audit queries by patient, record, actor and time are served from
indexed tables instead of scanning the chain's logs.

The schema is versioned in the ``schema_migrations`` table: ``MIGRATIONS[i]`` upgrades a
database from version ``i`` to ``i + 1``. Later versions append to the list and never edit a
shipped entry. MySQL commits DDL implicitly, one statement at a time, so a migration cannot
be atomic: every statement is written to be re-runnable (``CREATE TABLE IF NOT EXISTS`` with
the indexes inside), and a migration interrupted halfway is completed by the next run.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import queue
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple, TypeVar

import pymysql
import pymysql.cursors
from pymysql.connections import Connection as _Connection
from pymysql.constants import CR, ER

from storage.abc import AuditMirrorAPI, RecordIndexAPI, WorkerLeaseAPI
from storage.event_rows import (
    CONSENT_EVENTS,
    EVENT_COLUMNS,
    EVENT_SELECT,
    event_filters,
    event_row,
    row_event,
)
from storage.exceptions import (
    BackendUnavailable,
    DuplicateIdentifier,
    DuplicateRecord,
    IntegrityError,
    LeaseLost,
    RecordNotFound,
    StorageError,
)
from storage.models import (
    AnchorBatch,
    AnchorIntent,
    AnchorReceipt,
    KeyUpdate,
    Lease,
    PendingErasure,
    RecordQuery,
    RecordRow,
    StoredKey,
)
from storage.record_rows import (
    DOCUMENT_COLUMNS,
    HASH_SIZE,
    attribute_params,
    check_hash,
    document_params,
    erasure_params,
    join_ids,
    key_update_params,
    query_sql,
    record_filters,
    record_params,
    row_to_batch,
    row_to_pending_erasure,
    row_to_record,
    split_ids,
)

__all__ = ["CONSENT_EVENTS", "MIGRATIONS", "Migration", "MySQLRecordIndex"]

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

# Bound the length of one statement built with an IN (...) list.
_CHUNK = 1000
_DEADLOCK_ATTEMPTS = 3
_DATABASE_NAME = re.compile(r"[A-Za-z0-9_]{1,64}")
# STRICT: a value too long for its column is an error, never silently truncated.
_SQL_MODE = "TRADITIONAL,NO_ENGINE_SUBSTITUTION"

#: Events of the ConsentRegistry, mirrored into ``consent_events``; every other event goes to
#: ``audit_events``.
# Error codes meaning "the server cannot be reached or dropped us", not "the query is wrong".
_UNAVAILABLE_CODES = frozenset(
    {
        CR.CR_CONNECTION_ERROR,
        CR.CR_CONN_HOST_ERROR,
        CR.CR_IPSOCK_ERROR,
        CR.CR_SERVER_GONE_ERROR,
        CR.CR_SERVER_LOST,
        CR.CR_COMMANDS_OUT_OF_SYNC,
        ER.CON_COUNT_ERROR,
        ER.SERVER_SHUTDOWN,
        1927,  # MariaDB ER_CONNECTION_KILLED
        4031,  # MySQL: disconnected by the server for inactivity
    }
)
_UNAVAILABLE_REASONS: dict[int | None, str] = {
    CR.CR_CONNECTION_ERROR: "cannot connect",
    CR.CR_CONN_HOST_ERROR: "cannot connect",
    CR.CR_IPSOCK_ERROR: "cannot connect",
    ER.CON_COUNT_ERROR: "too many connections",
    ER.SERVER_SHUTDOWN: "the server is shutting down",
}
_CREDENTIAL_CODES = frozenset({ER.ACCESS_DENIED_ERROR, ER.DBACCESS_DENIED_ERROR, 1698})


class Migration(NamedTuple):
    """One schema version: what it adds and the re-runnable statements that add it."""

    description: str
    statements: tuple[str, ...]


_TABLE_OPTIONS = "ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"

MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        "records, the anchor outbox, anchored batches and per-record receipts",
        (
            f"""CREATE TABLE IF NOT EXISTS anchor_batches (
                batch_id BIGINT UNSIGNED NOT NULL PRIMARY KEY,
                root BINARY(32) NOT NULL,
                tx_hash VARBINARY(64) NOT NULL,
                block_number BIGINT UNSIGNED NOT NULL,
                hospital VARCHAR(64) NOT NULL,
                record_count INT UNSIGNED NOT NULL,
                anchored_at BIGINT NOT NULL
            ) {_TABLE_OPTIONS}""",
            # ``seq`` breaks ties between records created in the same second. Text columns
            # compare byte-wise (utf8mb4_bin), as in SQLite: addresses are case-sensitive.
            f"""CREATE TABLE IF NOT EXISTS records (
                record_id BINARY(32) NOT NULL PRIMARY KEY,
                seq BIGINT UNSIGNED NOT NULL AUTO_INCREMENT UNIQUE,
                patient VARCHAR(64) NOT NULL,
                category VARCHAR(128) NOT NULL,
                content_type VARCHAR(255) NOT NULL,
                creator VARCHAR(64) NOT NULL,
                cid VARCHAR(255) NOT NULL,
                content_hash BINARY(32) NOT NULL,
                size BIGINT UNSIGNED NOT NULL,
                wrapped_key VARBINARY(1024) NOT NULL,
                kek_version INT UNSIGNED NOT NULL,
                previous_id BINARY(32) NULL,
                created_at BIGINT NOT NULL,
                batch_id BIGINT UNSIGNED NULL,
                KEY records_patient_created (patient, created_at, seq),
                KEY records_creator_category (creator, category, created_at, seq),
                KEY records_created (created_at, seq),
                KEY records_previous (previous_id),
                KEY records_batch (batch_id),
                CONSTRAINT records_batch_fk FOREIGN KEY (batch_id)
                    REFERENCES anchor_batches (batch_id)
            ) {_TABLE_OPTIONS}""",
            f"""CREATE TABLE IF NOT EXISTS anchor_outbox (
                seq BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
                record_id BINARY(32) NOT NULL UNIQUE,
                CONSTRAINT anchor_outbox_record_fk FOREIGN KEY (record_id)
                    REFERENCES records (record_id)
            ) {_TABLE_OPTIONS}""",
            # proof: the Merkle siblings concatenated, 32 bytes each.
            f"""CREATE TABLE IF NOT EXISTS anchor_receipts (
                record_id BINARY(32) NOT NULL PRIMARY KEY,
                batch_id BIGINT UNSIGNED NOT NULL,
                leaf BINARY(32) NOT NULL,
                proof BLOB NOT NULL,
                KEY anchor_receipts_batch (batch_id),
                CONSTRAINT anchor_receipts_record_fk FOREIGN KEY (record_id)
                    REFERENCES records (record_id),
                CONSTRAINT anchor_receipts_batch_fk FOREIGN KEY (batch_id)
                    REFERENCES anchor_batches (batch_id)
            ) {_TABLE_OPTIONS}""",
        ),
    ),
    Migration(
        "mirror of the chain's consent and audit events, and the mirrored block cursor",
        (
            # subject: the record id (audit) or the consent scope (a record id or a category
            # hash); actor: the grantee, clinician, accessing actor or anchoring hospital.
            f"""CREATE TABLE IF NOT EXISTS consent_events (
                block_number BIGINT UNSIGNED NOT NULL,
                log_index INT UNSIGNED NOT NULL,
                event VARCHAR(64) NOT NULL,
                contract VARCHAR(64) NOT NULL,
                tx_hash VARBINARY(64) NOT NULL,
                patient VARCHAR(64) NULL,
                subject BINARY(32) NULL,
                actor VARCHAR(64) NULL,
                args JSON NOT NULL,
                block_time BIGINT NOT NULL,
                PRIMARY KEY (block_number, log_index),
                KEY consent_events_patient_time (patient, block_time),
                KEY consent_events_record_grantee (subject, actor),
                KEY consent_events_actor_time (actor, block_time),
                KEY consent_events_time (block_time)
            ) {_TABLE_OPTIONS}""",
            f"""CREATE TABLE IF NOT EXISTS audit_events (
                block_number BIGINT UNSIGNED NOT NULL,
                log_index INT UNSIGNED NOT NULL,
                event VARCHAR(64) NOT NULL,
                contract VARCHAR(64) NOT NULL,
                tx_hash VARBINARY(64) NOT NULL,
                patient VARCHAR(64) NULL,
                subject BINARY(32) NULL,
                actor VARCHAR(64) NULL,
                args JSON NOT NULL,
                block_time BIGINT NOT NULL,
                PRIMARY KEY (block_number, log_index),
                KEY audit_events_patient_time (patient, block_time),
                KEY audit_events_record_time (subject, block_time),
                KEY audit_events_actor_time (actor, block_time),
                KEY audit_events_time (block_time)
            ) {_TABLE_OPTIONS}""",
            f"""CREATE TABLE IF NOT EXISTS chain_cursor (
                id TINYINT UNSIGNED NOT NULL PRIMARY KEY CHECK (id = 1),
                block_number BIGINT NOT NULL,
                updated_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP
                    ON UPDATE CURRENT_TIMESTAMP
            ) {_TABLE_OPTIONS}""",
        ),
    ),
    Migration(
        "index of records by KEK version, for re-wrapping data keys after a KEK rotation",
        # Re-runnable: migrate() treats "duplicate key name" as already applied (MySQL 8
        # has no CREATE INDEX IF NOT EXISTS). (kek_version, seq) serves "oldest first".
        ("ALTER TABLE records ADD INDEX records_kek_version (kek_version, seq)",),
    ),
    Migration(
        "erasure state of records (crypto-shredding): when, why, blob purged, tombstone tx",
        # One ALTER, so the columns and the index arrive together; a re-run after it was
        # applied but not recorded fails with "duplicate column", which migrate() accepts.
        (
            "ALTER TABLE records ADD COLUMN erased_at BIGINT NULL, "
            "ADD COLUMN erase_reason BINARY(32) NULL, "
            "ADD COLUMN erase_tx VARBINARY(64) NULL, "
            "ADD COLUMN blob_purged BOOLEAN NOT NULL DEFAULT FALSE, "
            "ADD INDEX records_erased (erased_at, seq)",
        ),
    ),
    Migration(
        "fenced worker leases, outbox claims and anchor intents (exactly-once anchoring)",
        (
            # fence: unique across leases, only grows; expires_at: the server's unix time.
            f"""CREATE TABLE IF NOT EXISTS worker_leases (
                name VARCHAR(64) NOT NULL PRIMARY KEY,
                holder VARCHAR(255) NOT NULL,
                url VARCHAR(1024) NOT NULL,
                fence BIGINT UNSIGNED NOT NULL UNIQUE,
                expires_at DOUBLE NOT NULL
            ) {_TABLE_OPTIONS}""",
            # record_ids: the batch's record ids in leaf order, 32 bytes each.
            f"""CREATE TABLE IF NOT EXISTS anchor_intents (
                intent_id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
                fence BIGINT UNSIGNED NOT NULL,
                root BINARY(32) NOT NULL,
                record_ids MEDIUMBLOB NOT NULL,
                created_at DOUBLE NOT NULL
            ) {_TABLE_OPTIONS}""",
            # One ALTER: a re-run after it was applied but not recorded fails with
            # "duplicate column", which migrate() accepts.
            "ALTER TABLE anchor_outbox ADD COLUMN claim_fence BIGINT UNSIGNED NULL, "
            "ADD COLUMN intent_id BIGINT UNSIGNED NULL, "
            "ADD INDEX anchor_outbox_intent (intent_id), "
            "ADD INDEX anchor_outbox_claim (claim_fence)",
        ),
    ),
    Migration(
        "document metadata of the hospital standards (FHIR, HL7 v2, DICOM) and attributes",
        (
            # attributes: JSON (as in SQLite); identifier: unique among this node's records.
            f"""CREATE TABLE IF NOT EXISTS record_documents (
                record_id BINARY(32) NOT NULL PRIMARY KEY,
                source VARCHAR(32) NOT NULL,
                type_system VARCHAR(255) NULL,
                type_code VARCHAR(255) NULL,
                type_display VARCHAR(255) NULL,
                title VARCHAR(1024) NULL,
                clinical_time BIGINT NULL,
                identifier VARCHAR(255) NULL,
                attributes TEXT NOT NULL,
                UNIQUE KEY record_documents_identifier (identifier),
                KEY record_documents_type (type_code)
            ) {_TABLE_OPTIONS}""",
            f"""CREATE TABLE IF NOT EXISTS record_attributes (
                name VARCHAR(64) NOT NULL,
                value VARCHAR(255) NOT NULL,
                record_id BINARY(32) NOT NULL,
                PRIMARY KEY (name, value, record_id),
                KEY record_attributes_record (record_id)
            ) {_TABLE_OPTIONS}""",
        ),
    ),
)

_SCHEMA_MIGRATIONS_TABLE = f"""CREATE TABLE IF NOT EXISTS schema_migrations (
    version INT UNSIGNED NOT NULL PRIMARY KEY,
    description VARCHAR(255) NOT NULL,
    applied_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP
) {_TABLE_OPTIONS}"""

_RECORD_COLUMNS = (
    "record_id, patient, category, content_type, cid, content_hash, size, wrapped_key, "
    "kek_version, creator, created_at, previous_id"
)
# What reads return: the inserted columns plus the erasure state.
_SELECT_COLUMNS = f"{_RECORD_COLUMNS}, erased_at, erase_tx"
_BATCH_COLUMNS = "batch_id, root, tx_hash, block_number, hospital, record_count, anchored_at"
_LEASE_COLUMNS = "name, holder, url, fence, expires_at"
# The server's clock, in unix seconds with microseconds (sessions run in UTC: no DST gap).
_DB_NOW = "UNIX_TIMESTAMP(NOW(6))"


def _prefixed(columns: str, alias: str) -> str:
    return ", ".join(f"{alias}.{c.strip()}" for c in columns.split(","))


def _placeholders(n: int) -> str:
    return ", ".join(["%s"] * n)


# A record with its document metadata (NULLs when it has none): columns, then the join.
_JOINED_COLUMNS = f"SELECT {_prefixed(_SELECT_COLUMNS, 'r')}, {_prefixed(DOCUMENT_COLUMNS, 'd')}"
_JOINED = (
    f"{_JOINED_COLUMNS} FROM records r LEFT JOIN record_documents d ON d.record_id = r.record_id"
)


def _chunks(items: Sequence[_T], size: int = _CHUNK) -> Iterator[Sequence[_T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _error_code(err: BaseException) -> int | None:
    code = err.args[0] if err.args else None
    return code if isinstance(code, int) else None


def _is_connection_error(err: BaseException) -> bool:
    if isinstance(err, pymysql.err.InterfaceError | OSError):
        return True
    return isinstance(err, pymysql.err.OperationalError) and _error_code(err) in _UNAVAILABLE_CODES


def _close_quietly(conn: _Connection) -> None:
    with contextlib.suppress(Exception):
        conn.close()


# -- chain event mirror helpers ------------------------------------------------------------


class _StaleConnection(Exception):
    """A pooled connection was dead before anything was done on it (internal: retried)."""


# -- connection pool -----------------------------------------------------------------------


class _ConnectionPool:
    """Up to ``size`` connections shared by threads; each is used by one thread at a time.

    Connections are opened lazily and reused most-recently-used first (LIFO). One that sat
    idle for ``ping_after`` seconds or more is pinged at checkout; a broken one is discarded
    and replaced by a new connection.
    """

    def __init__(
        self, connect: Callable[[], _Connection], size: int, timeout: float, ping_after: float
    ) -> None:
        self._connect = connect
        self._timeout = timeout
        self._ping_after = ping_after
        # (connection, monotonic time it was returned)
        self._idle: queue.LifoQueue[tuple[_Connection, float]] = queue.LifoQueue()
        self._slots = threading.BoundedSemaphore(size)
        self._closed = False
        self._distrust_before = -math.inf

    def distrust_idle(self) -> None:
        """Ping every connection idle now at its next checkout (one was found dead)."""
        self._distrust_before = time.monotonic()

    def acquire(self) -> tuple[_Connection, bool]:
        """Check out a connection; the flag tells whether it is known to work (new or
        pinged)."""
        if self._closed:
            raise BackendUnavailable("record index is closed")
        if not self._slots.acquire(timeout=self._timeout):
            raise BackendUnavailable(
                f"no record index connection became free within {self._timeout:g} s"
            )
        try:
            try:
                conn, returned_at = self._idle.get_nowait()
            except queue.Empty:
                return self._connect(), True
            if (
                time.monotonic() - returned_at < self._ping_after
                and returned_at > self._distrust_before
            ):
                # Just used: a ping round trip would cost ~40% of a point lookup's rate.
                # If it died meanwhile, the caller's first round trip fails and _run retries.
                return conn, False
            try:
                # Catches a connection the server closed while it sat idle (restart,
                # wait_timeout, KILL) before a caller's query fails on it. pymysql 1.1+
                # deprecates ping(reconnect=True): a dead connection is replaced instead.
                conn.ping()
            except Exception:
                _close_quietly(conn)
                return self._connect(), True
            return conn, True
        except BaseException:
            self._slots.release()
            raise

    def release(self, conn: _Connection, *, reusable: bool) -> None:
        try:
            if reusable and not self._closed:
                self._idle.put((conn, time.monotonic()))
            else:
                _close_quietly(conn)
        finally:
            self._slots.release()
        if self._closed:  # close() ran while this connection was out
            self._drain()

    def close(self) -> None:
        self._closed = True
        self._drain()

    def _drain(self) -> None:
        while True:
            try:
                conn, _ = self._idle.get_nowait()
            except queue.Empty:
                return
            _close_quietly(conn)


# -- the index -----------------------------------------------------------------------------


def _db_now(cur: pymysql.cursors.Cursor) -> float:
    cur.execute(f"SELECT {_DB_NOW}")
    row = cur.fetchone()
    return float(row[0]) if row else 0.0


def _check_fence(cur: pymysql.cursors.Cursor, fence: int, *, unexpired: bool = False) -> None:
    """Raise LeaseLost unless ``fence`` is a lease's current fence (and, if ``unexpired``,
    that lease is live by the server's clock). The shared lock holds off a takeover until
    the caller's transaction ends."""
    cur.execute(
        f"SELECT expires_at > {_DB_NOW} FROM worker_leases WHERE fence = %s LOCK IN SHARE MODE",
        (int(fence),),
    )
    row = cur.fetchone()
    if row is None:
        raise LeaseLost(f"lease fence {fence} was superseded")
    if unexpired and not row[0]:
        raise LeaseLost(f"the lease of fence {fence} has expired")


def _row_to_lease(row: Sequence[Any]) -> Lease:
    return Lease(str(row[0]), str(row[1]), str(row[2]), int(row[3]), float(row[4]))


def translate_error(
    err: BaseException, *, name: str, where: str, column_owner: str | None = None
) -> Exception:
    """Map a driver error of the database called ``name`` (at ``where``: host, port,
    database) to the storage error family, with no password and no values."""
    code = _error_code(err)
    if isinstance(err, pymysql.err.DataError):
        return ValueError(f"a value does not fit its column in the {column_owner or name} ({code})")
    if code in _CREDENTIAL_CODES:
        return BackendUnavailable(f"{name} at {where} refused the configured credentials")
    if code == ER.BAD_DB_ERROR:
        return BackendUnavailable(f"{name} {where} does not exist")
    if _is_connection_error(err):
        what = _UNAVAILABLE_REASONS.get(code, "lost the connection")
        return BackendUnavailable(f"{name} at {where} is unavailable: {what}")
    return StorageError(f"{name} error {code}")


def create_database(
    connect: Callable[[str | None], _Connection],
    database: str,
    translate: Callable[[BaseException], Exception],
) -> None:
    """``CREATE DATABASE IF NOT EXISTS`` (tests, development; production databases are
    provisioned by an administrator)."""
    try:
        conn = connect(None)
        try:
            with conn.cursor() as cur:
                # A name cannot be a bound parameter; callers checked it against
                # _DATABASE_NAME.
                cur.execute(
                    f"CREATE DATABASE IF NOT EXISTS `{database}` "
                    "CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
                )
        finally:
            _close_quietly(conn)
    except (pymysql.err.Error, OSError) as err:
        raise translate(err) from err


class MySQLRecordIndex(RecordIndexAPI, AuditMirrorAPI, WorkerLeaseAPI):
    """RecordIndexAPI over MySQL 8 / MariaDB 10.6+ (InnoDB), through a small connection pool.

    Every write is one transaction: it commits entirely or, on any error (including a
    connection lost halfway), is rolled back by the server. Safe to share between threads.
    Errors reaching the server map to ``BackendUnavailable``; messages carry the host, port
    and database, never the password.

    Args:
        host, port, user, password, database: where the index lives.
        pool_size: the most connections open at once (threads beyond it wait).
        connect_timeout: seconds to wait for a connection to be established.
        read_timeout, write_timeout: seconds a query may block on the socket; bound the
            wait when the server hangs instead of refusing.
        pool_timeout: seconds a caller waits for a free connection.
        ping_after: a pooled connection idle this many seconds is pinged (and replaced if
            dead) before use; 0 pings at every checkout. A more recently used one found dead
            on its first round trip is replaced and the call retried once, transparently.
        create_database_if_missing: issue ``CREATE DATABASE IF NOT EXISTS`` first (tests,
            development; production databases are provisioned by an administrator).
        auto_migrate: apply pending migrations on construction, as the SQLite index does.
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
        auto_migrate: bool = True,
    ) -> None:
        if not _DATABASE_NAME.fullmatch(database):
            raise ValueError("database name must be 1-64 letters, digits or underscores")
        if pool_size < 1:
            raise ValueError("pool_size must be at least 1")
        self._host = host
        self._port = port
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
                # Reads run alone; writes open an explicit transaction (begin/commit).
                autocommit=True,
                # Marks bytes literals as binary so they are never checked as utf8mb4 text.
                binary_prefix=True,
                # Lease times are UNIX_TIMESTAMP(NOW(6)): exact only in a zone without DST.
                init_command="SET time_zone = '+00:00'",
            )

        self._connect = connect
        self._pool = _ConnectionPool(connect, pool_size, pool_timeout, ping_after)
        try:
            if create_database_if_missing:
                self._create_database()
            if auto_migrate:
                self.migrate()
        except BaseException:
            self._pool.close()
            raise

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(host={self._host!r}, port={self._port}, db={self._database!r})"
        )

    # -- plumbing ------------------------------------------------------------------------

    def _translate(self, err: BaseException) -> Exception:
        """Map a driver error to the storage error family (no password, no values)."""
        return translate_error(
            err, name="record index database", where=self._where, column_owner="record index"
        )

    def _create_database(self) -> None:
        create_database(self._connect, self._database, self._translate)

    def _run(self, work: Callable[[pymysql.cursors.Cursor], _T], *, write: bool = False) -> _T:
        """Run ``work`` on a pooled connection, in one transaction when ``write``.

        Retried from the start: a deadlock (InnoDB rolled the whole transaction back), and
        once, a pooled connection found dead on its first round trip (nothing was done).
        """
        for attempt in itertools.count(1):
            try:
                return self._run_once(work, write=write)
            except _StaleConnection as stale:
                cause = stale.__cause__ or stale
                if attempt == 1:
                    # The server dropped idle connections (restart, KILL): ping the rest.
                    logger.info("record index connection was dropped by the server; retrying")
                    self._pool.distrust_idle()
                    continue
                raise self._translate(cause) from cause
            except pymysql.err.OperationalError as err:
                if write and _error_code(err) == ER.LOCK_DEADLOCK and attempt < _DEADLOCK_ATTEMPTS:
                    logger.info("record index transaction deadlocked; retrying (%d)", attempt)
                    continue
                raise self._translate(err) from err
            except (pymysql.err.Error, OSError) as err:
                raise self._translate(err) from err
        raise AssertionError("unreachable")  # pragma: no cover

    def _run_once(self, work: Callable[[pymysql.cursors.Cursor], _T], *, write: bool) -> _T:
        conn, verified = self._pool.acquire()
        reusable = False
        try:
            try:
                if write:
                    conn.begin()
                    verified = True  # the link works: later failures are real outages
                with conn.cursor() as cur:
                    result = work(cur)
            except Exception as err:
                # A pooled connection used without a ping was already dead: a write's BEGIN
                # failed (nothing done) or a read did (idempotent), so it can be retried.
                # Not a timeout: a slow or hung server would only make the caller wait twice.
                timed_out = isinstance(err.__context__, TimeoutError)
                if not verified and _is_connection_error(err) and not timed_out:
                    raise _StaleConnection from err
                raise
            if write:
                try:
                    conn.commit()
                except (pymysql.err.OperationalError, pymysql.err.InterfaceError, OSError) as err:
                    # The server may have committed before the link dropped: say so, so a
                    # caller retrying add_records expects DuplicateRecord as a possible answer.
                    raise BackendUnavailable(
                        f"lost the record index database at {self._where} while committing; "
                        "the write may or may not have been applied"
                    ) from err
            reusable = True
            return result
        except Exception as err:
            # A write is reusable once rolled back; a read unless the link itself failed.
            cause = err.__cause__ if isinstance(err, _StaleConnection) else err
            if write:
                reusable = self._rollback(conn)
            else:
                reusable = cause is not None and not _is_connection_error(cause)
            raise
        finally:
            self._pool.release(conn, reusable=reusable)

    @staticmethod
    def _rollback(conn: _Connection) -> bool:
        """Roll back; return whether the connection is clean enough to reuse."""
        try:
            conn.rollback()
        except Exception:
            # The link is gone: the server rolls back on disconnect.
            return False
        return True

    # -- migrations ----------------------------------------------------------------------

    @property
    def schema_version(self) -> int:
        """The schema version of the database (0 before the first migration)."""

        def work(cur: pymysql.cursors.Cursor) -> int:
            return self._current_version(cur)

        return self._run(work)

    @staticmethod
    def _current_version(cur: pymysql.cursors.Cursor) -> int:
        try:
            cur.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
        except pymysql.err.ProgrammingError as err:
            if _error_code(err) == ER.NO_SUCH_TABLE:
                return 0
            raise
        row = cur.fetchone()
        return int(row[0]) if row else 0

    def migrate(self, target: int | None = None) -> int:
        """Apply pending migrations in order up to ``target`` (default: the latest).

        Idempotent; concurrent callers (several nodes starting at once) are serialised by a
        server-side named lock. Returns the schema version reached. Raises StorageError if
        the database is newer than this code.
        """
        latest = len(MIGRATIONS)
        target = latest if target is None else target
        if not 0 <= target <= latest:
            raise ValueError(f"target schema version must be between 0 and {latest}")
        # MySQL caps lock names at 64 characters; a shared truncation only serialises more.
        lock_name = f"emr_migrate:{self._database}"[:64]

        def work(cur: pymysql.cursors.Cursor) -> int:
            cur.execute("SELECT GET_LOCK(%s, %s)", (lock_name, 60))
            row = cur.fetchone()
            if not row or row[0] != 1:
                raise StorageError("timed out waiting for another node's schema migration")
            try:
                cur.execute(_SCHEMA_MIGRATIONS_TABLE)
                version = self._current_version(cur)
                if version > latest:
                    raise StorageError(
                        f"record index schema v{version} is newer than this node (v{latest})"
                    )
                for number in range(version + 1, target + 1):
                    migration = MIGRATIONS[number - 1]
                    for statement in migration.statements:
                        try:
                            cur.execute(statement)
                        except pymysql.err.MySQLError as err:
                            # An index added by a run interrupted before it was recorded.
                            if _error_code(err) not in (ER.DUP_KEYNAME, ER.DUP_FIELDNAME):
                                raise
                    cur.execute(
                        "INSERT INTO schema_migrations (version, description) VALUES (%s, %s)",
                        (number, migration.description[:255]),
                    )
                    logger.info("record index migrated to schema v%d", number)
                    version = number
                return version
            finally:
                # A lost connection releases the lock server-side; don't mask the error.
                with contextlib.suppress(pymysql.err.Error, OSError):
                    cur.execute("SELECT RELEASE_LOCK(%s)", (lock_name,))

        return self._run(work)

    # -- RecordIndexAPI ------------------------------------------------------------------

    def add_records(self, rows: Sequence[RecordRow]) -> None:
        params = [record_params(row) for row in rows]
        if not params:
            return
        documents = document_params(rows)
        attributes = attribute_params(rows)

        def work(cur: pymysql.cursors.Cursor) -> None:
            try:
                # executemany folds the rows into multi-row INSERTs (one round trip per
                # ~1 MB), the batched path that RECIPES measured at ~46k rows/s.
                cur.executemany(
                    f"INSERT INTO records ({_RECORD_COLUMNS}) VALUES ({_placeholders(12)})",
                    params,
                )
                cur.executemany(
                    "INSERT INTO anchor_outbox (record_id) VALUES (%s)",
                    [(p[0],) for p in params],
                )
            except pymysql.err.IntegrityError as err:
                if _error_code(err) == ER.DUP_ENTRY:
                    raise DuplicateRecord("a record id in the batch is already indexed") from err
                raise
            try:
                cur.executemany(
                    f"INSERT INTO record_documents (record_id, {DOCUMENT_COLUMNS}) "
                    f"VALUES ({_placeholders(9)})",
                    documents,
                )
            except pymysql.err.IntegrityError as err:
                if _error_code(err) == ER.DUP_ENTRY:
                    raise DuplicateIdentifier("a document identifier is already indexed") from err
                raise
            cur.executemany(
                "INSERT INTO record_attributes (name, value, record_id) VALUES (%s, %s, %s)",
                attributes,
            )

        self._run(work, write=True)

    def get_record(self, record_id: bytes) -> RecordRow:
        def work(cur: pymysql.cursors.Cursor) -> tuple[Any, ...] | None:
            cur.execute(f"{_JOINED} WHERE r.record_id = %s", (bytes(record_id),))
            return cur.fetchone()

        row = self._run(work)
        if row is None:
            raise RecordNotFound(f"no record {bytes(record_id).hex()}")
        return row_to_record(row)

    def list_records(
        self,
        *,
        patient: str | None = None,
        creator: str | None = None,
        category: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[RecordRow]:
        if limit < 0 or offset < 0:
            raise ValueError("limit and offset must not be negative")
        clauses, params = record_filters("%s", patient=patient, creator=creator, category=category)
        where = f"WHERE {' AND '.join(f'r.{c}' for c in clauses)} " if clauses else ""

        def work(cur: pymysql.cursors.Cursor) -> tuple[tuple[Any, ...], ...]:
            cur.execute(
                f"{_JOINED} {where}ORDER BY r.created_at DESC, r.seq DESC LIMIT %s OFFSET %s",
                [*params, int(limit), int(offset)],
            )
            return cur.fetchall()

        return [row_to_record(r) for r in self._run(work)]

    def find_records(self, query: RecordQuery) -> list[RecordRow]:
        source, params, order = query_sql(query, "%s")

        def work(cur: pymysql.cursors.Cursor) -> tuple[tuple[Any, ...], ...]:
            cur.execute(
                f"{_JOINED_COLUMNS} {source} {order} LIMIT %s OFFSET %s",
                [*params, int(query.limit), int(query.offset)],
            )
            return cur.fetchall()

        return [row_to_record(r) for r in self._run(work)]

    def count_records(self, query: RecordQuery) -> int:
        source, params, _order = query_sql(query, "%s")

        def work(cur: pymysql.cursors.Cursor) -> int:
            cur.execute(f"SELECT COUNT(*) {source}", params)
            return int(cur.fetchone()[0])

        return int(self._run(work))

    def pending_anchors(self, limit: int) -> list[RecordRow]:
        if limit < 0:
            raise ValueError("limit must not be negative")

        def work(cur: pymysql.cursors.Cursor) -> tuple[tuple[Any, ...], ...]:
            cur.execute(
                f"SELECT {_prefixed(_SELECT_COLUMNS, 'r')} FROM anchor_outbox o "
                "JOIN records r ON r.record_id = o.record_id ORDER BY o.seq LIMIT %s",
                (int(limit),),
            )
            return cur.fetchall()

        return [row_to_record(r) for r in self._run(work)]

    def count_pending_anchors(self) -> int:
        def work(cur: pymysql.cursors.Cursor) -> int:
            cur.execute("SELECT COUNT(*) FROM anchor_outbox")
            row = cur.fetchone()
            return int(row[0]) if row else 0

        return self._run(work)

    def mark_anchored(
        self,
        batch: AnchorBatch,
        receipts: Mapping[bytes, AnchorReceipt],
        fence: int | None = None,
    ) -> None:
        check_hash(batch.root, "batch root")
        receipt_params: list[tuple[bytes, int, bytes, bytes]] = []
        for record_id, receipt in receipts.items():
            if receipt.record_id != record_id:
                raise ValueError("receipt filed under another record's id")
            check_hash(receipt.leaf, "leaf")
            for node in receipt.proof:
                check_hash(node, "proof node")
            receipt_params.append(
                (record_id, batch.batch_id, receipt.leaf, b"".join(receipt.proof))
            )
        batch_params = (
            batch.batch_id,
            batch.root,
            batch.tx_hash,
            batch.block_number,
            batch.hospital,
            batch.count,
            batch.anchored_at,
        )
        ids = [p[0] for p in receipt_params]

        def work(cur: pymysql.cursors.Cursor) -> None:
            if fence is not None:
                _check_fence(cur, fence)
            try:
                cur.execute(
                    f"INSERT INTO anchor_batches ({_BATCH_COLUMNS}) VALUES ({_placeholders(7)})",
                    batch_params,
                )
            except pymysql.err.IntegrityError as err:
                if _error_code(err) != ER.DUP_ENTRY:
                    raise
                # Replaying the same batch (a retry after a crash) is harmless; a different
                # batch under the same id is not. Only the failed statement was undone.
                cur.execute(
                    f"SELECT {_BATCH_COLUMNS} FROM anchor_batches WHERE batch_id = %s",
                    (batch.batch_id,),
                )
                existing = cur.fetchone()
                if existing is None or row_to_batch(existing) != batch:
                    raise IntegrityError(
                        f"batch {batch.batch_id} is stored with other contents"
                    ) from err
            for chunk in _chunks(ids):
                marks = _placeholders(len(chunk))
                cur.execute(
                    f"SELECT record_id FROM records WHERE record_id IN ({marks})", list(chunk)
                )
                found = {bytes(r[0]) for r in cur.fetchall()}
                missing = next((i for i in chunk if i not in found), None)
                if missing is not None:
                    raise RecordNotFound(f"no record {missing.hex()}")
            if not receipt_params:
                return
            # A record anchored twice (two workers racing) keeps the latest receipt; both
            # proofs are valid on-chain. VALUES() works on MariaDB and MySQL alike.
            cur.executemany(
                "INSERT INTO anchor_receipts (record_id, batch_id, leaf, proof) "
                "VALUES (%s, %s, %s, %s) ON DUPLICATE KEY UPDATE "
                "batch_id = VALUES(batch_id), leaf = VALUES(leaf), proof = VALUES(proof)",
                receipt_params,
            )
            intents: set[int] = set()
            for chunk in _chunks(ids):
                marks = _placeholders(len(chunk))
                cur.execute(
                    "SELECT DISTINCT intent_id FROM anchor_outbox "
                    f"WHERE intent_id IS NOT NULL AND record_id IN ({marks})",
                    list(chunk),
                )
                intents.update(int(r[0]) for r in cur.fetchall())
                cur.execute(
                    f"UPDATE records SET batch_id = %s WHERE record_id IN ({marks})",
                    [batch.batch_id, *chunk],
                )
                cur.execute(f"DELETE FROM anchor_outbox WHERE record_id IN ({marks})", list(chunk))
            if intents:
                # The intents are closed; records of theirs this batch did not cover (none in
                # the normal flow) go back to the queue.
                closed = sorted(intents)
                marks = _placeholders(len(closed))
                cur.execute(f"DELETE FROM anchor_intents WHERE intent_id IN ({marks})", closed)
                cur.execute(
                    "UPDATE anchor_outbox SET intent_id = NULL, claim_fence = NULL "
                    f"WHERE intent_id IN ({marks})",
                    closed,
                )

        self._run(work, write=True)

    # -- claimed anchoring ---------------------------------------------------------------

    def claim_pending_anchors(self, limit: int, fence: int) -> list[RecordRow]:
        if limit < 0:
            raise ValueError("limit must not be negative")
        if limit == 0:
            return []

        def work(cur: pymysql.cursors.Cursor) -> tuple[tuple[Any, ...], ...]:
            _check_fence(cur, fence)
            # SKIP LOCKED: a concurrent claimer's rows are passed over, not waited for; the
            # outbox alone is locked (records stay free for readers and erasure).
            cur.execute(
                "SELECT seq, record_id FROM anchor_outbox "
                "WHERE claim_fence IS NULL OR (claim_fence < %s AND intent_id IS NULL) "
                "ORDER BY seq LIMIT %s FOR UPDATE SKIP LOCKED",
                (int(fence), int(limit)),
            )
            claimed = cur.fetchall()
            if not claimed:
                return ()
            seqs = [int(r[0]) for r in claimed]
            cur.execute(
                f"UPDATE anchor_outbox SET claim_fence = %s "
                f"WHERE seq IN ({_placeholders(len(seqs))})",
                [int(fence), *seqs],
            )
            ids = [bytes(r[1]) for r in claimed]
            cur.execute(
                f"SELECT {_SELECT_COLUMNS} FROM records "
                f"WHERE record_id IN ({_placeholders(len(ids))})",
                ids,
            )
            by_id = {bytes(r[0]): r for r in cur.fetchall()}
            return tuple(by_id[i] for i in ids)

        return [row_to_record(r) for r in self._run(work, write=True)]

    def record_anchor_intent(self, fence: int, root: bytes, record_ids: Sequence[bytes]) -> int:
        check_hash(root, "batch root")
        ids = [bytes(r) for r in record_ids]
        if not ids:
            raise ValueError("an anchor intent needs records")
        packed = join_ids(ids)

        def work(cur: pymysql.cursors.Cursor) -> int:
            _check_fence(cur, fence, unexpired=True)
            cur.execute(
                "INSERT INTO anchor_intents (fence, root, record_ids, created_at) "
                f"VALUES (%s, %s, %s, {_DB_NOW})",
                (int(fence), bytes(root), packed),
            )
            intent_id = int(cur.lastrowid)
            changed = 0
            for chunk in _chunks(ids):
                changed += cur.execute(
                    "UPDATE anchor_outbox SET intent_id = %s WHERE claim_fence = %s "
                    f"AND intent_id IS NULL AND record_id IN ({_placeholders(len(chunk))})",
                    [intent_id, int(fence), *chunk],
                )
            if changed != len(ids):
                raise StorageError("an intent's records must be claimed by its fence")
            return intent_id

        return self._run(work, write=True)

    def open_anchor_intents(self) -> list[AnchorIntent]:
        def work(cur: pymysql.cursors.Cursor) -> tuple[tuple[Any, ...], ...]:
            cur.execute(
                "SELECT intent_id, fence, root, record_ids, created_at FROM anchor_intents "
                "ORDER BY intent_id"
            )
            return cur.fetchall()

        return [
            AnchorIntent(int(r[0]), int(r[1]), bytes(r[2]), split_ids(bytes(r[3])), float(r[4]))
            for r in self._run(work)
        ]

    def release_anchor_claims(self, fence: int) -> int:
        def work(cur: pymysql.cursors.Cursor) -> int:
            _check_fence(cur, fence)
            return int(
                cur.execute(
                    "UPDATE anchor_outbox SET claim_fence = NULL "
                    "WHERE claim_fence = %s AND intent_id IS NULL",
                    (int(fence),),
                )
            )

        return self._run(work, write=True)

    def release_anchor_intent(self, intent_id: int, fence: int | None = None) -> None:
        def work(cur: pymysql.cursors.Cursor) -> None:
            if fence is not None:
                _check_fence(cur, fence)
            cur.execute(
                "UPDATE anchor_outbox SET intent_id = NULL, claim_fence = NULL "
                "WHERE intent_id = %s",
                (int(intent_id),),
            )
            cur.execute("DELETE FROM anchor_intents WHERE intent_id = %s", (int(intent_id),))

        self._run(work, write=True)

    # -- WorkerLeaseAPI ------------------------------------------------------------------

    def acquire(self, name: str, holder: str, url: str, ttl: float) -> Lease | None:
        if ttl <= 0:
            raise ValueError("ttl must be positive")

        def work(cur: pymysql.cursors.Cursor) -> Lease | None:
            # Every acquisition locks the whole (tiny) table: fences stay unique across
            # names, and two processes taking the same free lease serialise.
            cur.execute("SELECT fence FROM worker_leases FOR UPDATE")
            top = max((int(r[0]) for r in cur.fetchall()), default=0)
            cur.execute(
                f"SELECT {_LEASE_COLUMNS}, expires_at > {_DB_NOW} FROM worker_leases "
                "WHERE name = %s FOR UPDATE",
                (name,),
            )
            row = cur.fetchone()
            if row is not None and row[5]:
                if row[1] != holder:
                    return None
                fence = int(row[3])  # the holder's live lease: extend it
            else:
                fence = top + 1
            now = _db_now(cur)
            cur.execute(
                f"INSERT INTO worker_leases ({_LEASE_COLUMNS}) VALUES (%s, %s, %s, %s, %s) "
                "ON DUPLICATE KEY UPDATE holder = VALUES(holder), url = VALUES(url), "
                "fence = VALUES(fence), expires_at = VALUES(expires_at)",
                (name, holder, url, fence, now + ttl),
            )
            return Lease(name, holder, url, fence, now + ttl)

        return self._run(work, write=True)

    def renew(self, lease: Lease, ttl: float) -> bool:
        if ttl <= 0:
            raise ValueError("ttl must be positive")

        def work(cur: pymysql.cursors.Cursor) -> int:
            return int(
                cur.execute(
                    f"UPDATE worker_leases SET expires_at = {_DB_NOW} + %s "
                    f"WHERE name = %s AND fence = %s AND expires_at > {_DB_NOW}",
                    (float(ttl), lease.name, int(lease.fence)),
                )
            )

        return self._run(work, write=True) == 1

    def release(self, lease: Lease) -> None:
        def work(cur: pymysql.cursors.Cursor) -> None:
            cur.execute(
                "UPDATE worker_leases SET expires_at = 0 WHERE name = %s AND fence = %s",
                (lease.name, int(lease.fence)),
            )

        self._run(work, write=True)

    def current(self, name: str) -> Lease | None:
        def work(cur: pymysql.cursors.Cursor) -> tuple[Any, ...] | None:
            cur.execute(
                f"SELECT {_LEASE_COLUMNS} FROM worker_leases "
                f"WHERE name = %s AND expires_at > {_DB_NOW}",
                (name,),
            )
            return cur.fetchone()

        row = self._run(work)
        return None if row is None else _row_to_lease(row)

    def check(self, lease: Lease) -> bool:
        def work(cur: pymysql.cursors.Cursor) -> tuple[Any, ...] | None:
            cur.execute(
                "SELECT 1 FROM worker_leases "
                f"WHERE name = %s AND fence = %s AND expires_at > {_DB_NOW}",
                (lease.name, int(lease.fence)),
            )
            return cur.fetchone()

        return self._run(work) is not None

    def get_receipt(self, record_id: bytes) -> AnchorReceipt | None:
        def work(cur: pymysql.cursors.Cursor) -> tuple[Any, ...] | None:
            # One round trip: the LEFT JOINs tell "unknown record" from "still pending".
            cur.execute(
                f"SELECT a.leaf, a.proof, {_prefixed(_BATCH_COLUMNS, 'b')} FROM records r "
                "LEFT JOIN anchor_receipts a ON a.record_id = r.record_id "
                "LEFT JOIN anchor_batches b ON b.batch_id = a.batch_id "
                "WHERE r.record_id = %s",
                (bytes(record_id),),
            )
            return cur.fetchone()

        row = self._run(work)
        if row is None:
            raise RecordNotFound(f"no record {bytes(record_id).hex()}")
        if row[0] is None:
            return None
        proof = bytes(row[1])
        return AnchorReceipt(
            record_id=bytes(record_id),
            leaf=bytes(row[0]),
            proof=[proof[i : i + HASH_SIZE] for i in range(0, len(proof), HASH_SIZE)],
            batch=row_to_batch(row[2:]),
        )

    def get_batch(self, batch_id: int) -> AnchorBatch:
        def work(cur: pymysql.cursors.Cursor) -> tuple[Any, ...] | None:
            cur.execute(
                f"SELECT {_BATCH_COLUMNS} FROM anchor_batches WHERE batch_id = %s",
                (int(batch_id),),
            )
            return cur.fetchone()

        row = self._run(work)
        if row is None:
            raise RecordNotFound(f"no anchored batch {batch_id}")
        return row_to_batch(row)

    def kek_usage(self) -> dict[int, int]:
        def work(cur: pymysql.cursors.Cursor) -> tuple[tuple[Any, ...], ...]:
            cur.execute(
                "SELECT kek_version, COUNT(*) FROM records WHERE erased_at IS NULL "
                "GROUP BY kek_version"
            )
            return cur.fetchall()

        return {int(v): int(n) for v, n in self._run(work)}

    def wrapped_keys_with(self, kek_version: int, limit: int) -> list[tuple[bytes, StoredKey]]:
        if limit < 0:
            raise ValueError("limit must not be negative")

        def work(cur: pymysql.cursors.Cursor) -> tuple[tuple[Any, ...], ...]:
            cur.execute(
                "SELECT record_id, kek_version, wrapped_key FROM records "
                "WHERE kek_version = %s AND erased_at IS NULL ORDER BY seq LIMIT %s",
                (int(kek_version), int(limit)),
            )
            return cur.fetchall()

        return [(bytes(r[0]), StoredKey(int(r[1]), bytes(r[2]))) for r in self._run(work)]

    def replace_wrapped_keys(self, updates: Sequence[KeyUpdate]) -> int:
        params = key_update_params(updates)
        if not params:
            return 0

        def work(cur: pymysql.cursors.Cursor) -> int:
            # One UPDATE per record: the WHERE on kek_version is the compare-and-set. The
            # version always changes, so "affected rows" counts exactly the records swapped.
            changed = 0
            for p in params:
                changed += cur.execute(
                    "UPDATE records SET wrapped_key = %s, kek_version = %s "
                    "WHERE record_id = %s AND kek_version = %s AND erased_at IS NULL",
                    p,
                )
            return changed

        return self._run(work, write=True)

    def mark_erased(
        self, record_ids: Sequence[bytes], erased_at: int, reason_hash: bytes
    ) -> list[bytes]:
        ids = erasure_params(record_ids, erased_at, reason_hash)
        if not ids:
            return []

        def work(cur: pymysql.cursors.Cursor) -> list[bytes]:
            newly: list[bytes] = []
            for rid in ids:
                # FOR UPDATE: two nodes erasing the same record agree on who erased it.
                cur.execute("SELECT erased_at FROM records WHERE record_id = %s FOR UPDATE", (rid,))
                row = cur.fetchone()
                if row is None:
                    raise RecordNotFound(f"no record {rid.hex()}")
                if row[0] is None:
                    newly.append(rid)
            for rid in newly:
                cur.execute(
                    "UPDATE records SET wrapped_key = '', erased_at = %s, erase_reason = %s "
                    "WHERE record_id = %s AND erased_at IS NULL",
                    (int(erased_at), reason_hash, rid),
                )
            return newly

        return self._run(work, write=True)

    def pending_erasures(self, limit: int) -> list[PendingErasure]:
        if limit < 0:
            raise ValueError("limit must not be negative")

        def work(cur: pymysql.cursors.Cursor) -> tuple[tuple[Any, ...], ...]:
            cur.execute(
                "SELECT record_id, cid, erase_reason, blob_purged, erase_tx FROM records "
                "WHERE erased_at IS NOT NULL AND (erase_tx IS NULL OR NOT blob_purged) "
                "ORDER BY erased_at, seq LIMIT %s",
                (int(limit),),
            )
            return cur.fetchall()

        return [row_to_pending_erasure(r) for r in self._run(work)]

    def mark_blobs_purged(self, record_ids: Sequence[bytes]) -> None:
        ids = [bytes(r) for r in record_ids]
        if not ids:
            return

        def work(cur: pymysql.cursors.Cursor) -> None:
            cur.executemany(
                "UPDATE records SET blob_purged = TRUE "
                "WHERE record_id = %s AND erased_at IS NOT NULL",
                [(r,) for r in ids],
            )

        self._run(work, write=True)

    def mark_tombstoned(self, record_ids: Sequence[bytes], tx_hash: bytes) -> None:
        ids = [bytes(r) for r in record_ids]
        if not ids:
            return

        def work(cur: pymysql.cursors.Cursor) -> None:
            cur.executemany(
                "UPDATE records SET erase_tx = %s "
                "WHERE record_id = %s AND erased_at IS NOT NULL AND erase_tx IS NULL",
                [(bytes(tx_hash), r) for r in ids],
            )

        self._run(work, write=True)

    # -- chain event mirror --------------------------------------------------------------

    def mirror_events(self, events: Sequence[Mapping[str, Any]], up_to_block: int) -> None:
        """Store chain events and advance the mirror cursor to ``up_to_block``, atomically.

        Each event is a mapping shaped like ``dataclasses.asdict(AuditEvent)``: ``event``,
        ``contract``, ``block_number``, ``log_index``, ``tx_hash`` (bytes or hex),
        ``timestamp`` (unix seconds) and ``args`` (the decoded event arguments). Consent
        registry events (``CONSENT_EVENTS``) go to ``consent_events``, the rest to
        ``audit_events``.

        Idempotent: an event already mirrored (same block number and log index) is
        overwritten with the given values. The cursor never moves backwards, so re-mirroring
        an old range is harmless. Raises ValueError for a malformed event or one beyond
        ``up_to_block``.
        """
        if up_to_block < 0:
            raise ValueError("up_to_block must not be negative")
        by_table: dict[str, list[tuple[Any, ...]]] = {"consent_events": [], "audit_events": []}
        for event in events:
            table, params = event_row(event)
            if params[0] > up_to_block:
                raise ValueError(f"event in block {params[0]} is beyond block {up_to_block}")
            by_table[table].append(params)
        updates = ", ".join(
            f"{c.strip()} = VALUES({c.strip()})" for c in EVENT_COLUMNS.split(",")[2:]
        )

        def work(cur: pymysql.cursors.Cursor) -> None:
            for table, rows in by_table.items():
                if rows:
                    # table comes from the fixed dict above, never from the caller.
                    cur.executemany(
                        f"INSERT INTO {table} ({EVENT_COLUMNS}) VALUES ({_placeholders(10)}) "
                        f"ON DUPLICATE KEY UPDATE {updates}",
                        rows,
                    )
            cur.execute(
                "INSERT INTO chain_cursor (id, block_number) VALUES (1, %s) "
                "ON DUPLICATE KEY UPDATE block_number = GREATEST(block_number, "
                "VALUES(block_number))",
                (int(up_to_block),),
            )

        self._run(work, write=True)

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
        """Return mirrored consent and audit events matching every given filter.

        ``record_id`` matches the event's record id or consent scope; ``actor`` the grantee,
        clinician, accessing actor or anchoring hospital (the chain client's ``actor``);
        ``since`` / ``until`` are inclusive unix seconds. Events come in chain order (block
        number, log index), at most ``limit``, shaped as ``mirror_events`` takes them.
        """
        if limit < 0:
            raise ValueError("limit must not be negative")
        clauses, params = event_filters(
            "%s", patient=patient, record_id=record_id, actor=actor, since=since, until=until
        )
        where = f"WHERE {' AND '.join(clauses)} " if clauses else ""
        order = "ORDER BY block_number, log_index LIMIT %s"
        # Each side is limited too, so neither table is read past what can be returned.
        query = (
            f"(SELECT {EVENT_SELECT} FROM consent_events {where}{order}) UNION ALL "
            f"(SELECT {EVENT_SELECT} FROM audit_events {where}{order}) {order}"
        )

        def work(cur: pymysql.cursors.Cursor) -> tuple[tuple[Any, ...], ...]:
            cur.execute(query, [*params, int(limit), *params, int(limit), int(limit)])
            return cur.fetchall()

        return [row_event(row) for row in self._run(work)]

    def mirror_cursor(self) -> int:
        """Return the last block mirrored, or -1 before the first ``mirror_events``.

        The next mirror run starts at ``mirror_cursor() + 1``.
        """

        def work(cur: pymysql.cursors.Cursor) -> int:
            cur.execute("SELECT block_number FROM chain_cursor WHERE id = 1")
            row = cur.fetchone()
            return -1 if row is None else int(row[0])

        return self._run(work)

    def close(self) -> None:
        self._pool.close()
