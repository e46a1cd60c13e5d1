"""PKCS#11 key store: KEKs and the node's signing key live in an HSM and never leave it.

Token objects (all CKA_TOKEN, CKA_PRIVATE)::

    kek-v1, kek-v2, ...   AES-256, CKA_EXTRACTABLE false, CKA_SENSITIVE true, wrap/unwrap only
    node-signer-v1        secp256k1 key pair (private half sensitive, not extractable)
    node-derive-v1        256-bit generic secret, sensitive, not extractable, CKM_SHA256_HMAC
                          sign only: ``derive_secret`` (the same HMAC as the software store)

The current KEK is the highest version on the token. Data keys are wrapped with
CKM_AES_KEY_WRAP_PAD (RFC 5649), the same bytes the software store produces with
``cryptography``'s ``aes_key_wrap_with_padding``: a data key enters the token only as a
short-lived extractable session object (a token wraps only extractable keys) and unwrapped
keys come back the same way, so records stay host-side AES-GCM (faster, see
scripts/bench_hsm.py) while the KEK stays inside.

Signing uses CKM_ECDSA on the 32-byte digest; the token returns raw ``r || s``, s is moved
to the low half (EIP-2) and the recovery bit found host-side against the token's public key.

Login state is per process and token in PKCS#11, so one store uses one session behind a
lock: the upload batcher (wrap_many) and the chain client (sign) then never race on it.
"""

from __future__ import annotations

import logging
import re
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pkcs11
from eth_keys import keys
from eth_keys.constants import SECPK1_N
from pkcs11 import Attribute, KeyType, Mechanism, MechanismFlag, ObjectClass
from pkcs11 import exceptions as p11
from pkcs11.util.ec import encode_named_curve_parameters

from hsm.abc import EcdsaSignature, KeyStoreAPI, SignerAPI, WrappedKey, derive_message
from hsm.exceptions import (
    HSMError,
    KeyNotFound,
    KeyStoreLocked,
    ModuleLoadError,
    TokenNotFound,
    UnwrapError,
    WrongPin,
)

__all__ = ["DEFAULT_MODULE", "SIGNER_LABEL", "Pkcs11KeyStore", "Pkcs11Signer"]

logger = logging.getLogger(__name__)

DEFAULT_MODULE = Path("/usr/lib/softhsm/libsofthsm2.so")
SIGNER_LABEL = "node-signer-v1"
DERIVE_LABEL = "node-derive-v1"
# Signing keys by version: the lowest present is current, a higher one is a pending rotation.
_SIGNER_VERSION = re.compile(r"node-signer-v([1-9][0-9]*)")
_KEK_LABEL = re.compile(r"kek-v([1-9][0-9]*)")
_KEK_BITS = 256
_WRAP = Mechanism.AES_KEY_WRAP_PAD
_SECP256K1 = encode_named_curve_parameters("secp256k1")
# A data key exists in the token only as a session object that can be read back.
_CLEAR_SESSION_KEY: dict[Attribute, Any] = {
    Attribute.TOKEN: False,
    Attribute.SENSITIVE: False,
    Attribute.EXTRACTABLE: True,
}

T = TypeVar("T")


#: Seconds between looks at the token's KEK objects: another process of the node may have
#: rotated (or destroyed) a KEK; an unknown version is looked up at once.
KEK_REFRESH = 2.0


def _signer_label(version: int) -> str:
    return f"node-signer-v{version}"


def _kek_label(version: int) -> str:
    return f"kek-v{version}"


def _uncompressed_point(ec_point: bytes) -> bytes:
    """The 64-byte x || y of CKA_EC_POINT (a DER OCTET STRING of 04 || x || y; some tokens
    return the bare point)."""
    if len(ec_point) == 67 and ec_point[:3] == b"\x04\x41\x04":
        return ec_point[3:]
    if len(ec_point) == 65 and ec_point[0] == 0x04:
        return ec_point[1:]
    raise HSMError("the token's signing public key is not an uncompressed secp256k1 point")


