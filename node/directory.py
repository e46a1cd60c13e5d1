"""The hospital's own directory: its clinicians (for hospital-wide consents, break-glass, and
the role and licence expiry the node puts in their zero-knowledge credentials), the reasons
whose salted commitments it put on-chain (break-glass and erasure), and the ledger of its
break-glass openings that the break-glass caps count."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

from node.audit.reasons import LEGACY, ReasonCommitment
from node.exceptions import Conflict, LimitExceeded
from storage.sql import SqlCursorAPI, SqlDatabaseAPI, open_database

ALL_RECORDS = b"\x00" * 32  # record id of a break-glass over every record of the patient

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
    # Salted reason commitments (node/audit/reasons.py): rows from before have no salt and
    # stay verifiable as keccak256(reason). The ledger of break-glass openings (pending
    # until their transaction is mined) is what the per-clinician and per-patient caps and
    # the no-renewal rule read.
    """
    ALTER TABLE break_glass_reasons ADD COLUMN salt BLOB;
    ALTER TABLE break_glass_reasons ADD COLUMN kind TEXT;
    ALTER TABLE break_glass_reasons ADD COLUMN approved_by TEXT;
    CREATE TABLE break_glass_openings (id INTEGER PRIMARY KEY AUTOINCREMENT,
        patient TEXT NOT NULL, clinician TEXT NOT NULL, record_id BLOB NOT NULL,
        approved_by TEXT NOT NULL, opened_by TEXT NOT NULL, opened_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL, reason_hash BLOB NOT NULL, tx_hash BLOB,
        state TEXT NOT NULL);
    CREATE INDEX break_glass_openings_clinician ON break_glass_openings (clinician, opened_at);
    CREATE INDEX break_glass_openings_patient ON break_glass_openings (patient, opened_at)
    """,
    # A clinician's display name, for patients choosing a grantee (NULL: none given).
    "ALTER TABLE clinicians ADD COLUMN name TEXT",
]
# The same schema on MySQL, in one version.
_TABLE = "ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"
_MYSQL_MIGRATIONS = [
    f"""
    CREATE TABLE IF NOT EXISTS clinicians (address VARCHAR(64) NOT NULL PRIMARY KEY,
        role VARCHAR(64) NOT NULL, added_at BIGINT NOT NULL, licence_expiry BIGINT NULL,
        KEY clinicians_added (added_at)) {_TABLE};
    CREATE TABLE IF NOT EXISTS break_glass_reasons (reason_hash VARBINARY(32) NOT NULL
        PRIMARY KEY, reason TEXT NOT NULL, opened_by VARCHAR(255) NOT NULL,
        tx_hash VARBINARY(64) NOT NULL, opened_at BIGINT NOT NULL, salt VARBINARY(64) NULL,
        kind VARCHAR(64) NULL, approved_by VARCHAR(255) NULL) {_TABLE};
    CREATE TABLE IF NOT EXISTS break_glass_openings (id BIGINT NOT NULL AUTO_INCREMENT
        PRIMARY KEY, patient VARCHAR(64) NOT NULL, clinician VARCHAR(64) NOT NULL,
        record_id VARBINARY(32) NOT NULL, approved_by VARCHAR(255) NOT NULL,
        opened_by VARCHAR(255) NOT NULL, opened_at BIGINT NOT NULL, expires_at BIGINT NOT NULL,
        reason_hash VARBINARY(32) NOT NULL, tx_hash VARBINARY(64) NULL,
        state VARCHAR(16) NOT NULL,
        KEY break_glass_openings_clinician (clinician, opened_at),
        KEY break_glass_openings_patient (patient, opened_at)) {_TABLE}
    """,
    "ALTER TABLE clinicians ADD COLUMN name VARCHAR(255) NULL",
]

_COLUMNS = "address, role, added_at, licence_expiry, name"
_REASON_COLUMNS = "reason_hash, reason, opened_by, tx_hash, opened_at, salt, kind, approved_by"


@dataclass(frozen=True, slots=True)
class Clinician:
    address: str
    role: str
    added_at: int
    licence_expiry: int | None = None  # unix seconds; None: not recorded
    name: str | None = None  # display name shown to patients; None: none given


@dataclass(frozen=True, slots=True)
class StoredReason:
    """A reason as the node keeps it: the commitment and where it went on-chain."""

    reason_hash: bytes  # the on-chain value it was stored under
    commitment: ReasonCommitment
    tx_hash: bytes | None  # the transaction that carried it; None: none recorded
    opened_at: int


@dataclass(frozen=True, slots=True)
class BreakGlassOpening:
    """One break-glass this node opened (or is opening)."""

    patient: str
    clinician: str
    record_id: bytes  # ALL_RECORDS: every record of the patient
    opened_at: int
    expires_at: int  # the node's estimate until mined, then the chain's value
    commitment: ReasonCommitment  # reason, salt, approver, hospital token name
    tx_hash: bytes | None = None
    id: int | None = None


@dataclass(frozen=True, slots=True)
class BreakGlassLimits:
    window: int  # seconds, rolling
    per_clinician: int  # openings for one clinician per window
    per_patient: int  # openings on one patient per window


class ClinicianDirectoryAPI(ABC):
    """The hospital's clinicians, as the hospital vouches for them."""

    @abstractmethod
    def clinician(self, address: str) -> Clinician | None:
        """The clinician registered under the checksummed ``address``, or None."""


