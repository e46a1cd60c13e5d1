"""The key audit trail: who generated, rotated, used and destroyed which key, and when.

Entries live in the node's SQLite, append-only and hash-chained (each hash covers the
previous one), so an edited or deleted entry breaks the chain; the head is anchored on-chain
(``AccessLog.anchorKeyAudit``) so that rewriting the whole tail is detectable too. Entries
name keys by version, transactions by digest and batches by count: never key material,
never the PIN or passphrase.
"""

from __future__ import annotations

import contextvars
import hashlib
import json
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from node.audit.abc import KeyAuditEntry, KeyAuditLogAPI
from node.sqlite_db import SQLiteDatabase

__all__ = [
    "GENESIS",
    "KeyAction",
    "KeyAuditVerification",
    "SQLiteKeyAuditLog",
    "acting_as",
    "current_actor",
    "entry_hash",
    "verify_key_audit",
]

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


class SQLiteKeyAuditLog(KeyAuditLogAPI):
    """The key audit log in ``node.sqlite``; triggers refuse UPDATE and DELETE (a guard
    against mistakes: whoever owns the file can drop them, which the chain then shows)."""

    def __init__(self, path: Path) -> None:
        self._db = SQLiteDatabase(path, "key_audit", _MIGRATIONS)
        with self._db.transaction() as cur:
            for trigger in _TRIGGERS:
                cur.execute(trigger)

    def append(self, action: str, subject: str, actor: str | None = None) -> KeyAuditEntry:
        who = current_actor() if actor is None else actor
        at = int(time.time())
        with self._db.transaction() as cur:
            last = cur.execute(
                "SELECT seq, hash FROM key_audit ORDER BY seq DESC LIMIT 1"
            ).fetchone()
            seq, prev = (int(last[0]) + 1, bytes(last[1])) if last else (1, GENESIS)
            digest = entry_hash(prev, seq, at, who, action, subject)
            cur.execute(
                "INSERT INTO key_audit VALUES (?, ?, ?, ?, ?, ?, ?)",
                (seq, at, who, action, subject, prev, digest),
            )
        return KeyAuditEntry(seq, at, who, action, subject, prev, digest)

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
        self._db.close()


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
