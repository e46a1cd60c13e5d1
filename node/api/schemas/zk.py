"""Bodies of the zero-knowledge endpoints. Field elements travel as decimal strings (the
snarkjs convention) or 0x-hex; both are checked to be below the BN254 scalar field."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, Field

from node.api.schemas.common import Hex32
from zk.field import P, R


def _number(value: Any, modulus: int, what: str) -> str:
    if isinstance(value, bool):
        raise ValueError("must be a field element (decimal string or 0x-hex)")
    if isinstance(value, int):
        number = value
    elif isinstance(value, str):
        try:
            number = int(value, 16) if value.startswith("0x") else int(value, 10)
        except ValueError:
            raise ValueError("must be a field element (decimal string or 0x-hex)") from None
    else:
        raise ValueError("must be a field element (decimal string or 0x-hex)")
    if not 0 <= number < modulus:
        raise ValueError(f"is not below the BN254 {what} modulus")
    return str(number)


FieldElement = Annotated[str | int, AfterValidator(lambda v: _number(v, R, "scalar field"))]
# Proof words are curve coordinates: elements of the base field.
ProofWord = Annotated[str | int, AfterValidator(lambda v: _number(v, P, "base field"))]


class CredentialsIn(BaseModel):
    commitments: list[FieldElement] = Field(min_length=1, max_length=32)


class CredentialsOut(BaseModel):
    tx_hash: str
    block_number: int
    root: str
    indices: list[int]


class RevokeIn(BaseModel):
    commitment: FieldElement


class RevokeOut(BaseModel):
    tx_hash: str
    block_number: int
    root: str


class PathOut(BaseModel):
    commitment: str
    index: int
    root: str
    siblings: list[str]
    path_indices: list[int]


class PolicyIn(BaseModel):
    roles: list[str] = Field(min_length=1, max_length=16)


class PolicyOut(BaseModel):
    category: str
    allowed_roles: int
    roles: list[str]
    tx_hash: str | None = None


class RecordPolicyOut(BaseModel):
    record_id: str
    category: str
    allowed_roles: int
    roles: list[str]


class ZkReadIn(BaseModel):
    root: FieldElement
    current_time: int = Field(ge=0, lt=2**64)
    signal: Hex32  # the requester's ephemeral X25519 public key
    nullifier_hash: FieldElement
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
    root: str
    credentials: int
    max_proof_age: int
    max_clock_skew: int


class ZkAccessOut(BaseModel):
    record_id: str
    nullifier_hash: str
    category: str  # keccak256 of the category name
    signal: str
    root: str
    relayer: str
    tx_hash: str
    block_number: int
