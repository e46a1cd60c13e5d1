"""Record index in an embedded SQLite database (the single-node default).

The schema is versioned with ``PRAGMA user_version``: ``MIGRATIONS[i]`` upgrades a database
from version ``i`` to ``i + 1``. Later versions append to the list and never edit a shipped
entry.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from storage.abc import RecordIndexAPI, WorkerLeaseAPI
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

__all__ = ["MIGRATIONS", "SQLiteRecordIndex"]

logger = logging.getLogger(__name__)


MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # v1: records, the anchor outbox, anchored batches and per-record receipts.
    (
        # ``seq`` (the rowid) breaks ties between records created in the same second.
        """CREATE TABLE records (
            seq INTEGER PRIMARY KEY,
            record_id BLOB NOT NULL UNIQUE,
            patient TEXT NOT NULL,
            category TEXT NOT NULL,
            content_type TEXT NOT NULL,
            cid TEXT NOT NULL,
            content_hash BLOB NOT NULL,
            size INTEGER NOT NULL,
            wrapped_key BLOB NOT NULL,
            kek_version INTEGER NOT NULL,
            creator TEXT NOT NULL,
            created_at INTEGER NOT NULL,
            previous_id BLOB
        )""",
        "CREATE INDEX records_patient_created ON records (patient, created_at)",
        "CREATE INDEX records_creator_category ON records (creator, category, created_at)",
        "CREATE INDEX records_previous ON records (previous_id)",
        """CREATE TABLE anchor_outbox (
            seq INTEGER PRIMARY KEY,
            record_id BLOB NOT NULL UNIQUE REFERENCES records (record_id)
        )""",
        """CREATE TABLE anchor_batches (
            batch_id INTEGER PRIMARY KEY,
            root BLOB NOT NULL,
            tx_hash BLOB NOT NULL,
            block_number INTEGER NOT NULL,
            hospital TEXT NOT NULL,
            record_count INTEGER NOT NULL,
            anchored_at INTEGER NOT NULL
        )""",
        # proof: the Merkle siblings concatenated, 32 bytes each.
        """CREATE TABLE anchor_receipts (
            record_id BLOB PRIMARY KEY REFERENCES records (record_id),
            batch_id INTEGER NOT NULL REFERENCES anchor_batches (batch_id),
            leaf BLOB NOT NULL,
            proof BLOB NOT NULL
        )""",
        "CREATE INDEX anchor_receipts_batch ON anchor_receipts (batch_id)",
    ),
    # v2: find the records a KEK version wraps (re-wrap after rotation) without a scan. The
    # rowid (seq) ends every SQLite index, so "oldest first" comes in index order.
    ("CREATE INDEX records_kek_version ON records (kek_version)",),
    # v3: crypto-shredding. An erased record keeps its row (the hash stays evidence) with an
    # empty wrapped key; the partial index is the eraser's to-do list (blob purge, tombstone).
    (
        "ALTER TABLE records ADD COLUMN erased_at INTEGER",
        "ALTER TABLE records ADD COLUMN erase_reason BLOB",
        "ALTER TABLE records ADD COLUMN erase_tx BLOB",
        "ALTER TABLE records ADD COLUMN blob_purged INTEGER NOT NULL DEFAULT 0",
        "CREATE INDEX records_erasure_pending ON records (erased_at) "
        "WHERE erased_at IS NOT NULL AND (erase_tx IS NULL OR blob_purged = 0)",
    ),
    # v4: scale-out. Fenced worker leases; outbox claims (the fence of the claiming worker)
    # and anchor intents written before a batch is sent, so a crash anywhere never anchors
    # a record twice. ``fence`` is unique across leases; ``expires_at`` is unix seconds.
    (
        """CREATE TABLE worker_leases (
            name TEXT PRIMARY KEY,
            holder TEXT NOT NULL,
            url TEXT NOT NULL,
            fence INTEGER NOT NULL UNIQUE,
            expires_at REAL NOT NULL
        )""",
        """CREATE TABLE anchor_intents (
            intent_id INTEGER PRIMARY KEY,
            fence INTEGER NOT NULL,
            root BLOB NOT NULL,
            record_ids BLOB NOT NULL,
            created_at REAL NOT NULL
        )""",
        "ALTER TABLE anchor_outbox ADD COLUMN claim_fence INTEGER",
        "ALTER TABLE anchor_outbox ADD COLUMN intent_id INTEGER",
        "CREATE INDEX anchor_outbox_intent ON anchor_outbox (intent_id)",
        "CREATE INDEX anchor_outbox_claim ON anchor_outbox (claim_fence)",
    ),
    # v5: document metadata of the hospital standards (FHIR, HL7 v2, DICOM): one row per
    # record that has it, and its searchable name/value attributes. ``attributes`` is JSON.
    (
        """CREATE TABLE record_documents (
            record_id BLOB PRIMARY KEY REFERENCES records (record_id),
            source TEXT NOT NULL,
            type_system TEXT,
            type_code TEXT,
            type_display TEXT,
            title TEXT,
            clinical_time INTEGER,
            identifier TEXT UNIQUE,
            attributes TEXT NOT NULL
        )""",
        "CREATE INDEX record_documents_type ON record_documents (type_code)",
        """CREATE TABLE record_attributes (
            name TEXT NOT NULL,
            value TEXT NOT NULL,
            record_id BLOB NOT NULL REFERENCES records (record_id),
            PRIMARY KEY (name, value, record_id)
        )""",
    ),
)

_RECORD_COLUMNS = (
    "record_id, patient, category, content_type, cid, content_hash, size, wrapped_key, "
    "kek_version, creator, created_at, previous_id"
)
# What reads return: the inserted columns plus the erasure state.
_SELECT_COLUMNS = f"{_RECORD_COLUMNS}, erased_at, erase_tx"
_BATCH_COLUMNS = "batch_id, root, tx_hash, block_number, hospital, record_count, anchored_at"
_LEASE_COLUMNS = "name, holder, url, fence, expires_at"
# A record with its document metadata (NULLs when it has none).
_JOINED = (
    f"SELECT {', '.join(f'r.{c.strip()}' for c in _SELECT_COLUMNS.split(','))}, "
    f"{', '.join(f'd.{c.strip()}' for c in DOCUMENT_COLUMNS.split(','))} "
    "FROM records r LEFT JOIN record_documents d ON d.record_id = r.record_id"
)


def _record_exists(conn: sqlite3.Connection, record_id: bytes) -> bool:
    return (
        conn.execute("SELECT 1 FROM records WHERE record_id = ?", (record_id,)).fetchone()
        is not None
    )


@contextlib.contextmanager
def _driver_errors() -> Iterator[None]:
    try:
        yield
    except sqlite3.OperationalError as exc:  # locked, disk I/O error, disk full, ...
        raise BackendUnavailable("record index database is unavailable") from exc
    except sqlite3.Error as exc:
        raise StorageError("record index database error") from exc


def _row_to_lease(row: Sequence[Any]) -> Lease:
    return Lease(str(row[0]), str(row[1]), str(row[2]), int(row[3]), float(row[4]))


def _check_fence(conn: sqlite3.Connection, fence: int, *, now: float | None = None) -> None:
    """Raise LeaseLost unless ``fence`` is a lease's current fence (and, given ``now``,
    that lease has not expired)."""
    row = conn.execute(
        "SELECT expires_at FROM worker_leases WHERE fence = ?", (int(fence),)
    ).fetchone()
    if row is None:
        raise LeaseLost(f"lease fence {fence} was superseded")
    if now is not None and float(row[0]) <= now:
        raise LeaseLost(f"the lease of fence {fence} has expired")


class SQLiteRecordIndex(RecordIndexAPI, WorkerLeaseAPI):
    """RecordIndexAPI over one SQLite file in WAL mode.

    One connection serialised by a lock: SQLite admits a single writer anyway, and every
    call is short. Safe to share between threads. Processes sharing the file serialise on
    ``BEGIN IMMEDIATE``; leases use ``time.time()`` read inside that transaction (one
    machine, one clock).
    """

    def __init__(self, path: Path) -> None:
        self._path = Path(path)
        self._lock = threading.RLock()
        try:
            # The index holds patient addresses and wrapped keys: owner-only. SQLite gives
            # its -wal and -shm files the mode of the database file.
            os.close(os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600))
        except OSError as exc:
            raise BackendUnavailable("cannot create the record index file") from exc
        with _driver_errors():
            # isolation_level=None: we issue BEGIN/COMMIT ourselves so that a transaction
            # covers exactly one API call.
            conn = sqlite3.connect(
                self._path, isolation_level=None, check_same_thread=False, timeout=10.0
            )
            try:
                mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
                if mode != "wal":
                    logger.warning("record index runs in journal mode %s, not WAL", mode)
                # FULL, not NORMAL: in WAL mode NORMAL can lose the last commits on power
                # loss, and an acknowledged upload (record + outbox entry) must survive it.
                # Commits are batched (add_records, mark_anchored), so the extra WAL fsync
                # per commit is cheap.
                conn.execute("PRAGMA synchronous=FULL")
                conn.execute("PRAGMA foreign_keys=ON")
                # An erased record's wrapped key is overwritten, not left in a free page.
                conn.execute("PRAGMA secure_delete=ON")
                self._migrate(conn)
            except BaseException:
                conn.close()
                raise
        self._conn: sqlite3.Connection | None = conn

    def __repr__(self) -> str:
        return f"{type(self).__name__}(path={str(self._path)!r})"

    @staticmethod
    def _migrate(conn: sqlite3.Connection) -> None:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > len(MIGRATIONS):
            raise StorageError(
                f"record index schema v{version} is newer than this node (v{len(MIGRATIONS)})"
            )
        for target in range(version + 1, len(MIGRATIONS) + 1):
            conn.execute("BEGIN IMMEDIATE")
            try:
                for statement in MIGRATIONS[target - 1]:
                    conn.execute(statement)
                # user_version lives in the database header and commits with the DDL. PRAGMA
                # takes no bound parameters; ``target`` is our own int.
                conn.execute(f"PRAGMA user_version = {target:d}")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            logger.info("record index migrated to schema v%d", target)

    @property
    def schema_version(self) -> int:
        """The schema version of the open database."""
        with self._connection() as conn:
            return int(conn.execute("PRAGMA user_version").fetchone()[0])

    @contextlib.contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        with self._lock, _driver_errors():
            if self._conn is None:
                raise BackendUnavailable("record index is closed")
            yield self._conn

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._connection() as conn:
            # IMMEDIATE takes the write lock up front, so a second process sharing the file
            # waits (busy timeout) instead of failing halfway through.
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                # Some errors (disk full, I/O) already rolled the transaction back.
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def add_records(self, rows: Sequence[RecordRow]) -> None:
        params = [record_params(row) for row in rows]
        if not params:
            return
        documents = document_params(rows)
        attributes = attribute_params(rows)
        with self._transaction() as conn:
            try:
                conn.executemany(
                    f"INSERT INTO records ({_RECORD_COLUMNS}) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    params,
                )
                conn.executemany(
                    "INSERT INTO anchor_outbox (record_id) VALUES (?)",
                    [(p[0],) for p in params],
                )
            except sqlite3.IntegrityError as exc:
                if exc.sqlite_errorname == "SQLITE_CONSTRAINT_UNIQUE":
                    raise DuplicateRecord("a record id in the batch is already indexed") from exc
                raise
            try:
                conn.executemany(
                    f"INSERT INTO record_documents (record_id, {DOCUMENT_COLUMNS}) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    documents,
                )
            except sqlite3.IntegrityError as exc:
                raise DuplicateIdentifier("a document identifier is already indexed") from exc
            conn.executemany(
                "INSERT INTO record_attributes (name, value, record_id) VALUES (?, ?, ?)",
                attributes,
            )

    def get_record(self, record_id: bytes) -> RecordRow:
        with self._connection() as conn:
            row = conn.execute(f"{_JOINED} WHERE r.record_id = ?", (record_id,)).fetchone()
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
        clauses, params = record_filters("?", patient=patient, creator=creator, category=category)
        where = f"WHERE {' AND '.join(f'r.{c}' for c in clauses)} " if clauses else ""
        with self._connection() as conn:
            rows = conn.execute(
                f"{_JOINED} {where}ORDER BY r.created_at DESC, r.seq DESC LIMIT ? OFFSET ?",
                [*params, limit, offset],
            ).fetchall()
        return [row_to_record(r) for r in rows]

    def find_records(self, query: RecordQuery) -> list[RecordRow]:
        source, params, order = query_sql(query, "?")
        columns = _JOINED.split(" FROM ", 1)[0]
        with self._connection() as conn:
            rows = conn.execute(
                f"{columns} {source} {order} LIMIT ? OFFSET ?",
                [*params, query.limit, query.offset],
            ).fetchall()
        return [row_to_record(r) for r in rows]

    def count_records(self, query: RecordQuery) -> int:
        source, params, _order = query_sql(query, "?")
        with self._connection() as conn:
            return int(conn.execute(f"SELECT COUNT(*) {source}", params).fetchone()[0])

    def pending_anchors(self, limit: int) -> list[RecordRow]:
        if limit < 0:
            raise ValueError("limit must not be negative")
        columns = ", ".join(f"r.{c.strip()}" for c in _SELECT_COLUMNS.split(","))
        with self._connection() as conn:
            rows = conn.execute(
                f"SELECT {columns} FROM anchor_outbox o "
                "JOIN records r ON r.record_id = o.record_id ORDER BY o.seq LIMIT ?",
                (limit,),
            ).fetchall()
        return [row_to_record(r) for r in rows]

    def count_pending_anchors(self) -> int:
        with self._connection() as conn:
            return int(conn.execute("SELECT COUNT(*) FROM anchor_outbox").fetchone()[0])

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
        with self._transaction() as conn:
            if fence is not None:
                _check_fence(conn, fence)
            inserted = conn.execute(
                f"INSERT INTO anchor_batches ({_BATCH_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (batch_id) DO NOTHING",
                batch_params,
            ).rowcount
            if not inserted:
                # Replaying the same batch (a retry after a crash) is harmless; a different
                # batch under the same id is not.
                existing = conn.execute(
                    f"SELECT {_BATCH_COLUMNS} FROM anchor_batches WHERE batch_id = ?",
                    (batch.batch_id,),
                ).fetchone()
                if row_to_batch(existing) != batch:
                    raise IntegrityError(f"batch {batch.batch_id} is stored with other contents")
            for params in receipt_params:
                if not _record_exists(conn, params[0]):
                    raise RecordNotFound(f"no record {params[0].hex()}")
            # A record anchored twice (two workers racing) keeps the latest receipt; both
            # proofs are valid on-chain.
            conn.executemany(
                "INSERT INTO anchor_receipts (record_id, batch_id, leaf, proof) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (record_id) DO UPDATE SET "
                "batch_id = excluded.batch_id, leaf = excluded.leaf, proof = excluded.proof",
                receipt_params,
            )
            conn.executemany(
                "DELETE FROM anchor_intents WHERE intent_id = "
                "(SELECT intent_id FROM anchor_outbox WHERE record_id = ?)",
                [(p[0],) for p in receipt_params],
            )
            conn.executemany(
                "DELETE FROM anchor_outbox WHERE record_id = ?",
                [(p[0],) for p in receipt_params],
            )
            # Records of a closed intent that this batch did not cover go back to the queue.
            conn.execute(
                "UPDATE anchor_outbox SET intent_id = NULL, claim_fence = NULL "
                "WHERE intent_id IS NOT NULL AND intent_id NOT IN "
                "(SELECT intent_id FROM anchor_intents)"
            )

    # -- claimed anchoring ---------------------------------------------------------------

    def claim_pending_anchors(self, limit: int, fence: int) -> list[RecordRow]:
        if limit < 0:
            raise ValueError("limit must not be negative")
        columns = ", ".join(f"r.{c.strip()}" for c in _SELECT_COLUMNS.split(","))
        with self._transaction() as conn:
            _check_fence(conn, fence)
            rows = conn.execute(
                f"SELECT o.seq, {columns} FROM anchor_outbox o "
                "JOIN records r ON r.record_id = o.record_id "
                "WHERE o.claim_fence IS NULL OR (o.claim_fence < ? AND o.intent_id IS NULL) "
                "ORDER BY o.seq LIMIT ?",
                (int(fence), int(limit)),
            ).fetchall()
            conn.executemany(
                "UPDATE anchor_outbox SET claim_fence = ? WHERE seq = ?",
                [(int(fence), r[0]) for r in rows],
            )
        return [row_to_record(r[1:]) for r in rows]

    def record_anchor_intent(self, fence: int, root: bytes, record_ids: Sequence[bytes]) -> int:
        check_hash(root, "batch root")
        ids = [bytes(r) for r in record_ids]
        if not ids:
            raise ValueError("an anchor intent needs records")
        with self._transaction() as conn:
            now = time.time()
            _check_fence(conn, fence, now=now)
            cursor = conn.execute(
                "INSERT INTO anchor_intents (fence, root, record_ids, created_at) "
                "VALUES (?, ?, ?, ?)",
                (int(fence), bytes(root), join_ids(ids), now),
            )
            intent_id = int(cursor.lastrowid or 0)
            before = conn.total_changes
            conn.executemany(
                "UPDATE anchor_outbox SET intent_id = ? "
                "WHERE record_id = ? AND claim_fence = ? AND intent_id IS NULL",
                [(intent_id, rid, int(fence)) for rid in ids],
            )
            if conn.total_changes - before != len(ids):
                raise StorageError("an intent's records must be claimed by its fence")
        return intent_id

    def open_anchor_intents(self) -> list[AnchorIntent]:
        with self._connection() as conn:
            rows = conn.execute(
                "SELECT intent_id, fence, root, record_ids, created_at FROM anchor_intents "
                "ORDER BY intent_id"
            ).fetchall()
        return [
            AnchorIntent(int(r[0]), int(r[1]), bytes(r[2]), split_ids(bytes(r[3])), float(r[4]))
            for r in rows
        ]

    def release_anchor_claims(self, fence: int) -> int:
        with self._transaction() as conn:
            _check_fence(conn, fence)
            return int(
                conn.execute(
                    "UPDATE anchor_outbox SET claim_fence = NULL "
                    "WHERE claim_fence = ? AND intent_id IS NULL",
                    (int(fence),),
                ).rowcount
            )

    def release_anchor_intent(self, intent_id: int, fence: int | None = None) -> None:
        with self._transaction() as conn:
            if fence is not None:
                _check_fence(conn, fence)
            conn.execute(
                "UPDATE anchor_outbox SET intent_id = NULL, claim_fence = NULL WHERE intent_id = ?",
                (int(intent_id),),
            )
            conn.execute("DELETE FROM anchor_intents WHERE intent_id = ?", (int(intent_id),))

    # -- WorkerLeaseAPI ------------------------------------------------------------------

    def acquire(self, name: str, holder: str, url: str, ttl: float) -> Lease | None:
        if ttl <= 0:
            raise ValueError("ttl must be positive")
        with self._transaction() as conn:
            now = time.time()
            row = conn.execute(
                f"SELECT {_LEASE_COLUMNS} FROM worker_leases WHERE name = ?", (name,)
            ).fetchone()
            if row is not None and float(row[4]) > now:
                if row[1] != holder:
                    return None
                fence = int(row[3])  # the holder's live lease: extend it
            else:
                top = conn.execute("SELECT COALESCE(MAX(fence), 0) FROM worker_leases").fetchone()
                fence = int(top[0]) + 1
            conn.execute(
                f"INSERT INTO worker_leases ({_LEASE_COLUMNS}) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, "
                "url = excluded.url, fence = excluded.fence, expires_at = excluded.expires_at",
                (name, holder, url, fence, now + ttl),
            )
        return Lease(name, holder, url, fence, now + ttl)

    def renew(self, lease: Lease, ttl: float) -> bool:
        if ttl <= 0:
            raise ValueError("ttl must be positive")
        with self._transaction() as conn:
            now = time.time()
            changed = conn.execute(
                "UPDATE worker_leases SET expires_at = ? "
                "WHERE name = ? AND fence = ? AND expires_at > ?",
                (now + ttl, lease.name, int(lease.fence), now),
            ).rowcount
        return changed == 1

    def release(self, lease: Lease) -> None:
        with self._transaction() as conn:
            conn.execute(
                "UPDATE worker_leases SET expires_at = 0 WHERE name = ? AND fence = ?",
                (lease.name, int(lease.fence)),
            )

    def current(self, name: str) -> Lease | None:
        with self._connection() as conn:
            row = conn.execute(
                f"SELECT {_LEASE_COLUMNS} FROM worker_leases WHERE name = ? AND expires_at > ?",
                (name, time.time()),
            ).fetchone()
        return None if row is None else _row_to_lease(row)

    def check(self, lease: Lease) -> bool:
        with self._connection() as conn:
            row = conn.execute(
                "SELECT 1 FROM worker_leases WHERE name = ? AND fence = ? AND expires_at > ?",
                (lease.name, int(lease.fence), time.time()),
            ).fetchone()
        return row is not None

    def get_receipt(self, record_id: bytes) -> AnchorReceipt | None:
        columns = ", ".join(f"b.{c.strip()}" for c in _BATCH_COLUMNS.split(","))
        with self._connection() as conn:
            if not _record_exists(conn, record_id):
                raise RecordNotFound(f"no record {bytes(record_id).hex()}")
            row = conn.execute(
                f"SELECT a.leaf, a.proof, {columns} FROM anchor_receipts a "
                "JOIN anchor_batches b ON b.batch_id = a.batch_id WHERE a.record_id = ?",
                (record_id,),
            ).fetchone()
        if row is None:
            return None
        proof = bytes(row[1])
        return AnchorReceipt(
            record_id=bytes(record_id),
            leaf=bytes(row[0]),
            proof=[proof[i : i + HASH_SIZE] for i in range(0, len(proof), HASH_SIZE)],
            batch=row_to_batch(row[2:]),
        )

    def get_batch(self, batch_id: int) -> AnchorBatch:
        with self._connection() as conn:
            row = conn.execute(
                f"SELECT {_BATCH_COLUMNS} FROM anchor_batches WHERE batch_id = ?", (batch_id,)
            ).fetchone()
        if row is None:
            raise RecordNotFound(f"no anchored batch {batch_id}")
        return row_to_batch(row)

    def kek_usage(self) -> dict[int, int]:
        with self._connection() as conn:
            rows = conn.execute(
                "SELECT kek_version, COUNT(*) FROM records WHERE erased_at IS NULL "
                "GROUP BY kek_version"
            ).fetchall()
        return {int(v): int(n) for v, n in rows}

    def wrapped_keys_with(self, kek_version: int, limit: int) -> list[tuple[bytes, StoredKey]]:
        if limit < 0:
            raise ValueError("limit must not be negative")
        with self._connection() as conn:
            rows = conn.execute(
                "SELECT record_id, kek_version, wrapped_key FROM records "
                "WHERE kek_version = ? AND erased_at IS NULL ORDER BY seq LIMIT ?",
                (int(kek_version), int(limit)),
            ).fetchall()
        return [(bytes(r[0]), StoredKey(int(r[1]), bytes(r[2]))) for r in rows]

    def replace_wrapped_keys(self, updates: Sequence[KeyUpdate]) -> int:
        params = key_update_params(updates)
        if not params:
            return 0
        with self._transaction() as conn:
            before = conn.total_changes
            conn.executemany(
                "UPDATE records SET wrapped_key = ?, kek_version = ? "
                "WHERE record_id = ? AND kek_version = ? AND erased_at IS NULL",
                params,
            )
            return conn.total_changes - before

    def mark_erased(
        self, record_ids: Sequence[bytes], erased_at: int, reason_hash: bytes
    ) -> list[bytes]:
        ids = erasure_params(record_ids, erased_at, reason_hash)
        if not ids:
            return []
        with self._transaction() as conn:
            newly: list[bytes] = []
            for rid in ids:
                row = conn.execute(
                    "SELECT erased_at FROM records WHERE record_id = ?", (rid,)
                ).fetchone()
                if row is None:
                    raise RecordNotFound(f"no record {rid.hex()}")
                if row[0] is None:
                    newly.append(rid)
            conn.executemany(
                "UPDATE records SET wrapped_key = X'', erased_at = ?, erase_reason = ? "
                "WHERE record_id = ? AND erased_at IS NULL",
                [(int(erased_at), reason_hash, rid) for rid in newly],
            )
        return newly

    def pending_erasures(self, limit: int) -> list[PendingErasure]:
        if limit < 0:
            raise ValueError("limit must not be negative")
        with self._connection() as conn:
            rows = conn.execute(
                "SELECT record_id, cid, erase_reason, blob_purged, erase_tx FROM records "
                "WHERE erased_at IS NOT NULL AND (erase_tx IS NULL OR blob_purged = 0) "
                "ORDER BY erased_at, seq LIMIT ?",
                (int(limit),),
            ).fetchall()
        return [row_to_pending_erasure(r) for r in rows]

    def mark_blobs_purged(self, record_ids: Sequence[bytes]) -> None:
        with self._transaction() as conn:
            conn.executemany(
                "UPDATE records SET blob_purged = 1 WHERE record_id = ? AND erased_at IS NOT NULL",
                [(bytes(r),) for r in record_ids],
            )

    def mark_tombstoned(self, record_ids: Sequence[bytes], tx_hash: bytes) -> None:
        with self._transaction() as conn:
            conn.executemany(
                "UPDATE records SET erase_tx = ? "
                "WHERE record_id = ? AND erased_at IS NOT NULL AND erase_tx IS NULL",
                [(bytes(tx_hash), bytes(r)) for r in record_ids],
            )

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
