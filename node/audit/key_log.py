"""The key audit trail: who generated, rotated, used and destroyed which key, and when.

Entries live in the node's state DB (SQLite or the MySQL index database), append-only and
hash-chained (each hash covers the
previous one), so an edited or deleted entry breaks the chain; the head is anchored on-chain
(``AccessLog.anchorKeyAudit``) so that rewriting the whole tail is detectable too. Entries
name keys by version, transactions by digest and batches by count: never key material,
never the PIN or passphrase.

Several processes append (every API process wraps and unwraps keys): an append reads the
head and inserts the next entry in one transaction that excludes every other append
(SQLite: the write lock; MySQL: an exclusive row lock on the log's lock row), and ``seq``
is the primary key, so the chain never forks.
"""

from __future__ import annotations

import contextvars
import hashlib
import json
import logging
import time
from abc import abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from node.audit.abc import KeyAuditEntry, KeyAuditLogAPI
from node.coalescer import Coalescer
from storage.exceptions import StorageError
from storage.sql import SqlDatabaseAPI, open_database

__all__ = [
    "GENESIS",
    "BatchKeyAuditLogAPI",
    "GroupCommitKeyAuditLog",
    "KeyAction",
    "KeyAuditVerification",
    "SQLiteKeyAuditLog",
    "SqlKeyAuditLog",
    "acting_as",
    "current_actor",
    "entry_hash",
    "verify_key_audit",
]

logger = logging.getLogger(__name__)

GENESIS = b"\x00" * 32  # prev_hash of entry 1


class KeyAction(StrEnum):
    KEK_GENERATE = "kek.generate"
    KEK_ROTATE = "kek.rotate"
    KEK_DESTROY = "kek.destroy"
    WRAP_BATCH = "wrap.batch"
    UNWRAP_BATCH = "unwrap.batch"
    SIGN = "sign"
    SIGNER_ROTATE = "signer.rotate"
    SIGNER_DESTROY = "signer.destroy"
    KEY_DERIVE = "key.derive"  # a secret derived for a label (the cache HMAC key at start)


_actor: contextvars.ContextVar[str] = contextvars.ContextVar("key_audit_actor", default="system")


@contextmanager
def acting_as(actor: str) -> Iterator[None]:
    """Attribute key operations in this context to ``actor`` (an API token's name, say);
    work done by background threads stays attributed to "system"."""
    token = _actor.set(actor)
    try:
        yield
    finally:
        _actor.reset(token)


def current_actor() -> str:
    return _actor.get()


def entry_hash(prev_hash: bytes, seq: int, at: int, actor: str, action: str, subject: str) -> bytes:
    """sha256(prev_hash || canonical JSON of the entry): the link that makes edits visible."""
    body = json.dumps(
        {"seq": seq, "at": at, "actor": actor, "action": action, "subject": subject},
        sort_keys=True,
        separators=(",", ":"),
    ).encode("utf-8")
    return hashlib.sha256(prev_hash + body).digest()


_MIGRATIONS = [
    """
    CREATE TABLE key_audit (seq INTEGER PRIMARY KEY, at INTEGER NOT NULL, actor TEXT NOT NULL,
        action TEXT NOT NULL, subject TEXT NOT NULL, prev_hash BLOB NOT NULL,
        hash BLOB NOT NULL)
    """,
]
# Outside the migrations, whose runner splits scripts on ";" (trigger bodies hold one).
_TRIGGERS = [
    f"CREATE TRIGGER IF NOT EXISTS key_audit_no_{op.lower()} BEFORE {op} ON key_audit"
    " BEGIN SELECT RAISE(ABORT, 'the key audit log is append-only'); END"
    for op in ("UPDATE", "DELETE")
]
_MYSQL_MIGRATIONS = [
    """
    CREATE TABLE IF NOT EXISTS key_audit (seq BIGINT NOT NULL PRIMARY KEY, at BIGINT NOT NULL,
        actor VARCHAR(255) NOT NULL, action VARCHAR(64) NOT NULL, subject TEXT NOT NULL,
        prev_hash BINARY(32) NOT NULL, hash BINARY(32) NOT NULL)
        ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin
    """,
]
_MYSQL_TRIGGERS = {
    f"key_audit_no_{op.lower()}": f"CREATE TRIGGER key_audit_no_{op.lower()} BEFORE {op}"
    " ON key_audit FOR EACH ROW"
    " SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'the key audit log is append-only'"
    for op in ("UPDATE", "DELETE")
}


