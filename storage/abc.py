"""Abstract interfaces of the storage layer (one per component, as in py-evm's eth/abc.py).

Flows type against these; ``node/wiring.py`` picks the implementation.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from storage.models import (
    AnchorBatch,
    AnchorIntent,
    AnchorReceipt,
    KeyUpdate,
    Lease,
    PendingErasure,
    RecordQuery,
    RecordRow,
    RepairReport,
    StoredKey,
)


class BlobStoreAPI(ABC):
    """Content-addressed store of ciphertext blobs."""

    @abstractmethod
    def put(self, data: bytes) -> str:
        """Store ``data`` durably and return its CID (CIDv1, raw codec, sha2-256, base32).

        Storing the same bytes twice returns the same CID.
        Raises BackendUnavailable when the store cannot be written.
        """

    @abstractmethod
    def put_many(self, blobs: Sequence[bytes]) -> list[str]:
        """Store several blobs in one round trip; return their CIDs in order."""

    @abstractmethod
    def get(self, cid: str) -> bytes:
        """Return the bytes stored under ``cid``.

        Raises BlobNotFound if absent, IntegrityError if the stored bytes do not hash to
        ``cid`` (never returns altered data).
        """

    @abstractmethod
    def has(self, cid: str) -> bool:
        """Return whether a blob is stored under ``cid``."""

    @abstractmethod
    def delete(self, cid: str) -> None:
        """Remove (unpin) the blob from every replica; a missing blob is not an error.

        Raises BackendUnavailable when a replica could not be reached (retry later): an
        erasure is only complete once every copy is gone.
        """

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections and file handles."""