class ReasonStoreAPI(ABC):
    """Reasons kept off-chain beside their on-chain commitments, for auditors."""

    @abstractmethod
    def save_reason(self, commitment: ReasonCommitment, tx_hash: bytes = b"") -> None:
        """Keep ``commitment`` under its hash (a second save of the same hash is ignored)."""

    @abstractmethod
    def stored_reason(self, reason_hash: bytes) -> StoredReason | None:
        """The reason stored under ``reason_hash``, or None."""


class BreakGlassLedgerAPI(ABC):
    """The hospital's own record of its break-glass openings, which its caps count."""

    @abstractmethod
    def reserve(self, opening: BreakGlassOpening, limits: BreakGlassLimits) -> int:
        """Check ``opening`` against the ledger and, in the same transaction, record it as
        pending with its reason; return its id.

        Raises Conflict if the clinician already has live break-glass on the patient that
        covers the requested record (all records covers every record), and LimitExceeded
        (with ``retry_after``) if the clinician or the patient reached their cap of openings
        in the window ending at ``opening.opened_at``."""

    @abstractmethod
    def confirm(self, opening_id: int, tx_hash: bytes, expires_at: int) -> None:
        """Mark a reserved opening as mined in ``tx_hash``, with the chain's expiry."""

    @abstractmethod
    def release(self, opening_id: int) -> None:
        """Forget a reserved opening whose transaction failed. Its reason stays: should
        the transaction have been mined after all, the hash on-chain can still be disclosed."""


