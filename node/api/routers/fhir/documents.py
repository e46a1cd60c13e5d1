"""DocumentReference: create (a record upload), read, version history, search."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from node.api.deps import (
    AccessDep,
    ChainDep,
    DirectoryDep,
    IndexDep,
    PatientsDep,
    SettingsDep,
    UploadsDep,
)
from node.api.edge import batch_upload
from node.api.routers.fhir._shared import BAD_SEARCH, JSON, NOT_ACCEPTABLE, SEARCHSET, json_body
from node.api.schemas.common import Hex32Param
from node.chain.abc import ChainClientAPI
from node.consent.abc import AccessDeciderAPI
from node.consent.typed_data import AccessBasis
from node.directory import HospitalDirectory
from node.exceptions import InvalidRequest
from node.fhir.common import (
    NEGOTIATE,
    FhirCaller,
    FhirError,
    FhirJSONResponse,
    FhirRoute,
    base_url,
    fhir_response,
    parse_json,
    require_scope,
    search_page,
    searchset,
)
from node.fhir.documents import (
    RESOURCE,
    fhir_id,
    http_date,
    parse,
    parse_if_none_exist,
    parse_search,
    record_id,
    to_resource,
    to_upload,
)
from node.fhir.documents import record_id as parse_record_id
from node.flows.read_record import decide_access
from node.flows.upload_record import UploadRequest, check_upload
from storage.abc import RecordIndexAPI
from storage.exceptions import RecordNotFound
from storage.models import RecordQuery, RecordRow

router = APIRouter(route_class=FhirRoute, tags=["fhir"])
_BODY = json_body("a FHIR R4 DocumentReference; see docs/fhir.md")


def superseded(index: RecordIndexAPI, rid: bytes) -> bool:
    """Whether another record names ``rid`` as its previous version."""
    return index.count_records(RecordQuery(previous_id=rid, limit=1)) > 0


def anchored(index: RecordIndexAPI, rid: bytes) -> bool:
    receipt = index.get_receipt(rid)
    return receipt is not None and receipt.batch is not None


def resource_of(
    index: RecordIndexAPI, row: RecordRow, *, with_anchor: bool = True
) -> dict[str, Any]:
    return to_resource(
        row,
        superseded=superseded(index, row.record_id),
        anchored=anchored(index, row.record_id) if with_anchor else None,
    )


def may_see(
    caller: FhirCaller,
    row: RecordRow,
    *,
    access: AccessDeciderAPI,
    directory: HospitalDirectory,
    chain: ChainClientAPI,
) -> None:
    """Metadata visibility, as ``/records``: a system token, the patient, or (a clinician's
    ``user/DocumentReference.read``) a wallet the patient's live consent or a break-glass
    admits, decided by the read flow's own ``decide_access``."""
    if caller.is_system:
        return
    wallet = caller.wallet
    if wallet is None:
        raise FhirError(403, "forbidden", "this credential may not see document metadata")
    if wallet == row.patient:
        return
    if "user" in caller.contexts:
        affiliated = chain.hospital if directory.clinician(wallet) is not None else None
        if (
            decide_access(row, wallet, access=access, affiliated_hospital=affiliated)
            is not AccessBasis.NONE
        ):
            return
    raise FhirError(403, "forbidden", "no consent admits this wallet to this patient's documents")


def visible_row(
    caller: FhirCaller,
    value: str,
    index: RecordIndexAPI,
    access: AccessDeciderAPI,
    directory: HospitalDirectory,
    chain: ChainClientAPI,
) -> RecordRow:
    try:
        row = index.get_record(record_id(value))
    except RecordNotFound:
        raise FhirError(404, "not-found", f"{RESOURCE}/{value} is not known") from None
    may_see(caller, row, access=access, directory=directory, chain=chain)
    return row


