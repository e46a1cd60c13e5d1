"""Blob store on the local file system (the embedded default).

Layout under ``root``::

    blobs/<first byte of the sha256, two hex digits>/<CID>   one file per blob
    tmp/                                                    staging for atomic writes

Files are named by their CID so an operator can find a record's blob from the API or an
IPFS node. One level of 256 fan-out directories keeps directories small (about 40,000
files each at ten million blobs) while a batch touches at most 256 directories, which
bounds the directory fsyncs of ``put_many``.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import secrets
from collections.abc import Iterable, Sequence
from pathlib import Path

from storage.abc import BlobStoreAPI
from storage.cid import cid_from_digest, parse_cid
from storage.exceptions import BackendUnavailable, BlobNotFound, IntegrityError

__all__ = ["LocalBlobStore"]

logger = logging.getLogger(__name__)

_FANOUT = [f"{i:02x}" for i in range(256)]


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalBlobStore(BlobStoreAPI):
    """Content-addressed files under ``root``; every write is atomic and fsynced."""

    def __init__(self, root: Path) -> None:
        self._root = Path(root)
        self._blobs = self._root / "blobs"
        self._tmp = self._root / "tmp"
        try:
            self._blobs.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._tmp.mkdir(mode=0o700, exist_ok=True)
            created = False
            for name in _FANOUT:
                fan = self._blobs / name
                if not fan.is_dir():
                    fan.mkdir(mode=0o700)
                    created = True
            if created:
                # Fan-out directories exist before any blob lands in them, so the hot
                # path never has to make a new directory entry durable in ``blobs/``.
                _fsync_dir(self._blobs)
                _fsync_dir(self._root)
            # Leftovers of writes interrupted by a crash were never renamed into place.
            for stale in self._tmp.iterdir():
                stale.unlink(missing_ok=True)
        except OSError as exc:
            raise BackendUnavailable("blob store directory is not usable") from exc

    def __repr__(self) -> str:
        return f"{type(self).__name__}(root={str(self._root)!r})"

    def _path(self, digest: bytes) -> Path:
        return self._blobs / f"{digest[0]:02x}" / cid_from_digest(digest)

    def _already_stored(self, path: Path, data: bytes) -> bool:
        # Compare the bytes, not just existence: a put of the same content rewrites a blob
        # that was damaged at rest instead of trusting it.
        try:
            with open(path, "rb") as f:
                return f.read() == data
        except FileNotFoundError:
            return False

    def _stage(self, data: bytes) -> Path:
        tmp = self._tmp / secrets.token_hex(16)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with open(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        return tmp

    def _write(self, items: Iterable[tuple[bytes, bytes]]) -> None:
        """Write ``(digest, data)`` pairs: stage + fsync each file, rename all into place,
        then fsync each touched directory once."""
        staged: list[tuple[Path, Path]] = []
        try:
            for digest, data in items:
                target = self._path(digest)
                if self._already_stored(target, data):
                    continue
                staged.append((self._stage(data), target))
            dirs: set[Path] = set()
            for tmp, target in staged:
                os.replace(tmp, target)
                dirs.add(target.parent)
            staged.clear()
            for directory in dirs:
                _fsync_dir(directory)
        except OSError as exc:
            raise BackendUnavailable("cannot write to the blob store") from exc
        finally:
            for tmp, _ in staged:
                with contextlib.suppress(OSError):
                    tmp.unlink(missing_ok=True)

    def put(self, data: bytes) -> str:
        digest = hashlib.sha256(data).digest()
        self._write([(digest, data)])
        return cid_from_digest(digest)

    def put_many(self, blobs: Sequence[bytes]) -> list[str]:
        digests = [hashlib.sha256(data).digest() for data in blobs]
        # A blob repeated within the batch is written once.
        unique = dict(zip(digests, blobs, strict=True))
        self._write(unique.items())
        return [cid_from_digest(d) for d in digests]

    def get(self, cid: str) -> bytes:
        digest = parse_cid(cid)
        try:
            with open(self._path(digest), "rb") as f:
                data = f.read()
        except FileNotFoundError:
            raise BlobNotFound(f"no blob stored under {cid}") from None
        except OSError as exc:
            raise BackendUnavailable("cannot read from the blob store") from exc
        if hashlib.sha256(data).digest() != digest:
            logger.warning("blob %s failed its integrity check", cid)
            raise IntegrityError(f"stored bytes do not match {cid}")
        return data

    def has(self, cid: str) -> bool:
        return self._path(parse_cid(cid)).is_file()

    def delete(self, cid: str) -> None:
        path = self._path(parse_cid(cid))
        try:
            path.unlink()
        except FileNotFoundError:
            return
        except OSError as exc:
            raise BackendUnavailable("cannot delete from the blob store") from exc
        # Make the removal durable: an erased record must not come back after a crash.
        try:
            _fsync_dir(path.parent)
        except OSError as exc:
            raise BackendUnavailable("cannot delete from the blob store") from exc
