"""The chain client interface. Flows type against ``ChainClientAPI``; ``Web3ChainClient``
implements it over any web3 provider (the embedded py-evm chain or a JSON-RPC node)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from hsm.abc import SignerAPI
from node.chain.class_consents import ClassConsent, ClassConsentGrant, ClassConsentRevoke
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
    WalletState,
    ZkAccessEvent,
    ZkAccessRequest,
)
from node.chain.proposals import Proposal
from node.chain.zk_deploy import ZkDeployment
from node.consent.typed_data import AccessBasis


class TransactionSenderAPI(ABC):
    """Signs and sends this hospital's transactions, one at a time (the account's nonces
    have one owner: the worker process).

    ``LocalTransactionSender`` signs in process; ``RemoteTransactionSender`` asks the
    worker's internal endpoint to. Simulation (``eth_call`` / ``eth_estimateGas``) is the
    caller's job: a sender only signs, sends and waits.
    """

    @property
    @abstractmethod
    def address(self) -> str:
        """The checksummed address transactions are sent from. Raises ChainUnavailable
        when it has to be asked for and cannot be."""

    @abstractmethod
    def send(self, to: str, data: bytes, gas: int) -> bytes:
        """Send a call of ``to`` with calldata ``data`` and gas limit ``gas``; return the
        transaction hash once it is mined with status 1 (and its receipt readable).

        Raises ``ContractReverted`` ("Reverted" when mined with status 0, or the decoded
        error), ``ChainUnavailable`` when the chain (or the worker) cannot be reached or the
        transaction was not mined in time, ``ChainError`` for anything else the chain
        refused. After any failure the nonce is re-read before the next send.
        """

    def exclusive(self) -> AbstractContextManager[object]:
        """Held while simulating then sending, so that no other send of this sender lands
        in between. A remote sender cannot hold the worker's lock: a no-op (a concurrent
        send from another process may then turn a passing simulation into a mined revert,
        "Reverted")."""
        return nullcontext()

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""


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

    @abstractmethod
    def block_time(self, block_number: int) -> int:
        """The block's timestamp (unix seconds): the chain's clock, which consents and
        break-glass windows are judged by."""

    # -- records ---------------------------------------------------------------
    @abstractmethod
    def anchor_batch(
        self, root: bytes, record_ids: Sequence[bytes], patients: Sequence[str]
    ) -> AnchorResult:
        """Anchor a Merkle root of ``record_ids`` in one transaction. Every id must be in this
        hospital's namespace (``node.chain.record_ids``), else ``ContractReverted``
        (RecordRegistryForeignRecord) and nothing is anchored."""

    @abstractmethod
    def batch(self, batch_id: int) -> BatchInfo | None:
        """The anchored batch, or None if no such batch exists."""

    @abstractmethod
    def sends_in_flight(self) -> int:
        """Transactions from the hospital's account broadcast but not mined yet (the
        account's pending nonce minus its mined one): while any is, a batch not found on-chain
        may still land, so an anchor intent must not be given up."""

    @abstractmethod
    def find_batch(self, root: bytes, hospital: str) -> AnchorResult | None:
        """The first batch ``hospital`` anchored with Merkle root ``root`` (from the
        ``BatchAnchored`` logs, both indexed topics), or None if the chain has none: how a
        worker learns whether a batch it may have sent before a crash landed. Raises
        ChainUnavailable."""

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

        Only the hospital that anchors a record may erase it: every id must be in this
        hospital's namespace (its member id, kept across signing-key rotations), else
        ``ContractReverted`` (RecordRegistryForeignRecord) and nothing is erased. An id may be
        tombstoned before its batch is anchored. Ids already erased on-chain are skipped by the
        contract, so a retry is harmless.
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
    def grant_class_with_sig(self, grant: ClassConsentGrant, signature: bytes) -> TxResult:
        """Relay a patient-signed GrantClass (a consent for a class of readers)."""

    @abstractmethod
    def revoke_class_with_sig(self, revoke: ClassConsentRevoke, signature: bytes) -> TxResult:
        """Relay a patient-signed RevokeClass; the class consent ends from the next block."""

    @abstractmethod
    def class_consent_expiry(
        self, patient: str, hospital: int, roles: int, scope_kind: int, scope: bytes
    ) -> int:
        """Unix time at which the patient's consent for the reader class (``hospital``
        member id, 0 = any member hospital; ``roles`` mask) over the scope ends; 0 if none.
        The consent is live iff the chain's time is below it."""

    @abstractmethod
    def class_consents(self, patient: str) -> list[ClassConsent]:
        """The patient's live reader-class consents (from ``ClassConsentGranted`` events,
        each checked against ``classConsentExpiry`` now), in the order first granted."""

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
    def member_id(self, address: str) -> int:
        """The Consortium member id of ``address`` (kept after removal; 0: never a member)."""

    @abstractmethod
    def member_address(self, member_id: int) -> str | None:
        """The current (or last) address of member ``member_id``; None for an unknown id."""

    @abstractmethod
    def propose_membership(self, kind: int, subject: str, name: str) -> tuple[int, bool]:
        """Propose to admit (kind 0, with ``name``) or remove (kind 1) ``subject``, with this
        node's vote; return (proposal id, executed already: this vote alone is a strict
        majority)."""

    @abstractmethod
    def propose_call(self, target: str, data: bytes, description: str) -> tuple[int, bool]:
        """Propose that the Consortium calls ``target`` with ``data`` (a call proposal, kind
        3) with this node's vote; return (proposal id, executed already: this vote alone
        was a strict majority)."""

    @abstractmethod
    def vote(self, proposal_id: int) -> bool:
        """Vote for a proposal as this node; return whether it executed with this vote.
        Raises ``ContractReverted`` (ConsortiumUnknownProposal, ...AlreadyVoted,
        ...ProposalExecuted, ...ProposalExpired, or the called contract's own error when
        the majority's call reverts)."""

    @abstractmethod
    def proposal(self, proposal_id: int) -> Proposal | None:
        """A proposal with its votes and, for a call proposal, what it calls; None if no
        proposal has this id."""

    @abstractmethod
    def call_proposals(self, target: str, data_prefix: bytes = b"") -> list[Proposal]:
        """Every call proposal aimed at ``target`` (``CallProposed`` events) whose calldata
        starts with ``data_prefix``, oldest first, with its current state. The prefix is
        matched on the events, so only matching proposals are read."""

    @abstractmethod
    def switch_signer(self, signer: SignerAPI, *, move_funds: bool = True) -> None:
        """Send from ``signer``'s account from now on (waits for any send in progress; the
        nonce is re-read). ``move_funds`` first transfers the old account's balance, less
        the transfer's fee, to the new one (a zero-gas-price network needs none)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the provider."""


