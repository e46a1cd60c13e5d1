"""Anchoring: one Merkle root per batch of queued records, in one transaction.

With a lease ``fence`` (the scale-out worker) a record is anchored exactly once even if the
worker is killed anywhere: the batch is claimed under the fence, an *intent* (fence, root,
record ids) is committed before the transaction is sent, and the receipts are stored
after. A worker starting up (and every fenced round) resolves open intents from the
chain's ``BatchAnchored`` logs: found -> marked anchored from the chain's batch; not found
-> released once nothing is in flight from the hospital's account, so the records are
anchored again.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from node.chain.abc import ChainClientAPI
from node.chain.exceptions import ContractReverted
from node.chain.merkle import MerkleTree, record_leaf
from node.chain.models import AnchorResult
from storage.abc import RecordIndexAPI
from storage.models import AnchorBatch, AnchorReceipt, RecordRow

log = logging.getLogger(__name__)


def _tree(rows: Sequence[RecordRow]) -> tuple[list[bytes], MerkleTree]:
    leaves = [record_leaf(r.record_id, r.patient, r.content_hash, r.previous_id) for r in rows]
    return leaves, MerkleTree(leaves)


def _receipts(
    rows: Sequence[RecordRow],
    leaves: Sequence[bytes],
    tree: MerkleTree,
    result: AnchorResult,
    hospital: str,
) -> tuple[AnchorBatch, dict[bytes, AnchorReceipt]]:
    batch = AnchorBatch(
        batch_id=result.batch_id,
        root=tree.root,
        tx_hash=result.tx_hash,
        block_number=result.block_number,
        hospital=hospital,
        count=len(rows),
        anchored_at=result.timestamp,
    )
    receipts = {
        row.record_id: AnchorReceipt(row.record_id, leaf, tree.proof(i), batch)
        for i, (row, leaf) in enumerate(zip(rows, leaves, strict=True))
    }
    return batch, receipts


def anchor_pending(
    *,
    index: RecordIndexAPI,
    chain: ChainClientAPI,
    limit: int,
    fence: int | None = None,
) -> AnchorBatch | None:
    """Anchor up to ``limit`` queued records; return the batch, or None if none waited.

    ``fence`` None: no lease (one process). If the node dies between the transaction and
    ``mark_anchored`` the records stay queued and are anchored again in a later batch: both
    roots prove them, nothing is lost.

    With the worker lease's ``fence``: claim, commit an intent, send, mark; a crash anywhere
    never anchors a record twice (see the module docstring). Raises LeaseLost (nothing
    sent) once the lease is superseded or expired: the worker must stop.
    """
    if fence is None:
        rows = index.pending_anchors(limit)
        if not rows:
            return None
        leaves, tree = _tree(rows)
        result = chain.anchor_batch(
            tree.root, [r.record_id for r in rows], [r.patient for r in rows]
        )
        batch, receipts = _receipts(rows, leaves, tree, result, chain.hospital)
        index.mark_anchored(batch, receipts)
    else:
        # One anchoring thread per worker: nothing else of this fence is between claim
        # and intent, so leftovers of a failed round can go back to the queue.
        index.release_anchor_claims(fence)
        recover_anchors(index=index, chain=chain, fence=fence)
        rows = index.claim_pending_anchors(limit, fence)
        if not rows:
            return None
        leaves, tree = _tree(rows)
        ids = [r.record_id for r in rows]
        # The last check before the chain sees the batch: refused once the lease expired.
        intent_id = index.record_anchor_intent(fence, tree.root, ids)
        try:
            result = chain.anchor_batch(tree.root, ids, [r.patient for r in rows])
        except ContractReverted:
            # Refused (simulated or mined): no BatchAnchored exists, the records may retry.
            index.release_anchor_intent(intent_id, fence)
            raise
        # ChainUnavailable and the like leave the intent open: it may have been mined.
        batch, receipts = _receipts(rows, leaves, tree, result, chain.hospital)
        index.mark_anchored(batch, receipts, fence)
    log.info(
        "anchored batch %d: %d records, root 0x%s", batch.batch_id, batch.count, tree.root.hex()
    )
    return batch


def recover_anchors(
    *,
    index: RecordIndexAPI,
    chain: ChainClientAPI,
    fence: int | None = None,
) -> int:
    """Resolve open anchor intents from the chain; return how many were resolved. Run it when
    the worker starts (``anchor_pending`` with a fence also runs it every round).

    An intent whose root the chain shows (``find_batch``) is marked anchored from the
    chain's batch; one it does not show is released (its records are queued again) once
    the hospital's account has no transaction in flight (``sends_in_flight``): its send
    was never mined and can no longer be. That holds for this ``fence``'s own intents too
    (a send that failed with the chain away): the one anchoring thread is not sending while
    it recovers. ``fence`` None: no lease. Raises LeaseLost once ``fence`` is superseded.
    """
    resolved = 0
    in_flight: int | None = None  # read once, only if an intent is not found on-chain
    for intent in index.open_anchor_intents():
        if fence is not None and intent.fence > fence:
            continue  # a newer holder's: not ours to touch (we are about to be refused)
        rows = [index.get_record(rid) for rid in intent.record_ids]
        leaves, tree = _tree(rows)
        if tree.root != intent.root:
            log.error("anchor intent %d does not match its records; left open", intent.intent_id)
            continue
        found = chain.find_batch(intent.root, chain.hospital)
        if found is not None:
            batch, receipts = _receipts(rows, leaves, tree, found, chain.hospital)
            index.mark_anchored(batch, receipts, fence)
            log.info(
                "anchor intent %d was anchored as batch %d before a restart; marked",
                intent.intent_id,
                found.batch_id,
            )
        else:
            if in_flight is None:
                in_flight = chain.sends_in_flight()
            if in_flight:
                # The old holder's transaction may still be in the mempool: releasing now
                # could anchor these records twice. The next round looks again.
                log.info(
                    "anchor intent %d: %d transactions of this account still in flight; left open",
                    intent.intent_id,
                    in_flight,
                )
                continue
            index.release_anchor_intent(intent.intent_id, fence)
            log.info(
                "anchor intent %d never reached the chain; %d records queued again",
                intent.intent_id,
                len(intent.record_ids),
            )
        resolved += 1
    return resolved
