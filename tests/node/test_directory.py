"""The hospital directory on SQLite and MySQL: clinicians, reason commitments and the
break-glass ledger with its caps, through two connections and under contention."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from node.audit.reasons import BREAK_GLASS, new_commitment
from node.directory import (
    ALL_RECORDS,
    BreakGlassLimits,
    BreakGlassOpening,
    HospitalDirectory,
)
from node.exceptions import Conflict, LimitExceeded
from tests.storage.sql_fixtures import SQL_BACKENDS, SqlDatabases, sql_databases

DOCTOR = "0x" + "d0" * 20
APPROVER = "0x" + "a0" * 20
PATIENT = "0x" + "70" * 20


@pytest.fixture(params=SQL_BACKENDS)
def dbs(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlDatabases]:
    yield from sql_databases(request.param, tmp_path)


def _opening(clinician: str = DOCTOR, record: bytes = ALL_RECORDS, **kw: int) -> BreakGlassOpening:
    now = kw.get("now", int(time.time()))
    return BreakGlassOpening(
        PATIENT,
        clinician,
        record,
        now,
        now + kw.get("duration", 600),
        new_commitment(BREAK_GLASS, "unconscious patient", "ehr", APPROVER),
    )


def test_clinicians_are_registered_and_updated(dbs: SqlDatabases) -> None:
    directory = HospitalDirectory(dbs.connect())
    added = directory.add_clinician(DOCTOR, "physician", licence_expiry=2_000_000_000)
    assert (added.role, added.licence_expiry) == ("physician", 2_000_000_000)
    updated = directory.add_clinician(DOCTOR, "nurse")
    assert (updated.role, updated.licence_expiry, updated.added_at) == (
        "nurse",
        None,
        added.added_at,
    )
    assert directory.clinician(APPROVER) is None
    assert [c.address for c in directory.clinicians()] == [DOCTOR]
    directory.close()


def test_reasons_are_kept_once(dbs: SqlDatabases) -> None:
    directory = HospitalDirectory(dbs.connect())
    commitment = new_commitment(BREAK_GLASS, "cardiac arrest", "ehr", APPROVER)
    directory.save_reason(commitment, b"\x01" * 32)
    directory.save_reason(commitment, b"\x02" * 32)  # a second save is ignored
    stored = directory.stored_reason(commitment.reason_hash)
    assert stored is not None and stored.commitment == commitment
    assert stored.tx_hash == b"\x01" * 32
    assert directory.reason(commitment.reason_hash) == "cardiac arrest"
    assert directory.stored_reason(b"\x00" * 32) is None


def test_the_ledger_reserves_confirms_releases_and_caps(dbs: SqlDatabases) -> None:
    directory = HospitalDirectory(dbs.connect())
    limits = BreakGlassLimits(window=3600, per_clinician=2, per_patient=10)
    first = directory.reserve(_opening(), limits)
    with pytest.raises(Conflict):  # live break-glass over all records covers this one
        directory.reserve(_opening(record=b"\x01" * 32), limits)
    directory.release(first)  # its transaction failed
    second = directory.reserve(_opening(duration=1), limits)
    directory.confirm(second, b"\x0c" * 32, int(time.time()) - 1)  # mined, already ended
    stored = directory.stored_reason(_reason_hash_of(dbs, second))
    assert stored is not None and stored.tx_hash == b"\x0c" * 32
    directory.reserve(_opening(record=b"\x02" * 32), limits)
    with pytest.raises(LimitExceeded) as capped:
        directory.reserve(_opening(record=b"\x03" * 32), limits)
    assert capped.value.retry_after is not None and capped.value.retry_after > 0


def _reason_hash_of(dbs: SqlDatabases, opening_id: int) -> bytes:
    [(reason_hash,)] = dbs.raw(
        "SELECT reason_hash FROM break_glass_openings WHERE id = ?", (opening_id,)
    )
    return bytes(reason_hash)


def test_a_write_through_one_connection_is_seen_by_another(dbs: SqlDatabases) -> None:
    a, b = HospitalDirectory(dbs.connect()), HospitalDirectory(dbs.connect())
    a.add_clinician(DOCTOR, "physician")
    found = b.clinician(DOCTOR)
    assert found is not None and found.role == "physician"
    limits = BreakGlassLimits(window=3600, per_clinician=5, per_patient=5)
    a.reserve(_opening(), limits)
    with pytest.raises(Conflict):
        b.reserve(_opening(), limits)


def test_the_cap_holds_under_contention(dbs: SqlDatabases) -> None:
    """Two connections (two API processes) reserve for different clinicians at once: the
    per-patient cap of 3 admits exactly 3."""
    directories = [HospitalDirectory(dbs.connect()) for _ in range(2)]
    limits = BreakGlassLimits(window=3600, per_clinician=100, per_patient=3)
    admitted: list[int] = []
    refused: list[int] = []

    def reserve(n: int) -> None:
        for i in range(5):
            clinician = "0x" + f"{n:02x}{i:02x}" * 10
            try:
                admitted.append(directories[n].reserve(_opening(clinician), limits))
            except LimitExceeded:
                refused.append(n)

    threads = [threading.Thread(target=reserve, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(admitted) == 3 and len(refused) == 7