class ZkGateAPI(ABC):
    """The consortium's credential tree (CredentialRegistry v2, a LeanIMT) and the
    zero-knowledge access gate (ZkAccessGate v2), on-chain.

    Write methods raise ``ContractReverted`` (with the decoded custom error) when the
    contract refuses, having changed nothing, and ``ChainUnavailable`` when the node cannot
    be reached.
    """

    @property
    @abstractmethod
    def deployment(self) -> ZkDeployment:
        """The ZK contracts' addresses."""

    @property
    @abstractmethod
    def chain_id(self) -> int:
        """The chain id that proofs for this gate commit to (in their scope)."""

    @property
    @abstractmethod
    def gate_address(self) -> str:
        """The gate's checksummed address that proofs commit to (in their scope)."""

    @property
    @abstractmethod
    def start_block(self) -> int:
        """The block the ZK contracts were deployed in (scan events from it)."""

    # -- credentials ---------------------------------------------------------------
    @abstractmethod
    def issue_credentials(
        self, identity_commitments: Sequence[int], roles: Sequence[int], expiries: Sequence[int]
    ) -> TxResult:
        """Issue one credential per identity commitment as this hospital (the registry puts
        this hospital's member id in each leaf), in one transaction and one new root."""

    @abstractmethod
    def revoke_credential(
        self,
        identity_commitment: int,
        hospital_id: int,
        role: int,
        expiry: int,
        siblings: Sequence[int],
    ) -> TxResult:
        """Set the leaf with this preimage to 0 (``siblings``: its LeanIMT proof); every
        earlier root stops being valid."""

    @abstractmethod
    def current_root(self) -> int: ...

    @abstractmethod
    def is_valid_root(self, root: int) -> bool:
        """True iff proofs against ``root`` are accepted now (recent, not 0, no revocation
        since)."""

    @abstractmethod
    def credential_events(self, from_block: int, to_block: int) -> list[CredentialEvent]:
        """``CredentialIssued`` and ``CredentialRevoked`` in the block range, in chain
        order."""

    # -- policies and access ---------------------------------------------------------
    @abstractmethod
    def category_policy(self, category: bytes) -> int:
        """Roles bitmask the consortium allows to read ``category`` with a proof (0: none)."""

    @abstractmethod
    def epoch_length(self) -> int:
        """Seconds per epoch of the epoch nullifier (the gate's immutable)."""

    @abstractmethod
    def request_used(self, record_id: bytes, signal: bytes) -> bool:
        """Whether the gate already recorded an access with this (record, signal)."""

    @abstractmethod
    def access_batch(self, requests: Sequence[ZkAccessRequest]) -> TxResult:
        """Verify and record the accesses in one transaction (all or nothing)."""

    @abstractmethod
    def access_events(
        self,
        *,
        record_id: bytes | None = None,
        from_block: int | None = None,
        to_block: int | None = None,
    ) -> list[ZkAccessEvent]:
        """v2 ``ZkAccessGranted`` events, optionally for one record, in chain order."""


