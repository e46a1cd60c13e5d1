"""Abstract interfaces of key management. Implementations never expose key material:
not in return values (except unwrapped data keys, which callers use and drop), not in
``repr``, logs or error messages."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

from hsm.exceptions import HSMError, UnwrapError

_DERIVE_PREFIX = b"emr-node derive v1\x00"


def derive_message(label: str) -> bytes:
    """What every backend's ``derive_secret`` MACs for ``label`` (one domain-separated
    message, so a store gives the same secret whichever backend computes it). Raises
    ValueError for an empty label."""
    if not label:
        raise ValueError("a derivation label must not be empty")
    return _DERIVE_PREFIX + label.encode("utf-8")


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

    def unwrap_many(self, wrapped: Sequence[WrappedKey]) -> list[bytes | None]:
        """Unwrap several data keys, None where a blob does not unwrap (UnwrapError), so
        one damaged key does not sink a batch. Raises KeyNotFound for an unknown KEK
        version. One call is one audited batch (see node.audit.keystore)."""
        out: list[bytes | None] = []
        for w in wrapped:
            try:
                out.append(self.unwrap(w))
            except UnwrapError:
                out.append(None)
        return out

    @abstractmethod
    def signer(self) -> SignerAPI:
        """The node's transaction and message signer."""

    def derive_secret(self, label: str) -> bytes:
        """Return a 32-byte secret for ``label`` (HMAC-SHA256 under a key the store keeps
        for derivation only: never a KEK or the signing key).

        The same store gives the same secret for the same label, in every process that
        opens it, across restarts and KEK or signer rotations; different labels give
        independent secrets. For host-side keys that the node's processes must share
        without storing them anywhere else (the cache entries' HMAC key). The caller holds
        the result in memory only, like an unwrapped data key. Raises ValueError for an
        empty label and HSMError if the store cannot derive."""
        raise HSMError(f"{type(self).__name__} cannot derive secrets")

    def rotate_signer(self) -> SignerAPI:
        """Create a new signing key, kept beside the current one, and return its signer
        (or the one already pending: calling again after a crash resumes). ``signer()``
        stays the old key until :meth:`commit_signer`: the hospital's address moves in the
        Consortium by a governance vote first. Raises HSMError if unsupported."""
        raise HSMError(f"{type(self).__name__} cannot rotate its signing key")

    def pending_signer(self) -> SignerAPI | None:
        """The signer created by :meth:`rotate_signer` and not yet committed, if any."""
        return None

    def commit_signer(self) -> SignerAPI:
        """Make the pending signer current and destroy the old key for good; return the new
        signer. Raises HSMError when nothing is pending."""
        raise HSMError(f"{type(self).__name__} has no pending signing key")

    def close(self) -> None:  # noqa: B027 - optional hook
        """Log out / release the session."""
