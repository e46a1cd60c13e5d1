"""Anchoring: one Merkle root per batch of queued records, in one transaction."""

from __future__ import annotations

import logging

from node.chain.abc import ChainClientAPI
from node.chain.merkle import MerkleTree, record_leaf
from storage.abc import RecordIndexAPI
from storage.models import AnchorBatch, AnchorReceipt

log = logging.getLogger(__name__)


def anchor_pending(
    *, index: RecordIndexAPI, chain: ChainClientAPI, limit: int
) -> AnchorBatch | None:
    """Anchor up to ``limit`` queued records; return the batch, or None if none waited.

    If the node dies between the transaction and ``mark_anchored`` the records stay queued
    and are anchored again in a later batch: both roots prove them, nothing is lost.
    """
    rows = index.pending_anchors(limit)
    if not rows:
        return None
    leaves = [record_leaf(r.record_id, r.patient, r.content_hash, r.previous_id) for r in rows]
    tree = MerkleTree(leaves)
    result = chain.anchor_batch(tree.root, [r.record_id for r in rows], [r.patient for r in rows])
    batch = AnchorBatch(
        batch_id=result.batch_id,
        root=tree.root,
        tx_hash=result.tx_hash,
        block_number=result.block_number,
        hospital=chain.hospital,
        count=len(rows),
        anchored_at=result.timestamp,
    )
    receipts = {
        row.record_id: AnchorReceipt(row.record_id, leaf, tree.proof(i), batch)
        for i, (row, leaf) in enumerate(zip(rows, leaves, strict=True))
    }
    index.mark_anchored(batch, receipts)
    log.info(
        "anchored batch %d: %d records, root 0x%s", batch.batch_id, batch.count, tree.root.hex()
    )
    return batch