def _created(request: Request, row: RecordRow, index: RecordIndexAPI, status: int) -> Response:
    rid = fhir_id(row.record_id)
    resource = (
        resource_of(index, row)
        if status == 200
        else to_resource(row, superseded=False, anchored=False)
    )
    return fhir_response(
        resource,
        status,
        version_id=rid,
        location=f"{base_url(request)}/{RESOURCE}/{rid}/_history/{rid}",
        last_modified=http_date(row.created_at),
    )


@router.post(
    f"/{RESOURCE}",
    status_code=201,
    summary="Create a DocumentReference: upload a record (hospital token)",
    dependencies=[NEGOTIATE],
    response_class=FhirJSONResponse,
    openapi_extra=_BODY,
    responses={
        200: {**JSON, "description": "If-None-Exist matched: the existing document"},
        201: {**JSON, "description": "stored, indexed and queued for anchoring"},
        400: {"description": "not a valid DocumentReference: the validator's messages"},
        406: NOT_ACCEPTABLE,
        409: {"description": "another record already carries this identifier"},
        412: {"description": "If-None-Exist matched more than one document"},
        413: {"description": "the document exceeds api.max_upload_bytes"},
        415: {"description": "Content-Type is not application/fhir+json"},
    },
)
@batch_upload  # a document's base64 may exceed the JSON limit (docs/fhir.md, "Limits")
async def create(
    request: Request,
    settings: SettingsDep,
    index: IndexDep,
    uploads: UploadsDep,
    patients: PatientsDep,
    _caller: Annotated[FhirCaller, require_scope(RESOURCE, "write")],
    if_none_exist: Annotated[
        str | None,
        Header(description="identifier=system|value", pattern=r"^identifier=[^|=\s]+\|\S+$"),
    ] = None,
) -> Response:
    data = parse_json(await request.body(), RESOURCE)
    upload = to_upload(
        parse(data), resolve=patients.resolve, max_bytes=settings.api.max_upload_bytes
    )
    if if_none_exist is not None:
        wanted = parse_if_none_exist(if_none_exist)
        found = await run_in_threadpool(index.find_records, RecordQuery(identifier=wanted, limit=2))
        if len(found) > 1:
            raise FhirError(412, "multiple-matches", "If-None-Exist matches more than one document")
        if found:
            return await run_in_threadpool(_created, request, found[0], index, 200)
    if upload.request.previous_id is not None:
        await run_in_threadpool(_check_previous, upload.request, index)
    row = await uploads.submit_async(upload.request)
    return _created(request, row, index, 201)


def _check_previous(req: UploadRequest, index: RecordIndexAPI) -> None:
    try:
        check_upload(req, index)
    except InvalidRequest as err:
        raise FhirError(400, "invalid", str(err), expression=(f"{RESOURCE}.relatesTo",)) from None


@router.get(
    f"/{RESOURCE}/{{record_id}}",
    summary="Read a DocumentReference (hospital, auditor, the patient; a clinician with consent)",
    dependencies=[NEGOTIATE],
    response_class=FhirJSONResponse,
    responses={
        200: {**JSON, "description": "the document's metadata (ETag: its version)"},
        404: {"description": "no such document"},
        406: NOT_ACCEPTABLE,
    },
)
def read(
    record_id: Hex32Param,
    index: IndexDep,
    access: AccessDep,
    directory: DirectoryDep,
    chain: ChainDep,
    caller: Annotated[FhirCaller, require_scope(RESOURCE, "read")],
) -> Response:
    row = visible_row(caller, record_id, index, access, directory, chain)
    rid = fhir_id(row.record_id)
    return fhir_response(
        resource_of(index, row), version_id=rid, last_modified=http_date(row.created_at)
    )


