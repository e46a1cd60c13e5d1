"""Patient (minimal): the wallet address and its linked identifiers."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Request
from fastapi.responses import Response

from node.api.deps import IndexDep, PatientsDep, SettingsDep
from node.api.routers.fhir._shared import JSON, NOT_ACCEPTABLE
from node.api.schemas.common import AddressParam
from node.fhir.common import (
    NEGOTIATE,
    WALLET_SYSTEM,
    FhirCaller,
    FhirError,
    FhirJSONResponse,
    FhirRoute,
    fhir_response,
    require_scope,
    search_page,
    searchset,
    split_token,
)
from node.fhir.documents import patient_param
from node.fhir.patient import PATIENT, to_patient
from node.patients import PatientDirectory
from storage.abc import RecordIndexAPI
from storage.models import RecordQuery

router = APIRouter(route_class=FhirRoute, tags=["fhir"])


def _known(address: str, patients: PatientDirectory, index: RecordIndexAPI) -> bool:
    """A patient the node knows: identifiers linked, or records held."""
    if len(patients.identifiers(address)) > 1:
        return True
    return index.count_records(RecordQuery(patient=address, limit=1)) > 0


@router.get(
    f"/{PATIENT}/{{address}}",
    summary="A patient by wallet address (hospital, auditor, the patient itself)",
    dependencies=[NEGOTIATE],
    response_class=FhirJSONResponse,
    responses={
        200: {**JSON, "description": "the Patient"},
        404: {"description": "the node holds nothing about this address"},
        406: NOT_ACCEPTABLE,
    },
)
def read(
    address: AddressParam,
    index: IndexDep,
    patients: PatientsDep,
    caller: Annotated[FhirCaller, require_scope(PATIENT, "read")],
) -> Response:
    try:
        wallet = patient_param(address)
    except FhirError:
        raise FhirError(404, "not-found", "a Patient id is a wallet address") from None
    if not _known(wallet, patients, index):
        raise FhirError(404, "not-found", f"{PATIENT}/{wallet} is not known here")
    caller.require_patient(wallet)
    return fhir_response(to_patient(wallet, patients.identifiers(wallet)))


@router.get(
    f"/{PATIENT}",
    summary="Search patients by identifier=system|value or _id (hospital, auditor; a wallet: "
    "its own)",
    dependencies=[NEGOTIATE],
    response_class=FhirJSONResponse,
    responses={
        200: {**JSON, "description": "a searchset Bundle with the matching Patient, if any"},
        400: {"description": "an unknown parameter or a malformed identifier"},
        406: NOT_ACCEPTABLE,
    },
)
def search(
    request: Request,
    settings: SettingsDep,
    index: IndexDep,
    patients: PatientsDep,
    caller: Annotated[FhirCaller, require_scope(PATIENT, "read")],
) -> Response:
    wanted: list[str | None] = []
    for name, value in request.query_params.multi_items():
        if name == "identifier":
            system, ident = split_token(value)
            if not system or not ident:
                raise FhirError(400, "invalid", "identifier: system|value", expression=(name,))
            wanted.append(
                patients.resolve(system, ident) if system != WALLET_SYSTEM else _wallet(ident)
            )
        elif name == "_id":
            wanted.append(_wallet(value))
        elif name not in ("_count", "_getpagesoffset", "_format"):
            raise FhirError(400, "not-supported", f"unknown search parameter {name[:40]!r}")
    page = search_page(request, settings.fhir.default_count, settings.fhir.max_count)
    own = caller.wallet if not caller.is_system else None
    if not wanted:
        if own is None:
            raise FhirError(400, "required", "search by identifier=system|value or _id")
        wanted = [own]
    address = wanted[0] if len(set(wanted)) == 1 else None  # every parameter must match
    matches = []
    if address is not None and (own is None or address == own) and _known(address, patients, index):
        matches.append(to_patient(address, patients.identifiers(address)))
    return FhirJSONResponse(
        searchset(request, PATIENT, page.of(matches), total=len(matches), page=page)
    )


def _wallet(value: str) -> str | None:
    try:
        return patient_param(value)
    except FhirError:
        return None
