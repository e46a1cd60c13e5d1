"""Patient consent: publish the EIP-712 types and domain, relay signed Grants and Revokes."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel

from node.api.deps import NodeDep
from node.api.schemas.common import Address, to_bytes, to_hex
from node.api.schemas.consent import SignedGrant, SignedRevoke, TxOut
from node.chain.models import ConsentGrant, ConsentRevoke
from node.consent.typed_data import EIP712_DOMAIN_TYPE, PRIMARY_TYPES, ScopeKind
from node.flows.relay_consent import relay_grant, relay_revoke

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


@router.post(
    "/grant",
    response_model=TxOut,
    summary="Relay a patient-signed Grant on-chain (anyone: the signature is the authority)",
)
def grant(body: SignedGrant, node: NodeDep) -> TxOut:
    m = body.message
    result = relay_grant(
        ConsentGrant(
            m.patient,
            m.grantee,
            ScopeKind(m.scopeKind),
            to_bytes(m.scope),
            m.expiresAt,
            m.nonce,
            m.deadline,
        ),
        to_bytes(body.signature),
        chain=node.chain,
        signed_domain=body.domain,
    )
    return TxOut(tx_hash=to_hex(result.tx_hash), block_number=result.block_number)


@router.post(
    "/revoke", response_model=TxOut, summary="Relay a patient-signed Revoke on-chain (anyone)"
)
def revoke(body: SignedRevoke, node: NodeDep) -> TxOut:
    m = body.message
    result = relay_revoke(
        ConsentRevoke(
            m.patient, m.grantee, ScopeKind(m.scopeKind), to_bytes(m.scope), m.nonce, m.deadline
        ),
        to_bytes(body.signature),
        chain=node.chain,
        signed_domain=body.domain,
    )
    return TxOut(tx_hash=to_hex(result.tx_hash), block_number=result.block_number)
