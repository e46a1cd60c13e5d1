"""Erasure follow-ups survive outages: the key is shredded at once, the blob purge and the
tombstone wait in the index until the blob store and the chain come back."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, cast

import pytest

from node.chain.abc import ChainClientAPI
from node.chain.exceptions import ChainUnavailable
from node.chain.models import TxResult
from node.exceptions import InvalidRequest
from node.flows.erase_record import erase_records, finish_erasures, patient_record_ids
from storage.backends.memory import InMemoryLRUCache
from storage.backends.sqlite import SQLiteRecordIndex
from storage.backends.sqlite_blobs import SQLiteBlobStore
from storage.exceptions import BackendUnavailable, RecordNotFound
from storage.models import RecordRow

PATIENT = "0x" + "11" * 20
HOSPITAL = "0x" + "22" * 20


class FlakyChain:
    """Only what the eraser uses; down until ``up`` is set."""

    def __init__(self) -> None:
        self.up = False
        self.sent: list[tuple[list[bytes], bytes]] = []

    def erase_records(self, record_ids: Sequence[bytes], reason_hash: bytes) -> TxResult:
        if not self.up:
            raise ChainUnavailable("the chain node cannot be reached")
        self.sent.append((list(record_ids), reason_hash))
        return TxResult(bytes([len(self.sent)]) * 32, len(self.sent))


class FlakyBlobs(SQLiteBlobStore):
    """A replicated store with one replica down: deletes fail until ``up`` is set."""

    up = False

    def delete(self, cid: str) -> None:
        if not self.up:
            raise BackendUnavailable(f"{cid} was unpinned on 1 of 2 IPFS nodes")
        super().delete(cid)


@pytest.fixture
def index(tmp_path: Path) -> Iterator[SQLiteRecordIndex]:
    idx = SQLiteRecordIndex(tmp_path / "index.sqlite")
    yield idx
    idx.close()


def _rows(blobs: SQLiteBlobStore, n: int) -> list[RecordRow]:
    rows = []
    for i in range(n):
        cid = blobs.put(f"ciphertext {i}".encode())
        rows.append(
            RecordRow(
                record_id=bytes([i + 1]) * 32,
                patient=PATIENT,
                category="note",
                content_type="text/plain",
                cid=cid,
                content_hash=bytes([i + 100]) * 32,
                size=10,
                wrapped_key=b"\x05" * 40,
                kek_version=1,
                creator=HOSPITAL,
                created_at=1_000 + i,
            )
        )
    return rows


def test_erase_survives_chain_and_replica_outages(tmp_path: Path, index: SQLiteRecordIndex) -> None:
    blobs = FlakyBlobs(tmp_path / "blobs.sqlite")
    cache = InMemoryLRUCache(1 << 20)
    chain = FlakyChain()
    rows = _rows(blobs, 3)
    index.add_records(rows)
    for row in rows:
        cache.set(f"blob:{row.cid}", blobs.get(row.cid))
    ids = patient_record_ids(PATIENT, index=index)
    assert ids == [r.record_id for r in reversed(rows)]  # newest first
    target = [rows[0].record_id, rows[1].record_id]

    result = erase_records(target, "court order", index=index, now=2_000)
    assert result.erased == target and result.already_erased == []
    # Keys are gone at once, whatever else is down.
    assert all(index.get_record(rid).wrapped_key == b"" for rid in target)
    args: dict[str, Any] = {
        "index": index,
        "blobs": blobs,
        "cache": cache,
        "chain": cast(ChainClientAPI, chain),
    }
    assert finish_erasures(**args) == 0  # nothing could progress
    assert len(index.pending_erasures(10)) == 2
    assert all(cache.get(f"blob:{r.cid}") is None for r in rows[:2])  # evicted anyway
    assert cache.get(f"blob:{rows[2].cid}") is not None

    chain.up = True
    assert finish_erasures(**args) == 2  # tombstones, in one transaction
    assert chain.sent == [(target, result.reason_hash)]
    assert all(index.get_record(rid).erase_tx == b"\x01" * 32 for rid in target)
    assert all(blobs.has(r.cid) for r in rows)  # the replica is still down

    blobs.up = True
    assert finish_erasures(**args) == 2
    assert index.pending_erasures(10) == []
    assert [blobs.has(r.cid) for r in rows] == [False, False, True]
    assert finish_erasures(**args) == 0
    assert len(chain.sent) == 1  # nothing sent twice
    blobs.close()


def test_erase_input_is_checked_before_anything_is_shredded(
    tmp_path: Path, index: SQLiteRecordIndex
) -> None:
    blobs = SQLiteBlobStore(tmp_path / "blobs.sqlite")
    rows = _rows(blobs, 1)
    index.add_records(rows)
    with pytest.raises(InvalidRequest):
        erase_records([rows[0].record_id], "  ", index=index, now=1)
    with pytest.raises(InvalidRequest):
        erase_records([], "reason", index=index, now=1)
    with pytest.raises(RecordNotFound):
        erase_records([rows[0].record_id, b"\x09" * 32], "reason", index=index, now=1)
    assert not index.get_record(rows[0].record_id).erased
    blobs.close()