def _row(r: tuple[Any, ...]) -> KeyAuditEntry:
    return KeyAuditEntry(
        seq=int(r[0]),
        at=int(r[1]),
        actor=str(r[2]),
        action=str(r[3]),
        subject=str(r[4]),
        prev_hash=bytes(r[5]),
        hash=bytes(r[6]),
    )


class BatchKeyAuditLogAPI(KeyAuditLogAPI):
    """A key audit log that appends several entries in one durable commit."""

    @abstractmethod
    def append_many(self, items: Sequence[tuple[str, str, str]]) -> list[KeyAuditEntry]:
        """Durably append ``items`` ((action, subject, actor) triples), chained in order, in
        one transaction: all of them or, if it raises, none. Returns their entries."""


class SqlKeyAuditLog(BatchKeyAuditLogAPI):
    """The key audit log in the node's state DB; triggers refuse UPDATE and DELETE (a guard
    against mistakes: whoever owns the database can drop them, which the chain then shows).

    ``db`` is the state database (SQLite or MySQL), or the path of an SQLite file that the
    log opens and closes itself. On MySQL a user without the TRIGGER privilege (or, with
    binary logging, SUPER) gets no triggers: a warning is logged and the log still works.
    """

    def __init__(self, db: Path | SqlDatabaseAPI) -> None:
        self._db, self._owns_db = open_database(db)
        if self._db.dialect == "sqlite":
            self._db.migrate("key_audit", _MIGRATIONS)
            with self._db.transaction() as cur:
                for trigger in _TRIGGERS:
                    cur.execute(trigger)
        else:
            self._db.migrate("key_audit", _MYSQL_MIGRATIONS)
            self._mysql_triggers()

    def _mysql_triggers(self) -> None:
        present = {
            str(r[0])
            for r in self._db.query(
                "SELECT trigger_name FROM information_schema.triggers"
                " WHERE event_object_schema = DATABASE() AND event_object_table = 'key_audit'"
            )
        }
        for name, ddl in _MYSQL_TRIGGERS.items():
            if name in present:
                continue
            try:
                self._db.query(ddl)
            except StorageError as err:
                logger.warning("key audit log: trigger %s not created (%s)", name, err)

    def append(self, action: str, subject: str, actor: str | None = None) -> KeyAuditEntry:
        who = current_actor() if actor is None else actor
        at = int(time.time())
        with self._db.transaction(lock="key_audit") as cur:
            last = cur.execute(
                "SELECT seq, hash FROM key_audit ORDER BY seq DESC LIMIT 1"
            ).fetchone()
            seq, prev = (int(last[0]) + 1, bytes(last[1])) if last else (1, GENESIS)
            digest = entry_hash(prev, seq, at, who, action, subject)
            cur.execute(
                "INSERT INTO key_audit (seq, at, actor, action, subject, prev_hash, hash)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (seq, at, who, action, subject, prev, digest),
            )
        return KeyAuditEntry(seq, at, who, action, subject, prev, digest)

    def append_many(self, items: Sequence[tuple[str, str, str]]) -> list[KeyAuditEntry]:
        if not items:
            return []
        at = int(time.time())
        out: list[KeyAuditEntry] = []
        with self._db.transaction(lock="key_audit") as cur:
            last = cur.execute(
                "SELECT seq, hash FROM key_audit ORDER BY seq DESC LIMIT 1"
            ).fetchone()
            seq, prev = (int(last[0]), bytes(last[1])) if last else (0, GENESIS)
            for action, subject, who in items:
                seq += 1
                digest = entry_hash(prev, seq, at, who, action, subject)
                out.append(KeyAuditEntry(seq, at, who, action, subject, prev, digest))
                prev = digest
            cur.executemany(
                "INSERT INTO key_audit (seq, at, actor, action, subject, prev_hash, hash)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(e.seq, e.at, e.actor, e.action, e.subject, e.prev_hash, e.hash) for e in out],
            )
        return out

    def entries(
        self, *, after: int = 0, limit: int = 1000, action: str | None = None
    ) -> list[KeyAuditEntry]:
        sql = "SELECT seq, at, actor, action, subject, prev_hash, hash FROM key_audit WHERE seq > ?"
        params: list[object] = [after]
        if action is not None:
            sql += " AND action = ?"
            params.append(action)
        sql += " ORDER BY seq LIMIT ?"
        params.append(limit)
        return [_row(r) for r in self._db.query(sql, params)]

    def head(self) -> KeyAuditEntry | None:
        rows = self._db.query(
            "SELECT seq, at, actor, action, subject, prev_hash, hash FROM key_audit"
            " ORDER BY seq DESC LIMIT 1"
        )
        return _row(rows[0]) if rows else None

    def close(self) -> None:
        if self._owns_db:
            self._db.close()


