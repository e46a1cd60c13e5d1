"""Durable queue of signed consents waiting for the chain (it was unreachable at request
time). A worker relays them in order once the chain answers again."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from node.chain.class_consents import ClassConsentGrant, ClassConsentRevoke
from node.chain.models import ConsentGrant, ConsentRevoke
from node.consent.typed_data import ScopeKind
from node.sqlite_db import SQLiteDatabase

_MIGRATIONS = [
    """
    CREATE TABLE consent_relays (id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL,
        message TEXT NOT NULL, signature BLOB NOT NULL, status TEXT NOT NULL,
        tx_hash BLOB, block_number INTEGER, error TEXT, queued_at INTEGER NOT NULL,
        done_at INTEGER);
    CREATE INDEX consent_relays_status ON consent_relays (status, id)
    """,
]


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
    def __init__(self, path: Path) -> None:
        self._db = SQLiteDatabase(path, "consent_relays", _MIGRATIONS)

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

    def pending(self, limit: int) -> list[QueuedRelay]:
        rows = self._db.query(
            f"SELECT {self._COLUMNS} FROM consent_relays WHERE status = 'queued'"
            " ORDER BY id LIMIT ?",
            (limit,),
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
            cur.execute(
                "UPDATE consent_relays SET status = 'failed', error = ?, done_at = ? WHERE id = ?",
                (error, int(time.time()), relay_id),
            )

    def close(self) -> None:
        self._db.close()
