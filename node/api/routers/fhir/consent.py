"""Consent: create from a patient's signed Grant, revoke with a signed Revoke (PUT, status
inactive), read and search the chain's consents.

Writes need no credential, as POST /consents/grant: the patient's EIP-712 signature is the
authority and the relay flow checks it (the chain simulates the call before anything is
sent). Reads: hospital, auditor and admin tokens (``system/Consent.read``) and the
patient's own wallet session (``patient/Consent.read``).
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from node.api.deps import BackgroundDep, ChainDep, MetricsDep, RelaysDep, SettingsDep
from node.api.routers.fhir._shared import (
    BAD_SEARCH,
    CHAIN_DOWN,
    JSON,
    NOT_ACCEPTABLE,
    SEARCHSET,
    UNAUTHENTICATED,
    json_body,
)
from node.chain.abc import ChainClientAPI
from node.chain.models import ConsentGrant, ConsentRevoke, TxResult
from node.consent.relay_queue import ConsentRelayQueue
from node.fhir.common import (
    NEGOTIATE,
    FhirCaller,
    FhirError,
    FhirJSONResponse,
    FhirRoute,
    base_url,
    fhir_response,
    outcome,
    parse_json,
    require_scope,
    search_page,
    searchset,
)
from node.fhir.consent import (
    RESOURCE,
    ConsentState,
    SignedConsent,
    consent_states,
    grant_of,
    parse_consent,
    parse_consent_id,
    parse_consent_search,
    revoke_of,
    to_fhir,
)
from node.fhir.documents import http_date
from node.flows.relay_consent import relay_or_queue
from node.observability.metrics import MetricsAPI
from node.roles.abc import BackgroundWorkersAPI

router = APIRouter(route_class=FhirRoute, tags=["fhir"])
_BODY = json_body(
    "a FHIR R4 Consent carrying the patient's EIP-712 signature in the eip712-signature "
    "extension; see docs/fhir.md"
)
_WRITE_RESPONSES: dict[int | str, dict[str, Any]] = {
    202: {
        **JSON,
        "description": "the chain is unreachable: the signed consent is queued and relayed "
        "later (an OperationOutcome names GET /consents/relays/{relay_id})",
    },
    400: {
        "description": "not JSON, not a valid Consent (the validator's messages), a malformed "
        "signature or typed data, or refused before any transaction: bad signature, EIP-712 "
        "domain, deadline, expiry or scope"
    },
    406: NOT_ACCEPTABLE,
    408: {"description": "the body did not arrive in time"},
    409: {"description": "the nonce is not the patient's next one (a replayed signature)"},
    413: {"description": "the body exceeds api.max_json_bytes"},
    415: {"description": "Content-Type is not application/fhir+json"},
    422: {
        "description": "the resource disagrees with its signed typed data (patient, grantee, "
        "scope, expiry), has no signature, or asks what the node cannot honour: deny or "
        "nested provisions, purposes, labels"
    },
    503: {"description": "the chain is unreachable and the signature cannot be checked off-chain"},
}


def _now() -> int:
    return int(time.time())


def _organizations(chain: ChainClientAPI) -> frozenset[str]:
    return frozenset(address for address, _name in chain.members())


def _load(chain: ChainClientAPI, patient: str, block: int, log_index: int) -> ConsentState | None:
    """The grant logged at (block, log index) for ``patient``, with what became of it."""
    if block > chain.head_block():
        return None
    events = chain.audit_events(patient=patient, from_block=block)
    for state in consent_states(events):
        if state.block_number == block and state.log_index == log_index:
            return state
    return None


def _state_of_tx(chain: ChainClientAPI, patient: str, tx: TxResult) -> ConsentState:
    events = chain.audit_events(patient=patient, from_block=tx.block_number)
    for state in consent_states(events):
        if state.tx_hash == tx.tx_hash:
            return state
    raise FhirError(500, "exception", "the relayed grant's event was not found on-chain")


def _queued(relay_id: int, what: str) -> FhirJSONResponse:
    body = outcome(
        "informational",
        f"the chain is unreachable: the signed {what} is queued as relay {relay_id} and "
        f"relayed when the chain is back; see GET /consents/relays/{relay_id}",
        severity="information",
    )
    return FhirJSONResponse(
        body, status_code=202, headers={"Content-Location": f"/consents/relays/{relay_id}"}
    )


def _answer(request: Request, state: ConsentState, chain: ChainClientAPI, status: int) -> Response:
    resource = to_fhir(state, _now(), organizations=_organizations(chain))
    version = resource["meta"]["versionId"]
    return fhir_response(
        resource,
        status,
        version_id=version,
        location=f"{base_url(request)}/{RESOURCE}/{state.id}" if status == 201 else None,
        last_modified=http_date(state.ended_at or state.granted_at),
    )


def _relay(
    consent: ConsentGrant | ConsentRevoke,
    signed: SignedConsent,
    chain: ChainClientAPI,
    relays: ConsentRelayQueue,
    background: BackgroundWorkersAPI,
    metrics: MetricsAPI,
) -> TxResult | int:
    return relay_or_queue(
        consent,
        signed.signature,
        chain=chain,
        queue=relays,
        signed_domain=signed.domain,
        background=background,
        metrics=metrics,
    )


@router.post(
    f"/{RESOURCE}",
    status_code=201,
    summary="Create a Consent from the patient's EIP-712 signed Grant (anyone: the signature "
    "is the authority)",
    description="The Consent carries the signed typed data and signature in the extension "
    "urn:emr-node:fhir:StructureDefinition:eip712-signature; patient, provision.actor "
    "(grantee), provision.data / provision.code (scope) and provision.period.end (expiry) "
    "must say what the patient signed. The node relays the Grant (it pays gas).",
    dependencies=[NEGOTIATE],
    response_class=FhirJSONResponse,
    openapi_extra=_BODY,
    responses={
        201: {**JSON, "description": "relayed: the Consent as the chain now holds it"},
        **_WRITE_RESPONSES,
    },
)
async def create(
    request: Request,
    chain: ChainDep,
    relays: RelaysDep,
    background: BackgroundDep,
    metrics: MetricsDep,
) -> Response:
    consent = parse_consent(parse_json(await request.body(), RESOURCE))
    grant, signed = grant_of(consent, _now())

    def run() -> Response:
        result = _relay(grant, signed, chain, relays, background, metrics)
        if not isinstance(result, TxResult):
            return _queued(result, "Grant")
        return _answer(request, _state_of_tx(chain, grant.patient, result), chain, 201)

    return await run_in_threadpool(run)


@router.put(
    f"/{RESOURCE}/{{id}}",
    summary="Revoke a Consent: status inactive with the patient's signed Revoke (anyone: the "
    "signature is the authority)",
    description="The body is the Consent with status 'inactive' and the signed Revoke in the "
    "eip712-signature extension. Only this change is accepted: a consent's terms are its "
    "signature's. The revocation takes effect from the next block.",
    dependencies=[NEGOTIATE],
    response_class=FhirJSONResponse,
    openapi_extra=_BODY,
    responses={
        200: {**JSON, "description": "relayed: the Consent, now inactive"},
        **_WRITE_RESPONSES,
        404: {"description": "no such Consent"},
        409: {
            "description": "the Consent is already inactive (revoked, expired or superseded), "
            "or the Revoke's nonce is not the patient's next one"
        },
    },
)
async def revoke(
    id: str,
    request: Request,
    chain: ChainDep,
    relays: RelaysDep,
    background: BackgroundDep,
    metrics: MetricsDep,
) -> Response:
    consent = parse_consent(parse_json(await request.body(), RESOURCE))
    where = parse_consent_id(id)
    if where is None:
        raise FhirError(404, "not-found", f"{RESOURCE}/{id[:80]} is not known")

    def run() -> Response:
        current = _load(chain, *where)
        if current is None:
            raise FhirError(404, "not-found", f"{RESOURCE}/{id} is not known")
        now = _now()
        if current.status(now) != "active":
            raise FhirError(
                409,
                "conflict",
                f"{RESOURCE}/{id} is already inactive ({current.why_inactive(now)}): "
                "nothing to revoke",
            )
        revocation, signed = revoke_of(consent, current, id)
        result = _relay(revocation, signed, chain, relays, background, metrics)
        if not isinstance(result, TxResult):
            return _queued(result, "Revoke")
        after = _load(chain, *where)
        return _answer(request, after or current, chain, 200)

    return await run_in_threadpool(run)


@router.get(
    f"/{RESOURCE}/{{id}}",
    summary="Read a Consent (hospital, auditor; the patient: its own)",
    dependencies=[NEGOTIATE],
    response_class=FhirJSONResponse,
    responses={
        200: {**JSON, "description": "the Consent as the chain holds it now"},
        401: UNAUTHENTICATED,
        403: {"description": "a wallet reading another patient's consent"},
        404: {"description": "no such Consent"},
        406: NOT_ACCEPTABLE,
        503: CHAIN_DOWN,
    },
)
def read(
    id: str,
    request: Request,
    chain: ChainDep,
    caller: Annotated[FhirCaller, require_scope(RESOURCE, "read")],
) -> Response:
    where = parse_consent_id(id)
    if where is None:
        raise FhirError(404, "not-found", f"{RESOURCE}/{id[:80]} is not known")
    caller.require_patient(where[0])
    state = _load(chain, *where)
    if state is None:
        raise FhirError(404, "not-found", f"{RESOURCE}/{id} is not known")
    return _answer(request, state, chain, 200)


@router.get(
    f"/{RESOURCE}",
    summary="Search Consents by patient, actor, status, period (hospital, auditor; the "
    "patient: its own)",
    dependencies=[NEGOTIATE],
    response_class=FhirJSONResponse,
    responses={
        200: SEARCHSET,
        400: BAD_SEARCH,
        401: UNAUTHENTICATED,
        403: {"description": "a wallet searching another patient's consents"},
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
    params = parse_consent_search(list(request.query_params.multi_items()))
    page = search_page(request, settings.fhir.default_count, settings.fhir.max_count)
    patient = caller.require_patient(params.patient)
    now = _now()
    states = [
        s
        for s in consent_states(chain.audit_events(patient=patient, actor=params.actor))
        if (patient is None or s.patient == patient)
        and (params.actor is None or s.grantee == params.actor)
        and params.matches(s, now)
    ]
    if params.newest_first:
        states.reverse()
    chosen = page.of(states)
    organizations = _organizations(chain) if chosen else frozenset()
    resources = [to_fhir(s, now, organizations=organizations) for s in chosen]
    return FhirJSONResponse(searchset(request, RESOURCE, resources, total=len(states), page=page))
