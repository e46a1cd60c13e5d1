"""Upload: encrypt each record under a fresh data key, store the ciphertext, index it and
queue its hash for anchoring, so that either everything is written or nothing is."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass

from hsm.abc import KeyStoreAPI
from hsm.envelope import BLOB_VERSION, seal_many
from node.chain.abc import ChainClientAPI
from node.chain.record_ids import new_record_id
from node.exceptions import Conflict, InvalidRequest
from node.flows.record_binding import record_aad
from storage.abc import BlobStoreAPI, RecordIndexAPI
from storage.exceptions import RecordNotFound
from storage.models import DocumentMeta, RecordQuery, RecordRow
from storage.record_rows import check_document


@dataclass(frozen=True, slots=True)
class UploadRequest:
    patient: str  # checksummed wallet address
    category: str
    content_type: str
    content: bytes
    previous_id: bytes | None = None
    document: DocumentMeta | None = None  # what a standard (FHIR, HL7 v2, DICOM) adds


def check_upload(req: UploadRequest, index: RecordIndexAPI) -> None:
    """Refuse a request that cannot succeed, before it joins a batch with others: bad
    document metadata (InvalidRequest), a document identifier already taken (Conflict), an
    unknown previous version or one of another patient (InvalidRequest)."""
    if req.document is not None:
        try:
            check_document(req.document)
        except ValueError as err:
            raise InvalidRequest(str(err)) from None
        identifier = req.document.identifier
        if identifier is not None and index.count_records(RecordQuery(identifier=identifier)):
            raise Conflict(f"a record with the document identifier {identifier!r} already exists")
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


class HospitalNamespace:
    """This hospital's Consortium member id, the namespace of the record ids it creates
    (``node.chain.record_ids``): read from the chain on first use, then kept: a member id
    never changes, not even when the hospital rotates its signing key."""

    def __init__(self, chain: ChainClientAPI) -> None:
        self._chain = chain
        self._member_id = 0

    def member_id(self) -> int:
        """Raises Conflict while the hospital is not a Consortium member (the registry would
        refuse to anchor its records) and ChainUnavailable when the chain cannot be reached."""
        if not self._member_id:
            member_id = self._chain.member_id(self._chain.hospital)
            if not member_id:
                raise Conflict(
                    "this hospital is not a Consortium member (yet): its records could not "
                    "be anchored"
                )
            self._member_id = member_id
        return self._member_id


def upload_records(
    requests: Sequence[UploadRequest],
    *,
    hospital: str,
    member_id: int,
    blobs: BlobStoreAPI,
    index: RecordIndexAPI,
    keys: KeyStoreAPI,
) -> list[RecordRow]:
    """Store ``requests`` as new records created by ``hospital`` and return their rows.

    ``member_id`` is the hospital's Consortium member id: the new record ids are in its
    namespace, the only ones RecordRegistry lets this hospital anchor and erase.

    Either every record of the batch is stored, indexed and queued for anchoring, or
    none is (ciphertext already written is removed again).
    """
    identifiers = [r.document.identifier for r in requests if r.document and r.document.identifier]
    if len(set(identifiers)) != len(identifiers):
        raise InvalidRequest("two records of the batch carry the same document identifier")
    for req in requests:
        check_upload(req, index)
    record_ids = [new_record_id(member_id) for _ in requests]
    # The associated data binds the blob to the record id and to the metadata a read relies
    # on (patient, category, content type, previous version): a rewritten index row does
    # not open (node.flows.record_binding).
    sealed = seal_many(
        [
            (
                r.content,
                record_aad(
                    BLOB_VERSION,
                    record_id=rid,
                    patient=r.patient,
                    category=r.category,
                    content_type=r.content_type,
                    previous_id=r.previous_id,
                ),
            )
            for r, rid in zip(requests, record_ids, strict=True)
        ],
        keys,
        version=BLOB_VERSION,
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
            document=req.document,
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
