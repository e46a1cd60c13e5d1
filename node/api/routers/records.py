"""Records: upload (hospital systems), metadata and receipts, consent-checked reads, and
erasure (crypto-shredding)."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Sequence
from typing import Annotated

from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from fastapi.responses import Response

from node.api.deps import HospitalDep, NodeDep, PrincipalDep, WalletDep
from node.api.schemas.common import (
    CATEGORY_PATTERN,
    MAX_INT64,
    MEDIA_TYPE_MAX_LENGTH,
    MEDIA_TYPE_PATTERN,
    AddressParam,
    CategoryParam,
    Hex32Param,
    MediaTypeParam,
    parse_address,
    parse_hex32,
    to_hex,
)
from node.api.schemas.records import EraseIn, ErasureOut, ReceiptPublic, RecordPublic
from node.auth.principal import Role, TokenPrincipal, WalletPrincipal
from node.exceptions import Conflict, Forbidden, InvalidRequest, PayloadTooLarge
from node.flows.erase_record import erase_records
from node.flows.read_record import read_record
from node.flows.upload_record import UploadRequest, check_upload
from node.wiring import Node
from storage.models import RecordRow

log = logging.getLogger(__name__)

router = APIRouter(prefix="/records", tags=["records"])

_CATEGORY = re.compile(CATEGORY_PATTERN)
_MEDIA_TYPE = re.compile(MEDIA_TYPE_PATTERN)


def _may_see_metadata(principal: PrincipalDep, row: RecordRow) -> None:
    if isinstance(principal, TokenPrincipal):
        if principal.has(Role.HOSPITAL, Role.AUDITOR):
            return
    elif principal.address == row.patient:
        return
    raise Forbidden("record metadata is for hospital systems, auditors and the patient")


@router.post(
    "",
    status_code=201,
    response_model=RecordPublic,
    summary="Upload a record for a patient (hospital API token)",
)
def upload(
    request: Request,
    node: NodeDep,
    _caller: HospitalDep,
    file: Annotated[
        UploadFile,
        File(
            description="the record's content",
            json_schema_extra={"format": "binary", "minLength": 1},
        ),
    ],
    patient: Annotated[AddressParam, Form(description="the patient's wallet address")],
    category: Annotated[CategoryParam, Form(description="e.g. lab, imaging, note")],
    content_type: Annotated[MediaTypeParam | None, Form()] = None,
    previous_id: Annotated[
        Hex32Param | None, Form(description="record this one supersedes")
    ] = None,
) -> RecordPublic:
    limit = node.settings.api.max_upload_bytes
    patient_address = parse_address("patient", patient)
    if not _CATEGORY.fullmatch(category):
        raise InvalidRequest("category: 1-64 of a-z 0-9 _ . - starting with a letter or digit")
    media_type = content_type or file.content_type or "application/octet-stream"
    if not _MEDIA_TYPE.fullmatch(media_type) or len(media_type) > MEDIA_TYPE_MAX_LENGTH:
        raise InvalidRequest("content_type must be a media type like text/plain")
    content = file.file.read(limit + 1)
    if len(content) > limit:
        raise PayloadTooLarge(f"upload exceeds the limit of {limit} bytes")
    if not content:
        raise InvalidRequest("the uploaded file is empty")
    prev = parse_hex32("previous_id", previous_id) if previous_id is not None else None
    request = UploadRequest(patient_address, category, media_type, content, prev)
    check_upload(request, node.index)  # a bad request must not fail its batch-mates
    row = node.uploads.submit(request)
    return RecordPublic.of(row, anchored=False)


@router.get(
    "",
    response_model=list[RecordPublic],
    summary="List records (hospital token, or a patient's own)",
)
def list_records(
    node: NodeDep,
    principal: PrincipalDep,
    patient: Annotated[AddressParam | None, Query()] = None,
    category: Annotated[str | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_INT64)] = 0,
) -> list[RecordPublic]:
    if patient is not None:
        patient = parse_address("patient", patient)
    if isinstance(principal, WalletPrincipal):
        if patient not in (None, principal.address):
            raise Forbidden("a wallet may list only its own records")
        patient = principal.address
    elif not principal.has(Role.HOSPITAL, Role.AUDITOR):
        raise Forbidden("listing records needs a hospital or auditor token")
    rows = node.index.list_records(patient=patient, category=category, limit=limit, offset=offset)
    return [RecordPublic.of(r) for r in rows]


@router.get(
    "/{record_id}",
    response_model=RecordPublic,
    summary="Record metadata (hospital, auditor, patient)",
)
def get_metadata(record_id: Hex32Param, node: NodeDep, principal: PrincipalDep) -> RecordPublic:
    rid = parse_hex32("record id", record_id)
    row = node.index.get_record(rid)
    _may_see_metadata(principal, row)
    return RecordPublic.of(row, anchored=node.index.get_receipt(rid) is not None)


@router.get(
    "/{record_id}/receipt",
    response_model=ReceiptPublic,
    summary="Anchoring receipt: tx hash, root and Merkle proof (hospital, auditor, patient)",
)
def receipt(record_id: Hex32Param, node: NodeDep, principal: PrincipalDep) -> ReceiptPublic:
    rid = parse_hex32("record id", record_id)
    row = node.index.get_record(rid)
    _may_see_metadata(principal, row)
    return ReceiptPublic.of(rid, node.index.get_receipt(rid))


def _affiliation(node: Node, address: str) -> str | None:
    return node.hospital if node.directory.clinician(address) is not None else None


@router.get(
    "/{record_id}/content",
    summary="Read a record (wallet session: the patient, or a grantee with on-chain consent)",
    responses={
        200: {"content": {"application/octet-stream": {}}},
        403: {"description": "no consent"},
        410: {"description": "the record was erased: only its anchored hash remains"},
    },
)
def read_content(record_id: Hex32Param, node: NodeDep, wallet: WalletDep) -> Response:
    rid = parse_hex32("record id", record_id)
    try:
        result = read_record(
            rid,
            wallet.address,
            index=node.index,
            blobs=node.blobs,
            keys=node.keys,
            access=node.access,
            access_log=node.access_log,
            cache=node.cache,
            affiliated_hospital=_affiliation(node, wallet.address),
        )
    finally:
        node.access_flusher.queued(1)  # granted or denied, the access was queued for the chain
    return Response(
        content=result.content,
        media_type=result.row.content_type,
        headers={
            "X-Record-Id": record_id.lower(),
            "X-Access-Basis": result.basis.name.lower(),
            "X-Content-SHA256": result.row.content_hash.hex(),
        },
    )


def erase_and_finish(
    node: Node, record_ids: Sequence[bytes], reason: str, caller: TokenPrincipal
) -> ErasureOut:
    """Shred the keys now (the part that must not fail silently), then try the follow-ups
    (blob purge, tombstone) at once; what fails is retried by the eraser worker."""
    result = erase_records(
        record_ids, reason, index=node.index, now=int(time.time()), requested_by=caller.name
    )
    if result.erased and result.commitment is not None:
        # Text and salt stay with the node for auditors, like break-glass reasons (no tx yet).
        node.directory.save_reason(result.commitment)
        # Destroying data keys is a key operation: it goes in the key audit trail too.
        ids = ",".join(to_hex(rid) for rid in result.erased)
        subject = f"reason {to_hex(result.reason_hash)}; records {ids}"
        node.key_audit.append("dek.destroy", subject, caller.name)
        try:
            node.eraser.flush_now()
        except Exception:  # durable to-do list in the index: the worker goes on
            log.exception("erasure follow-up failed; the eraser worker will retry")
    return ErasureOut(
        reason_hash=to_hex(result.reason_hash),
        erased=[RecordPublic.of(node.index.get_record(rid)) for rid in result.erased],
        already_erased=[to_hex(rid) for rid in result.already_erased],
    )


@router.post(
    "/{record_id}/erase",
    response_model=ErasureOut,
    summary="Erase a record (GDPR art. 17): destroy its key, purge its blob, anchor a "
    "tombstone (hospital token)",
    responses={409: {"description": "already erased"}},
)
def erase(record_id: Hex32Param, body: EraseIn, node: NodeDep, caller: HospitalDep) -> ErasureOut:
    rid = parse_hex32("record id", record_id)
    row = node.index.get_record(rid)  # 404 first
    if row.erased:
        raise Conflict(f"record 0x{rid.hex()} was already erased at {row.erased_at}")
    return erase_and_finish(node, [rid], body.reason, caller)
