"""Verify an anchoring receipt from the chain alone: any member's node (or anyone with the
chain) can check a receipt another hospital's node issued, without that hospital's index.

A receipt claims: record ``record_id`` with content hash ``content_hash`` (and predecessor
``previous_id``) is leaf ``leaf`` of batch ``batch_id``, whose Merkle root is ``root``, and
``proof`` takes the leaf to the root. The chain says which batch the record was anchored in
(its ``RecordAnchored`` event, which also names the patient and the hospital), which root
that batch holds, and whether ``RecordRegistry.verifyRecord`` accepts the record version
with the proof. Erasure (a ``RecordErased`` tombstone) is reported, not a failure: the
anchor of an erased record still proves what it was.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, cast, get_args

from node.chain.abc import ChainClientAPI
from node.chain.merkle import record_leaf, verify_proof
from node.chain.models import AuditEvent, BatchInfo


@dataclass(frozen=True, slots=True)
class AnchorClaim:
    """What a receipt claims about one record version."""

    record_id: bytes
    content_hash: bytes
    batch_id: int
    root: bytes
    leaf: bytes
    proof: tuple[bytes, ...]
    previous_id: bytes | None = None
    tx_hash: bytes | None = None  # the anchoring transaction, when the receipt names it


# The checks, in the order they are reported; a receipt is valid when none fails.
ReceiptCheck = Literal[
    "root_on_chain",
    "proof_reaches_root",
    "anchored_in_batch",
    "tx_hash_matches",
    "leaf_matches_record",
    "proof_valid_on_chain",
]
CHECKS: tuple[ReceiptCheck, ...] = cast(tuple[ReceiptCheck, ...], get_args(ReceiptCheck))


@dataclass(frozen=True, slots=True)
class ReceiptVerification:
    claim: AnchorClaim
    root_on_chain: bool  # batch ``batch_id`` exists on-chain and holds ``root``
    proof_reaches_root: bool  # ``proof`` takes ``leaf`` to ``root`` (keccak, here)
    anchored_in_batch: bool  # the record's RecordAnchored event names ``batch_id``
    tx_hash_matches: bool | None  # that event is in ``tx_hash``; None: no tx claimed
    leaf_matches_record: bool  # leaf == hash(record id, patient, content hash, previous)
    proof_valid_on_chain: bool  # RecordRegistry.verifyRecord accepts version and proof
    patient: str | None  # from the chain's RecordAnchored event
    batch: BatchInfo | None  # the chain's batch ``batch_id``
    event: AuditEvent | None  # the RecordAnchored event naming ``batch_id``
    hospital: str | None  # the address that anchored the batch (else the record)
    hospital_name: str | None  # its consortium name; None: not a member now
    erased: bool  # the record carries a RecordErased tombstone

    @property
    def failed(self) -> list[ReceiptCheck]:
        """The names of the checks that failed (``tx_hash_matches``: only if claimed)."""
        return [name for name in CHECKS if getattr(self, name) is False]

    @property
    def valid(self) -> bool:
        return not self.failed


def _anchor_event(events: Sequence[AuditEvent], batch_id: int) -> AuditEvent | None:
    """The RecordAnchored event naming ``batch_id``, else the record's first one."""
    anchored = [e for e in events if e.event == "RecordAnchored"]
    for e in anchored:
        if int(e.args["batchId"]) == batch_id:
            return e
    return anchored[0] if anchored else None


def verify_receipt(claim: AnchorClaim, *, chain: ChainClientAPI) -> ReceiptVerification:
    """Check ``claim`` against the chain only (no record index, no blob, no key)."""
    batch = chain.batch(claim.batch_id)
    event = _anchor_event(chain.audit_events(record_id=claim.record_id), claim.batch_id)
    in_batch = event is not None and int(event.args["batchId"]) == claim.batch_id
    patient = str(event.args["patient"]) if event is not None else None
    tx_matches: bool | None = None
    if claim.tx_hash is not None:
        tx_matches = in_batch and event is not None and event.tx_hash == claim.tx_hash
    leaf_matches = on_chain = False
    if patient is not None:
        leaf = record_leaf(claim.record_id, patient, claim.content_hash, claim.previous_id)
        leaf_matches = leaf == claim.leaf
        on_chain = chain.verify_record(
            claim.batch_id,
            claim.record_id,
            patient,
            claim.content_hash,
            claim.previous_id,
            list(claim.proof),
        )
    hospital = batch.hospital if batch is not None else None
    if hospital is None and event is not None:
        hospital = str(event.args["hospital"])
    names = {a.lower(): n for a, n in chain.members()} if hospital is not None else {}
    return ReceiptVerification(
        claim=claim,
        root_on_chain=batch is not None and batch.root == claim.root,
        proof_reaches_root=verify_proof(claim.leaf, claim.proof, claim.root),
        anchored_in_batch=in_batch,
        tx_hash_matches=tx_matches,
        leaf_matches_record=leaf_matches,
        proof_valid_on_chain=on_chain,
        patient=patient,
        batch=batch,
        event=event if in_batch else None,
        hospital=hospital,
        hospital_name=names.get(hospital.lower()) if hospital is not None else None,
        erased=chain.is_erased(claim.record_id),
    )