class RecordIndexAPI(ABC):
    """Queryable index of records, the durable anchor outbox and anchored batches."""

    @property
    @abstractmethod
    def schema_version(self) -> int:
        """The schema version of the open database (migrated on open)."""

    @abstractmethod
    def add_records(self, rows: Sequence[RecordRow]) -> None:
        """Insert ``rows`` and enqueue each in the anchor outbox, all in one transaction.

        Raises DuplicateRecord if any id exists (then nothing is written).
        """

    @abstractmethod
    def get_record(self, record_id: bytes) -> RecordRow:
        """Return the record. Raises RecordNotFound."""

    @abstractmethod
    def list_records(
        self,
        *,
        patient: str | None = None,
        creator: str | None = None,
        category: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[RecordRow]:
        """Return records matching every given filter, newest first."""

    @abstractmethod
    def find_records(self, query: RecordQuery) -> list[RecordRow]:
        """Return the records matching ``query`` (see ``RecordQuery``), with their
        document metadata, in its order and page."""

    @abstractmethod
    def count_records(self, query: RecordQuery) -> int:
        """Return how many records match ``query``, ignoring its page."""

    @abstractmethod
    def pending_anchors(self, limit: int) -> list[RecordRow]:
        """Return up to ``limit`` records waiting in the outbox, oldest first."""

    @abstractmethod
    def count_pending_anchors(self) -> int:
        """Return how many records wait in the outbox."""

    @abstractmethod
    def mark_anchored(
        self,
        batch: AnchorBatch,
        receipts: Mapping[bytes, AnchorReceipt],
        fence: int | None = None,
    ) -> None:
        """Store ``batch``, each record's leaf and proof, and remove them from the outbox
        (closing any anchor intent that covered them), all in one transaction.

        With a ``fence``: raises LeaseLost (nothing written) unless it is still the current
        fence of its lease. ``None`` means "no lease" (a single process)."""

    # -- claimed anchoring (several processes, one fenced worker) -------------------------

    @abstractmethod
    def claim_pending_anchors(self, limit: int, fence: int) -> list[RecordRow]:
        """Claim up to ``limit`` outbox records for the holder of ``fence``, oldest first,
        and return them. A record is claimable when unclaimed, or claimed by an older fence
        without an anchor intent (that holder never sent it). Records under an open intent
        are never claimable: ``recover_anchors`` resolves them first. Concurrent claimers
        never receive the same record.

        Raises LeaseLost if ``fence`` is not current, ValueError for a negative limit."""

    @abstractmethod
    def record_anchor_intent(self, fence: int, root: bytes, record_ids: Sequence[bytes]) -> int:
        """Durably note that the holder of ``fence`` is about to anchor ``root`` over
        ``record_ids`` (leaf order); return the intent's id. Call it right before sending:
        it is the last check before the chain sees the batch.

        Raises LeaseLost (nothing written) unless ``fence`` is current and its lease has
        not expired by the database's clock; StorageError if a record is not claimed by
        ``fence`` or already under an intent."""

    @abstractmethod
    def open_anchor_intents(self) -> list[AnchorIntent]:
        """Intents neither marked anchored nor released, oldest first."""

    @abstractmethod
    def release_anchor_claims(self, fence: int) -> int:
        """Unclaim every record claimed by ``fence`` and not under an intent (left behind
        by a failure between claim and intent); return how many. Call it only while no
        other claim of the same fence is in flight (the worker's one anchoring thread).

        Raises LeaseLost if ``fence`` is not current."""

    @abstractmethod
    def release_anchor_intent(self, intent_id: int, fence: int | None = None) -> None:
        """Drop an intent whose batch the chain never saw and unclaim its records (they are
        anchored again later). An unknown or closed intent is not an error.

        With a ``fence``: raises LeaseLost unless it is current."""

    @abstractmethod
    def get_receipt(self, record_id: bytes) -> AnchorReceipt | None:
        """Return the anchor receipt (with its batch), or None while the record is pending.

        Raises RecordNotFound for an unknown id.
        """

    @abstractmethod
    def get_batch(self, batch_id: int) -> AnchorBatch:
        """Return an anchored batch. Raises RecordNotFound."""

    @abstractmethod
    def kek_usage(self) -> dict[int, int]:
        """Return how many records each KEK version wraps; versions no record uses are
        absent. Tells the rotation job what is left to re-wrap and which KEK is unused."""

    @abstractmethod
    def wrapped_keys_with(self, kek_version: int, limit: int) -> list[tuple[bytes, StoredKey]]:
        """Return up to ``limit`` ``(record_id, key)`` pairs of records whose data key is
        wrapped by ``kek_version``, oldest first. Raises ValueError for a negative limit."""

    @abstractmethod
    def replace_wrapped_keys(self, updates: Sequence[KeyUpdate]) -> int:
        """Store re-wrapped data keys in one transaction, as a compare-and-set: a record
        changes only while it is still at ``old_version``, so a concurrent re-wrap or
        rotation never overwrites a newer key with a stale one. Unknown records are
        skipped. Returns how many records changed. Raises ValueError when an update keeps
        its version or a field is malformed (then nothing is written). An erased record is
        never changed: a re-wrap racing an erasure must not bring its key back."""

    # -- erasure (crypto-shredding, GDPR art. 17) -----------------------------------------

    @abstractmethod
    def mark_erased(
        self, record_ids: Sequence[bytes], erased_at: int, reason_hash: bytes
    ) -> list[bytes]:
        """Destroy the records' wrapped data keys (the content becomes unrecoverable even
        where a copy of the ciphertext survives) and flag them erased, in one transaction.
        Erased records leave ``kek_usage`` and ``wrapped_keys_with`` and join
        ``pending_erasures`` until their blob is purged and their tombstone anchored.

        Returns the ids newly erased, in order; ids already erased are skipped. Raises
        RecordNotFound if any id is unknown and ValueError for malformed input (then
        nothing is written)."""

    @abstractmethod
    def pending_erasures(self, limit: int) -> list[PendingErasure]:
        """Up to ``limit`` erased records whose blob is not yet purged or whose tombstone
        is not yet on-chain, oldest erasure first (the durable to-do list of the eraser)."""

    @abstractmethod
    def mark_blobs_purged(self, record_ids: Sequence[bytes]) -> None:
        """Note that the records' blobs were deleted from every replica."""

    @abstractmethod
    def mark_tombstoned(self, record_ids: Sequence[bytes], tx_hash: bytes) -> None:
        """Note the transaction that anchored the records' erasure tombstones."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""


class WorkerLeaseAPI(ABC):
    """Fenced leases on named roles, kept in a database every process of a hospital shares.

    Time is the database's clock, so holders never compare their own clocks. Fences are
    unique across all lease names and only grow: a write tagged with a fence can be refused
    once a newer holder exists.
    """

    @abstractmethod
    def acquire(self, name: str, holder: str, url: str, ttl: float) -> Lease | None:
        """Take lease ``name`` for ``ttl`` seconds if it is free or expired (a new fence,
        greater than any before), or extend it if ``holder`` holds it already (same fence).
        Returns None while another holder's lease is live. Raises ValueError for ttl <= 0.
        """

    @abstractmethod
    def renew(self, lease: Lease, ttl: float) -> bool:
        """Extend ``lease`` to ``ttl`` seconds from now; False if it expired or was taken
        (then it stays lost: acquire again for a new fence)."""

    @abstractmethod
    def release(self, lease: Lease) -> None:
        """End ``lease`` now so another holder need not wait for it to expire. Releasing a
        lease already lost is not an error."""

    @abstractmethod
    def current(self, name: str) -> Lease | None:
        """The live lease on ``name``, or None if it is free or expired."""

    @abstractmethod
    def check(self, lease: Lease) -> bool:
        """Whether ``lease`` (its fence) is still held and unexpired now."""


class CacheAPI(ABC):
    """Hot cache of small values (ciphertext, decisions). A miss is never an error."""

    @abstractmethod
    def get(self, key: str) -> bytes | None:
        """Return the cached value or None."""

    @abstractmethod
    def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        """Cache ``value`` for ``ttl`` seconds (None: until evicted)."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Drop ``key``; a missing key is not an error."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""


@dataclass(frozen=True, slots=True)
class Health:
    """A component's state for the operators' health report. ``details`` are plain JSON
    values (counts, names, reachability); never a secret, a URL with credentials or PHI."""

    ok: bool
    details: Mapping[str, Any] = field(default_factory=dict)


class HealthCheckAPI(ABC):
    """A capability of components that depend on a service that can be down (Redis, IPFS
    nodes, a shared rate limiter): the wiring registers them for the health endpoint."""

    @abstractmethod
    def check_health(self) -> Health:
        """Probe now (a health check may bypass an outage backoff) and report. Never raises:
        a failure is ``ok=False``."""


class ReplicaRepairAPI(ABC):
    """A capability of blob stores that keep replicas (IPFS): bring every blob back to the
    minimum replication from a node that still holds an intact copy."""

    @abstractmethod
    def repair(
        self, cids: Iterable[str], progress: Callable[[int, int], None] | None = None
    ) -> RepairReport:
        """Re-pin every blob of ``cids`` held on too few reachable nodes; ``progress(checked,
        total)`` after each batch (total -1 when ``cids`` has no length)."""


class AuditMirrorAPI(ABC):
    """A queryable copy of the chain's consent and audit events (the chain stays the source
    of truth; the mirror makes queries fast and is checked against the chain)."""

    @abstractmethod
    def mirror_events(self, events: Sequence[Mapping[str, Any]], up_to_block: int) -> None:
        """Store events (shaped like ``dataclasses.asdict(AuditEvent)``) and advance the
        cursor to ``up_to_block``, atomically. Re-mirroring an event overwrites it."""

    @abstractmethod
    def mirrored_events(
        self,
        *,
        patient: str | None = None,
        record_id: bytes | None = None,
        actor: str | None = None,
        since: int | None = None,
        until: int | None = None,
        limit: int = 1000,
    ) -> list[dict[str, Any]]:
        """Mirrored events matching every filter, in chain order, at most ``limit``."""

    @abstractmethod
    def mirror_cursor(self) -> int:
        """The last block mirrored, or -1 before the first ``mirror_events``."""
