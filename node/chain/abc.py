"""The chain client interface. Flows type against ``ChainClientAPI``; ``Web3ChainClient``
implements it over any web3 provider (the embedded py-evm chain or a JSON-RPC node)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

from hsm.abc import SignerAPI
from node.chain.deploy import Deployment
from node.chain.models import (
    AccessEntry,
    AnchorResult,
    AuditEvent,
    BatchInfo,
    ConsentGrant,
    ConsentRevoke,
    CredentialEvent,
    TxResult,
    ZkAccessEvent,
    ZkAccessRequest,
)
from node.consent.typed_data import AccessBasis


class ChainClientAPI(ABC):
    """Reads and writes the consortium's contracts as this hospital's node.

    Write methods raise ``ContractReverted`` (with the decoded custom error) when the
    contract refuses, having changed nothing, and ``ChainUnavailable`` when the node
    cannot be reached.
    """

    @property
    @abstractmethod
    def chain_id(self) -> int: ...

    @property
    @abstractmethod
    def hospital(self) -> str:
        """This node's (the hospital's) checksummed address: the sender of its txs."""

    @property
    @abstractmethod
    def deployment(self) -> Deployment: ...

    @abstractmethod
    def head_block(self) -> int:
        """The chain's latest block number (a liveness probe). Raises ChainUnavailable."""

    # -- records ---------------------------------------------------------------
    @abstractmethod
    def anchor_batch(
        self, root: bytes, record_ids: Sequence[bytes], patients: Sequence[str]
    ) -> AnchorResult:
        """Anchor a Merkle root of ``record_ids`` in one transaction."""

    @abstractmethod
    def batch(self, batch_id: int) -> BatchInfo | None:
        """The anchored batch, or None if no such batch exists."""

    @abstractmethod
    def verify_record(
        self,
        batch_id: int,
        record_id: bytes,
        patient: str,
        content_hash: bytes,
        previous_id: bytes | None,
        proof: Sequence[bytes],
    ) -> bool:
        """Whether the contract accepts the leaf's inclusion in the batch's root."""

    @abstractmethod
    def erase_records(self, record_ids: Sequence[bytes], reason_hash: bytes) -> TxResult:
        """Anchor erasure tombstones (``RecordErased``) for ``record_ids`` in one transaction.

        Ids already erased on-chain are skipped by the contract, so a retry is harmless.
        """

    @abstractmethod
    def is_erased(self, record_id: bytes) -> bool:
        """Whether the record carries an on-chain erasure tombstone."""

    # -- consent ---------------------------------------------------------------
    @abstractmethod
    def consent_domain(self) -> dict[str, Any]:
        """The ConsentRegistry's EIP-712 domain as read from ``eip712Domain()``."""

    @abstractmethod
    def consent_nonce(self, patient: str) -> int: ...

    @abstractmethod
    def grant_with_sig(self, grant: ConsentGrant, signature: bytes) -> TxResult: ...

    @abstractmethod
    def revoke_with_sig(self, revoke: ConsentRevoke, signature: bytes) -> TxResult: ...

    @abstractmethod
    def open_break_glass(
        self,
        patient: str,
        clinician: str,
        record_id: bytes | None,
        duration: int,
        reason_hash: bytes,
    ) -> TxResult: ...

    @abstractmethod
    def access_basis(
        self, patient: str, grantee: str, record_id: bytes, category_hash: bytes
    ) -> AccessBasis:
        """The first basis on which ``grantee`` may read the record now (NONE if none)."""

    @abstractmethod
    def access_expiry(
        self, patient: str, grantee: str, record_id: bytes, category_hash: bytes, basis: AccessBasis
    ) -> int:
        """Unix time at which the consent or break-glass behind ``basis`` ends (0: none)."""

    @abstractmethod
    def consent_changes(self, from_block: int, to_block: int) -> list[tuple[str, int]]:
        """(patient, block) of every grant, revocation and break-glass in the range."""

    # -- audit -----------------------------------------------------------------
    @abstractmethod
    def record_accesses(self, entries: Sequence[AccessEntry]) -> TxResult:
        """Write granted and denied reads to the AccessLog in one transaction."""

    @abstractmethod
    def audit_events(
        self,
        *,
        patient: str | None = None,
        record_id: bytes | None = None,
        actor: str | None = None,
        from_block: int | None = None,
        to_block: int | None = None,
    ) -> list[AuditEvent]:
        """Anchors, grants, revocations, break-glass and accesses matching every filter,
        in chain order, from ``from_block`` (default: the deployment block)."""

    @abstractmethod
    def anchor_key_audit(self, head: bytes, seq: int) -> TxResult:
        """Anchor the key audit log's head (``AccessLog.anchorKeyAudit``)."""

    @abstractmethod
    def key_audit_anchors(self, hospitals: Sequence[str]) -> list[tuple[int, bytes]]:
        """(seq, head) of every key audit anchor sent by any of ``hospitals``, in chain
        order (a node that rotated its signer anchored under each of its addresses)."""

    # -- consortium ------------------------------------------------------------
    @abstractmethod
    def is_member(self, address: str) -> bool: ...

    @abstractmethod
    def members(self) -> list[tuple[str, str]]:
        """(address, name) of every active member hospital."""

    @abstractmethod
    def propose_rotation(self, new_address: str) -> tuple[int, bool]:
        """Propose moving this node's Consortium membership to ``new_address`` (a Rotate
        proposal, voted by the members); return (proposal id, executed already)."""

    @abstractmethod
    def switch_signer(self, signer: SignerAPI, *, move_funds: bool = True) -> None:
        """Send from ``signer``'s account from now on (waits for any send in progress; the
        nonce is re-read). ``move_funds`` first transfers the old account's balance, less
        the transfer's fee, to the new one (a zero-gas-price network needs none)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the provider."""


class ZkGateAPI(ABC):
    """The consortium's credential tree and zero-knowledge access gate, on-chain."""

    @abstractmethod
    def add_credentials(self, commitments: Sequence[int]) -> TxResult:
        """Add clinician credential commitments (tree leaves) as this hospital."""

    @abstractmethod
    def revoke_credential(
        self, commitment: int, siblings: Sequence[int], path_indices: Sequence[int]
    ) -> TxResult:
        """Remove a commitment this hospital added; invalidates every earlier root."""

    @abstractmethod
    def current_root(self) -> int: ...

    @abstractmethod
    def is_valid_root(self, root: int) -> bool:
        """True iff proofs against ``root`` are accepted now (recent and not revoked)."""

    @abstractmethod
    def credential_events(self, from_block: int, to_block: int) -> list[CredentialEvent]:
        """Additions and revocations in the block range, in chain order."""

    @abstractmethod
    def set_category_policy(self, category: bytes, allowed_roles: int) -> TxResult: ...

    @abstractmethod
    def category_policy(self, category: bytes) -> int:
        """Roles bitmask allowed to read ``category`` with a proof; 0 when none."""

    @abstractmethod
    def nullifier_used(self, nullifier_hash: int) -> bool: ...

    @abstractmethod
    def access_batch(self, requests: Sequence[ZkAccessRequest]) -> TxResult:
        """Verify and record the accesses in one transaction (all or nothing)."""

    @abstractmethod
    def access_events(
        self, *, record_id: bytes | None = None, from_block: int | None = None
    ) -> list[ZkAccessEvent]:
        """``ZkAccessGranted`` events, optionally for one record, in chain order."""
