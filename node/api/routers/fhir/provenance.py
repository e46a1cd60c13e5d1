"""Provenance: the on-chain anchoring of a DocumentReference."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from node.api.deps import AccessDep, ChainDep, DirectoryDep, IndexDep, SettingsDep
from node.api.routers.fhir._shared import JSON, NOT_ACCEPTABLE
from node.api.routers.fhir.documents import visible_row
from node.api.schemas.common import Hex32Param
from node.fhir.common import (
    NEGOTIATE,
    FhirCaller,
    FhirError,
    FhirJSONResponse,
    FhirRoute,
    fhir_response,
    require_scope,
    search_page,
    searchset,
)
from node.fhir.documents import RESOURCE, fhir_id
from node.fhir.provenance import PROVENANCE, to_provenance
from storage.abc import RecordIndexAPI
from storage.models import RecordRow

router = APIRouter(route_class=FhirRoute, tags=["fhir"])


def _provenance_of(index: RecordIndexAPI, row: RecordRow) -> dict[str, Any] | None:
    """The record's Provenance, or None while it waits for its batch."""
    receipt = index.get_receipt(row.record_id)
    return to_provenance(receipt) if receipt is not None else None


@router.get(
    f"/{PROVENANCE}/{{record_id}}",
    summary="The anchoring of a document: transaction, Merkle root, proof, signer "
    "(hospital, auditor, the patient)",
    dependencies=[NEGOTIATE],
    response_class=FhirJSONResponse,
    responses={
        200: {**JSON, "description": "the Provenance"},
        404: {"description": "no such record, or it is not anchored yet"},
        406: NOT_ACCEPTABLE,
    },
)
def read(
    record_id: Hex32Param,
    index: IndexDep,
    access: AccessDep,
    directory: DirectoryDep,
    chain: ChainDep,
    caller: Annotated[FhirCaller, require_scope(PROVENANCE, "read")],
) -> Response:
    row = visible_row(caller, record_id, index, access, directory, chain)
    resource = _provenance_of(index, row)
    if resource is None:
        raise FhirError(404, "not-found", f"{PROVENANCE}/{record_id}: not anchored yet")
    return fhir_response(resource, version_id=fhir_id(row.record_id))


@router.get(
    f"/{PROVENANCE}",
    summary="Search Provenance by target=DocumentReference/<id> (hospital, auditor, the patient)",
    dependencies=[NEGOTIATE],
    response_class=FhirJSONResponse,
    responses={
        200: {**JSON, "description": "a searchset Bundle: one Provenance, or none while pending"},
        400: {"description": "target missing or not DocumentReference/<id>"},
        404: {"description": "the target document is not known"},
        406: NOT_ACCEPTABLE,
    },
)
def search(
    request: Request,
    settings: SettingsDep,
    index: IndexDep,
    access: AccessDep,
    directory: DirectoryDep,
    chain: ChainDep,
    caller: Annotated[FhirCaller, require_scope(PROVENANCE, "read")],
) -> Response:
    targets: list[str] = []
    for name, value in request.query_params.multi_items():
        if name == "target":
            targets.append(value)
        elif name not in ("_count", "_getpagesoffset", "_format"):
            raise FhirError(400, "not-supported", f"unknown search parameter {name[:40]!r}")
    if len(targets) != 1:
        raise FhirError(400, "required", "search by one target=DocumentReference/<id>")
    kind, _, value = targets[0].rpartition("/")
    if kind not in (RESOURCE, ""):
        raise FhirError(400, "invalid", "target: DocumentReference/<id>", expression=("target",))
    page = search_page(request, settings.fhir.default_count, settings.fhir.max_count)
    row = visible_row(caller, value, index, access, directory, chain)
    found = _provenance_of(index, row)
    matches = [found] if found is not None else []
    return FhirJSONResponse(
        searchset(request, PROVENANCE, page.of(matches), total=len(matches), page=page)
    )
