"""The hospital's own directory: its clinicians (for hospital-wide consents) and the
break-glass reasons whose hashes it put on-chain."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from node.sqlite_db import SQLiteDatabase

_MIGRATIONS = [
    """
    CREATE TABLE clinicians (address TEXT PRIMARY KEY, role TEXT NOT NULL,
        added_at INTEGER NOT NULL);
    CREATE TABLE break_glass_reasons (reason_hash BLOB PRIMARY KEY, reason TEXT NOT NULL,
        opened_by TEXT NOT NULL, tx_hash BLOB NOT NULL, opened_at INTEGER NOT NULL)
    """,
]


@dataclass(frozen=True, slots=True)
class Clinician:
    address: str
    role: str
    added_at: int


class HospitalDirectory:
    def __init__(self, path: Path) -> None:
        self._db = SQLiteDatabase(path, "directory", _MIGRATIONS)

    def add_clinician(self, address: str, role: str) -> Clinician:
        now = int(time.time())
        with self._db.transaction() as cur:
            cur.execute(
                "INSERT INTO clinicians VALUES (?, ?, ?) ON CONFLICT(address) DO UPDATE"
                " SET role = excluded.role",
                (address, role, now),
            )
        found = self.clinician(address)
        assert found is not None
        return found

    def clinician(self, address: str) -> Clinician | None:
        rows = self._db.query(
            "SELECT address, role, added_at FROM clinicians WHERE address = ?", (address,)
        )
        return Clinician(*rows[0]) if rows else None

    def clinicians(self) -> list[Clinician]:
        return [
            Clinician(*r)
            for r in self._db.query(
                "SELECT address, role, added_at FROM clinicians ORDER BY added_at"
            )
        ]

    def save_reason(self, reason_hash: bytes, reason: str, opened_by: str, tx_hash: bytes) -> None:
        with self._db.transaction() as cur:
            cur.execute(
                "INSERT OR IGNORE INTO break_glass_reasons VALUES (?, ?, ?, ?, ?)",
                (reason_hash, reason, opened_by, tx_hash, int(time.time())),
            )

    def reason(self, reason_hash: bytes) -> str | None:
        rows = self._db.query(
            "SELECT reason FROM break_glass_reasons WHERE reason_hash = ?", (reason_hash,)
        )
        return rows[0][0] if rows else None

    def close(self) -> None:
        self._db.close()
