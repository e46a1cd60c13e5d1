from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from node.api.schemas.common import REASON_PATTERN, Address, Hex32, HexBytes, JsonBody, to_hex
from node.flows.break_glass import BreakGlassNotice, Disclosure


class GrantIn(JsonBody):
    patient: Address
    grantee: Address
    scopeKind: int = Field(ge=0, le=2, description="0 record, 1 category, 2 all")
    scope: Hex32 = Field(description="record id, keccak256(category), or 0x00..00 for all")
    expiresAt: int = Field(ge=0, lt=2**64)
    nonce: int = Field(ge=0, lt=2**256)
    deadline: int = Field(ge=0, lt=2**256)


class RevokeIn(JsonBody):
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


class GrantClassIn(JsonBody):
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


class RevokeClassIn(JsonBody):
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


class ActiveConsentOut(BaseModel):
    """A consent or break-glass window on the patient's records that is live now."""

    kind: Literal["grant", "class", "break_glass"] = Field(
        description="grant: one reader address; class: a class of readers (anonymous reads "
        "with a proof); break_glass: emergency access a member hospital opened"
    )
    grantee: str | None = Field(
        description="the reader's address (a grant's grantee, a break-glass's clinician); "
        "null for a class"
    )
    grantee_name: str | None = Field(
        description="the grantee's name in this node's clinician directory, or the member "
        "hospital's name; null: unknown here"
    )
    hospital: int | None = Field(
        description="member id: a class's hospital (0: any member hospital) or the member "
        "that opened a break-glass; null for a grant"
    )
    roles: list[str] | None = Field(description="a class's clinician roles; null otherwise")
    scope_kind: Literal["record", "category", "all"]
    scope: str | None = Field(
        description="the on-chain scope (record id, or keccak256 of the category); null: all"
    )
    record_id: str | None = Field(description="the one record covered; null otherwise")
    category: str | None = Field(
        description="the category covered, when a record of the patient has it; null otherwise"
    )
    granted_at: int = Field(description="unix seconds: the block that granted or opened it")
    expires_at: int = Field(description="unix seconds: it ends then unless revoked first")
    tx_hash: str = Field(description="the transaction that granted or opened it")


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


class BreakGlassIn(JsonBody):
    """Emergency access for one of the hospital's clinicians, approved by another."""

    model_config = ConfigDict(extra="forbid")

    patient: Address
    clinician: Address = Field(
        description="who gets access: in the hospital's directory (POST /clinicians) with a "
        "role in break_glass.roles"
    )
    approved_by: Address = Field(
        description="another clinician of the directory, with a role in "
        "break_glass.approver_roles, who approved this opening"
    )
    record_id: Hex32 | None = Field(None, description="one record, or every record if absent")
    duration_seconds: int = Field(gt=0, description="at most break_glass.max_duration")
    reason: str = Field(min_length=1, max_length=1000, pattern=REASON_PATTERN)


class BreakGlassOut(TxOut):
    reason_hash: str = Field(description="the salted commitment that went on-chain")
    reason_salt: str = Field(description="its 32-byte salt (0x-hex)")
    expires_at: int = Field(description="unix seconds, as the chain set it")
    approved_by: str
    opened_by: str = Field(description="the name of the API token that opened it")


class ReasonDisclosureOut(BaseModel):
    """A reason kept off-chain, with what recomputes its on-chain hash: for kinds
    ``emr-node:break-glass:v1`` and ``emr-node:erasure:v1``, reason_hash =
    keccak256(abi.encode(bytes32 salt, string kind, string reason, address approved_by
    (zero address if none), string opened_by)); for ``unsalted`` (stored before salting),
    keccak256(reason)."""

    reason: str
    kind: str = Field(description="emr-node:break-glass:v1 | emr-node:erasure:v1 | unsalted")
    salt: str | None = Field(description="0x-hex 32 bytes; null for an unsalted reason")
    approved_by: str | None = Field(description="the approving clinician, if any")
    opened_by: str = Field(description="the name of the hospital API token that asked")
    verified: bool = Field(description="the disclosure recomputes the on-chain hash")

    @classmethod
    def of(cls, d: Disclosure) -> ReasonDisclosureOut:
        c = d.commitment
        return cls(
            reason=c.reason,
            kind=c.kind,
            salt=to_hex(c.salt) if c.salt is not None else None,
            approved_by=c.approved_by,
            opened_by=c.opened_by,
            verified=d.verified,
        )


class StoredReasonOut(ReasonDisclosureOut):
    reason_hash: str
    tx_hash: str | None = Field(description="the transaction that carried it, if recorded")
    stored_at: int = Field(description="unix seconds")


class BreakGlassNoticeOut(BaseModel):
    """One break-glass on the patient's records (any member hospital)."""

    patient: str
    clinician: str
    record_id: str | None = Field(description="null: every record of the patient")
    hospital: str = Field(description="address of the member hospital that opened it")
    opened_at: int = Field(description="unix seconds (block time)")
    expires_at: int
    live: bool = Field(description="the access has not ended yet")
    tx_hash: str
    block_number: int
    reason_hash: str
    disclosure: ReasonDisclosureOut | None = Field(
        description="reason, salt, approver and token name, when this node opened it"
    )

    @classmethod
    def of(cls, n: BreakGlassNotice, now: int) -> BreakGlassNoticeOut:
        e, args = n.event, n.event.args
        rid = bytes(args["recordId"])
        return cls(
            patient=args["patient"],
            clinician=args["clinician"],
            record_id=None if rid == b"\x00" * 32 else to_hex(rid),
            hospital=args["hospital"],
            opened_at=e.timestamp,
            expires_at=int(args["expiresAt"]),
            live=int(args["expiresAt"]) > now,
            tx_hash=to_hex(e.tx_hash),
            block_number=e.block_number,
            reason_hash=to_hex(bytes(args["reasonHash"])),
            disclosure=ReasonDisclosureOut.of(n.disclosure) if n.disclosure else None,
        )


class BreakGlassFeedOut(BaseModel):
    patient: str
    as_of: int = Field(description="unix seconds of this answer: the next visit's `since`")
    break_glass: list[BreakGlassNoticeOut]
