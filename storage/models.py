"""Plain records exchanged between the node and the storage interfaces.

Ids and hashes are raw ``bytes`` (32 bytes); addresses are EIP-55 checksummed strings.
Nothing here holds plaintext medical content: storage receives only ciphertext.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, NamedTuple


@dataclass(frozen=True, slots=True)
class DocumentMeta:
    """What a hospital standard says about a record beyond its category, kept once for every
    interface: a FHIR DocumentReference (type, date, description, identifier), an HL7 v2
    message (its control id, observation date) or a DICOM instance (its UIDs, modality).

    Plain metadata, like the category: stored in the index beside the record, never sent
    on-chain. ``identifier`` is unique among the records one hospital created (FHIR
    conditional create, HL7 re-sends, a DICOM instance pushed twice)."""

    source: str = "api"  # the interface that created it: api, fhir, hl7v2, dicom
    type_system: str | None = None  # coding system of the document type, e.g. http://loinc.org
    type_code: str | None = None  # e.g. 11502-2 (laboratory report)
    type_display: str | None = None
    title: str | None = None  # a human-readable description
    clinical_time: int | None = None  # unix seconds the content is about (not the upload)
    identifier: str | None = None  # "system|value", unique per creating hospital
    # Searchable name/value pairs of one interface, e.g. dicom.study_uid, dicom.modality;
    # names are lowercase dotted (a-z 0-9 . _), values at most 255 characters.
    attributes: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RecordQuery:
    """A search over the index: every given filter must match. ``time`` below is the
    record's ``clinical_time`` where it has one, else its ``created_at``."""

    patient: str | None = None
    creator: str | None = None
    category: str | None = None
    type_system: str | None = None  # only with type_code
    type_code: str | None = None
    since: int | None = None  # time >= since
    until: int | None = None  # time < until
    # current: no other record names it as previous_id; superseded: one does.
    status: Literal["current", "superseded"] | None = None
    identifier: str | None = None
    previous_id: bytes | None = None  # the records that supersede this one
    source: str | None = None
    attributes: Mapping[str, str] = field(default_factory=dict)  # every pair must match
    newest_first: bool = True  # by time, then insertion order
    limit: int = 100
    offset: int = 0


@dataclass(frozen=True, slots=True)
class RecordRow:
    """One indexed record: where its ciphertext lives and how to open and verify it."""

    record_id: bytes  # 32 random bytes, opaque on-chain id
    patient: str  # patient's wallet address (checksummed)
    category: str  # e.g. "lab", "imaging"; hashed (keccak256) on-chain
    content_type: str
    cid: str  # content address of the ciphertext blob
    content_hash: bytes  # sha256 of the plaintext, committed in the Merkle leaf
    size: int  # plaintext size in bytes
    wrapped_key: bytes  # the record's data key wrapped by a KEK
    kek_version: int
    creator: str  # address of the hospital node that uploaded it
    created_at: int  # unix seconds
    previous_id: bytes | None = None  # predecessor version, if this is a new version
    # Crypto-shredding (GDPR art. 17): once erased, ``wrapped_key`` is empty for good.
    erased_at: int | None = None  # unix seconds of the erasure; None while readable
    erase_tx: bytes | None = None  # the on-chain tombstone's tx; None until it is anchored
    document: DocumentMeta | None = None  # metadata of a standard (FHIR, HL7 v2, DICOM)

    @property
    def erased(self) -> bool:
        return self.erased_at is not None


@dataclass(frozen=True, slots=True)
class AnchorBatch:
    """A Merkle root anchored on-chain for a batch of records."""

    batch_id: int
    root: bytes
    tx_hash: bytes
    block_number: int
    hospital: str
    count: int
    anchored_at: int


@dataclass(frozen=True, slots=True)
class AnchorReceipt:
    """Proof that one record is included in an anchored batch."""

    record_id: bytes
    leaf: bytes
    proof: list[bytes] = field(default_factory=list)
    batch: AnchorBatch | None = None


@dataclass(frozen=True, slots=True)
class StoredKey:
    """A record's data key as the index keeps it: wrapped by KEK ``kek_version`` (storage
    never sees a data key in the clear)."""

    kek_version: int
    blob: bytes

    def __repr__(self) -> str:
        return f"StoredKey(kek_version={self.kek_version}, blob=<{len(self.blob)} bytes>)"


class KeyUpdate(NamedTuple):
    """Re-wrap of one record's data key, applied only if the record is still at
    ``old_version`` (compare-and-set)."""

    record_id: bytes
    old_version: int
    new_version: int
    new_blob: bytes


@dataclass(frozen=True, slots=True)
class PendingErasure:
    """An erased record whose follow-up is not finished: its blob may still be stored
    somewhere (``blob_purged`` False) or its tombstone is not on-chain (``erase_tx`` None)."""

    record_id: bytes
    cid: str
    reason_hash: bytes
    blob_purged: bool
    erase_tx: bytes | None


@dataclass(frozen=True, slots=True)
class Lease:
    """A fenced, time-bound lease on a named role (e.g. the hospital's one worker).

    ``fence`` grows every time the lease is taken (never when it is renewed); writes done
    under the lease carry it, and the index refuses those of a superseded fence.
    ``expires_at`` is the database's clock (unix seconds), not the holder's.
    """

    name: str
    holder: str
    url: str
    fence: int
    expires_at: float


@dataclass(frozen=True, slots=True)
class AnchorIntent:
    """A batch a worker was about to anchor: written (committed) before the transaction is
    sent, closed by ``mark_anchored`` or released when the chain never saw it."""

    intent_id: int
    fence: int  # the lease fence of the worker that wrote it
    root: bytes  # the batch's Merkle root (what BatchAnchored carries, indexed)
    record_ids: tuple[bytes, ...]  # in leaf order
    created_at: float  # database clock, unix seconds


@dataclass(frozen=True)
class RepairReport:
    """Outcome of :meth:`storage.abc.ReplicaRepairAPI.repair`. Every checked CID is counted in
    exactly one of ``healthy``, ``repaired``, ``degraded`` and ``unrecoverable``."""

    #: distinct CIDs examined
    checked: int = 0
    #: already pinned on at least replication_min reachable nodes
    healthy: int = 0
    #: re-pinned up to replication_min
    repaired: int = 0
    #: an intact copy exists but too few nodes could take a new one (still below the minimum)
    degraded: int = 0
    #: no intact copy on any reachable node (if ``unreachable_nodes`` is not empty, a later
    #: run may still find one there)
    unrecoverable: int = 0
    unrecoverable_cids: tuple[str, ...] = ()
    #: nodes that did not answer; they were neither read nor written
    unreachable_nodes: tuple[str, ...] = ()
