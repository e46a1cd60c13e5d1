from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from node.api.schemas.common import Address, Hex32, HexBytes


class GrantIn(BaseModel):
    patient: Address
    grantee: Address
    scopeKind: int = Field(ge=0, le=2, description="0 record, 1 category, 2 all")
    scope: Hex32 = Field(description="record id, keccak256(category), or 0x00..00 for all")
    expiresAt: int = Field(ge=0, lt=2**64)
    nonce: int = Field(ge=0, lt=2**256)
    deadline: int = Field(ge=0, lt=2**256)


class RevokeIn(BaseModel):
    patient: Address
    grantee: Address
    scopeKind: int = Field(ge=0, le=2)
    scope: Hex32
    nonce: int = Field(ge=0, lt=2**256)
    deadline: int = Field(ge=0, lt=2**256)


class SignedGrant(BaseModel):
    message: GrantIn
    signature: HexBytes
    domain: dict[str, Any] | None = Field(
        None, description="the EIP-712 domain the wallet signed; checked field by field"
    )


class SignedRevoke(BaseModel):
    message: RevokeIn
    signature: HexBytes
    domain: dict[str, Any] | None = None


class TxOut(BaseModel):
    tx_hash: str
    block_number: int


class RelayOut(BaseModel):
    status: str = Field(description="relayed | queued (chain unreachable) | failed")
    tx_hash: str | None = None
    block_number: int | None = None
    relay_id: int | None = None
    error: str | None = None


class BreakGlassIn(BaseModel):
    patient: Address
    clinician: Address
    record_id: Hex32 | None = Field(None, description="one record, or every record if absent")
    duration_seconds: int = Field(gt=0)
    reason: str = Field(min_length=1, max_length=1000)


class BreakGlassOut(TxOut):
    reason_hash: str
