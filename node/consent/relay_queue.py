"""Durable queue of signed consents waiting for the chain (it was unreachable at request
time). A worker relays them in order once the chain answers again.

The queue lives in the node's state DB (SQLite or the MySQL index database): any API process
queues, the worker claims and relays (``ConsentRelayQueue.pending``). A worker dying between
the relay transaction and ``mark_relayed`` leaves the row queued under its claim; once the
claim lapses the next worker relays it again, and the chain refuses the repeat (the signed
nonce is used), so the row ends ``failed`` although its consent was applied: the consent's
on-chain state, not this row, is the truth.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from node.chain.class_consents import ClassConsentGrant, ClassConsentRevoke
from node.chain.models import ConsentGrant, ConsentRevoke
from node.consent.typed_data import ScopeKind
from storage.sql import SqlDatabaseAPI, open_database

_MIGRATIONS = [
    """
    CREATE TABLE consent_relays (id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL,
        message TEXT NOT NULL, signature BLOB NOT NULL, status TEXT NOT NULL,
        tx_hash BLOB, block_number INTEGER, error TEXT, queued_at INTEGER NOT NULL,
        done_at INTEGER);
    CREATE INDEX consent_relays_status ON consent_relays (status, id)
    """,
    # Claims: the lease fence of the worker relaying the row and when it claimed it.
    """
    ALTER TABLE consent_relays ADD COLUMN claimed_by INTEGER;
    ALTER TABLE consent_relays ADD COLUMN claimed_at REAL
    """,
]
_MYSQL_MIGRATIONS = [
    """
    CREATE TABLE IF NOT EXISTS consent_relays (id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
        kind VARCHAR(16) NOT NULL, message TEXT NOT NULL, signature BLOB NOT NULL,
        status VARCHAR(16) NOT NULL, tx_hash VARBINARY(64) NULL, block_number BIGINT NULL,
        error TEXT NULL, queued_at BIGINT NOT NULL, done_at BIGINT NULL,
        claimed_by BIGINT NULL, claimed_at DOUBLE NULL,
        KEY consent_relays_status (status, id))
        ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin
    """,
]
DEFAULT_CLAIM_TTL = 60.0  # seconds a claim keeps rows from another worker


SignedConsent = ConsentGrant | ConsentRevoke | ClassConsentGrant | ClassConsentRevoke

# Queue kind of each signed message type (the column ``kind``).
_KINDS: dict[type, str] = {
    ConsentGrant: "grant",
    ConsentRevoke: "revoke",
    ClassConsentGrant: "class-grant",
    ClassConsentRevoke: "class-revoke",
}


@dataclass(frozen=True, slots=True)
class QueuedRelay:
    relay_id: int
    kind: str  # "grant" | "revoke" | "class-grant" | "class-revoke"
    consent: SignedConsent
    signature: bytes
    status: str  # "queued" | "relayed" | "failed"
    tx_hash: bytes | None = None
    block_number: int | None = None
    error: str | None = None


def _encode(consent: SignedConsent) -> str:
    m = consent.message()
    m["scope"] = "0x" + consent.scope.hex()
    return json.dumps(m)


def _decode(kind: str, text: str) -> SignedConsent:
    m: dict[str, Any] = json.loads(text)
    scope = bytes.fromhex(m["scope"][2:])
    if kind == "class-grant":
        return ClassConsentGrant(
            m["patient"],
            m["hospital"],
            m["roles"],
            ScopeKind(m["scopeKind"]),
            scope,
            m["expiresAt"],
            m["nonce"],
            m["deadline"],
        )
    if kind == "class-revoke":
        return ClassConsentRevoke(
            m["patient"],
            m["hospital"],
            m["roles"],
            ScopeKind(m["scopeKind"]),
            scope,
            m["nonce"],
            m["deadline"],
        )
    if kind == "grant":
        return ConsentGrant(
            m["patient"],
            m["grantee"],
            ScopeKind(m["scopeKind"]),
            scope,
            m["expiresAt"],
            m["nonce"],
            m["deadline"],
        )
    return ConsentRevoke(
        m["patient"], m["grantee"], ScopeKind(m["scopeKind"]), scope, m["nonce"], m["deadline"]
    )


class ConsentRelayQueue:
    """The relay queue in the node's state DB.

    Args:
        db: the state database (SQLite or MySQL), or the path of an SQLite file that the
            queue opens and closes itself.
        claim_ttl: seconds rows claimed by one worker stay out of another's reach.
    """

    def __init__(self, db: Path | SqlDatabaseAPI, *, claim_ttl: float = DEFAULT_CLAIM_TTL) -> None:
        self._db, self._owns_db = open_database(db)
        self._db.migrate(
            "consent_relays", _MIGRATIONS if self._db.dialect == "sqlite" else _MYSQL_MIGRATIONS
        )
        self.claim_ttl = claim_ttl

    def enqueue(self, consent: SignedConsent, signature: bytes) -> int:
        kind = _KINDS[type(consent)]
        with self._db.transaction() as cur:
            cur.execute(
                "INSERT INTO consent_relays (kind, message, signature, status, queued_at)"
                " VALUES (?, ?, ?, 'queued', ?)",
                (kind, _encode(consent), signature, int(time.time())),
            )
            return int(cur.lastrowid or 0)

    def _row(self, r: tuple[Any, ...]) -> QueuedRelay:
        return QueuedRelay(
            r[0],
            r[1],
            _decode(r[1], r[2]),
            bytes(r[3]),
            r[4],
            bytes(r[5]) if r[5] is not None else None,
            r[6],
            r[7],
        )

    _COLUMNS = "id, kind, message, signature, status, tx_hash, block_number, error"

    def pending(self, limit: int, fence: int | None = None) -> list[QueuedRelay]:
        """Claim up to ``limit`` queued consents for the worker holding lease ``fence`` and
        return them, oldest first.

        A queued row is claimable when nobody claimed it, when ``fence`` itself did, or when
        its claim is older than ``claim_ttl`` and was made under an older fence. A row
        claimed under a newer fence is never returned to an older one. MySQL skips rows
        another claimer has locked (SKIP LOCKED); SQLite serialises claims. ``fence=None``
        reads without claiming (one process alone with the queue)."""
        if fence is None:
            rows = self._db.query(
                f"SELECT {self._COLUMNS} FROM consent_relays WHERE status = 'queued'"
                " ORDER BY id LIMIT ?",
                (limit,),
            )
            return [self._row(r) for r in rows]
        now = time.time()
        with self._db.transaction() as cur:
            rows = cur.execute(
                f"SELECT {self._COLUMNS} FROM consent_relays WHERE status = 'queued'"
                " AND (claimed_by IS NULL OR claimed_by = ? OR (claimed_by < ? AND claimed_at < ?))"
                " ORDER BY id LIMIT ?" + self._db.for_update(skip_locked=True),
                (fence, fence, now - self.claim_ttl, limit),
            ).fetchall()
            if rows:
                cur.executemany(
                    "UPDATE consent_relays SET claimed_by = ?, claimed_at = ? WHERE id = ?",
                    [(fence, now, r[0]) for r in rows],
                )
        return [self._row(r) for r in rows]

    def get(self, relay_id: int) -> QueuedRelay | None:
        rows = self._db.query(
            f"SELECT {self._COLUMNS} FROM consent_relays WHERE id = ?", (relay_id,)
        )
        return self._row(rows[0]) if rows else None

    def count(self) -> int:
        return int(
            self._db.query("SELECT COUNT(*) FROM consent_relays WHERE status = 'queued'")[0][0]
        )

    def mark_relayed(self, relay_id: int, tx_hash: bytes, block_number: int) -> None:
        with self._db.transaction() as cur:
            cur.execute(
                "UPDATE consent_relays SET status = 'relayed', tx_hash = ?, block_number = ?,"
                " done_at = ? WHERE id = ?",
                (tx_hash, block_number, int(time.time()), relay_id),
            )

    def mark_failed(self, relay_id: int, error: str) -> None:
        with self._db.transaction() as cur:
            # Never over a relayed row (a repeat relay refused by the chain).
            cur.execute(
                "UPDATE consent_relays SET status = 'failed', error = ?, done_at = ?"
                " WHERE id = ? AND status = 'queued'",
                (error, int(time.time()), relay_id),
            )

    def close(self) -> None:
        """Close the database if this queue opened it (from a path)."""
        if self._owns_db:
            self._db.close()
