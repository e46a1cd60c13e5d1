from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

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


class GrantClassIn(BaseModel):
    """An EIP-712 GrantClass as the patient's wallet signed it."""

    model_config = ConfigDict(extra="forbid")

    patient: Address
    hospital: int = Field(
        ge=0, lt=2**32, description="Consortium member id of the readers' hospital; 0: any"
    )
    roles: int = Field(
        gt=0, lt=2**16, description="mask of clinician roles (bit i: zk.credentials.ROLES[i])"
    )
    scopeKind: int = Field(ge=0, le=2, description="0 record, 1 category, 2 all")
    scope: Hex32 = Field(description="record id, keccak256(category), or 0x00..00 for all")
    expiresAt: int = Field(ge=0, lt=2**64)
    nonce: int = Field(ge=0, lt=2**256)
    deadline: int = Field(ge=0, lt=2**256)


class RevokeClassIn(BaseModel):
    """An EIP-712 RevokeClass as the patient's wallet signed it."""

    model_config = ConfigDict(extra="forbid")

    patient: Address
    hospital: int = Field(ge=0, lt=2**32)
    roles: int = Field(gt=0, lt=2**16)
    scopeKind: int = Field(ge=0, le=2)
    scope: Hex32
    nonce: int = Field(ge=0, lt=2**256)
    deadline: int = Field(ge=0, lt=2**256)


class SignedGrantClass(BaseModel):
    message: GrantClassIn
    signature: HexBytes
    domain: dict[str, Any] | None = Field(
        None, description="the EIP-712 domain the wallet signed; checked field by field"
    )


class SignedRevokeClass(BaseModel):
    message: RevokeClassIn
    signature: HexBytes
    domain: dict[str, Any] | None = None


class ClassConsentOut(BaseModel):
    """A live reader-class consent (the chain's view now)."""

    hospital: int = Field(description="member id; 0: any member hospital")
    roles: int = Field(description="roles mask")
    role_names: list[str]
    scope_kind: int
    scope: str
    expires_at: int


class ClassConsentsOut(BaseModel):
    patient: str
    consents: list[ClassConsentOut]


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
