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
    hospital: str  # the address that anchored it
    timestamp: int
    count: int
    member_id: int = 0  # the anchoring hospital's Consortium member id


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
    """One anonymous access for ZkAccessGate v2 (``AccessRequest``): the gate rebuilds the
    proof's four public inputs (root, context, scope, epochNullifier) from these fields and
    checks the patient's reader-class consent named by (scope_kind, class_hospital,
    class_roles)."""

    record_id: bytes
    patient: str
    category: bytes  # keccak256 of the category name
    scope_kind: int  # 0 record, 1 category, 2 everything
    class_hospital: int  # 0: any member hospital
    class_roles: int  # the consent's 16-bit roles mask
    root: int
    current_time: int
    signal: bytes  # 32 bytes: the requester's one-time X25519 public key
    epoch_nullifier: int
    proof: tuple[int, ...]  # 8 words, EVM order

    def as_tuple(self) -> tuple[bytes, str, bytes, int, int, int, int, int, bytes, int]:
        return (
            self.record_id,
            self.patient,
            self.category,
            self.scope_kind,
            self.class_hospital,
            self.class_roles,
            self.root,
            self.current_time,
            self.signal,
            self.epoch_nullifier,
        )


@dataclass(frozen=True, slots=True)
class CredentialEvent:
    """A credential leaf issued into, or revoked from, the on-chain LeanIMT.

    ``issued``: the leaf's preimage (identity commitment, issuer's member id, role, licence
    expiry) as the registry emitted it. ``revoked``: the leaf, its index and the issuer's id;
    the preimage fields are 0 and ``revoked_by`` names the caller."""

    kind: str  # "issued" | "revoked"
    leaf: int
    identity_commitment: int
    hospital_id: int
    role: int
    expiry: int
    index: int
    root: int
    revoked_by: str | None
    block_number: int
    log_index: int


@dataclass(frozen=True, slots=True)
class ZkAccessEvent:
    """A v2 ``ZkAccessGranted`` event: which record, in which epoch, under which epoch
    nullifier (the same for one credential, record and epoch; nothing else about the
    reader)."""

    record_id: bytes
    patient: str
    epoch_nullifier: int
    epoch: int
    category: bytes
    signal: bytes
    relayer: str
    tx_hash: bytes
    block_number: int
    log_index: int
    timestamp: int = 0  # the block's time (unix seconds)


@dataclass(frozen=True, slots=True)
class WalletState:
    """A RecoverableWallet as read from the chain. ``pending_owner``/``eta`` are None when no
    recovery is pending; ``pending_approvals`` lists the guardians who approved it."""

    address: str
    owner: str
    guardians: tuple[str, ...]
    threshold: int
    delay: int
    nonce: int
    pending_owner: str | None
    eta: int | None
    pending_approvals: tuple[str, ...]
