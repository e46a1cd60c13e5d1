"""AuditEvent: the on-chain audit trail as IHE BALP-shaped AuditEvents (read, search).

Who may call, as GET /audit/events: auditor and admin tokens (``system/AuditEvent.read``)
see every patient's trail; a wallet session (``patient/AuditEvent.read``) sees only events
about its own records. Hospital tokens carry no AuditEvent scope.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Request
from fastapi.responses import Response

from node.api.deps import ChainDep, SettingsDep
from node.api.routers.fhir._shared import (
    BAD_SEARCH,
    CHAIN_DOWN,
    JSON,
    NOT_ACCEPTABLE,
    SEARCHSET,
    UNAUTHENTICATED,
)
from node.chain.abc import ChainClientAPI
from node.fhir.audit_event import (
    RESOURCE,
    ChainSource,
    parse_audit_event_id,
    parse_audit_search,
    to_audit_events,
)
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

router = APIRouter(route_class=FhirRoute, tags=["fhir"])


def _where(chain: ChainClientAPI) -> ChainSource:
    d = chain.deployment
    return ChainSource(
        chain_id=d.chain_id,
        contracts={
            "RecordRegistry": d.record_registry,
            "ConsentRegistry": d.consent_registry,
            "AccessLog": d.access_log,
        },
    )


@router.get(
    f"/{RESOURCE}/{{id}}",
    summary="Read an AuditEvent (auditor token; a wallet: events about its own records)",
    dependencies=[NEGOTIATE],
    response_class=FhirJSONResponse,
    responses={
        200: {**JSON, "description": "the event, from the chain's log"},
        401: UNAUTHENTICATED,
        403: {"description": "a hospital token, or a wallet reading another patient's event"},
        404: {"description": "no such event (ids are <block>-<log index>)"},
        406: NOT_ACCEPTABLE,
        503: CHAIN_DOWN,
    },
)
def read(
    id: str,
    chain: ChainDep,
    caller: Annotated[FhirCaller, require_scope(RESOURCE, "read")],
) -> Response:
    where = parse_audit_event_id(id)
    if where is None or where[0] > chain.head_block():
        raise FhirError(404, "not-found", f"{RESOURCE}/{id[:80]} is not known")
    block, log_index = where
    found = [
        m
        for m in to_audit_events(
            chain.audit_events(from_block=block, to_block=block), _where(chain)
        )
        if m.log_index == log_index
    ]
    if not found:
        raise FhirError(404, "not-found", f"{RESOURCE}/{id} is not known")
    patient = found[0].patient
    caller.require_patient(patient)
    # Again with the patient's earlier events: a revocation then names the Consent it ends.
    history = chain.audit_events(patient=patient, to_block=block)
    mapped = [m for m in to_audit_events(history, _where(chain)) if m.block_number == block]
    chosen = next((m for m in mapped if m.log_index == log_index), found[0])
    return fhir_response(chosen.resource)


@router.get(
    f"/{RESOURCE}",
    summary="Search AuditEvents by patient, entity, agent, date, type, subtype, outcome "
    "(auditor token; a wallet: its own)",
    dependencies=[NEGOTIATE],
    response_class=FhirJSONResponse,
    responses={
        200: SEARCHSET,
        400: BAD_SEARCH,
        401: UNAUTHENTICATED,
        403: {"description": "a hospital token, or a wallet searching another patient's trail"},
        406: NOT_ACCEPTABLE,
        503: CHAIN_DOWN,
    },
)
def search(
    request: Request,
    chain: ChainDep,
    settings: SettingsDep,
    caller: Annotated[FhirCaller, require_scope(RESOURCE, "read")],
) -> Response:
    params = parse_audit_search(list(request.query_params.multi_items()))
    page = search_page(request, settings.fhir.default_count, settings.fhir.max_count)
    patient = caller.require_patient(params.patient)
    events = chain.audit_events(patient=patient, record_id=params.record_id, actor=params.agent)
    found = [
        m
        for m in to_audit_events(events, _where(chain))
        if params.filter.matches(m) and (not params.ids or m.resource["id"] in params.ids)
    ]
    if params.newest_first:
        found.reverse()
    chosen = [m.resource for m in page.of(found)]
    return FhirJSONResponse(searchset(request, RESOURCE, chosen, total=len(found), page=page))
