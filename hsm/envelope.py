"""Envelope encryption of records: a fresh data key per record, wrapped by a KEK.

Sealed blob layout (version 1)::

    0x01 | nonce (12 bytes) | AES-256-GCM ciphertext | tag (16 bytes)

The caller's ``aad`` (the node passes the record id) is authenticated, not stored: a blob
moved under another record fails to open. Only the blob goes to storage; the wrapped data
key goes to the record index.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from hsm.abc import KeyStoreAPI, WrappedKey
from hsm.exceptions import DecryptionError

__all__ = ["BLOB_VERSION", "SealedRecord", "open_sealed", "seal", "seal_many"]

BLOB_VERSION = 1
_VERSION_BYTE = bytes((BLOB_VERSION,))
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


def _encrypt(data_key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    # A random 96-bit nonce is safe here: each data key encrypts exactly one message.
    nonce = secrets.token_bytes(_NONCE_SIZE)
    return _VERSION_BYTE + nonce + AESGCM(data_key).encrypt(nonce, plaintext, aad)


def seal(plaintext: bytes, aad: bytes, keystore: KeyStoreAPI) -> SealedRecord:
    """Encrypt ``plaintext`` under a new data key bound to ``aad``."""
    data_key = secrets.token_bytes(_KEY_SIZE)
    wrapped = keystore.wrap(data_key)
    blob = _encrypt(data_key, plaintext, aad)
    # CPython cannot wipe immutable bytes; the key lives only in this frame.
    del data_key
    return SealedRecord(blob=blob, wrapped_key=wrapped)


def seal_many(items: Sequence[tuple[bytes, bytes]], keystore: KeyStoreAPI) -> list[SealedRecord]:
    """Seal ``(plaintext, aad)`` pairs, wrapping all data keys in one keystore call."""
    data_keys = [secrets.token_bytes(_KEY_SIZE) for _ in items]
    wrapped = keystore.wrap_many(data_keys)
    if len(wrapped) != len(data_keys):
        raise RuntimeError("key store returned a different number of wrapped keys")
    sealed = [
        SealedRecord(blob=_encrypt(key, plaintext, aad), wrapped_key=w)
        for key, (plaintext, aad), w in zip(data_keys, items, wrapped, strict=True)
    ]
    data_keys.clear()
    return sealed


def open_sealed(blob: bytes, wrapped_key: WrappedKey, aad: bytes, keystore: KeyStoreAPI) -> bytes:
    """Return the plaintext of ``blob``.

    Raises DecryptionError if the blob is malformed, altered or opened with another
    ``aad``; the key store's KeyNotFound / UnwrapError if the wrapped key is unusable.
    """
    if len(blob) < _HEADER_SIZE + _TAG_SIZE:
        raise DecryptionError("sealed blob is truncated")
    if blob[0] != BLOB_VERSION:
        raise DecryptionError(f"unknown sealed blob version {blob[0]}")
    data_key = keystore.unwrap(wrapped_key)
    if len(data_key) != _KEY_SIZE:
        raise DecryptionError("wrapped key is not an AES-256 data key")
    try:
        return AESGCM(data_key).decrypt(blob[1:_HEADER_SIZE], blob[_HEADER_SIZE:], aad)
    except InvalidTag:
        raise DecryptionError("sealed blob failed authentication") from None
    finally:
        del data_key
