"""Upload: encrypt each record under a fresh data key, store the ciphertext, index it and
queue its hash for anchoring, so that either everything is written or nothing is."""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass

from hsm.abc import KeyStoreAPI
from hsm.envelope import seal_many
from node.exceptions import InvalidRequest
from storage.abc import BlobStoreAPI, RecordIndexAPI
from storage.exceptions import RecordNotFound
from storage.models import RecordRow


@dataclass(frozen=True, slots=True)
class UploadRequest:
    patient: str  # checksummed wallet address
    category: str
    content_type: str
    content: bytes
    previous_id: bytes | None = None


def check_upload(req: UploadRequest, index: RecordIndexAPI) -> None:
    """Refuse a request that cannot succeed, before it joins a batch with others."""
    if req.previous_id is None:
        return
    try:
        previous = index.get_record(req.previous_id)
    except RecordNotFound:
        raise InvalidRequest(
            f"previous_id 0x{req.previous_id.hex()} is not a known record"
        ) from None
    if previous.patient != req.patient:
        raise InvalidRequest("a new version must belong to the same patient")


def upload_records(
    requests: Sequence[UploadRequest],
    *,
    hospital: str,
    blobs: BlobStoreAPI,
    index: RecordIndexAPI,
    keys: KeyStoreAPI,
) -> list[RecordRow]:
    """Store ``requests`` as new records created by ``hospital`` and return their rows.

    Either every record of the batch is stored, indexed and queued for anchoring, or
    none is (ciphertext already written is removed again).
    """
    for req in requests:
        check_upload(req, index)
    record_ids = [secrets.token_bytes(32) for _ in requests]
    # The record id is the AEAD associated data: a blob cannot be swapped between records.
    sealed = seal_many(
        [(r.content, rid) for r, rid in zip(requests, record_ids, strict=True)], keys
    )
    cids = blobs.put_many([s.blob for s in sealed])
    now = int(time.time())
    rows = [
        RecordRow(
            record_id=rid,
            patient=req.patient,
            category=req.category,
            content_type=req.content_type,
            cid=cid,
            content_hash=hashlib.sha256(req.content).digest(),
            size=len(req.content),
            wrapped_key=s.wrapped_key.blob,
            kek_version=s.wrapped_key.kek_version,
            creator=hospital,
            created_at=now,
            previous_id=req.previous_id,
        )
        for req, rid, s, cid in zip(requests, record_ids, sealed, cids, strict=True)
    ]
    try:
        index.add_records(rows)
    except BaseException:
        # Ciphertext under fresh random keys is never shared: removing it is safe.
        for cid in cids:
            blobs.delete(cid)
        raise
    return rows
