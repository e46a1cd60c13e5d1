"""The patient identifier directory on SQLite and MySQL: links, resolution, moves refused
unless asked, all-or-nothing registration, and a second handle seeing the first's links."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from eth_utils import to_checksum_address

from node.exceptions import Conflict, InvalidRequest
from node.patients import WALLET_SYSTEM, PatientDirectory
from tests.storage.sql_fixtures import SQL_BACKENDS, SqlDatabases, sql_databases

ALICE = "0x" + "a1" * 20
BOB = "0x" + "b2" * 20
MRN = "urn:emr-node:hl7:GENHOSP"


@pytest.fixture(params=SQL_BACKENDS)
def dbs(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlDatabases]:
    yield from sql_databases(request.param, tmp_path)


def _checksum(address: str) -> str:
    return str(to_checksum_address(address))


def test_link_resolve_and_list(dbs: SqlDatabases) -> None:
    patients = PatientDirectory(dbs.connect())
    assert patients.resolve(MRN, "12345") is None
    patients.link(MRN, "12345", ALICE, source="hl7:LAB")
    patients.link(
        "urn:oid:2.16.840.1.113883.4.1",
        "123-45-6789",
        ALICE.upper().replace("0X", "0x"),
        source="fhir",
    )
    assert patients.resolve(MRN, "12345") == _checksum(ALICE)
    assert patients.resolve(MRN, "1234") is None  # exact match only
    assert patients.resolve("urn:emr-node:hl7:OTHER", "12345") is None  # system matters
    assert patients.identifiers(ALICE) == [
        (WALLET_SYSTEM, _checksum(ALICE)),
        (MRN, "12345"),
        ("urn:oid:2.16.840.1.113883.4.1", "123-45-6789"),
    ]
    assert patients.identifiers(BOB) == [(WALLET_SYSTEM, _checksum(BOB))]
    assert patients.identifiers("not an address") == []
    # Another handle (another process) sees the same links.
    other = PatientDirectory(dbs.connect())
    assert other.resolve(MRN, "12345") == _checksum(ALICE)
    other.close()
    patients.close()


def test_the_wallet_system_maps_to_itself(dbs: SqlDatabases) -> None:
    patients = PatientDirectory(dbs.connect())
    assert patients.resolve(WALLET_SYSTEM, ALICE) == _checksum(ALICE)
    assert patients.resolve(WALLET_SYSTEM, "0x1234") is None
    patients.link(WALLET_SYSTEM, ALICE, ALICE, source="hl7:LAB")  # agrees: nothing stored
    assert dbs.raw("SELECT COUNT(*) FROM patient_identifiers") == [(0,)]
    with pytest.raises(InvalidRequest):
        patients.link(WALLET_SYSTEM, BOB, ALICE, source="hl7:LAB")
    patients.close()


def test_bad_input_is_refused(dbs: SqlDatabases) -> None:
    patients = PatientDirectory(dbs.connect())
    for system, value, address in (
        ("", "1", ALICE),
        (MRN, "", ALICE),
        (MRN, "x" * 256, ALICE),
        ("s" * 256, "1", ALICE),
        (MRN, "1", "0x1234"),
        (MRN, "1", "alice"),
    ):
        with pytest.raises(InvalidRequest):
            patients.link(system, value, address, source="test")
    assert dbs.raw("SELECT COUNT(*) FROM patient_identifiers") == [(0,)]
    patients.link(MRN, "x" * 255, ALICE, source="test")  # the limit itself fits
    assert patients.resolve(MRN, "x" * 255) == _checksum(ALICE)
    patients.close()


def test_link_moves_but_link_all_refuses_unless_asked(dbs: SqlDatabases) -> None:
    patients = PatientDirectory(dbs.connect())
    patients.link_all([(MRN, "1"), (MRN, "2")], ALICE, source="hl7:ADT")
    # Registering Bob with one of Alice's identifiers: refused, and nothing linked.
    with pytest.raises(Conflict):
        patients.link_all([(MRN, "3"), (MRN, "2")], BOB, source="hl7:ADT")
    assert patients.resolve(MRN, "3") is None
    assert patients.resolve(MRN, "2") == _checksum(ALICE)
    # Relinking to the same wallet is no move.
    assert patients.link_all([(MRN, "1")], ALICE, source="hl7:ADT") == []
    # An update that says so moves it, and says what moved.
    assert patients.link_all([(MRN, "2"), (MRN, "3")], BOB, source="hl7:ADT", move=True) == [
        (MRN, "2")
    ]
    assert patients.resolve(MRN, "2") == _checksum(BOB)
    assert dbs.raw(
        "SELECT source FROM patient_identifiers WHERE system = ? AND value = ?", (MRN, "2")
    ) == [("hl7:ADT",)]
    # The plain upsert moves (a hospital token through FHIR corrects a link).
    patients.link(MRN, "2", ALICE, source="fhir:ehr")
    assert patients.resolve(MRN, "2") == _checksum(ALICE)
    assert patients.unlink(MRN, "2") and not patients.unlink(MRN, "2")
    assert patients.resolve(MRN, "2") is None
    patients.close()


def test_migrations_are_idempotent(dbs: SqlDatabases) -> None:
    PatientDirectory(dbs.connect()).close()
    patients = PatientDirectory(dbs.connect())
    patients.link(MRN, "1", ALICE, source="test")
    patients.close()
