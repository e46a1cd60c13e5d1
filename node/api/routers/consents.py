"""Patient consent: publish the EIP-712 types and domain, relay signed Grants and Revokes."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from pydantic import BaseModel

from node.api.deps import NodeDep
from node.api.schemas.common import Address, to_bytes, to_hex
from node.api.schemas.consent import RelayOut, SignedGrant, SignedRevoke
from node.chain.models import ConsentGrant, ConsentRevoke, TxResult
from node.consent.typed_data import EIP712_DOMAIN_TYPE, PRIMARY_TYPES, ScopeKind
from node.exceptions import NotFound
from node.flows.relay_consent import relay_or_queue
from node.wiring import Node

router = APIRouter(prefix="/consents", tags=["consent"])


class TypedDataOut(BaseModel):
    domain: dict[str, Any]
    types: dict[str, list[dict[str, str]]]
    scope_kinds: dict[str, int]


class NonceOut(BaseModel):
    patient: str
    nonce: int


@router.get(
    "/typed-data", response_model=TypedDataOut, summary="EIP-712 domain and types to sign (anyone)"
)
def typed_data(node: NodeDep) -> TypedDataOut:
    return TypedDataOut(
        domain=node.chain.consent_domain(),
        types={"EIP712Domain": EIP712_DOMAIN_TYPE, **PRIMARY_TYPES},
        scope_kinds={k.name.lower(): int(k) for k in ScopeKind},
    )


@router.get(
    "/nonce/{patient}", response_model=NonceOut, summary="The patient's next consent nonce (anyone)"
)
def nonce(patient: Address, node: NodeDep) -> NonceOut:
    return NonceOut(patient=patient, nonce=node.chain.consent_nonce(patient))


def _relay(
    node: Node,
    consent: ConsentGrant | ConsentRevoke,
    body: SignedGrant | SignedRevoke,
    response: Response,
) -> RelayOut:
    result = relay_or_queue(
        consent,
        to_bytes(body.signature),
        chain=node.chain,
        queue=node.relays,
        signed_domain=body.domain,
    )
    if isinstance(result, TxResult):
        return RelayOut(
            status="relayed", tx_hash=to_hex(result.tx_hash), block_number=result.block_number
        )
    response.status_code = 202
    node.relay_worker.wake()
    return RelayOut(status="queued", relay_id=result)


@router.post(
    "/grant",
    response_model=RelayOut,
    responses={202: {"model": RelayOut, "description": "chain unreachable: queued, relayed later"}},
    summary="Relay a patient-signed Grant on-chain (anyone: the signature is the authority)",
)
def grant(body: SignedGrant, node: NodeDep, response: Response) -> RelayOut:
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
    return _relay(node, consent, body, response)


@router.post(
    "/revoke",
    response_model=RelayOut,
    responses={202: {"model": RelayOut, "description": "chain unreachable: queued, relayed later"}},
    summary="Relay a patient-signed Revoke on-chain (anyone)",
)
def revoke(body: SignedRevoke, node: NodeDep, response: Response) -> RelayOut:
    m = body.message
    consent = ConsentRevoke(
        m.patient, m.grantee, ScopeKind(m.scopeKind), to_bytes(m.scope), m.nonce, m.deadline
    )
    return _relay(node, consent, body, response)


@router.get(
    "/relays/{relay_id}", response_model=RelayOut, summary="Status of a queued consent (anyone)"
)
def relay_status(relay_id: int, node: NodeDep) -> RelayOut:
    item = node.relays.get(relay_id)
    if item is None:
        raise NotFound(f"no queued consent {relay_id}")
    return RelayOut(
        status=item.status,
        relay_id=item.relay_id,
        tx_hash=to_hex(item.tx_hash) if item.tx_hash else None,
        block_number=item.block_number,
        error=item.error,
    )