@router.get(
    f"/{RESOURCE}/{{record_id}}/_history/{{version_id}}",
    summary="Read one version of a document (hospital, auditor, the patient; a clinician with "
    "consent)",
    dependencies=[NEGOTIATE],
    response_class=FhirJSONResponse,
    responses={
        200: {**JSON, "description": "the version (each version is its own record)"},
        404: {"description": "no such document, or no such version of it"},
        406: NOT_ACCEPTABLE,
    },
)
def vread(
    record_id: Hex32Param,
    version_id: Hex32Param,
    index: IndexDep,
    access: AccessDep,
    directory: DirectoryDep,
    chain: ChainDep,
    caller: Annotated[FhirCaller, require_scope(RESOURCE, "read")],
) -> Response:
    # Each version is its own record: its versionId is its id, so the only version of
    # DocumentReference/<id> is <id> (the others are DocumentReference/<their id>).
    if parse_record_id(version_id) != parse_record_id(record_id):
        raise FhirError(404, "not-found", f"{RESOURCE}/{record_id} has no version {version_id}")
    return read(record_id, index, access, directory, chain, caller)


_MAX_VERSIONS = 1000


@router.get(
    f"/{RESOURCE}/{{record_id}}/_history",
    summary="Versions of a document: the chain of records it replaces and that replace it "
    "(hospital, auditor, the patient)",
    dependencies=[NEGOTIATE],
    response_class=FhirJSONResponse,
    responses={
        200: {**JSON, "description": "a history Bundle, newest first"},
        404: {"description": "no such document"},
        406: NOT_ACCEPTABLE,
    },
)
def history(
    request: Request,
    record_id: Hex32Param,
    index: IndexDep,
    access: AccessDep,
    directory: DirectoryDep,
    chain: ChainDep,
    caller: Annotated[FhirCaller, require_scope(RESOURCE, "read")],
) -> Response:
    row = visible_row(caller, record_id, index, access, directory, chain)
    chain_rows = [row]
    while chain_rows[-1].previous_id is not None and len(chain_rows) < _MAX_VERSIONS:
        try:
            chain_rows.append(index.get_record(chain_rows[-1].previous_id))
        except RecordNotFound:
            break
    newer: list[RecordRow] = []
    cursor = row.record_id
    while len(newer) + len(chain_rows) < _MAX_VERSIONS:
        nxt = index.find_records(RecordQuery(previous_id=cursor, limit=1))
        if not nxt:
            break
        newer.append(nxt[0])
        cursor = nxt[0].record_id
    versions = [*reversed(newer), *chain_rows]
    base = base_url(request)
    entries = []
    for i, version in enumerate(versions):
        rid = fhir_id(version.record_id)
        entries.append(
            {
                "fullUrl": f"{base}/{RESOURCE}/{rid}",
                "resource": to_resource(version, superseded=i > 0),
                "request": {"method": "POST", "url": RESOURCE},
                "response": {"status": "201 Created", "etag": f'W/"{rid}"'},
            }
        )
    bundle = {
        "resourceType": "Bundle",
        "type": "history",
        "total": len(entries),
        "link": [{"relation": "self", "url": str(request.url)}],
        "entry": entries,
    }
    return FhirJSONResponse(bundle)


@router.get(
    f"/{RESOURCE}",
    summary="Search DocumentReferences (hospital, auditor; a patient: its own)",
    dependencies=[NEGOTIATE],
    response_class=FhirJSONResponse,
    responses={
        200: SEARCHSET,
        400: BAD_SEARCH,
        403: {"description": "a wallet searching another patient's documents"},
        406: NOT_ACCEPTABLE,
    },
)
def search(
    request: Request,
    settings: SettingsDep,
    index: IndexDep,
    caller: Annotated[FhirCaller, require_scope(RESOURCE, "read")],
) -> Response:
    params = parse_search(list(request.query_params.multi_items()))
    patient = caller.require_patient(params.patient)
    page = search_page(request, settings.fhir.default_count, settings.fhir.max_count)
    total = index.count_records(params.query(limit=1, offset=0, patient=patient))
    rows = (
        index.find_records(params.query(limit=page.count, offset=page.offset, patient=patient))
        if page.count
        else []
    )
    resources = [
        to_resource(
            row,
            superseded=params.status == "superseded"
            if params.status
            else superseded(index, row.record_id),
        )
        for row in rows
    ]
    return FhirJSONResponse(searchset(request, RESOURCE, resources, total=total, page=page))
