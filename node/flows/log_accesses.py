"""Access logging: the queued reads (granted and denied) go on-chain in batches."""

from __future__ import annotations

from node.audit.abc import AccessLogQueueAPI
from node.chain.abc import ChainClientAPI
from node.chain.client import MAX_ACCESS_BATCH

ACCESS_LOG_WORKER = "access-log"  # the background worker that runs flush_access_log


def flush_access_log(
    *, queue: AccessLogQueueAPI, chain: ChainClientAPI, limit: int, fence: int | None = None
) -> int:
    """Send up to ``limit`` queued accesses in one ``recordAccesses`` call; return how many.

    ``fence``: the worker's lease fence; the rows are claimed under it, so a worker fenced
    out cannot send them too. Rows leave the queue only after the transaction is mined: a
    crash in between sends them again (at least once; the audit trail may then show the same
    read twice, never none).
    """
    pending = queue.pending(min(limit, MAX_ACCESS_BATCH), fence=fence)
    if not pending:
        return 0
    chain.record_accesses([entry for _id, entry in pending])
    queue.remove([i for i, _entry in pending])
    return len(pending)
