"""Bodies of the zero-knowledge endpoints. Field elements travel as decimal strings (the
snarkjs convention) or 0x-hex; both are checked to be below the BN254 scalar field."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from node.api.schemas.common import Address, Hex32, JsonBody, uint_text
from zk.field import P, R

FieldElement = uint_text(R, "the BN254 scalar field")
# Identity commitments are Poseidon hashes: 0 is no one's.
Commitment = uint_text(R, "the BN254 scalar field", nonzero=True)
# Proof words are curve coordinates: elements of the base field.
ProofWord = uint_text(P, "the BN254 base field")


class _Strict(JsonBody):
    """A request body: unknown fields are refused (422 naming the field), never ignored."""

    model_config = ConfigDict(extra="forbid")


class CredentialIn(_Strict):
    identity_commitment: Commitment = Field(
        description="Poseidon1(secret) of the clinician's identity (decimal or 0x-hex)"
    )
    clinician: Address = Field(
        description="the clinician's address in this hospital's directory: the directory, "
        "not the request, sets the credential's role and licence expiry"
    )


class CredentialsIn(_Strict):
    credentials: list[CredentialIn] = Field(min_length=1, max_length=32)


class IssuedOut(BaseModel):
    clinician: str
    identity_commitment: str
    leaf: str
    index: int
    hospital_id: int
    role: str
    licence_expiry: int
    root: str
    tx_hash: str


class CredentialsOut(BaseModel):
    credentials: list[IssuedOut]
    root: str
    tx_hash: str
    block_number: int


class RevokeIn(_Strict):
    leaf: FieldElement


class RevokeMemberIn(_Strict):
    hospital: Address


class RevokedOut(BaseModel):
    leaf: str
    index: int
    hospital_id: int
    root: str
    tx_hash: str
    block_number: int


class RevokeMemberOut(BaseModel):
    hospital: str
    hospital_id: int
    revoked: list[RevokedOut]


class TreeOut(BaseModel):
    root: str
    size: int
    depth: int
    leaves: list[str] = Field(description="every leaf in index order; 0 for a revoked one")


class ReaderClassOut(BaseModel):
    scope_kind: int = Field(description="0 this record, 1 its category, 2 everything")
    hospital: int = Field(description="member id of the class; 0 = any member hospital")
    roles: list[str]
    roles_mask: int
    mask: int = Field(description="roles AND the category policy: the proof's roles mask")
    expires_at: int


class RecordAccessOut(BaseModel):
    record_id: str
    patient: Address = Field(
        description="the record's patient: the proof's scope binds it (with the category), so "
        "no relayer can check the proof against another patient's consent"
    )
    category: str
    category_hash: Hex32 = Field(description="keccak256 of the category name, in the scope")
    policy: int = Field(description="roles mask the consortium allows for the category")
    policy_roles: list[str]
    classes: list[ReaderClassOut]


class ZkReadIn(_Strict):
    root: FieldElement
    current_time: int = Field(ge=0, lt=2**40)
    signal: Hex32  # the requester's one-time X25519 public key
    epoch_nullifier: FieldElement
    scope_kind: int = Field(ge=0, le=2)
    class_hospital: int = Field(ge=0, lt=2**32)
    class_roles: int = Field(ge=1, lt=2**16)
    proof: list[ProofWord] = Field(min_length=8, max_length=8)


class SealedOut(BaseModel):
    ephemeral_public: str
    nonce: str
    ciphertext: str


class ZkReadOut(BaseModel):
    record_id: str
    category: str
    content_type: str
    sealed: SealedOut
    tx_hash: str
    block_number: int


class ZkInfoOut(BaseModel):
    circuit: str
    circuit_hash: str
    key_kind: str
    public_inputs: list[str]
    verification_key: dict[str, Any]
    credential_registry: str
    zk_access_gate: str
    verifier: str
    chain_id: int
    epoch_length: int
    root: str
    credentials: int
    max_proof_age: int
    max_clock_skew: int


class ZkAccessOut(BaseModel):
    record_id: str
    patient: str
    epoch: int
    epoch_nullifier: str
    category: str  # keccak256 of the category name
    signal: str
    relayer: str
    tx_hash: str
    block_number: int


class EpochReadersOut(BaseModel):
    epoch: int
    start: int = Field(description="unix time the epoch starts")
    accesses: int
    distinct_readers: int = Field(
        description="distinct epoch nullifiers: how many credentials read the record in the "
        "epoch (not who)"
    )


class ReadersOut(BaseModel):
    record_id: str
    epoch_length: int
    epochs: list[EpochReadersOut]
