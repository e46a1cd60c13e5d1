"""Values exchanged with the chain client. Ids and hashes are raw 32-byte ``bytes``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from node.consent.typed_data import AccessBasis, ScopeKind


@dataclass(frozen=True, slots=True)
class TxResult:
    tx_hash: bytes
    block_number: int


@dataclass(frozen=True, slots=True)
class AnchorResult:
    batch_id: int
    tx_hash: bytes
    block_number: int
    timestamp: int


@dataclass(frozen=True, slots=True)
class BatchInfo:
    root: bytes
    hospital: str
    timestamp: int
    count: int


@dataclass(frozen=True, slots=True)
class ConsentGrant:
    patient: str
    grantee: str
    scope_kind: ScopeKind
    scope: bytes
    expires_at: int
    nonce: int
    deadline: int

    def message(self) -> dict[str, Any]:
        return {
            "patient": self.patient,
            "grantee": self.grantee,
            "scopeKind": int(self.scope_kind),
            "scope": self.scope,
            "expiresAt": self.expires_at,
            "nonce": self.nonce,
            "deadline": self.deadline,
        }


@dataclass(frozen=True, slots=True)
class ConsentRevoke:
    patient: str
    grantee: str
    scope_kind: ScopeKind
    scope: bytes
    nonce: int
    deadline: int

    def message(self) -> dict[str, Any]:
        return {
            "patient": self.patient,
            "grantee": self.grantee,
            "scopeKind": int(self.scope_kind),
            "scope": self.scope,
            "nonce": self.nonce,
            "deadline": self.deadline,
        }


@dataclass(frozen=True, slots=True)
class AccessEntry:
    patient: str
    record_id: bytes
    actor: str
    granted: bool
    basis: AccessBasis


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One decoded audit event with where it sits on the chain."""

    event: str  # e.g. "ConsentGranted"
    contract: str  # "ConsentRegistry", ...
    block_number: int
    timestamp: int
    tx_hash: bytes
    log_index: int
    args: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ZkAccessRequest:
    """One anonymous access for ZkAccessGate: the proof's public inputs are rebuilt on-chain
    from these fields (root, the category's roles policy, time, nullifiers, signal)."""

    record_id: bytes
    category: bytes  # keccak256 of the category name
    root: int
    current_time: int
    signal: bytes  # 32 bytes: the requester's ephemeral X25519 public key
    nullifier_hash: int
    proof: tuple[int, ...]  # 8 words, EVM order

    def as_tuple(self) -> tuple[bytes, bytes, int, int, bytes, int]:
        return (
            self.record_id,
            self.category,
            self.root,
            self.current_time,
            self.signal,
            self.nullifier_hash,
        )


@dataclass(frozen=True, slots=True)
class CredentialEvent:
    """A clinician credential commitment added to or revoked from the on-chain tree."""

    kind: str  # "added" | "revoked"
    hospital: str
    commitment: int
    index: int
    root: int
    block_number: int
    log_index: int


@dataclass(frozen=True, slots=True)
class ZkAccessEvent:
    """A ``ZkAccessGranted`` event: which record, under which nullifier and policy; no
    clinician identity exists to report."""

    record_id: bytes
    nullifier_hash: int
    category: bytes
    signal: bytes
    root: int
    relayer: str
    tx_hash: bytes
    block_number: int
    log_index: int