class Pkcs11Signer(SignerAPI):
    """Signs digests with the token's secp256k1 private key (CKM_ECDSA)."""

    def __init__(self, store: Pkcs11KeyStore, private_key: Any, public_key: bytes) -> None:
        self._store = store
        self._private_key = private_key
        self._public_key = keys.PublicKey(public_key)
        self._address = self._public_key.to_checksum_address()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(address={self._address})"

    @property
    def address(self) -> str:
        return self._address

    def sign_digest(self, digest: bytes) -> EcdsaSignature:
        if len(digest) != 32:
            raise ValueError("a digest is 32 bytes")
        digest = bytes(digest)
        raw = self._store._call(
            "sign", lambda: self._private_key.sign(digest, mechanism=Mechanism.ECDSA)
        )
        if len(raw) != 64:
            raise HSMError("the token returned a malformed ECDSA signature")
        r, s = int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")
        if s > SECPK1_N // 2:  # EIP-2: about half of the token's signatures have high s
            s = SECPK1_N - s
        for y_parity in (0, 1):
            try:
                candidate = keys.Signature(vrs=(y_parity, r, s))
                if candidate.recover_public_key_from_msg_hash(digest) == self._public_key:
                    return EcdsaSignature(r=r, s=s, y_parity=y_parity)
            except Exception:  # eth-keys rejects out-of-range values; try the other parity
                continue
        raise HSMError("the token's signature does not recover to its public key")


