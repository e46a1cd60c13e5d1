"""Envelope encryption of records: a fresh data key per record, wrapped by a KEK.

Sealed blob layout::

    version (1 byte) | nonce (12 bytes) | AES-256-GCM ciphertext | tag (16 bytes)

The caller's ``aad`` is authenticated, not stored: a blob opened with other associated data
fails. The version byte selects how the associated data is formed:

- version 1 (blobs written before version 2): the GCM associated data is ``aad`` itself
  (the node passed the record id). Still opened, no longer written by default.
- version 2: the GCM associated data is ``0x02 || aad``, so the version byte is
  authenticated too (the node passes the record's access-relevant metadata,
  ``node.flows.record_binding``).

A blob whose version byte is changed opens with other associated data and fails. Only the
blob goes to storage; the wrapped data key goes to the record index.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from hsm.abc import KeyStoreAPI, WrappedKey
from hsm.exceptions import DecryptionError

__all__ = [
    "BLOB_VERSION",
    "BLOB_VERSIONS",
    "SealedRecord",
    "blob_version",
    "open_sealed",
    "seal",
    "seal_many",
]

BLOB_VERSION = 2  # what seal() writes
BLOB_VERSIONS = (1, 2)  # what open_sealed() opens
_KEY_SIZE = 32
_NONCE_SIZE = 12
_TAG_SIZE = 16
_HEADER_SIZE = 1 + _NONCE_SIZE


@dataclass(frozen=True, slots=True)
class SealedRecord:
    """A record's ciphertext blob and its data key wrapped by a KEK."""

    blob: bytes
    wrapped_key: WrappedKey

    def __repr__(self) -> str:
        return (
            f"SealedRecord(blob=<{len(self.blob)} bytes>, "
            f"kek_version={self.wrapped_key.kek_version})"
        )


def _gcm_aad(version: int, aad: bytes) -> bytes:
    return aad if version == 1 else bytes((version,)) + aad


def _check_version(version: int) -> None:
    if version not in BLOB_VERSIONS:
        raise ValueError(f"unknown sealed blob version {version}")


def _encrypt(data_key: bytes, plaintext: bytes, aad: bytes, version: int) -> bytes:
    # A random 96-bit nonce is safe here: each data key encrypts exactly one message.
    nonce = secrets.token_bytes(_NONCE_SIZE)
    sealed = AESGCM(data_key).encrypt(nonce, plaintext, _gcm_aad(version, aad))
    return bytes((version,)) + nonce + sealed


def blob_version(blob: bytes) -> int:
    """The format version ``blob`` declares; DecryptionError if truncated or unknown. The
    byte is only a claim until the blob opens: a changed byte makes it fail."""
    if len(blob) < _HEADER_SIZE + _TAG_SIZE:
        raise DecryptionError("sealed blob is truncated")
    if blob[0] not in BLOB_VERSIONS:
        raise DecryptionError(f"unknown sealed blob version {blob[0]}")
    return blob[0]


def seal(
    plaintext: bytes, aad: bytes, keystore: KeyStoreAPI, *, version: int = BLOB_VERSION
) -> SealedRecord:
    """Encrypt ``plaintext`` under a new data key bound to ``aad``. ``version`` 1 exists
    to reproduce old blobs (tests, tools); the node writes the current version."""
    _check_version(version)
    data_key = secrets.token_bytes(_KEY_SIZE)
    wrapped = keystore.wrap(data_key)
    blob = _encrypt(data_key, plaintext, aad, version)
    # CPython cannot wipe immutable bytes; the key lives only in this frame.
    del data_key
    return SealedRecord(blob=blob, wrapped_key=wrapped)


def seal_many(
    items: Sequence[tuple[bytes, bytes]], keystore: KeyStoreAPI, *, version: int = BLOB_VERSION
) -> list[SealedRecord]:
    """Seal ``(plaintext, aad)`` pairs, wrapping all data keys in one keystore call."""
    _check_version(version)
    data_keys = [secrets.token_bytes(_KEY_SIZE) for _ in items]
    wrapped = keystore.wrap_many(data_keys)
    if len(wrapped) != len(data_keys):
        raise RuntimeError("key store returned a different number of wrapped keys")
    sealed = [
        SealedRecord(blob=_encrypt(key, plaintext, aad, version), wrapped_key=w)
        for key, (plaintext, aad), w in zip(data_keys, items, wrapped, strict=True)
    ]
    data_keys.clear()
    return sealed


def open_sealed(
    blob: bytes,
    wrapped_key: WrappedKey,
    aad: bytes | Callable[[int], bytes],
    keystore: KeyStoreAPI,
) -> bytes:
    """Return the plaintext of ``blob``.

    ``aad`` is the associated data, or a function from the blob's version to it (the
    associated data of a record differs between versions 1 and 2).

    Raises DecryptionError if the blob is malformed, altered or opened with another
    ``aad``; the key store's KeyNotFound / UnwrapError if the wrapped key is unusable.
    """
    version = blob_version(blob)
    associated = aad(version) if callable(aad) else aad
    data_key = keystore.unwrap(wrapped_key)
    if len(data_key) != _KEY_SIZE:
        raise DecryptionError("wrapped key is not an AES-256 data key")
    try:
        return AESGCM(data_key).decrypt(
            blob[1:_HEADER_SIZE], blob[_HEADER_SIZE:], _gcm_aad(version, associated)
        )
    except InvalidTag:
        raise DecryptionError("sealed blob failed authentication") from None
    finally:
        del data_key
