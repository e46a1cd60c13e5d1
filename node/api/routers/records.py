"""Records: upload (hospital systems), metadata and receipts, consent-checked reads, and
erasure (crypto-shredding)."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Sequence
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.datastructures import UploadFile as FormFile
from starlette.exceptions import HTTPException

from node.api.content import ContentReaderDep
from node.api.deps import (
    BackgroundDep,
    DirectoryDep,
    HospitalDep,
    IndexDep,
    KeyAuditDep,
    PrincipalDep,
    SettingsDep,
    UploadsDep,
    WalletDep,
)
from node.api.edge import MAX_JSON_DEPTH, batch_upload, json_nesting_exceeds
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
from node.api.schemas.records import (
    BATCH_MANIFEST_PART,
    BatchEntryIn,
    BatchManifest,
    EraseIn,
    ErasureOut,
    ReceiptPublic,
    RecordPublic,
)
from node.auth.principal import Role, TokenPrincipal, WalletPrincipal
from node.exceptions import Conflict, Forbidden, InvalidRequest, PayloadTooLarge
from node.flows.erase_record import ErasureResult, erase_and_finish
from node.flows.upload_record import UploadRequest, check_upload
from storage.abc import RecordIndexAPI
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
async def upload(
    settings: SettingsDep,
    index: IndexDep,
    uploads: UploadsDep,
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
    limit = settings.api.max_upload_bytes
    patient_address = parse_address("patient", patient)
    if not _CATEGORY.fullmatch(category):
        raise InvalidRequest("category: 1-64 of a-z 0-9 _ . - starting with a letter or digit")
    media_type = content_type or file.content_type or "application/octet-stream"
    if not _MEDIA_TYPE.fullmatch(media_type) or len(media_type) > MEDIA_TYPE_MAX_LENGTH:
        raise InvalidRequest("content_type must be a media type like text/plain")
    content = await file.read(limit + 1)  # in memory: no thread hop (spooled: one)
    if len(content) > limit:
        raise PayloadTooLarge(f"upload exceeds the limit of {limit} bytes")
    if not content:
        raise InvalidRequest("the uploaded file is empty")
    prev = parse_hex32("previous_id", previous_id) if previous_id is not None else None
    request = UploadRequest(patient_address, category, media_type, content, prev)
    if prev is not None:  # an index read: a bad request must not fail its batch-mates
        await run_in_threadpool(check_upload, request, index)
    # Awaited on the event loop: no thread waits for the group commit.
    row = await uploads.submit_async(request)
    return RecordPublic.of(row, anchored=False)


_BATCH_DESCRIPTION = f"""\
Upload many records in one request and one storage commit (hospital API token).

**Body** (`multipart/form-data`): a part `{BATCH_MANIFEST_PART}` holding a JSON array with one
entry per record, `{{"part", "patient", "category", "content_type"?, "previous_id"?}}`, and one
file part per entry, named by the entry's `part` (unique; a name like `r0`). The fields mean
what they mean on `POST /records`. Every file part must be named by exactly one entry.

**Limits**: at most `api.batch_max_records` entries (default 1000) and `api.batch_max_bytes`
for the whole body (default 64 MiB); each record at most `api.max_upload_bytes`. Past any of
them: 413 (a body past the byte limit is refused while it streams, before it is parsed).

**All or nothing.** Every entry is checked first: the manifest against its schema, each file
part (present, once, not empty, within the size limit), each `previous_id` (an existing record
of the same patient). The first failure answers 422 with `detail` naming the entry
(`manifest[i].field`) and nothing is written. Then the records are committed together through
the same flow as single uploads: each record is encrypted under its own fresh data key, the
ciphertexts are written to blob storage, and the index rows plus their anchoring queue entries
are inserted in ONE database transaction. If that transaction fails, no record of the request
is indexed and the node deletes the ciphertexts it wrote; if the process dies between the two
steps, the blobs already written stay behind unreferenced: content-addressed ciphertext whose
data keys were never stored, which nothing points to and nobody can decrypt. A 201 means every
record is indexed and queued for anchoring; any other status means none is.

**Answer** (201): one entry per manifest entry, in manifest order, with the fields
`POST /records` answers (`anchored` is false until the anchorer's next batch; poll
`GET /records/{{record_id}}/receipt`).
"""


def _inlined(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` with its local ``$defs`` written in place: a request body given inline has
    no components of its own for ``#/$defs/...`` references to point at."""
    defs = schema.pop("$defs", {})

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/$defs/"):
                return walk(dict(defs[ref.removeprefix("#/$defs/")]))
            return {k: walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    inlined: dict[str, Any] = walk(schema)
    return inlined


_BATCH_REQUEST_BODY: dict[str, Any] = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": [BATCH_MANIFEST_PART],
                "properties": {
                    BATCH_MANIFEST_PART: {
                        "type": "array",
                        "minItems": 1,
                        "items": _inlined(BatchEntryIn.model_json_schema()),
                        "description": "one entry per record, in the order of the answer; "
                        "sent as one part holding JSON text",
                    }
                },
                "additionalProperties": {
                    "type": "string",
                    "format": "binary",
                    "description": "one record's content; the part name is the one its "
                    "manifest entry gives",
                },
            },
            "encoding": {BATCH_MANIFEST_PART: {"contentType": "application/json"}},
        }
    },
}