class Pkcs11KeyStore(KeyStoreAPI):
    """KEKs and the node's signer in a PKCS#11 token. Build it with :meth:`open`."""

    def __init__(
        self,
        *,
        module_path: Path,
        token_label: str,
        session: Any,
        signer_label: str = SIGNER_LABEL,
    ) -> None:
        self._module_path = module_path
        self._token_label = token_label
        self._session: Any = session
        self._lock = threading.RLock()
        # Copy-on-write under the lock: {version: KEK handle}.
        self._keks: dict[int, Any] = {}
        self._current = 0
        self._loaded_at = 0.0  # when the KEK objects were last listed (_load_keks)
        self._signer: Pkcs11Signer | None = None
        self._pending: Pkcs11Signer | None = None
        # Version of the current signing key; None for a custom label (no rotation).
        self._signer_version: int | None = None
        self._derive_key: Any = None
        with self._lock:
            self._load_keks()
            if not self._keks:
                self._generate_kek(1)
            self._derive_key = self._load_derive_key()
            if signer_label != SIGNER_LABEL:
                self._signer = self._load_signer(signer_label)
            else:
                versions = self._signer_versions()
                current = min(versions, default=1)
                self._signer = self._load_signer(_signer_label(current))
                self._signer_version = current
                if len(versions) > 2:
                    raise HSMError(f"token holds signing keys of versions {versions}")
                if max(versions, default=current) > current:
                    self._pending = self._load_signer(_signer_label(max(versions)))

    def __repr__(self) -> str:
        address = self._signer.address if self._signer is not None else None
        return (
            f"{type(self).__name__}(module={str(self._module_path)!r}, "
            f"token={self._token_label!r}, kek_versions={sorted(self._keks)}, address={address})"
        )

    @classmethod
    def open(
        cls,
        module_path: Path | str,
        token_label: str,
        pin: str,
        *,
        signer_label: str = SIGNER_LABEL,
    ) -> Pkcs11KeyStore:
        """Log in to ``token_label`` through the module at ``module_path``.

        Creates KEK v1 and the signing key pair on first use. Raises ModuleLoadError,
        TokenNotFound or WrongPin; none of them (nor the log) quotes the PIN.
        """
        module_path = Path(module_path)
        if not module_path.is_file():
            raise ModuleLoadError(f"no PKCS#11 module at {module_path}")
        try:
            lib = pkcs11.lib(str(module_path))
        except p11.PKCS11Error as exc:
            raise ModuleLoadError(f"cannot load PKCS#11 module {module_path}: {exc}") from None
        try:
            token = lib.get_token(token_label=token_label)
        except p11.NoSuchToken:
            raise TokenNotFound(
                f"no PKCS#11 token labelled {token_label!r} in {module_path}"
            ) from None
        except p11.MultipleTokensReturned:
            raise TokenNotFound(f"several PKCS#11 tokens are labelled {token_label!r}") from None
        if not pin:
            raise WrongPin(f"no PIN given for token {token_label!r}")
        try:
            session = token.open(rw=True, user_pin=pin)
        except (p11.PinIncorrect, p11.PinLenRange, p11.PinInvalid):
            raise WrongPin(f"token {token_label!r} refused the PIN") from None
        except p11.PinLocked:
            raise WrongPin(f"the PIN of token {token_label!r} is locked") from None
        except p11.UserAlreadyLoggedIn:
            raise HSMError(
                f"token {token_label!r} is already open in this process; close that store first"
            ) from None
        except p11.PKCS11Error as exc:
            reason = type(exc).__name__
            raise HSMError(f"cannot log in to token {token_label!r}: {reason}") from None
        try:
            store = cls(
                module_path=module_path,
                token_label=token_label,
                session=session,
                signer_label=signer_label,
            )
        except BaseException:
            session.close()
            raise
        logger.info("opened PKCS#11 token %r: %r", token_label, store)
        return store

    # -- session ------------------------------------------------------------------------

    def _call(self, what: str, operation: Callable[[], T]) -> T:
        """Run ``operation`` on the session under the lock; token errors become HSMError."""
        with self._lock:
            if self._session is None:
                raise KeyStoreLocked("key store is closed")
            try:
                return operation()
            except p11.PKCS11Error as exc:
                raise HSMError(f"PKCS#11 {what} failed: {type(exc).__name__}") from exc

    def _load_keks(self) -> None:
        keks: dict[int, Any] = {}
        for obj in self._session.get_objects(
            {Attribute.TOKEN: True, Attribute.CLASS: ObjectClass.SECRET_KEY}
        ):
            match = _KEK_LABEL.fullmatch(obj[Attribute.LABEL] or "")
            if match is None:
                continue
            version = int(match.group(1))
            if version in keks:
                raise HSMError(f"token holds two keys labelled {_kek_label(version)}")
            if obj[Attribute.EXTRACTABLE] or not obj[Attribute.SENSITIVE]:
                raise HSMError(f"{_kek_label(version)} is extractable; refusing to use it")
            keks[version] = obj
        self._keks = keks
        self._current = max(keks, default=0)
        self._loaded_at = time.monotonic()

    def _generate_kek(self, version: int) -> None:
        key = self._session.generate_key(
            KeyType.AES,
            _KEK_BITS,
            label=_kek_label(version),
            id=_kek_label(version).encode(),
            store=True,
            capabilities=MechanismFlag.WRAP | MechanismFlag.UNWRAP,
            template={
                Attribute.PRIVATE: True,
                Attribute.SENSITIVE: True,
                Attribute.EXTRACTABLE: False,
                Attribute.ENCRYPT: False,
                Attribute.DECRYPT: False,
            },
        )
        self._keks = {**self._keks, version: key}
        self._current = version
        logger.info("generated %s in token %r", _kek_label(version), self._token_label)

    def _load_derive_key(self) -> Any:
        """The derivation key, generated on first open. Should two processes create one at
        once, every process uses the one with the lowest CKA_ID (random at creation)."""
        template = {
            Attribute.TOKEN: True,
            Attribute.CLASS: ObjectClass.SECRET_KEY,
            Attribute.LABEL: DERIVE_LABEL,
        }
        found = list(self._session.get_objects(template))
        if not found:
            self._session.generate_key(
                KeyType.GENERIC_SECRET,
                _KEK_BITS,
                label=DERIVE_LABEL,
                id=secrets.token_bytes(16),
                store=True,
                capabilities=MechanismFlag.SIGN,
                template={
                    Attribute.PRIVATE: True,
                    Attribute.SENSITIVE: True,
                    Attribute.EXTRACTABLE: False,
                    Attribute.VERIFY: False,
                    Attribute.DERIVE: False,
                    Attribute.ENCRYPT: False,
                    Attribute.DECRYPT: False,
                    Attribute.WRAP: False,
                    Attribute.UNWRAP: False,
                },
            )
            logger.info("generated %s in token %r", DERIVE_LABEL, self._token_label)
            found = list(self._session.get_objects(template))
        key = min(found, key=lambda obj: bytes(obj[Attribute.ID] or b""))
        if key[Attribute.EXTRACTABLE] or not key[Attribute.SENSITIVE]:
            raise HSMError(f"{DERIVE_LABEL} is extractable; refusing to use it")
        return key

    def _signer_versions(self) -> list[int]:
        found = set()
        for obj in self._session.get_objects(
            {Attribute.TOKEN: True, Attribute.CLASS: ObjectClass.PRIVATE_KEY}
        ):
            match = _SIGNER_VERSION.fullmatch(obj[Attribute.LABEL] or "")
            if match is not None:
                found.add(int(match.group(1)))
        return sorted(found)

    def _load_signer(self, label: str) -> Pkcs11Signer:
        def find(object_class: ObjectClass) -> list[Any]:
            template = {
                Attribute.TOKEN: True,
                Attribute.CLASS: object_class,
                Attribute.LABEL: label,
            }
            return list(self._session.get_objects(template))

        privates, publics = find(ObjectClass.PRIVATE_KEY), find(ObjectClass.PUBLIC_KEY)
        if len(privates) > 1 or len(publics) > 1:
            raise HSMError(f"token holds several keys labelled {label!r}")
        if not privates:
            if publics:
                raise HSMError(f"token holds the public half of {label!r} but not the private")
            public, private = self._session.generate_keypair(
                KeyType.EC,
                store=True,
                label=label,
                id=label.encode(),
                public_template={Attribute.EC_PARAMS: _SECP256K1, Attribute.VERIFY: True},
                private_template={
                    Attribute.PRIVATE: True,
                    Attribute.SENSITIVE: True,
                    Attribute.EXTRACTABLE: False,
                    Attribute.SIGN: True,
                    Attribute.DERIVE: False,
                },
            )
            logger.info("generated signing key %r in token %r", label, self._token_label)
        elif not publics:
            raise HSMError(f"token holds the private half of {label!r} but not the public")
        else:
            public, private = publics[0], privates[0]
        if public[Attribute.EC_PARAMS] != _SECP256K1:
            raise HSMError(f"signing key {label!r} is not on secp256k1")
        point = _uncompressed_point(public[Attribute.EC_POINT])
        return Pkcs11Signer(self, private, point)

    def _active(self) -> tuple[int, Any]:
        if self._session is None:
            raise KeyStoreLocked("key store is closed")
        if time.monotonic() - self._loaded_at >= KEK_REFRESH:
            # Other processes of the node share the token and may have rotated or
            # destroyed a KEK: look at the token's KEK objects again.
            self._call("KEK refresh", self._load_keks)
        return self._current, self._keks[self._current]

    # -- KeyStoreAPI --------------------------------------------------------------------

    @property
    def current_kek_version(self) -> int:
        with self._lock:
            return self._active()[0]

    def kek_versions(self) -> list[int]:
        with self._lock:
            self._active()
            return sorted(self._keks)

    def rotate_kek(self) -> int:
        """Generate the next KEK version in the token and make it current."""

        def rotate() -> int:
            self._load_keks()  # another process on the same token may have rotated
            version = self._current + 1
            self._generate_kek(version)
            return version

        version = self._call("KEK rotation", rotate)
        logger.info("KEK rotated to version %d in token %r", version, self._token_label)
        return version

    def destroy_kek(self, version: int) -> None:
        """Destroy the token object of KEK ``version`` (C_DestroyObject)."""

        def destroy() -> None:
            current, _ = self._active()
            if version == current:
                raise HSMError(f"KEK version {version} is current; rotate before destroying it")
            key = self._keks.get(version)
            if key is None:
                raise KeyNotFound(f"no KEK version {version}")
            key.destroy()
            self._keks = {v: k for v, k in self._keks.items() if v != version}

        self._call("KEK destruction", destroy)
        logger.info("destroyed %s in token %r", _kek_label(version), self._token_label)

    def wrap(self, data_key: bytes) -> WrappedKey:
        return self.wrap_many([data_key])[0]

    def wrap_many(self, data_keys: Sequence[bytes]) -> list[WrappedKey]:
        for key in data_keys:
            # SoftHSM 2.6 pads lengths that are not a multiple of 8 differently from
            # RFC 5649 (measured); data keys are 16 or 32 bytes.
            if len(key) < 16 or len(key) % 8:
                raise ValueError("a data key is at least 16 bytes, in multiples of 8")

        def wrap_all() -> list[WrappedKey]:
            # One KEK for the whole batch even if rotate_kek runs concurrently.
            version, kek = self._active()
            return [WrappedKey(kek_version=version, blob=self._wrap_one(kek, k)) for k in data_keys]

        return self._call("wrap", wrap_all)

    def _wrap_one(self, kek: Any, data_key: bytes) -> bytes:
        session_key = self._session.create_object(
            {
                Attribute.CLASS: ObjectClass.SECRET_KEY,
                Attribute.KEY_TYPE: KeyType.GENERIC_SECRET,
                Attribute.VALUE: bytes(data_key),
                **_CLEAR_SESSION_KEY,
            }
        )
        try:
            return bytes(kek.wrap_key(session_key, mechanism=_WRAP))
        finally:
            session_key.destroy()

    def unwrap(self, wrapped: WrappedKey) -> bytes:
        with self._lock:
            self._active()
            kek = self._keks.get(wrapped.kek_version)
            if kek is None:  # made by another process since: look at the token again
                self._call("KEK refresh", self._load_keks)
                kek = self._keks.get(wrapped.kek_version)
            if kek is None:
                raise KeyNotFound(f"no KEK version {wrapped.kek_version}")
            blob = bytes(wrapped.blob)
            failure = UnwrapError(
                f"wrapped key does not unwrap with KEK version {wrapped.kek_version}"
            )
            if len(blob) < 16 or len(blob) % 8:
                raise failure
            try:
                session_key = kek.unwrap_key(
                    ObjectClass.SECRET_KEY,
                    KeyType.GENERIC_SECRET,
                    blob,
                    mechanism=_WRAP,
                    template=dict(_CLEAR_SESSION_KEY),
                )
            except p11.PKCS11Error as exc:
                raise failure from exc
            try:
                return bytes(session_key[Attribute.VALUE])
            except p11.PKCS11Error as exc:
                raise HSMError("cannot read an unwrapped data key back from the token") from exc
            finally:
                session_key.destroy()

    def derive_secret(self, label: str) -> bytes:
        message = derive_message(label)

        def mac() -> bytes:
            if self._derive_key is None:
                raise KeyStoreLocked("key store is closed")
            return bytes(self._derive_key.sign(message, mechanism=Mechanism.SHA256_HMAC))

        secret = self._call("derive", mac)
        if len(secret) != 32:
            raise HSMError("the token returned a malformed HMAC")
        return secret

    def signer(self) -> SignerAPI:
        with self._lock:
            if self._session is None or self._signer is None:
                raise KeyStoreLocked("key store is closed")
            return self._signer

    def rotate_signer(self) -> SignerAPI:
        """Generate the next signing key pair in the token (node-signer-v<n+1>), non
        extractable like the first; the lower version stays current until committed."""
        with self._lock:
            if self._signer_version is None:
                raise HSMError("a custom signer label cannot be rotated")
            if self._pending is None:
                label = _signer_label(self._signer_version + 1)
                self._pending = self._call("generate key pair", lambda: self._load_signer(label))
            return self._pending

    def pending_signer(self) -> SignerAPI | None:
        return self._pending

    def commit_signer(self) -> SignerAPI:
        """Destroy the current key pair in the token; the pending one becomes current."""
        with self._lock:
            if self._pending is None or self._signer_version is None:
                raise HSMError("no pending signing key to commit")
            label = _signer_label(self._signer_version)

            def destroy() -> None:
                for object_class in (ObjectClass.PRIVATE_KEY, ObjectClass.PUBLIC_KEY):
                    for obj in self._session.get_objects(
                        {
                            Attribute.TOKEN: True,
                            Attribute.CLASS: object_class,
                            Attribute.LABEL: label,
                        }
                    ):
                        obj.destroy()

            self._call("destroy signing key", destroy)
            self._signer, self._pending = self._pending, None
            self._signer_version += 1
        logger.info("signing key %r destroyed in token %r", label, self._token_label)
        return self._signer

    def close(self) -> None:
        """Close the session (the last session of the process logs the token out)."""
        with self._lock:
            session, self._session = self._session, None
            self._keks = {}
            self._derive_key = None
            self._pending = None
            if session is not None:
                try:
                    session.close()
                except p11.PKCS11Error:
                    logger.warning("closing the PKCS#11 session failed", exc_info=True)
