"""The hospital's own directory: its clinicians (for hospital-wide consents, and the role
and licence expiry the node puts in their zero-knowledge credentials) and the break-glass
reasons whose hashes it put on-chain."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
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
    # The licence expiry (unix seconds) the node writes into a clinician's credential;
    # NULL for clinicians registered before (no credential until it is set).
    "ALTER TABLE clinicians ADD COLUMN licence_expiry INTEGER",
]

_COLUMNS = "address, role, added_at, licence_expiry"


@dataclass(frozen=True, slots=True)
class Clinician:
    address: str
    role: str
    added_at: int
    licence_expiry: int | None = None  # unix seconds; None: not recorded


class ClinicianDirectoryAPI(ABC):
    """The hospital's clinicians, as the hospital vouches for them."""

    @abstractmethod
    def clinician(self, address: str) -> Clinician | None:
        """The clinician registered under the checksummed ``address``, or None."""


class HospitalDirectory(ClinicianDirectoryAPI):
    def __init__(self, path: Path) -> None:
        self._db = SQLiteDatabase(path, "directory", _MIGRATIONS)

    def add_clinician(
        self, address: str, role: str, licence_expiry: int | None = None
    ) -> Clinician:
        """Register (or update) a clinician; role and licence expiry are replaced."""
        now = int(time.time())
        with self._db.transaction() as cur:
            cur.execute(
                "INSERT INTO clinicians (address, role, added_at, licence_expiry)"
                " VALUES (?, ?, ?, ?) ON CONFLICT(address) DO UPDATE"
                " SET role = excluded.role, licence_expiry = excluded.licence_expiry",
                (address, role, now, licence_expiry),
            )
        found = self.clinician(address)
        assert found is not None
        return found

    def clinician(self, address: str) -> Clinician | None:
        rows = self._db.query(f"SELECT {_COLUMNS} FROM clinicians WHERE address = ?", (address,))
        return Clinician(*rows[0]) if rows else None

    def clinicians(self) -> list[Clinician]:
        return [
            Clinician(*r)
            for r in self._db.query(f"SELECT {_COLUMNS} FROM clinicians ORDER BY added_at")
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
