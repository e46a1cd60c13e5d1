"""SQLiteRecordIndex: the conformance suite plus schema and pragma specifics."""

from __future__ import annotations

import sqlite3
import stat
from dataclasses import replace
from pathlib import Path

import pytest

from storage.abc import RecordIndexAPI
from storage.backends.sqlite import MIGRATIONS, SQLiteRecordIndex
from storage.exceptions import BackendUnavailable, IntegrityError, StorageError
from tests.storage.conformance import (
    RecordIndexConformance,
    make_batch,
    make_receipts,
    make_row,
)


class TestSQLiteRecordIndex(RecordIndexConformance):
    def make_record_index(self, location: Path) -> RecordIndexAPI:
        return SQLiteRecordIndex(location / "index.sqlite3")


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "index.sqlite3"


def test_schema_and_pragmas(db_path: Path) -> None:
    index = SQLiteRecordIndex(db_path)
    assert index.schema_version == len(MIGRATIONS)
    index.close()
    conn = sqlite3.connect(db_path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        assert {"records", "anchor_outbox", "anchor_batches", "anchor_receipts"} <= names
        assert {
            "records_patient_created",
            "records_creator_category",
            "records_previous",
        } <= names
    finally:
        conn.close()
    assert stat.S_IMODE(db_path.stat().st_mode) == 0o600


def test_reopening_does_not_migrate_again(db_path: Path) -> None:
    SQLiteRecordIndex(db_path).add_records([make_row(1)])
    index = SQLiteRecordIndex(db_path)
    assert index.schema_version == len(MIGRATIONS)
    assert index.get_record(make_row(1).record_id) == make_row(1)


def test_refuses_a_newer_schema(db_path: Path) -> None:
    SQLiteRecordIndex(db_path).close()
    conn = sqlite3.connect(db_path)
    conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    conn.close()
    with pytest.raises(StorageError, match="newer"):
        SQLiteRecordIndex(db_path)


def test_proof_is_stored_as_concatenated_hashes(db_path: Path) -> None:
    index = SQLiteRecordIndex(db_path)
    rows = [make_row(n) for n in range(3)]
    index.add_records(rows)
    receipts = make_receipts(rows)
    index.mark_anchored(make_batch(1, 3), receipts)
    index.close()
    conn = sqlite3.connect(db_path)
    try:
        stored = conn.execute(
            "SELECT proof FROM anchor_receipts WHERE record_id = ?", (rows[2].record_id,)
        ).fetchone()[0]
    finally:
        conn.close()
    assert stored == b"".join(receipts[rows[2].record_id].proof)
    assert len(stored) == 64


def test_replaying_a_batch_is_harmless_but_a_conflict_is_not(db_path: Path) -> None:
    index = SQLiteRecordIndex(db_path)
    rows = [make_row(1)]
    index.add_records(rows)
    index.mark_anchored(make_batch(1, 1), make_receipts(rows))
    index.mark_anchored(make_batch(1, 1), make_receipts(rows))
    conflicting = replace(make_batch(1, 1), root=b"\xee" * 32)
    with pytest.raises(IntegrityError):
        index.mark_anchored(conflicting, make_receipts(rows))
    assert index.get_batch(1) == make_batch(1, 1)


@pytest.mark.parametrize(
    "field, value",
    [("record_id", b"short"), ("content_hash", b"\x00" * 31), ("previous_id", b"\x00" * 33)],
)
def test_rejects_malformed_hashes(db_path: Path, field: str, value: bytes) -> None:
    index = SQLiteRecordIndex(db_path)
    with pytest.raises(ValueError):
        index.add_records([replace(make_row(1), **{field: value})])


def test_closed_index(db_path: Path) -> None:
    index = SQLiteRecordIndex(db_path)
    index.close()
    index.close()
    with pytest.raises(BackendUnavailable):
        index.count_pending_anchors()


def test_unusable_path(tmp_path: Path) -> None:
    with pytest.raises(BackendUnavailable):
        SQLiteRecordIndex(tmp_path / "missing-dir" / "index.sqlite3")
