"""Records and anchor batches as SQL rows, shared by the SQLite and MySQL indexes: one
column order, one set of checks."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from storage.models import (
    AnchorBatch,
    DocumentMeta,
    KeyUpdate,
    PendingErasure,
    RecordQuery,
    RecordRow,
)

HASH_SIZE = 32

# Document metadata (DocumentMeta) lives in ``record_documents`` (one row per record that has
# it) and its searchable attributes in ``record_attributes`` (one row per name/value pair).
DOCUMENT_COLUMNS = (
    "source, type_system, type_code, type_display, title, clinical_time, identifier, attributes"
)
ATTRIBUTE_NAME = re.compile(r"[a-z0-9][a-z0-9._]{0,63}")
MAX_TEXT = 255  # source, type fields, identifier, attribute values
MAX_TITLE = 1024
MAX_ATTRIBUTES = 32


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
        document=row_to_document(row[14:]) if len(row) > 14 else None,
    )


def row_to_document(row: Sequence[Any]) -> DocumentMeta | None:
    """From ``DOCUMENT_COLUMNS`` of a LEFT JOIN (all NULL: the record has no metadata)."""
    if row[0] is None:
        return None
    return DocumentMeta(
        source=row[0],
        type_system=row[1],
        type_code=row[2],
        type_display=row[3],
        title=row[4],
        clinical_time=None if row[5] is None else int(row[5]),
        identifier=row[6],
        attributes=json.loads(row[7]) if row[7] else {},
    )


def check_document(doc: DocumentMeta) -> None:
    """Raise ValueError unless ``doc`` fits the index (lengths, attribute names)."""
    if not doc.source or len(doc.source) > 32:
        raise ValueError("document source must be 1-32 characters")
    for what, value, most in (
        ("type system", doc.type_system, MAX_TEXT),
        ("type code", doc.type_code, MAX_TEXT),
        ("type display", doc.type_display, MAX_TEXT),
        ("identifier", doc.identifier, MAX_TEXT),
        ("title", doc.title, MAX_TITLE),
    ):
        if value is not None and (not isinstance(value, str) or not value or len(value) > most):
            raise ValueError(f"document {what} must be 1-{most} characters")
    if doc.type_system is not None and doc.type_code is None:
        raise ValueError("a document type system needs a type code")
    t = doc.clinical_time
    if t is not None and (isinstance(t, bool) or not isinstance(t, int) or abs(t) >= 2**62):
        raise ValueError("document clinical_time must be an integer (unix seconds)")
    if len(doc.attributes) > MAX_ATTRIBUTES:
        raise ValueError(f"a document has at most {MAX_ATTRIBUTES} attributes")
    for name, value in doc.attributes.items():
        if not isinstance(name, str) or not ATTRIBUTE_NAME.fullmatch(name):
            raise ValueError(f"document attribute name {name!r}: 1-64 of a-z 0-9 . _")
        if not isinstance(value, str) or len(value) > MAX_TEXT:
            raise ValueError(f"document attribute {name}: a string of at most {MAX_TEXT}")


def document_params(rows: Sequence[RecordRow]) -> list[tuple[Any, ...]]:
    """``(record_id, *DOCUMENT_COLUMNS)`` for each row that has document metadata."""
    params = []
    for row in rows:
        doc = row.document
        if doc is None:
            continue
        check_document(doc)
        params.append(
            (
                row.record_id,
                doc.source,
                doc.type_system,
                doc.type_code,
                doc.type_display,
                doc.title,
                doc.clinical_time,
                doc.identifier,
                json.dumps(dict(doc.attributes), sort_keys=True, separators=(",", ":")),
            )
        )
    return params


def attribute_params(rows: Sequence[RecordRow]) -> list[tuple[str, str, bytes]]:
    """``(name, value, record_id)`` for every searchable attribute of ``rows``."""
    return [
        (name, value, row.record_id)
        for row in rows
        if row.document is not None
        for name, value in sorted(row.document.attributes.items())
    ]


def query_sql(query: RecordQuery, placeholder: str) -> tuple[str, list[Any], str]:
    """``FROM ... WHERE ...`` (records ``r`` LEFT JOIN record_documents ``d``), its
    parameters, and the ORDER BY for ``query``. Column names come from this function,
    values only through placeholders."""
    if query.limit < 0 or query.offset < 0:
        raise ValueError("limit and offset must not be negative")
    if query.type_system is not None and query.type_code is None:
        raise ValueError("a type system needs a type code")
    p = placeholder
    time = "COALESCE(d.clinical_time, r.created_at)"
    clauses: list[str] = []
    params: list[Any] = []
    for column, value in (
        ("r.patient", query.patient),
        ("r.creator", query.creator),
        ("r.category", query.category),
        ("d.type_system", query.type_system),
        ("d.type_code", query.type_code),
        ("d.identifier", query.identifier),
        ("d.source", query.source),
        ("r.previous_id", query.previous_id),
    ):
        if value is not None:
            clauses.append(f"{column} = {p}")
            params.append(value)
    if query.since is not None:
        clauses.append(f"{time} >= {p}")
        params.append(int(query.since))
    if query.until is not None:
        clauses.append(f"{time} < {p}")
        params.append(int(query.until))
    if query.status is not None:
        successor = "EXISTS (SELECT 1 FROM records s WHERE s.previous_id = r.record_id)"
        clauses.append(successor if query.status == "superseded" else f"NOT {successor}")
    for name, value in sorted(query.attributes.items()):
        clauses.append(
            "EXISTS (SELECT 1 FROM record_attributes a WHERE a.record_id = r.record_id "
            f"AND a.name = {p} AND a.value = {p})"
        )
        params += [name, value]
    where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
    direction = "DESC" if query.newest_first else "ASC"
    source = "FROM records r LEFT JOIN record_documents d ON d.record_id = r.record_id"
    return source + where, params, f"ORDER BY {time} {direction}, r.seq {direction}"


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
