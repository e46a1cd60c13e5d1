"""Audit: list on-chain events and verify a record against its anchored root."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from hsm.abc import KeyStoreAPI
from hsm.exceptions import DecryptionError, UnwrapError
from node.chain.abc import ChainClientAPI, ZkGateAPI
from node.chain.merkle import record_leaf, verify_proof
from node.chain.models import AuditEvent, ZkAccessEvent
from node.flows.read_record import open_record
from storage.abc import AuditMirrorAPI, BlobStoreAPI, RecordIndexAPI
from storage.exceptions import IntegrityError
from storage.models import AnchorReceipt

# The events of the audit trail: RecordRegistry, ConsentRegistry, AccessLog and (with
# zero-knowledge access on) ZkAccessGate's anonymous reads.
AuditEventName = Literal[
    "RecordAnchored",
    "BatchAnchored",
    "ConsentGranted",
    "ConsentRevoked",
    "ClassConsentGranted",
    "ClassConsentRevoked",
    "BreakGlassOpened",
    "AccessRecorded",
    "ZkAccessGranted",
]
AUDIT_EVENT_NAMES: tuple[str, ...] = get_args(AuditEventName)
MAX_MIRRORED = 100_000  # events read from the SQL mirror per query


@dataclass(frozen=True, slots=True)
class AuditFilter:
    """Events matching every given field; ``since`` and ``until`` are inclusive unix times."""

    patient: str | None = None
    record_id: bytes | None = None
    actor: str | None = None  # clinician, grantee or hospital address
    since: int | None = None
    until: int | None = None
    event: str | None = None  # one of AUDIT_EVENT_NAMES
    source: Literal["chain", "mirror"] = "chain"

    def keeps(self, e: AuditEvent) -> bool:
        return (
            (self.event is None or e.event == self.event)
            and (self.since is None or e.timestamp >= self.since)
            and (self.until is None or e.timestamp <= self.until)
        )


def zk_audit_event(e: ZkAccessEvent) -> AuditEvent:
    """An anonymous read as an audit event: the record and patient, never the reader."""
    return AuditEvent(
        event="ZkAccessGranted",
        contract="ZkAccessGate",
        block_number=e.block_number,
        timestamp=e.timestamp,
        tx_hash=e.tx_hash,
        log_index=e.log_index,
        args={
            "patient": e.patient,
            "recordId": e.record_id,
            "category": e.category,
            "epoch": e.epoch,
            "relayer": e.relayer,
        },
    )


def find_audit_events(
    f: AuditFilter,
    *,
    chain: ChainClientAPI,
    mirror: AuditMirrorAPI,
    zk_gate: ZkGateAPI | None = None,
) -> list[AuditEvent]:
    """The audit trail matching ``f``, in chain order (oldest first). Anonymous reads come
    from the chain's ZkAccessGate when ``zk_gate`` is given: never from the mirror, and
    never for an ``actor`` (they have none)."""
    if f.source == "mirror":
        found = [
            AuditEvent(**e)
            for e in mirror.mirrored_events(
                patient=f.patient,
                record_id=f.record_id,
                actor=f.actor,
                since=f.since,
                until=f.until,
                limit=MAX_MIRRORED,
            )
        ]
    elif f.event == "ZkAccessGranted":
        found = []
    else:
        found = chain.audit_events(patient=f.patient, record_id=f.record_id, actor=f.actor)
    anonymous = f.event in (None, "ZkAccessGranted") and f.actor is None
    if zk_gate is not None and f.source == "chain" and anonymous:
        found += [
            zk_audit_event(e)
            for e in zk_gate.access_events(record_id=f.record_id)
            if f.patient is None or e.patient == f.patient
        ]
        found.sort(key=lambda e: (e.block_number, e.log_index))
    return [e for e in found if f.keeps(e)]


@dataclass(frozen=True, slots=True)
class RecordVerification:
    record_id: bytes
    content_hash: bytes  # the hash checked against the chain
    anchored: bool
    batch_id: int | None = None
    root: bytes | None = None
    root_on_chain: bool = False  # the chain holds this batch root
    proof_valid_on_chain: bool = False  # RecordRegistry.verifyRecord accepted the leaf
    stored_content_intact: bool | None = None  # the blob decrypts to content_hash
    receipt: AnchorReceipt | None = None

    @property
    def verified(self) -> bool:
        return (
            self.anchored
            and self.root_on_chain
            and self.proof_valid_on_chain
            and (self.stored_content_intact is not False)
        )


def verify_record(
    record_id: bytes,
    *,
    index: RecordIndexAPI,
    chain: ChainClientAPI,
    blobs: BlobStoreAPI,
    keys: KeyStoreAPI,
    claimed_content_hash: bytes | None = None,
) -> RecordVerification:
    """Check ``claimed_content_hash`` (default: the indexed hash) against the chain, and
    check that the stored ciphertext still decrypts to the indexed hash."""
    row = index.get_record(record_id)
    content_hash = claimed_content_hash or row.content_hash
    intact: bool | None = None  # erased: no content left to check, the hash still proves
    if not row.erased:
        try:
            open_record(row, blobs=blobs, keys=keys)
            intact = True
        except (IntegrityError, DecryptionError, UnwrapError):  # altered blob or wrapped key
            intact = False
    receipt = index.get_receipt(record_id)
    if receipt is None or receipt.batch is None:
        return RecordVerification(record_id, content_hash, False, stored_content_intact=intact)
    batch = receipt.batch
    on_chain = chain.batch(batch.batch_id)
    leaf = record_leaf(record_id, row.patient, content_hash, row.previous_id)
    valid = verify_proof(leaf, receipt.proof, batch.root) and chain.verify_record(
        batch.batch_id, record_id, row.patient, content_hash, row.previous_id, receipt.proof
    )
    return RecordVerification(
        record_id=record_id,
        content_hash=content_hash,
        anchored=True,
        batch_id=batch.batch_id,
        root=batch.root,
        root_on_chain=on_chain is not None and on_chain.root == batch.root,
        proof_valid_on_chain=valid,
        stored_content_intact=intact,
        receipt=receipt,
    )