class HospitalDirectory(ClinicianDirectoryAPI, ReasonStoreAPI, BreakGlassLedgerAPI):
    """The directory in the node's state DB: ``db`` is the database (SQLite or MySQL), or
    the path of an SQLite file the directory opens and closes itself."""

    def __init__(self, db: Path | SqlDatabaseAPI) -> None:
        self._db, self._owns_db = open_database(db)
        self._db.migrate(
            "directory", _MIGRATIONS if self._db.dialect == "sqlite" else _MYSQL_MIGRATIONS
        )

    # -- clinicians ------------------------------------------------------------------
    def add_clinician(
        self, address: str, role: str, licence_expiry: int | None = None, name: str | None = None
    ) -> Clinician:
        """Register (or update) a clinician; role, licence expiry and name are replaced."""
        now = int(time.time())
        with self._db.transaction() as cur:
            cur.execute(
                self._db.upsert(
                    "clinicians",
                    ("address", "role", "added_at", "licence_expiry", "name"),
                    "address",
                    ("role", "licence_expiry", "name"),
                ),
                (address, role, now, licence_expiry, name),
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

    # -- reasons ---------------------------------------------------------------------
    def save_reason(self, commitment: ReasonCommitment, tx_hash: bytes = b"") -> None:
        with self._db.transaction() as cur:
            self._insert_reason(cur, commitment, tx_hash, int(time.time()))

    def _insert_reason(
        self, cur: SqlCursorAPI, c: ReasonCommitment, tx_hash: bytes, now: int
    ) -> None:
        cur.execute(
            self._db.insert_or_ignore(
                "break_glass_reasons", _REASON_COLUMNS.split(", "), "reason_hash"
            ),
            (
                c.reason_hash,
                c.reason,
                c.opened_by,
                tx_hash,
                now,
                c.salt,
                None if c.salt is None else c.kind,
                c.approved_by,
            ),
        )

    def stored_reason(self, reason_hash: bytes) -> StoredReason | None:
        rows = self._db.query(
            f"SELECT {_REASON_COLUMNS} FROM break_glass_reasons WHERE reason_hash = ?",
            (reason_hash,),
        )
        if not rows:
            return None
        key, reason, opened_by, tx_hash, opened_at, salt, kind, approved_by = rows[0]
        commitment = ReasonCommitment(
            kind if salt is not None else LEGACY,
            reason,
            bytes(salt) if salt is not None else None,
            opened_by,
            approved_by,
        )
        return StoredReason(bytes(key), commitment, bytes(tx_hash) or None, opened_at)

    def reason(self, reason_hash: bytes) -> str | None:
        """The reason text stored under ``reason_hash`` (see ``stored_reason``)."""
        found = self.stored_reason(reason_hash)
        return found.commitment.reason if found else None

    # -- break-glass ledger ----------------------------------------------------------
    def reserve(self, opening: BreakGlassOpening, limits: BreakGlassLimits) -> int:
        now = opening.opened_at
        since = now - limits.window
        # Locked: two processes reserving at once cannot both pass a cap with one left.
        with self._db.transaction(lock="break_glass") as cur:
            live = cur.execute(
                "SELECT MAX(expires_at) FROM break_glass_openings WHERE patient = ?"
                " AND clinician = ? AND expires_at > ? AND record_id IN (?, ?)",
                (opening.patient, opening.clinician, now, opening.record_id, ALL_RECORDS),
            ).fetchone()[0]
            if live is not None:
                raise Conflict(
                    f"clinician {opening.clinician} already has live break-glass on this "
                    f"patient until {live}; it cannot be renewed before it ends"
                )
            for column, value, cap, who in (
                ("clinician", opening.clinician, limits.per_clinician, "this clinician"),
                ("patient", opening.patient, limits.per_patient, "this patient"),
            ):
                count, oldest = cur.execute(
                    f"SELECT COUNT(*), MIN(opened_at) FROM break_glass_openings"
                    f" WHERE {column} = ? AND opened_at > ?",
                    (value, since),
                ).fetchone()
                if count >= cap:
                    retry = max(1, int(oldest) + limits.window - now + 1)
                    raise LimitExceeded(
                        f"break-glass cap reached: {count} openings for {who} in the last "
                        f"{limits.window} s (at most {cap}); retry in {retry} s",
                        retry_after=retry,
                    )
            c = opening.commitment
            cur.execute(
                "INSERT INTO break_glass_openings (patient, clinician, record_id, approved_by,"
                " opened_by, opened_at, expires_at, reason_hash, tx_hash, state)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, 'pending')",
                (
                    opening.patient,
                    opening.clinician,
                    opening.record_id,
                    c.approved_by or "",
                    c.opened_by,
                    now,
                    opening.expires_at,
                    c.reason_hash,
                ),
            )
            opening_id = int(cur.lastrowid or 0)
            self._insert_reason(cur, c, b"", now)
        return opening_id

    def confirm(self, opening_id: int, tx_hash: bytes, expires_at: int) -> None:
        with self._db.transaction() as cur:
            cur.execute(
                "UPDATE break_glass_openings SET state = 'open', tx_hash = ?, expires_at = ?"
                " WHERE id = ?",
                (tx_hash, expires_at, opening_id),
            )
            cur.execute(
                "UPDATE break_glass_reasons SET tx_hash = ? WHERE reason_hash ="
                " (SELECT reason_hash FROM break_glass_openings WHERE id = ?)",
                (tx_hash, opening_id),
            )

    def release(self, opening_id: int) -> None:
        with self._db.transaction() as cur:
            cur.execute(
                "DELETE FROM break_glass_openings WHERE id = ? AND state = 'pending'",
                (opening_id,),
            )

    def close(self) -> None:
        """Close the database if this directory opened it (from a path)."""
        if self._owns_db:
            self._db.close()
