"""SQLiteBlobStore: the conformance suite plus its specifics."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from storage.abc import BlobStoreAPI
from storage.backends.sqlite_blobs import SQLiteBlobStore
from storage.cid import cid_for
from tests.storage.conformance import BlobStoreConformance


class TestSQLiteBlobStore(BlobStoreConformance):
    def make_blob_store(self, location: Path) -> BlobStoreAPI:
        return SQLiteBlobStore(location / "blobs.sqlite")

    def corrupt_blob(self, store: BlobStoreAPI, cid: str, data: bytes) -> None:
        with sqlite3.connect(store._path) as conn:  # type: ignore[attr-defined]
            conn.execute("UPDATE blobs SET data = ? WHERE cid = ?", (data, cid))


def test_readers_in_many_threads_see_committed_batches(tmp_path: Path) -> None:
    store = SQLiteBlobStore(tmp_path / "b.sqlite")
    blobs = [bytes([i]) * 100 for i in range(200)]
    cids = store.put_many(blobs)
    errors: list[BaseException] = []

    def read_all() -> None:
        try:
            for cid, blob in zip(cids, blobs, strict=True):
                assert store.get(cid) == blob
        except BaseException as err:  # surfaced below
            errors.append(err)

    threads = [threading.Thread(target=read_all) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert cids == [cid_for(b) for b in blobs]
    store.close()
