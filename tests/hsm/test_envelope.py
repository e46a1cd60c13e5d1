"""Sealed blob versions: version 2 authenticates its version byte, version 1 blobs (written
before it) still open, and a blob presented under the other version does not."""

from __future__ import annotations

from pathlib import Path

import pytest

from hsm.envelope import BLOB_VERSION, blob_version, open_sealed, seal, seal_many
from hsm.exceptions import DecryptionError
from hsm.software import SoftwareKeyStore

RECORD = b"\x07" * 32


@pytest.fixture
def keystore(tmp_path: Path) -> SoftwareKeyStore:
    return SoftwareKeyStore.create(tmp_path / "keystore.json", "passphrase", scrypt_n=2**4)


def _as_version(blob: bytes, version: int) -> bytes:
    return bytes((version,)) + blob[1:]


def test_new_blobs_are_version_2(keystore: SoftwareKeyStore) -> None:
    assert BLOB_VERSION == 2
    assert blob_version(seal(b"x", RECORD, keystore).blob) == 2
    assert all(blob_version(s.blob) == 2 for s in seal_many([(b"a", RECORD)], keystore))


def test_version_1_blobs_still_open(keystore: SoftwareKeyStore) -> None:
    old = seal(b"sealed long ago", RECORD, keystore, version=1)
    assert old.blob[0] == 1
    assert open_sealed(old.blob, old.wrapped_key, RECORD, keystore) == b"sealed long ago"
    [many] = seal_many([(b"batch", RECORD)], keystore, version=1)
    assert open_sealed(many.blob, many.wrapped_key, RECORD, keystore) == b"batch"


def test_the_version_byte_is_authenticated(keystore: SoftwareKeyStore) -> None:
    new = seal(b"v2 body", RECORD, keystore)
    old = seal(b"v1 body", RECORD, keystore, version=1)
    # Same associated data, other version: the GCM associated data differs, so neither opens.
    with pytest.raises(DecryptionError):
        open_sealed(_as_version(new.blob, 1), new.wrapped_key, RECORD, keystore)
    with pytest.raises(DecryptionError):
        open_sealed(_as_version(old.blob, 2), old.wrapped_key, RECORD, keystore)
    # Nor with the associated data each version would use for a record.
    per_version = {1: RECORD, 2: RECORD + b"bound metadata"}
    bound = seal(b"v2 body", per_version[2], keystore)
    assert open_sealed(bound.blob, bound.wrapped_key, per_version.__getitem__, keystore) == (
        b"v2 body"
    )
    with pytest.raises(DecryptionError):
        open_sealed(
            _as_version(bound.blob, 1), bound.wrapped_key, per_version.__getitem__, keystore
        )


def test_associated_data_is_chosen_by_the_blob_version(keystore: SoftwareKeyStore) -> None:
    asked: list[int] = []

    def aad(version: int) -> bytes:
        asked.append(version)
        return RECORD

    for version in (1, 2):
        s = seal(b"body", RECORD, keystore, version=version)
        assert open_sealed(s.blob, s.wrapped_key, aad, keystore) == b"body"
    assert asked == [1, 2]


def test_unknown_versions(keystore: SoftwareKeyStore) -> None:
    for version in (0, 3, 255):
        with pytest.raises(ValueError):
            seal(b"x", RECORD, keystore, version=version)
        with pytest.raises(ValueError):
            seal_many([(b"x", RECORD)], keystore, version=version)
    s = seal(b"x", RECORD, keystore)
    for version in (0, 3):
        with pytest.raises(DecryptionError, match="unknown"):
            blob_version(_as_version(s.blob, version))
        with pytest.raises(DecryptionError, match="unknown"):
            open_sealed(_as_version(s.blob, version), s.wrapped_key, RECORD, keystore)
    with pytest.raises(DecryptionError, match="truncated"):
        blob_version(s.blob[:20])
