"""Erasure (GDPR art. 17) by crypto-shredding.

Order matters. The index first destroys each record's wrapped data key, in one transaction:
from then on nothing can decrypt the record, even where a copy of the ciphertext survives
(an IPFS node that was down, a cache, a backup). The follow-ups are a durable to-do list in
the index (``pending_erasures``), worked off by ``finish_erasures`` right away and again by a
background worker until done: evict the cached blob, delete it from every replica, and anchor
a ``RecordErased`` tombstone (one transaction per batch). The anchored hash stays on-chain as
evidence that the record existed unaltered; only the content is gone.

The reason may describe a patient's situation, so only a salted commitment to it goes
on-chain (as for break-glass, node/audit/reasons.py); text and salt stay in the node's
directory for auditors.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from node.audit.abc import KeyAuditLogAPI
from node.audit.reasons import ERASURE, ReasonCommitment, encodable, new_commitment
from node.chain.abc import ChainClientAPI
from node.chain.exceptions import ChainError
from node.directory import ReasonStoreAPI
from node.exceptions import InvalidRequest
from node.roles.abc import BackgroundWorkersAPI
from storage.abc import BlobStoreAPI, CacheAPI, RecordIndexAPI
from storage.exceptions import StorageError

log = logging.getLogger(__name__)

ERASER = "eraser"  # the background worker that runs finish_erasures
MAX_TOMBSTONE_BATCH = 200  # ~6M gas at most (docs/gas.md: ~25k a tombstone)
_PATIENT_PAGE = 1000


@dataclass(frozen=True, slots=True)
class ErasureResult:
    reason_hash: bytes
    erased: list[bytes] = field(default_factory=list)  # newly erased, keys destroyed
    already_erased: list[bytes] = field(default_factory=list)
    commitment: ReasonCommitment | None = None  # reason and salt behind reason_hash


def erase_records(
    record_ids: Sequence[bytes],
    reason: str,
    *,
    index: RecordIndexAPI,
    now: int,
    requested_by: str = "",
) -> ErasureResult:
    """Destroy the records' data keys (all or nothing) and queue their follow-ups.

    The tombstones carry a salted commitment to the reason and ``requested_by`` (the hospital
    API token's name), returned in the result for the caller to keep off-chain.

    Every record in this node's index is its hospital's (the index is not shared between
    hospitals), so there is no per-record ownership check: a signing-key rotation changes
    the hospital's address but must not strand old records.

    Raises InvalidRequest for an empty reason or no ids and RecordNotFound for an unknown id
    (then nothing is erased).
    """
    if not reason.strip():
        raise InvalidRequest("an erasure reason is mandatory")
    if not encodable(reason):
        raise InvalidRequest("the reason is not valid Unicode text")
    ids = list(dict.fromkeys(record_ids))
    if not ids:
        raise InvalidRequest("no record to erase")
    commitment = new_commitment(ERASURE, reason, requested_by)
    reason_hash = commitment.reason_hash
    newly = index.mark_erased(ids, now, reason_hash)
    fresh = set(newly)
    log.info("erased %d records (reason 0x%s)", len(newly), reason_hash.hex())
    return ErasureResult(reason_hash, newly, [rid for rid in ids if rid not in fresh], commitment)


def erase_and_finish(
    record_ids: Sequence[bytes],
    reason: str,
    *,
    index: RecordIndexAPI,
    reasons: ReasonStoreAPI,
    key_audit: KeyAuditLogAPI,
    background: BackgroundWorkersAPI,
    now: int,
    requested_by: str = "",
) -> ErasureResult:
    """Erase the records (``erase_records``: their data keys are destroyed when this
    returns), keep the reason and its salt for auditors, log the key destruction in the key
    audit trail, then run the follow-ups (blob purge, tombstone) at once.

    The follow-ups are best effort: they stay on the index's durable to-do list and the
    eraser worker retries them, so their failure is logged, not raised. Raises what
    ``erase_records`` raises (then nothing is erased).
    """
    result = erase_records(record_ids, reason, index=index, now=now, requested_by=requested_by)
    if result.erased and result.commitment is not None:
        # Text and salt stay with the node for auditors, like break-glass reasons (no tx yet).
        reasons.save_reason(result.commitment)
        # Destroying data keys is a key operation: it goes in the key audit trail too.
        ids = ",".join(f"0x{rid.hex()}" for rid in result.erased)
        subject = f"reason 0x{result.reason_hash.hex()}; records {ids}"
        key_audit.append("dek.destroy", subject, requested_by)
        try:
            background.run_now(ERASER)
        except Exception:  # durable to-do list in the index: the worker goes on
            log.exception("erasure follow-up failed; the eraser worker will retry")
    return result


def patient_record_ids(patient: str, *, index: RecordIndexAPI) -> list[bytes]:
    """Every record of ``patient`` in the index (erased ones included)."""
    ids: list[bytes] = []
    while page := index.list_records(patient=patient, limit=_PATIENT_PAGE, offset=len(ids)):
        ids.extend(row.record_id for row in page)
    return ids


def finish_erasures(
    *,
    index: RecordIndexAPI,
    blobs: BlobStoreAPI,
    cache: CacheAPI,
    chain: ChainClientAPI,
    limit: int = MAX_TOMBSTONE_BATCH,
) -> int:
    """Purge the blobs and anchor the tombstones of up to ``limit`` erased records; return
    how many made progress (0: nothing left, or every backend it needs is down). Failures
    leave the work listed for the next round.

    RecordRegistry takes a tombstone only from the hospital whose namespace the record id is
    in (its member id, ``node.chain.record_ids``), which every record this node uploaded is,
    under any of its signing keys; the record need not be anchored yet."""
    pending = index.pending_erasures(limit)
    purged: list[bytes] = []
    for item in pending:
        if item.blob_purged:
            continue
        try:
            cache.delete(f"blob:{item.cid}")
            blobs.delete(item.cid)  # every replica, or BackendUnavailable
        except StorageError as err:
            log.warning("blob of erased record 0x%s not purged yet: %s", item.record_id.hex(), err)
            continue
        purged.append(item.record_id)
    if purged:
        index.mark_blobs_purged(purged)
    by_reason: dict[bytes, list[bytes]] = {}
    for item in pending:
        if item.erase_tx is None:
            by_reason.setdefault(item.reason_hash, []).append(item.record_id)
    tombstoned = 0
    for reason_hash, ids in by_reason.items():
        try:
            result = chain.erase_records(ids, reason_hash)
        except ChainError as err:
            log.warning("%d erasure tombstones not anchored yet: %s", len(ids), err)
            continue
        index.mark_tombstoned(ids, result.tx_hash)
        tombstoned += len(ids)
    return len(purged) + tombstoned
