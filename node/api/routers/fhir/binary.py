"""Binary: a record's content. Create (hospital token), read through the read flow
(wallet session: the patient, or a grantee with consent or break-glass; access-logged)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Request
from fastapi.responses import Response

from node.api.content import ContentReaderDep
from node.api.deps import (
    PatientsDep,
    SettingsDep,
    UploadsDep,
)
from node.api.edge import batch_upload
from node.api.schemas.common import CATEGORY_PATTERN, Hex32Param
from node.fhir.common import (
    FHIR_JSON,
    FHIR_MEDIA_TYPE,
    NEGOTIATE,
    NEGOTIATE_RAW,
    FhirCaller,
    FhirJSONResponse,
    FhirRoute,
    base_url,
    fhir_response,
    parse_json,
    require_scope,
)
from node.fhir.documents import (
    BINARY,
    binary_resource,
    binary_upload,
    fhir_id,
    http_date,
    parse_binary,
)
from node.fhir.documents import record_id as parse_record_id

router = APIRouter(route_class=FhirRoute, tags=["fhir"])

_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            FHIR_JSON: {
                "schema": {
                    "type": "object",
                    "description": "a FHIR R4 Binary with securityContext and the category "
                    "extension; see docs/fhir.md",
                }
            }
        },
    }
}


@router.post(
    f"/{BINARY}",
    status_code=201,
    summary="Create a Binary: upload a record's content (hospital token)",
    dependencies=[NEGOTIATE],
    response_class=FhirJSONResponse,
    openapi_extra=_BODY,
    responses={
        201: {"content": {FHIR_MEDIA_TYPE: {}}, "description": "stored (the answer has no data)"},
        400: {"description": "not a valid Binary, no patient or no category"},
        406: {"description": "_format or Accept asks for XML"},
        413: {"description": "the content exceeds api.max_upload_bytes"},
        415: {"description": "Content-Type is not application/fhir+json"},
    },
)
@batch_upload  # base64 content may exceed the JSON limit (docs/fhir.md, "Limits")
async def create(
    request: Request,
    settings: SettingsDep,
    uploads: UploadsDep,
    patients: PatientsDep,
    _caller: Annotated[FhirCaller, require_scope(BINARY, "write")],
    x_category: Annotated[
        str | None, Header(description="the record's category", pattern=CATEGORY_PATTERN)
    ] = None,
) -> Response:
    model = parse_binary(parse_json(await request.body(), BINARY))
    upload = binary_upload(
        model,
        category_header=x_category,
        resolve=patients.resolve,
        max_bytes=settings.api.max_upload_bytes,
    )
    row = await uploads.submit_async(upload)
    rid = fhir_id(row.record_id)
    return fhir_response(
        binary_resource(row),
        201,
        version_id=rid,
        location=f"{base_url(request)}/{BINARY}/{rid}",  # no vread: Binary has one version
        last_modified=http_date(row.created_at),
    )


def _wants_resource(request: Request) -> bool:
    """A Binary resource (base64) for ``_format`` or an ``Accept`` naming FHIR JSON; the raw
    content otherwise (FHIR R4 binary.html#rest)."""
    if request.query_params.get("_format"):
        return True
    accept = (request.headers.get("accept") or "").lower()
    return FHIR_JSON in accept or "application/json" in accept


@router.get(
    f"/{BINARY}/{{record_id}}",
    summary="Read a record's content (wallet session: the patient, or a grantee with consent)",
    dependencies=[NEGOTIATE_RAW],
    responses={
        200: {
            "content": {"application/octet-stream": {}, FHIR_MEDIA_TYPE: {}},
            "description": "the content in its own type, or (Accept: application/fhir+json) "
            "a Binary resource with base64 data",
        },
        403: {"description": "no consent or break-glass admits this wallet (logged)"},
        404: {"description": "no such record"},
        406: {"description": "_format or Accept asks for XML"},
        410: {"description": "the record was erased: only its anchored hash remains"},
    },
)
async def read(
    request: Request,
    record_id: Hex32Param,
    reader: ContentReaderDep,
    caller: Annotated[FhirCaller, require_scope(BINARY, "read")],
) -> Response:
    rid = parse_record_id(record_id)
    wallet = caller.wallet
    assert wallet is not None  # Binary.read is a wallet session's scope only
    result = await reader.read(rid, wallet)
    headers = {
        "X-Access-Basis": result.basis.name.lower(),
        "X-Content-SHA256": result.row.content_hash.hex(),
        "ETag": f'W/"{fhir_id(rid)}"',
    }
    if _wants_resource(request):
        return FhirJSONResponse(binary_resource(result.row, result.content), headers=headers)
    return Response(content=result.content, media_type=result.row.content_type, headers=headers)