SQLiteKeyAuditLog = SqlKeyAuditLog  # the name before MySQL (issue 11)

# Seconds an append waits for company before its commit: none. Appends that arrive while a
# commit runs still share the next one, so concurrent reads group as before, and a lone
# append (an HL7 message on one MLLP connection, waiting for its ACK) no longer pays 2 ms:
# 77 -> 132 messages/s (docs/benchmarks.md, HL7 v2).
DEFAULT_GROUP_WINDOW = 0.0


class GroupCommitKeyAuditLog(KeyAuditLogAPI):
    """Group commit in front of a batch-capable log: appends from many threads (each read
    unwraps a key, each unwrap is an entry) share one transaction, so N concurrent reads
    pay one commit (one fsync; on several processes one turn of the write lock) rather
    than N. ``append`` still returns only once its entry is durable, with its seq and hash;
    the entries of a batch are chained in the order they were submitted and the chain
    stays one chain (``append_many`` reads the head and inserts in one transaction).

    Args:
        inner: the log that stores the entries.
        window: seconds the first append of a batch waits for others (a lone append pays
            at most this on top of its commit).
        max_batch: entries per transaction at most.
    """

    def __init__(
        self,
        inner: BatchKeyAuditLogAPI,
        *,
        window: float = DEFAULT_GROUP_WINDOW,
        max_batch: int = 512,
    ) -> None:
        self._inner = inner
        self._batcher: Coalescer[tuple[str, str, str], KeyAuditEntry] = Coalescer(
            inner.append_many, window=window, max_batch=max_batch, name="key-audit-commit"
        )

    @property
    def inner(self) -> BatchKeyAuditLogAPI:
        return self._inner

    def append(self, action: str, subject: str, actor: str | None = None) -> KeyAuditEntry:
        # The actor is the caller's context, resolved here: the committer thread has its own.
        who = current_actor() if actor is None else actor
        return self._batcher.submit((str(action), subject, who))

    def entries(
        self, *, after: int = 0, limit: int = 1000, action: str | None = None
    ) -> list[KeyAuditEntry]:
        return self._inner.entries(after=after, limit=limit, action=action)

    def head(self) -> KeyAuditEntry | None:
        return self._inner.head()

    def close(self) -> None:
        """Commit what is queued, then close the inner log."""
        self._batcher.close()
        self._inner.close()


@dataclass(frozen=True, slots=True)
class KeyAuditVerification:
    valid: bool  # chain intact and every anchor matches
    chain_intact: bool
    entries: int
    first_broken: int | None  # seq of the first entry whose link or hash is wrong
    anchors_checked: int
    anchors_mismatched: list[int]  # anchored seqs whose local hash differs (or is gone)
    anchored_seq: int | None  # the latest anchored seq


def verify_key_audit(
    log: KeyAuditLogAPI, anchors: Sequence[tuple[int, bytes]], *, page: int = 5000
) -> KeyAuditVerification:
    """Recompute the hash chain from the genesis and compare it with ``anchors`` ((seq,
    head) pairs read from the chain)."""
    expected_prev = GENESIS
    expected_seq = 1
    first_broken: int | None = None
    by_seq: dict[int, bytes] = {}
    wanted = {seq for seq, _ in anchors}
    count = 0
    after = 0
    while batch := log.entries(after=after, limit=page):
        for e in batch:
            count += 1
            recomputed = entry_hash(e.prev_hash, e.seq, e.at, e.actor, e.action, e.subject)
            if first_broken is None and (
                e.seq != expected_seq or e.prev_hash != expected_prev or e.hash != recomputed
            ):
                first_broken = e.seq
            if e.seq in wanted:
                by_seq[e.seq] = e.hash
            expected_prev, expected_seq = e.hash, e.seq + 1
        after = batch[-1].seq
    mismatched = sorted({seq for seq, head in anchors if by_seq.get(seq) != head})
    return KeyAuditVerification(
        valid=first_broken is None and not mismatched,
        chain_intact=first_broken is None,
        entries=count,
        first_broken=first_broken,
        anchors_checked=len(anchors),
        anchors_mismatched=mismatched,
        anchored_seq=max(wanted) if wanted else None,
    )
