"""Audit: list on-chain events and verify a record against its anchored root."""

from __future__ import annotations

from dataclasses import dataclass

from hsm.abc import KeyStoreAPI
from hsm.exceptions import DecryptionError, UnwrapError
from node.chain.abc import ChainClientAPI
from node.chain.merkle import record_leaf, verify_proof
from node.flows.read_record import open_record
from storage.abc import BlobStoreAPI, RecordIndexAPI
from storage.exceptions import IntegrityError
from storage.models import AnchorReceipt


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
