"""Records and anchor batches as SQL rows, shared by the SQLite and MySQL indexes: one
column order, one set of checks."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from storage.models import AnchorBatch, KeyUpdate, PendingErasure, RecordRow

HASH_SIZE = 32


def row_to_record(row: Sequence[Any]) -> RecordRow:
    return RecordRow(
        record_id=bytes(row[0]),
        patient=row[1],
        category=row[2],
        content_type=row[3],
        cid=row[4],
        content_hash=bytes(row[5]),
        size=int(row[6]),
        wrapped_key=bytes(row[7]),
        kek_version=int(row[8]),
        creator=row[9],
        created_at=int(row[10]),
        previous_id=None if row[11] is None else bytes(row[11]),
        erased_at=None if len(row) < 13 or row[12] is None else int(row[12]),
        erase_tx=None if len(row) < 14 or row[13] is None else bytes(row[13]),
    )


def row_to_pending_erasure(row: Sequence[Any]) -> PendingErasure:
    """From ``record_id, cid, erase_reason, blob_purged, erase_tx``."""
    return PendingErasure(
        record_id=bytes(row[0]),
        cid=row[1],
        reason_hash=bytes(row[2]),
        blob_purged=bool(row[3]),
        erase_tx=None if row[4] is None else bytes(row[4]),
    )


def erasure_params(record_ids: Sequence[bytes], erased_at: int, reason_hash: bytes) -> list[bytes]:
    """The distinct ids to erase, checked first so that bad input writes nothing."""
    check_hash(reason_hash, "reason_hash")
    if isinstance(erased_at, bool) or not isinstance(erased_at, int) or erased_at < 0:
        raise ValueError("erased_at must be a non-negative integer")
    for rid in record_ids:
        check_hash(rid, "record_id")
    return list(dict.fromkeys(bytes(r) for r in record_ids))


def row_to_batch(row: Sequence[Any]) -> AnchorBatch:
    return AnchorBatch(
        batch_id=int(row[0]),
        root=bytes(row[1]),
        tx_hash=bytes(row[2]),
        block_number=int(row[3]),
        hospital=row[4],
        count=int(row[5]),
        anchored_at=int(row[6]),
    )


def check_hash(value: bytes, what: str) -> None:
    if not isinstance(value, bytes) or len(value) != HASH_SIZE:
        raise ValueError(f"{what} must be {HASH_SIZE} bytes")


def record_params(row: RecordRow) -> tuple[Any, ...]:
    check_hash(row.record_id, "record_id")
    check_hash(row.content_hash, "content_hash")
    if row.previous_id is not None:
        check_hash(row.previous_id, "previous_id")
    return (
        row.record_id,
        row.patient,
        row.category,
        row.content_type,
        row.cid,
        row.content_hash,
        row.size,
        row.wrapped_key,
        row.kek_version,
        row.creator,
        row.created_at,
        row.previous_id,
    )


def record_filters(
    placeholder: str, *, patient: str | None, creator: str | None, category: str | None
) -> tuple[list[str], list[Any]]:
    """SQL conditions and parameters for ``list_records`` (``placeholder``: ``?`` or ``%s``).
    Column names come from this fixed list, values only through placeholders."""
    clauses: list[str] = []
    params: list[Any] = []
    for column, value in (("patient", patient), ("creator", creator), ("category", category)):
        if value is not None:
            clauses.append(f"{column} = {placeholder}")
            params.append(value)
    return clauses, params


def key_update_params(updates: Sequence[KeyUpdate]) -> list[tuple[bytes, int, bytes, int]]:
    """``(new_blob, new_version, record_id, old_version)`` per update, checked first so that a
    bad update writes nothing."""
    params: list[tuple[bytes, int, bytes, int]] = []
    for u in updates:
        record_id, old, new, blob = u
        check_hash(record_id, "record_id")
        if not isinstance(blob, bytes) or not blob:
            raise ValueError("a wrapped key must be non-empty bytes")
        if isinstance(old, bool) or isinstance(new, bool) or old < 0 or new < 0:
            raise ValueError("KEK versions must be non-negative integers")
        if old == new:
            raise ValueError("a re-wrapped key must change its KEK version")
        params.append((blob, int(new), record_id, int(old)))
    return params


def join_ids(ids: Sequence[bytes]) -> bytes:
    """Pack 32-byte ids (record ids, proof nodes) into one blob, in order."""
    for i in ids:
        check_hash(i, "id")
    return b"".join(ids)


def split_ids(blob: bytes) -> tuple[bytes, ...]:
    """Unpack ``join_ids``."""
    return tuple(blob[i : i + HASH_SIZE] for i in range(0, len(blob), HASH_SIZE))