# Text (not file) parts besides the manifest: refused by name (422) up to this many, beyond
# it by the multipart parser's count (400).
_BATCH_MAX_FIELDS = 64


def _invalid_entry(position: int | None, field: str, reason: str) -> RequestValidationError:
    where = BATCH_MANIFEST_PART if position is None else f"{BATCH_MANIFEST_PART}[{position}]"
    loc = (where, field) if field else (where,)
    return RequestValidationError([{"loc": loc, "msg": reason, "type": "value_error"}])


async def _batch_form(request: Request, max_records: int, max_text: int) -> FormData:
    try:
        return await request.form(
            max_files=max_records, max_fields=_BATCH_MAX_FIELDS, max_part_size=max_text
        )
    except HTTPException as exc:  # Starlette's multipart errors: 400 with the parser's words
        if str(exc.detail).startswith("Too many files"):
            raise PayloadTooLarge(f"a batch holds at most {max_records} records") from None
        raise InvalidRequest(f"multipart body: {exc.detail}") from None


async def _manifest(form: FormData, max_records: int) -> list[BatchEntryIn]:
    values = form.getlist(BATCH_MANIFEST_PART)
    if len(values) != 1:
        raise _invalid_entry(None, "", "send exactly one 'manifest' part (a JSON array)")
    value = values[0]
    raw = await value.read() if isinstance(value, FormFile) else value.encode()
    if json_nesting_exceeds(raw, MAX_JSON_DEPTH):
        raise _invalid_entry(None, "", f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        entries = BatchManifest.validate_json(raw)
    except ValidationError as err:
        errors = []
        for e in err.errors(include_input=False, include_url=False)[:10]:
            loc = list(e["loc"])
            head = (
                f"{BATCH_MANIFEST_PART}[{loc.pop(0)}]"
                if loc and isinstance(loc[0], int)
                else BATCH_MANIFEST_PART
            )
            errors.append({"loc": (head, *loc), "msg": e["msg"], "type": e["type"]})
        raise RequestValidationError(errors) from None
    if not entries:
        raise _invalid_entry(None, "", "the manifest lists no records")
    if len(entries) > max_records:
        raise PayloadTooLarge(f"a batch holds at most {max_records} records")
    return entries


@router.post(
    "/batch",
    status_code=201,
    response_model=list[RecordPublic],
    summary="Upload many records at once, all or nothing (hospital API token)",
    description=_BATCH_DESCRIPTION,
    openapi_extra={"requestBody": _BATCH_REQUEST_BODY},
    responses={
        201: {"description": "every record stored, indexed and queued for anchoring"},
        408: {},
        413: {
            "description": "more records than api.batch_max_records, a body past "
            "api.batch_max_bytes, or a record past api.max_upload_bytes; nothing stored"
        },
        409: {
            "description": "an entry's document identifier is already taken on this node; "
            "nothing stored"
        },
        422: {
            "description": "an entry or part is invalid: `detail` names it as "
            "`manifest[i].field`; nothing stored"
        },
    },
)
@batch_upload
async def upload_batch(
    request: Request,
    settings: SettingsDep,
    index: IndexDep,
    uploads: UploadsDep,
    _caller: HospitalDep,
) -> list[RecordPublic]:
    api = settings.api
    form = await _batch_form(request, api.batch_max_records, api.max_json_bytes)
    try:
        entries = await _manifest(form, api.batch_max_records)
        requests = await _batch_requests(form, entries, api.max_upload_bytes)
        await run_in_threadpool(_check_entries, requests, index)
        rows = await run_in_threadpool(uploads.commit_now, requests)
    finally:
        await form.close()
    return [RecordPublic.of(row, anchored=False) for row in rows]


async def _batch_requests(
    form: FormData, entries: list[BatchEntryIn], limit: int
) -> list[UploadRequest]:
    named = {entry.part for entry in entries}
    for key, _value in form.multi_items():
        if key != BATCH_MANIFEST_PART and key not in named:
            raise _invalid_entry(None, "", "a part is not named by any manifest entry")
    seen: set[str] = set()
    requests = []
    for i, entry in enumerate(entries):
        if entry.part in seen:
            raise _invalid_entry(i, "part", "another entry names the same part")
        seen.add(entry.part)
        parts = form.getlist(entry.part)
        if len(parts) != 1:
            raise _invalid_entry(i, "part", f"{len(parts)} parts carry this name: send one")
        file = parts[0]
        if not isinstance(file, FormFile):
            raise _invalid_entry(i, "part", "not a file part (give it a filename)")
        content = await file.read(limit + 1)
        if len(content) > limit:
            raise PayloadTooLarge(f"{BATCH_MANIFEST_PART}[{i}]: exceeds the limit of {limit} bytes")
        if not content:
            raise _invalid_entry(i, "part", "the file is empty")
        media_type = entry.content_type or file.content_type or "application/octet-stream"
        if not _MEDIA_TYPE.fullmatch(media_type) or len(media_type) > MEDIA_TYPE_MAX_LENGTH:
            raise _invalid_entry(i, "content_type", "must be a media type like text/plain")
        prev = parse_hex32("previous_id", entry.previous_id) if entry.previous_id else None
        document = entry.document.meta() if entry.document else None
        requests.append(
            UploadRequest(entry.patient, entry.category, media_type, content, prev, document)
        )
    return requests


def _check_entries(requests: Sequence[UploadRequest], index: RecordIndexAPI) -> None:
    seen: set[str] = set()
    for i, req in enumerate(requests):
        identifier = req.document.identifier if req.document else None
        if identifier is not None:
            if identifier in seen:
                raise _invalid_entry(i, "document", "another entry carries the same identifier")
            seen.add(identifier)
        try:
            check_upload(req, index)
        except InvalidRequest as err:
            field = "document" if req.document and "previous" not in str(err) else "previous_id"
            raise _invalid_entry(i, field, str(err)) from None
        except Conflict as err:
            raise Conflict(f"{BATCH_MANIFEST_PART}[{i}].document.identifier: {err}") from None


@router.get(
    "",
    response_model=list[RecordPublic],
    summary="List records (hospital token, or a patient's own)",
)
def list_records(
    index: IndexDep,
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
    rows = index.list_records(patient=patient, category=category, limit=limit, offset=offset)
    return [RecordPublic.of(r) for r in rows]


@router.get(
    "/{record_id}",
    response_model=RecordPublic,
    summary="Record metadata (hospital, auditor, patient)",
)
def get_metadata(record_id: Hex32Param, index: IndexDep, principal: PrincipalDep) -> RecordPublic:
    rid = parse_hex32("record id", record_id)
    row = index.get_record(rid)
    _may_see_metadata(principal, row)
    return RecordPublic.of(row, anchored=index.get_receipt(rid) is not None)


@router.get(
    "/{record_id}/receipt",
    response_model=ReceiptPublic,
    summary="Anchoring receipt: tx hash, root and Merkle proof (hospital, auditor, patient)",
)
def receipt(record_id: Hex32Param, index: IndexDep, principal: PrincipalDep) -> ReceiptPublic:
    rid = parse_hex32("record id", record_id)
    row = index.get_record(rid)
    _may_see_metadata(principal, row)
    return ReceiptPublic.of(rid, index.get_receipt(rid), row)


@router.get(
    "/{record_id}/content",
    summary="Read a record (wallet session: the patient, or a grantee with on-chain consent)",
    responses={
        200: {"content": {"application/octet-stream": {}}},
        403: {"description": "no consent"},
        410: {"description": "the record was erased: only its anchored hash remains"},
    },
)
async def read_content(
    record_id: Hex32Param, wallet: WalletDep, reader: ContentReaderDep
) -> Response:
    rid = parse_hex32("record id", record_id)
    result = await reader.read(rid, wallet.address)
    return Response(
        content=result.content,
        media_type=result.row.content_type,
        headers={
            "X-Record-Id": record_id.lower(),
            "X-Access-Basis": result.basis.name.lower(),
            "X-Content-SHA256": result.row.content_hash.hex(),
        },
    )


def erasure_out(result: ErasureResult, index: RecordIndexAPI) -> ErasureOut:
    """The answer of an erasure: the newly erased records' metadata, and the ids that
    were erased before."""
    return ErasureOut(
        reason_hash=to_hex(result.reason_hash),
        erased=[RecordPublic.of(index.get_record(rid)) for rid in result.erased],
        already_erased=[to_hex(rid) for rid in result.already_erased],
    )


@router.post(
    "/{record_id}/erase",
    response_model=ErasureOut,
    summary="Erase a record (GDPR art. 17): destroy its key, purge its blob, anchor a "
    "tombstone (hospital token)",
    responses={409: {"description": "already erased"}},
)
def erase(
    record_id: Hex32Param,
    body: EraseIn,
    index: IndexDep,
    directory: DirectoryDep,
    key_audit: KeyAuditDep,
    background: BackgroundDep,
    caller: HospitalDep,
) -> ErasureOut:
    rid = parse_hex32("record id", record_id)
    row = index.get_record(rid)  # 404 first
    if row.erased:
        raise Conflict(f"record 0x{rid.hex()} was already erased at {row.erased_at}")
    result = erase_and_finish(
        [rid],
        body.reason,
        index=index,
        reasons=directory,
        key_audit=key_audit,
        background=background,
        now=int(time.time()),
        requested_by=caller.name,
    )
    return erasure_out(result, index)
