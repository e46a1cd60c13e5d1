"""Abstract interfaces of key management. Implementations never expose key material:
not in return values (except unwrapped data keys, which callers use and drop), not in
``repr``, logs or error messages."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class WrappedKey:
    """A data key wrapped (RFC 5649) by the key-encryption key of ``kek_version``."""

    kek_version: int
    blob: bytes


@dataclass(frozen=True, slots=True)
class EcdsaSignature:
    """A secp256k1 signature with low s (EIP-2) and the recovery bit."""

    r: int
    s: int
    y_parity: int  # 0 or 1


class SignerAPI(ABC):
    """Signs 32-byte digests with the node's secp256k1 key (the hospital's account)."""

    @property
    @abstractmethod
    def address(self) -> str:
        """The checksummed Ethereum address of the key."""

    @abstractmethod
    def sign_digest(self, digest: bytes) -> EcdsaSignature:
        """Sign a 32-byte digest. ``s`` is normalised to the lower half of the curve order
        and ``y_parity`` lets ``ecrecover`` return ``address``."""


class KeyStoreAPI(ABC):
    """Holds the master keys (KEKs) that wrap per-record data keys, and the node's signer."""

    @property
    @abstractmethod
    def current_kek_version(self) -> int:
        """Version of the KEK that wraps new data keys."""

    @abstractmethod
    def kek_versions(self) -> list[int]:
        """Every KEK version the store can still unwrap with, oldest first. Re-wrapping
        jobs use it to find what still refers to an old version."""

    @abstractmethod
    def rotate_kek(self) -> int:
        """Create a new KEK version, make it current and return it. Older versions stay
        available for unwrapping until destroyed."""

    @abstractmethod
    def destroy_kek(self, version: int) -> None:
        """Destroy KEK ``version`` for good: whatever it wrapped becomes unreadable
        (crypto-shredding). Raises HSMError for the current version (new records need it)
        and KeyNotFound for an unknown one. Callers re-wrap what they keep first."""

    @abstractmethod
    def wrap(self, data_key: bytes) -> WrappedKey:
        """Wrap a data key with the current KEK."""

    def wrap_many(self, data_keys: Sequence[bytes]) -> list[WrappedKey]:
        """Wrap several data keys (backends may batch)."""
        return [self.wrap(k) for k in data_keys]

    @abstractmethod
    def unwrap(self, wrapped: WrappedKey) -> bytes:
        """Return the data key. Raises KeyNotFound for an unknown KEK version and
        UnwrapError when the blob does not unwrap."""

    @abstractmethod
    def signer(self) -> SignerAPI:
        """The node's transaction and message signer."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Log out / release the session."""
