"""The patient identifier directory: which wallet address a hospital's own patient
identifiers (an MRN from an HL7 PID-3, a FHIR ``Patient.identifier``) stand for.

An identifier is a ``(system, value)`` pair, as in FHIR: ``system`` names who issued it
(HL7 v2: ``urn:emr-node:hl7:<assigning authority>``, see docs/hl7v2.md), ``value`` is the
identifier itself. The wallet address is an identifier too, under ``WALLET_SYSTEM``; it maps
to itself and is never stored.

Who vouches: a link is made only by the hospital (an ADT message from an allowed peer and
facility, or a hospital/admin token through FHIR), never by whoever reads. The directory
itself trusts its caller; the listeners and routers check who is calling first.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path

from eth_utils import is_address, to_checksum_address

from node.exceptions import Conflict, InvalidRequest
from storage.sql import SqlCursorAPI, SqlDatabaseAPI, open_database

__all__ = ["MAX_IDENTIFIER_LENGTH", "WALLET_SYSTEM", "PatientDirectory", "checksum_wallet"]

WALLET_SYSTEM = "urn:emr-node:wallet"  # FHIR/HL7 identifier system of a wallet address
MAX_IDENTIFIER_LENGTH = 255  # system and value each (a bounded MySQL key)

_MIGRATIONS = [
    """
    CREATE TABLE patient_identifiers (system TEXT NOT NULL, value TEXT NOT NULL,
        address TEXT NOT NULL, source TEXT NOT NULL, linked_at INTEGER NOT NULL,
        PRIMARY KEY (system, value));
    CREATE INDEX patient_identifiers_address ON patient_identifiers (address)
    """,
]
_TABLE = "ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"
_MYSQL_MIGRATIONS = [
    f"""
    CREATE TABLE IF NOT EXISTS patient_identifiers (system VARCHAR(255) NOT NULL,
        value VARCHAR(255) NOT NULL, address VARCHAR(64) NOT NULL,
        source VARCHAR(255) NOT NULL, linked_at BIGINT NOT NULL,
        PRIMARY KEY (system, value),
        KEY patient_identifiers_address (address)) {_TABLE}
    """,
]


def checksum_wallet(value: str) -> str:
    """``value`` as a checksummed wallet address; raises InvalidRequest if it is none."""
    if not isinstance(value, str) or not is_address(value):
        raise InvalidRequest("not a wallet address (0x and 40 hex digits)")
    return str(to_checksum_address(value))


def _check_identifier(system: str, value: str) -> None:
    for name, part in (("system", system), ("value", value)):
        if not part or len(part) > MAX_IDENTIFIER_LENGTH:
            raise InvalidRequest(
                f"identifier {name} must be 1 to {MAX_IDENTIFIER_LENGTH} characters"
            )


class PatientDirectory:
    """The directory in the node's state DB: ``db`` is the database (SQLite or MySQL), or
    the path of an SQLite file the directory opens and closes itself."""

    def __init__(self, db: Path | SqlDatabaseAPI) -> None:
        self._db, self._owns_db = open_database(db)
        self._db.migrate(
            "patients", _MIGRATIONS if self._db.dialect == "sqlite" else _MYSQL_MIGRATIONS
        )

    def link(self, system: str, value: str, address: str, *, source: str) -> None:
        """Link the identifier to ``address`` (upsert: an identifier linked to another
        wallet moves to this one). ``source`` says who vouched (e.g. ``hl7:<facility>``,
        ``fhir:<token name>``). Raises InvalidRequest for an empty or too long identifier,
        an address that is none, or a wallet identifier naming another wallet."""
        self.link_all([(system, value)], address, source=source, move=True)

    def link_all(
        self,
        identifiers: Iterable[tuple[str, str]],
        address: str,
        *,
        source: str,
        move: bool = False,
    ) -> list[tuple[str, str]]:
        """Link every identifier to ``address`` in one transaction, all or none; return
        the identifiers that moved from another wallet.

        ``move`` False: an identifier already linked to another wallet raises Conflict and
        nothing is linked (a registration must not silently take over a patient's MRN).
        Raises InvalidRequest as ``link`` does."""
        wallet = checksum_wallet(address)
        pairs: list[tuple[str, str]] = []
        for system, value in identifiers:
            _check_identifier(system, value)
            if system == WALLET_SYSTEM:
                # The wallet identifies itself: nothing to store, but it must agree.
                if checksum_wallet(value) != wallet:
                    raise InvalidRequest("a wallet identifier names another wallet")
                continue
            if (system, value) not in pairs:
                pairs.append((system, value))
        source = source[:MAX_IDENTIFIER_LENGTH]
        now = int(time.time())
        moved: list[tuple[str, str]] = []
        with self._db.transaction(lock="patient_identifiers") as cur:
            for system, value in pairs:
                current = self._current(cur, system, value)
                if current is not None and current != wallet:
                    if not move:
                        raise Conflict(
                            f"identifier of system {system} is linked to another wallet;"
                            " only an update that says so may move it"
                        )
                    moved.append((system, value))
            if not pairs:
                return moved
            cur.executemany(
                self._db.upsert(
                    "patient_identifiers",
                    ("system", "value", "address", "source", "linked_at"),
                    "system, value",
                    ("address", "source", "linked_at"),
                ),
                [(system, value, wallet, source, now) for system, value in pairs],
            )
        return moved

    def _current(self, cur: SqlCursorAPI, system: str, value: str) -> str | None:
        row = cur.execute(
            # The named lock of the transaction already serialises every link.
            "SELECT address FROM patient_identifiers WHERE system = ? AND value = ?",
            (system, value),
        ).fetchone()
        return str(row[0]) if row else None

    def resolve(self, system: str, value: str) -> str | None:
        """The checksummed wallet address ``(system, value)`` is linked to, or None. Under
        ``WALLET_SYSTEM`` the value itself (checksummed; None if it is no address)."""
        if system == WALLET_SYSTEM:
            return str(to_checksum_address(value)) if is_address(value) else None
        if not system or not value:
            return None
        rows = self._db.query(
            "SELECT address FROM patient_identifiers WHERE system = ? AND value = ?",
            (system, value),
        )
        return str(rows[0][0]) if rows else None

    def identifiers(self, address: str) -> list[tuple[str, str]]:
        """Every identifier linked to ``address``, the wallet identifier first, then by
        system and value. An invalid address has none."""
        if not is_address(address):
            return []
        wallet = str(to_checksum_address(address))
        rows = self._db.query(
            "SELECT system, value FROM patient_identifiers WHERE address = ?"
            " ORDER BY system, value",
            (wallet,),
        )
        return [(WALLET_SYSTEM, wallet)] + [(str(s), str(v)) for s, v in rows]

    def unlink(self, system: str, value: str) -> bool:
        """Remove one identifier's link; return whether there was one."""
        with self._db.transaction() as cur:
            cur.execute(
                "DELETE FROM patient_identifiers WHERE system = ? AND value = ?", (system, value)
            )
            return cur.rowcount > 0

    def close(self) -> None:
        """Close the database if this directory opened it (from a path)."""
        if self._owns_db:
            self._db.close()
