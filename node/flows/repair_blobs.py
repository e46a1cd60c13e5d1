"""Replica repair: every indexed blob that is not erased back to the minimum replication."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from storage.abc import RecordIndexAPI, ReplicaRepairAPI
from storage.models import RepairReport


def repair_replicas(
    *,
    index: RecordIndexAPI,
    blobs: ReplicaRepairAPI,
    progress: Callable[[int, int], None] | None = None,
) -> RepairReport:
    def cids() -> Iterator[str]:
        offset = 0
        while page := index.list_records(limit=1000, offset=offset):
            # An erased record's blob must stay gone: re-pinning it would undo the purge.
            yield from (row.cid for row in page if not row.erased)
            offset += len(page)

    return blobs.repair(list(cids()), progress)  # a list: progress can show the total