class ContractSignaturesAPI(ABC):
    """ERC-1271: signatures of contract accounts, which only the contract can judge."""

    @abstractmethod
    def is_valid_signature(self, account: str, digest: bytes, signature: bytes) -> bool:
        """True iff ``account`` is a contract whose ``isValidSignature(digest, signature)``
        returns the magic value 0x1626ba7e, asked with an ``eth_call`` of bounded gas (no
        transaction, no fee). False for an account without code, a revert, running out of
        gas or any other answer. Raises ``ChainUnavailable``."""


class RecoverableWalletsAPI(ABC):
    """Patients' RecoverableWallets (guardian recovery, ERC-1271) and their factory.

    Only wallets made by this network's factory are recognised: their runtime code is the
    EIP-1167 clone of the factory's implementation. Write methods raise ``ContractReverted``
    (the wallet's or factory's custom error) when refused, having changed nothing, and
    ``ChainUnavailable`` when the chain cannot be reached; reads raise ``ChainUnavailable``.
    """

    @property
    @abstractmethod
    def chain_id(self) -> int:
        """The chain id that wallet signatures commit to (EIP-712 domain)."""

    @property
    @abstractmethod
    def factory(self) -> str:
        """The factory's checksummed address."""

    @abstractmethod
    def chain_time(self) -> int:
        """Seconds since the epoch that the next block will at least carry: the latest
        block's timestamp or the wall clock, whichever is later."""

    @abstractmethod
    def is_wallet(self, address: str) -> bool:
        """Whether ``address`` holds exactly a RecoverableWallet clone of this factory (a
        code-hash comparison; nothing else is ever relayed for)."""

    @abstractmethod
    def wallet(self, address: str) -> WalletState | None:
        """The wallet's settings and pending recovery; None if ``address`` is not one."""

    @abstractmethod
    def approvals(self, address: str, new_owner: str) -> tuple[str, ...]:
        """Guardians who approved ``new_owner`` in the wallet's current round."""

    @abstractmethod
    def predict(self, owner: str, guardians: Sequence[str], threshold: int, delay: int) -> str:
        """The address ``create`` gives for these settings (created or not)."""

    @abstractmethod
    def create(
        self, owner: str, guardians: Sequence[str], threshold: int, delay: int
    ) -> tuple[str, TxResult]:
        """Create a wallet through the factory (the node pays); return (address, tx)."""

    @abstractmethod
    def approve_recovery(
        self, wallet: str, new_owner: str, guardian: str, deadline: int, signature: bytes
    ) -> TxResult:
        """Relay a guardian's signed ApproveRecovery."""

    @abstractmethod
    def cancel_recovery(self, wallet: str, deadline: int, signature: bytes) -> TxResult:
        """Relay the owner's signed CancelRecovery (ends the current round)."""

    @abstractmethod
    def finalize_recovery(self, wallet: str) -> TxResult:
        """Make the pending recovery's new owner the owner (after its eta)."""
