"""LocalBlobStore: the conformance suite plus file-system specifics."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

import storage.backends.local as local_module
from storage.abc import BlobStoreAPI
from storage.backends.local import LocalBlobStore
from storage.cid import cid_for, parse_cid
from storage.exceptions import IntegrityError
from tests.storage.conformance import BlobStoreConformance


def blob_path(root: Path, cid: str) -> Path:
    return root / "blobs" / parse_cid(cid).hex()[:2] / cid


class TestLocalBlobStore(BlobStoreConformance):
    def make_blob_store(self, location: Path) -> BlobStoreAPI:
        return LocalBlobStore(location / "blobstore")

    def corrupt_blob(self, store: BlobStoreAPI, cid: str, data: bytes) -> None:
        blob_path(store._root, cid).write_bytes(data)  # type: ignore[attr-defined]


def test_layout_and_permissions(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    cid = store.put(b"ciphertext")
    path = blob_path(tmp_path, cid)
    assert path.read_bytes() == b"ciphertext"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert list((tmp_path / "tmp").iterdir()) == []


def test_put_rewrites_a_damaged_blob(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    cid = store.put(b"original")
    blob_path(tmp_path, cid).write_bytes(b"0riginal")
    with pytest.raises(IntegrityError):
        store.get(cid)
    assert store.put(b"original") == cid
    assert store.get(cid) == b"original"


def test_put_many_fsyncs_each_directory_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = LocalBlobStore(tmp_path)
    synced: list[Path] = []
    monkeypatch.setattr(local_module, "_fsync_dir", synced.append)
    blobs = [os.urandom(32) for _ in range(600)]
    store.put_many(blobs)
    touched = {blob_path(tmp_path, cid_for(b)).parent for b in blobs}
    # One fsync per touched fan-out directory, not one per file.
    assert sorted(synced) == sorted(touched)
    assert len(synced) <= 256 < len(blobs)

    synced.clear()
    store.put_many(blobs)  # already stored: nothing to make durable
    assert synced == []


def test_stale_temporary_files_are_removed(tmp_path: Path) -> None:
    LocalBlobStore(tmp_path).put(b"x")
    (tmp_path / "tmp" / "interrupted").write_bytes(b"half a blob")
    LocalBlobStore(tmp_path)
    assert list((tmp_path / "tmp").iterdir()) == []


def test_repr_shows_no_content(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    store.put(b"secret ciphertext")
    assert "secret" not in repr(store)
