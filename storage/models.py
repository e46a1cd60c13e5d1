"""Plain records exchanged between the node and the storage interfaces.

Ids and hashes are raw ``bytes`` (32 bytes); addresses are EIP-55 checksummed strings.
Nothing here holds plaintext medical content: storage receives only ciphertext.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple


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
