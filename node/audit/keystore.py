"""``AuditedKeyStore``: a thin decorator that logs every key operation of any key store.

A narrow hook in the HAPI-FHIR manner: the software and PKCS#11 stores stay unaware of the
audit trail, and whatever wraps them (the node's wiring) gets every KEK generation,
rotation and destruction, every wrap/unwrap batch (as a count, so uploads stay fast) and
every signature in the key audit log. An operation is logged after it succeeded; what
failed raised to the caller, who logs it as any other error.
"""

from __future__ import annotations

from collections.abc import Sequence

from hsm.abc import EcdsaSignature, KeyStoreAPI, SignerAPI, WrappedKey
from node.audit.abc import KeyAuditLogAPI
from node.audit.key_log import KeyAction

__all__ = ["AuditedKeyStore", "AuditedSigner"]


class AuditedSigner(SignerAPI):
    """Logs each signature: the signer's address as actor, the digest as subject."""

    def __init__(self, inner: SignerAPI, log: KeyAuditLogAPI) -> None:
        self._inner = inner
        self._log = log

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._inner!r})"

    @property
    def inner(self) -> SignerAPI:
        return self._inner

    @property
    def address(self) -> str:
        return self._inner.address

    def sign_digest(self, digest: bytes) -> EcdsaSignature:
        sig = self._inner.sign_digest(digest)
        self._log.append(KeyAction.SIGN, "0x" + bytes(digest).hex(), actor=self._inner.address)
        return sig


class AuditedKeyStore(KeyStoreAPI):
    """Any KeyStoreAPI, with each operation appended to ``log``."""

    def __init__(self, inner: KeyStoreAPI, log: KeyAuditLogAPI) -> None:
        self._inner = inner
        self._log = log
        self._signer = AuditedSigner(inner.signer(), log)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._inner!r})"

    @property
    def inner(self) -> KeyStoreAPI:
        return self._inner

    @property
    def log(self) -> KeyAuditLogAPI:
        return self._log

    def record_created(self) -> None:
        """Log the generation of a new store's first KEK and signing key (the wiring calls
        it when it created the store rather than opened it)."""
        self._log.append(KeyAction.KEK_GENERATE, f"v{self._inner.current_kek_version}")
        self._log.append(KeyAction.KEK_GENERATE, f"signer {self._signer.address}")

    @property
    def current_kek_version(self) -> int:
        return self._inner.current_kek_version

    def kek_versions(self) -> list[int]:
        return self._inner.kek_versions()

    def rotate_kek(self) -> int:
        previous = self._inner.current_kek_version
        version = self._inner.rotate_kek()
        self._log.append(KeyAction.KEK_ROTATE, f"v{previous} -> v{version}")
        return version

    def destroy_kek(self, version: int) -> None:
        self._inner.destroy_kek(version)
        self._log.append(KeyAction.KEK_DESTROY, f"v{version}")

    def wrap(self, data_key: bytes) -> WrappedKey:
        wrapped = self._inner.wrap(data_key)
        self._log.append(KeyAction.WRAP_BATCH, f"count=1 kek=v{wrapped.kek_version}")
        return wrapped

    def wrap_many(self, data_keys: Sequence[bytes]) -> list[WrappedKey]:
        wrapped = self._inner.wrap_many(data_keys)
        if wrapped:
            self._log.append(
                KeyAction.WRAP_BATCH, f"count={len(wrapped)} kek=v{wrapped[0].kek_version}"
            )
        return wrapped

    def unwrap(self, wrapped: WrappedKey) -> bytes:
        data_key = self._inner.unwrap(wrapped)
        self._log.append(KeyAction.UNWRAP_BATCH, f"count=1 kek=v{wrapped.kek_version}")
        return data_key

    def unwrap_many(self, wrapped: Sequence[WrappedKey]) -> list[bytes | None]:
        data_keys = self._inner.unwrap_many(wrapped)
        if wrapped:
            versions = ",".join(f"v{v}" for v in sorted({w.kek_version for w in wrapped}))
            ok = sum(1 for k in data_keys if k is not None)
            self._log.append(KeyAction.UNWRAP_BATCH, f"count={ok} kek={versions}")
        return data_keys

    def signer(self) -> SignerAPI:
        return self._signer

    def rotate_signer(self) -> SignerAPI:
        pending = self._inner.pending_signer()
        new = self._inner.rotate_signer()
        if pending is None:  # a resumed rotation generated nothing
            self._log.append(
                KeyAction.SIGNER_ROTATE,
                f"pending new={new.address} current={self._signer.address}",
            )
        return AuditedSigner(new, self._log)

    def pending_signer(self) -> SignerAPI | None:
        pending = self._inner.pending_signer()
        return None if pending is None else AuditedSigner(pending, self._log)

    def commit_signer(self) -> SignerAPI:
        old = self._signer.address
        new = self._inner.commit_signer()
        self._signer = AuditedSigner(new, self._log)
        self._log.append(KeyAction.SIGNER_ROTATE, f"committed new={new.address} old={old}")
        self._log.append(KeyAction.SIGNER_DESTROY, old)
        return self._signer

    def derive_secret(self, label: str) -> bytes:
        secret = self._inner.derive_secret(label)
        self._log.append(KeyAction.KEY_DERIVE, label)
        return secret

    def close(self) -> None:
        self._inner.close()
