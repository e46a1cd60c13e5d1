"""Patient consent: publish the EIP-712 types and domain, relay signed Grants and Revokes
(one reader address) and GrantClass / RevokeClass (a class of readers: a member hospital or
any, and clinician roles; for anonymous reads with a proof)."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response
from pydantic import BaseModel, Field

from node.api.deps import (
    BackgroundDep,
    ChainDep,
    DirectoryDep,
    IndexDep,
    MetricsDep,
    PrincipalDep,
    RelaysDep,
)
from node.api.schemas.common import (
    MAX_INT64,
    Address,
    AddressParam,
    parse_address,
    to_bytes,
    to_hex,
)
from node.api.schemas.consent import (
    ActiveConsentOut,
    ClassConsentOut,
    ClassConsentsOut,
    RelayOut,
    SignedGrant,
    SignedGrantClass,
    SignedRevoke,
    SignedRevokeClass,
)
from node.auth.principal import Role, WalletPrincipal
from node.chain.abc import ChainClientAPI
from node.chain.class_consents import ClassConsentGrant, ClassConsentRevoke
from node.chain.models import ConsentGrant, ConsentRevoke, TxResult
from node.consent.active import active_consents
from node.consent.relay_queue import ConsentRelayQueue, SignedConsent
from node.consent.typed_data import (
    ANY_HOSPITAL,
    EIP712_DOMAIN_TYPE,
    PRIMARY_TYPES,
    ScopeKind,
    category_hash,
)
from node.exceptions import Forbidden, NotFound
from node.flows.relay_consent import relay_or_queue
from node.observability.metrics import MetricsAPI
from node.roles.abc import BackgroundWorkersAPI
from storage.models import RecordQuery
from zk.credentials import ROLES

router = APIRouter(prefix="/consents", tags=["consent"])


class TypedDataOut(BaseModel):
    domain: dict[str, Any]
    types: dict[str, list[dict[str, str]]]
    scope_kinds: dict[str, int]
    roles: list[str] = Field(
        description="clinician roles of a reader class: bit i of `roles` is roles[i]"
    )
    hospitals: dict[str, str] = Field(
        description="member id -> hospital name for a reader class's `hospital` "
        "(0: any member hospital)"
    )


class NonceOut(BaseModel):
    patient: str
    nonce: int


@router.get(
    "/typed-data",
    response_model=TypedDataOut,
    responses={503: {"description": "chain unreachable"}},
    summary="EIP-712 domain and types to sign (anyone)",
    description="Grant/Revoke name one reader address; GrantClass/RevokeClass name a class "
    "of readers: `hospital` (a member id from `hospitals`, 0 = any member hospital) and "
    "`roles` (a mask over `roles`).",
)
def typed_data(chain: ChainDep) -> TypedDataOut:
    hospitals = {str(ANY_HOSPITAL): "any member hospital"}
    for address, name in chain.members():
        hospitals[str(chain.member_id(address))] = name
    return TypedDataOut(
        domain=chain.consent_domain(),
        types={"EIP712Domain": EIP712_DOMAIN_TYPE, **PRIMARY_TYPES},
        scope_kinds={k.name.lower(): int(k) for k in ScopeKind},
        roles=list(ROLES),
        hospitals=hospitals,
    )


@router.get(
    "/nonce/{patient}",
    response_model=NonceOut,
    responses={
        422: {"description": "patient is not an address"},
        503: {"description": "chain unreachable"},
    },
    summary="The patient's next consent nonce (anyone)",
)
def nonce(patient: Address, chain: ChainDep) -> NonceOut:
    return NonceOut(patient=patient, nonce=chain.consent_nonce(patient))


def _relay(
    consent: SignedConsent,
    body: SignedGrant | SignedRevoke | SignedGrantClass | SignedRevokeClass,
    response: Response,
    *,
    chain: ChainClientAPI,
    relays: ConsentRelayQueue,
    background: BackgroundWorkersAPI,
    metrics: MetricsAPI,
) -> RelayOut:
    result = relay_or_queue(
        consent,
        to_bytes(body.signature),
        chain=chain,
        queue=relays,
        signed_domain=body.domain,
        background=background,
        metrics=metrics,
    )
    if isinstance(result, TxResult):
        return RelayOut(
            status="relayed", tx_hash=to_hex(result.tx_hash), block_number=result.block_number
        )
    response.status_code = 202
    return RelayOut(status="queued", relay_id=result)


_RELAY_RESPONSES: dict[int | str, dict[str, Any]] = {
    202: {"model": RelayOut, "description": "chain unreachable: queued, relayed later"},
    400: {
        "description": "refused before any transaction: bad signature, EIP-712 domain, "
        "deadline, expiry, scope or reader class (roles 0, unknown member hospital)"
    },
    409: {"description": "the nonce is not the patient's next one (a replayed signature)"},
    422: {"description": "malformed body (field types and ranges)"},
    503: {"description": "chain unreachable and the signature cannot be checked off-chain"},
}


@router.post(
    "/grant",
    response_model=RelayOut,
    responses=_RELAY_RESPONSES,
    summary="Relay a patient-signed Grant on-chain (anyone: the signature is the authority)",
)
def grant(
    body: SignedGrant,
    chain: ChainDep,
    relays: RelaysDep,
    background: BackgroundDep,
    metrics: MetricsDep,
    response: Response,
) -> RelayOut:
    m = body.message
    consent = ConsentGrant(
        m.patient,
        m.grantee,
        ScopeKind(m.scopeKind),
        to_bytes(m.scope),
        m.expiresAt,
        m.nonce,
        m.deadline,
    )
    return _relay(
        consent,
        body,
        response,
        chain=chain,
        relays=relays,
        background=background,
        metrics=metrics,
    )


@router.post(
    "/revoke",
    response_model=RelayOut,
    responses=_RELAY_RESPONSES,
    summary="Relay a patient-signed Revoke on-chain (anyone)",
)
def revoke(
    body: SignedRevoke,
    chain: ChainDep,
    relays: RelaysDep,
    background: BackgroundDep,
    metrics: MetricsDep,
    response: Response,
) -> RelayOut:
    m = body.message
    consent = ConsentRevoke(
        m.patient, m.grantee, ScopeKind(m.scopeKind), to_bytes(m.scope), m.nonce, m.deadline
    )
    return _relay(
        consent,
        body,
        response,
        chain=chain,
        relays=relays,
        background=background,
        metrics=metrics,
    )


@router.post(
    "/class-grants",
    response_model=RelayOut,
    responses=_RELAY_RESPONSES,
    summary="Relay a patient-signed GrantClass on-chain (anyone: the signature is the authority)",
    description="A consent for a class of readers, e.g. physicians of any member hospital "
    "(`hospital` 0) or nurses of member hospital 3, over one record, a category or "
    "everything, until `expiresAt`. Readers of the class then read anonymously with a "
    "proof (POST /zk/records/{id}/read). 200 when relayed.",
)
def class_grant(
    body: SignedGrantClass,
    chain: ChainDep,
    relays: RelaysDep,
    background: BackgroundDep,
    metrics: MetricsDep,
    response: Response,
) -> RelayOut:
    m = body.message
    consent = ClassConsentGrant(
        m.patient,
        m.hospital,
        m.roles,
        ScopeKind(m.scopeKind),
        to_bytes(m.scope),
        m.expiresAt,
        m.nonce,
        m.deadline,
    )
    return _relay(
        consent,
        body,
        response,
        chain=chain,
        relays=relays,
        background=background,
        metrics=metrics,
    )


@router.post(
    "/class-revokes",
    response_model=RelayOut,
    responses=_RELAY_RESPONSES,
    summary="Relay a patient-signed RevokeClass on-chain (anyone)",
    description="Ends the class consent with the same (hospital, roles, scope) from the next "
    "block on: the next anonymous read under it is refused. 200 when relayed.",
)
def class_revoke(
    body: SignedRevokeClass,
    chain: ChainDep,
    relays: RelaysDep,
    background: BackgroundDep,
    metrics: MetricsDep,
    response: Response,
) -> RelayOut:
    m = body.message
    consent = ClassConsentRevoke(
        m.patient,
        m.hospital,
        m.roles,
        ScopeKind(m.scopeKind),
        to_bytes(m.scope),
        m.nonce,
        m.deadline,
    )
    return _relay(
        consent,
        body,
        response,
        chain=chain,
        relays=relays,
        background=background,
        metrics=metrics,
    )


def _role_names(mask: int) -> list[str]:
    return [ROLES[i] if i < len(ROLES) else f"role{i}" for i in range(16) if mask >> i & 1]


@router.get(
    "/class-consents/{patient}",
    response_model=ClassConsentsOut,
    responses={
        422: {"description": "patient is not an address"},
        503: {"description": "chain unreachable"},
    },
    summary="A patient's live reader-class consents, from the chain (anyone: they are public)",
)
def class_consents(patient: Address, chain: ChainDep) -> ClassConsentsOut:
    return ClassConsentsOut(
        patient=patient,
        consents=[
            ClassConsentOut(
                hospital=c.hospital,
                roles=c.roles,
                role_names=_role_names(c.roles),
                scope_kind=c.scope_kind,
                scope=to_hex(c.scope),
                expires_at=c.expires_at,
            )
            for c in chain.class_consents(patient)
        ],
    )


@router.get(
    "/relays/{relay_id}",
    response_model=RelayOut,
    responses={404: {"description": "no queued consent with this id"}},
    summary="Status of a queued consent (anyone)",
)
def relay_status(relay_id: Annotated[int, Path(ge=1, le=MAX_INT64)], relays: RelaysDep) -> RelayOut:
    item = relays.get(relay_id)
    if item is None:
        raise NotFound(f"no queued consent {relay_id}")
    return RelayOut(
        status=item.status,
        relay_id=item.relay_id,
        tx_hash=to_hex(item.tx_hash) if item.tx_hash else None,
        block_number=item.block_number,
        error=item.error,
    )


_PATIENT_RECORDS = 10_000  # records read to name the categories a consent covers


@router.get(
    "/active",
    response_model=list[ActiveConsentOut],
    responses={
        401: {"description": "no credential, or an unknown, expired or revoked one"},
        403: {"description": "a wallet asking about another patient"},
        422: {"description": "patient is missing or not an address"},
        503: {"description": "chain unreachable"},
    },
    summary="Every consent and break-glass window on a patient's records that is live now, "
    "oldest first (a wallet: its own; hospital, auditor and admin tokens: any patient)",
    description="Revoked, superseded and expired consents and ended break-glass windows are "
    "absent. Replayed from the chain's events; a consent revoked in the latest block is "
    "already gone.",
)
def active(
    patient: Annotated[AddressParam, Query(description="the patient's wallet address")],
    chain: ChainDep,
    index: IndexDep,
    directory: DirectoryDep,
    principal: PrincipalDep,
) -> list[ActiveConsentOut]:
    wanted = parse_address("patient", patient)
    if isinstance(principal, WalletPrincipal):
        if wanted != principal.address:
            raise Forbidden("a wallet may see only its own consents")
    elif not principal.has(Role.HOSPITAL, Role.AUDITOR):
        raise Forbidden("consents need a wallet session or a hospital or auditor token")
    members: dict[str, str] = {}
    member_ids: dict[str, int] = {}

    def member_id(address: str) -> int:
        if address not in member_ids:
            member_ids[address] = chain.member_id(address)
        return member_ids[address]

    # The chain's clock decides what is live; a chain with no recent block runs calls at
    # about the wall clock.
    now = max(int(time.time()), chain.block_time(chain.head_block()))
    found = active_consents(chain.audit_events(patient=wanted), now, member_id)
    if any(c.grantee for c in found):
        members = dict(chain.members())
    categories = {
        category_hash(r.category): r.category
        for r in index.find_records(RecordQuery(patient=wanted, limit=_PATIENT_RECORDS))
    }

    def name_of(address: str | None) -> str | None:
        if address is None:
            return None
        clinician = directory.clinician(address)
        return clinician.name if clinician and clinician.name else members.get(address)

    return [
        ActiveConsentOut(
            kind=c.kind,
            grantee=c.grantee,
            grantee_name=name_of(c.grantee),
            hospital=c.hospital,
            roles=_role_names(c.roles) if c.roles is not None else None,
            scope_kind=c.scope_kind.name.lower(),  # type: ignore[arg-type]
            scope=to_hex(c.scope) if c.scope is not None else None,
            record_id=to_hex(c.record_id) if c.record_id is not None else None,
            category=categories.get(c.scope)
            if c.scope is not None and c.scope_kind is ScopeKind.CATEGORY
            else None,
            granted_at=c.granted_at,
            expires_at=c.expires_at,
            tx_hash=to_hex(c.tx_hash),
        )
        for c in found
    ]
