"""What a record's ciphertext is bound to: the AES-GCM associated data of its sealed blob.

The record index (MySQL in production) is not trusted with what decides access. Everything
in it that a read relies on is bound into the associated data when the record is sealed, so
a row rewritten by someone who can write the index but holds no key no longer opens:

- the record id: a blob or wrapped key moved under another record fails;
- the patient: "the patient always reads their own records" relies on it;
- the category (its keccak256, as consents name it): category-scoped consents rely on it;
- the content type: it is sent back as the response's media type (a stored record turned
  into ``text/html`` would be served from the node's origin);
- the previous version: the version chain the chain anchors with the record.

Blob version 1 (records sealed before this binding) was bound to the record id only; those
records keep reading, with the index trusted for the rest as before.

Upload (``upload_record``) and read (``read_record.open_record``) both build the associated
data here, from the same fields.
"""

from __future__ import annotations

import re

from eth_utils import keccak

from node.consent.typed_data import category_hash
from storage.exceptions import IntegrityError
from storage.models import RecordRow

__all__ = ["record_aad", "row_aad"]

_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")


def _id32(what: str, value: bytes) -> bytes:
    if len(value) != 32:
        raise IntegrityError(f"the record's {what} is not 32 bytes")
    return bytes(value)


def record_aad(
    version: int,
    *,
    record_id: bytes,
    patient: str,
    category: str,
    content_type: str,
    previous_id: bytes | None,
) -> bytes:
    """The associated data of a record sealed as blob ``version``.

    Version 2: ``record_id (32) || patient (20) || keccak256(category) (32) ||
    keccak256(content_type) (32) || 0x00`` for a first version, ``... || 0x01 ||
    previous_id (32)`` for a new version: fixed widths and a flag, so no two rows share it.
    Version 1: the record id.

    Raises IntegrityError for a field no upload could have written (a malformed patient
    address or id); ValueError for an unknown version.
    """
    if version == 1:
        return bytes(record_id)
    if version != 2:
        raise ValueError(f"no record binding for blob version {version}")
    if not _ADDRESS.fullmatch(patient):
        raise IntegrityError("the record's patient is not an address")
    return b"".join(
        (
            _id32("id", record_id),
            bytes.fromhex(patient[2:]),
            category_hash(category),
            keccak(text=content_type),
            b"\x00" if previous_id is None else b"\x01" + _id32("previous id", previous_id),
        )
    )


def row_aad(row: RecordRow, version: int) -> bytes:
    """``record_aad`` of an indexed row, as the index returns it."""
    return record_aad(
        version,
        record_id=row.record_id,
        patient=row.patient,
        category=row.category,
        content_type=row.content_type,
        previous_id=row.previous_id,
    )
