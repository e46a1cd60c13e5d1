"""Software key store and signer: the embedded default when no HSM is configured.

The key store is one JSON file holding only ciphertext::

    {
      "format": "emr-node-keystore", "version": 1,
      "kdf": "scrypt", "kdfparams": {"n": 131072, "r": 8, "p": 1, "salt": "<hex>", "dklen": 32},
      "cipher": "aes-256-gcm", "nonce": "<hex>", "ciphertext": "<hex>"
    }

The file key is scrypt(passphrase); AES-256-GCM encrypts the key material (every KEK
version, the secp256k1 signing key and the derivation key) with every field above except
nonce and ciphertext as associated data, so editing the header (say, lowering the scrypt
cost) is detected.

New stores use scrypt n = 2**17 (128 MiB, a few tenths of a second once per start); a store
keeps the cost it was created with, so older files (n = 2**15) still open. A store written
before ``derive_secret`` existed has no derivation key in its material: its secrets are
derived from an HKDF of the file key instead (stable for the file's life, like the key).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import logging
import os
import secrets
import stat
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
from cryptography.hazmat.primitives.keywrap import (
    InvalidUnwrap,
    aes_key_unwrap_with_padding,
    aes_key_wrap_with_padding,
)
from eth_keys import keys
from eth_keys.constants import SECPK1_N

from hsm.abc import EcdsaSignature, KeyStoreAPI, SignerAPI, WrappedKey, derive_message
from hsm.exceptions import HSMError, KeyNotFound, KeyStoreLocked, UnwrapError

__all__ = ["DEFAULT_SCRYPT_N", "SoftwareKeyStore", "SoftwareSigner"]

logger = logging.getLogger(__name__)

FORMAT = "emr-node-keystore"
FORMAT_VERSION = 1
DEFAULT_SCRYPT_N = 2**17
SCRYPT_R = 8
SCRYPT_P = 1
# Refuse to open files asking for more than 1 GiB of scrypt memory (128 * r * n bytes).
_MAX_SCRYPT_N = 2**20
_KEY_SIZE = 32
_SALT_SIZE = 16
_NONCE_SIZE = 12


class SoftwareSigner(SignerAPI):
    """Signs digests with a secp256k1 key held in process memory (eth-keys on coincurve)."""

    def __init__(self, private_key: bytes) -> None:
        if len(private_key) != _KEY_SIZE or not 0 < int.from_bytes(private_key, "big") < SECPK1_N:
            raise ValueError("a secp256k1 private key is 32 bytes in [1, n - 1]")
        try:
            self._key = keys.PrivateKey(bytes(private_key))
        except Exception:
            # from None: eth-keys validation messages quote the key's value.
            raise ValueError("invalid secp256k1 private key") from None
        self._address = self._key.public_key.to_checksum_address()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(address={self._address})"

    @property
    def address(self) -> str:
        return self._address

    def sign_digest(self, digest: bytes) -> EcdsaSignature:
        if len(digest) != 32:
            raise ValueError("a digest is 32 bytes")
        y_parity, r, s = self._key.sign_msg_hash(bytes(digest)).vrs
        # libsecp256k1 already returns low s (EIP-2); normalising again costs nothing and
        # keeps the contract if the eth-keys backend changes. Negating s flips the parity.
        if s > SECPK1_N // 2:
            s = SECPK1_N - s
            y_parity ^= 1
        return EcdsaSignature(r=r, s=s, y_parity=y_parity)


def _generate_private_key() -> bytes:
    while True:  # a value outside [1, n - 1] has probability ~2**-128
        candidate = secrets.token_bytes(_KEY_SIZE)
        if 0 < int.from_bytes(candidate, "big") < SECPK1_N:
            return candidate


def _derive(passphrase: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return Scrypt(salt=salt, length=_KEY_SIZE, n=n, r=r, p=p).derive(passphrase.encode("utf-8"))


def _legacy_derive_key(file_key: bytes) -> bytes:
    """The derivation key of a store written before stores held one: an HKDF of the file
    key under its own label, so it is independent of the AES-GCM use of that key."""
    return HKDF(
        algorithm=hashes.SHA256(),
        length=_KEY_SIZE,
        salt=b"emr-node keystore",
        info=b"derive-secret root v1",
    ).derive(file_key)


def _associated_data(header: dict[str, Any]) -> bytes:
    return json.dumps(header, sort_keys=True, separators=(",", ":")).encode("utf-8")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_file(path: Path, data: bytes, *, overwrite: bool) -> None:
    """Write ``data`` to ``path`` atomically with mode 0600 (fsync file, rename, fsync dir).

    Without ``overwrite`` an existing file is never replaced: losing a key store loses
    every record its KEKs wrap.
    """
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        try:
            os.fchmod(fd, 0o600)  # O_CREAT's mode is filtered by umask; make it exact
            with open(fd, "wb", closefd=False) as f:
                f.write(data)
                f.flush()
                os.fsync(fd)
        finally:
            os.close(fd)
        if overwrite:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)  # fails with FileExistsError instead of replacing
        _fsync_dir(path.parent)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


#: Seconds between checks whether another process changed the key store file.
KEK_REFRESH = 2.0


def _file_state(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


class SoftwareKeyStore(KeyStoreAPI):
    """KEKs and the node's signing key in a passphrase-encrypted file.

    Build it with :meth:`create` or :meth:`open`. The passphrase is not kept: only the
    derived file key, to re-encrypt the file when a KEK is added.
    """

    def __init__(
        self,
        path: Path,
        *,
        header: dict[str, Any],
        file_key: bytes,
        keks: dict[int, bytes],
        current: int,
        signing_key: bytes,
        pending_signing_key: bytes | None = None,
        derive_key: bytes | None = None,
    ) -> None:
        self._path = Path(path)
        self._header = header
        self._file_key = file_key
        # Stored in the material since derive_secret exists (None: an older file, see
        # _legacy_derive_key); only written back when it came from the file.
        self._stored_derive_key = derive_key
        self._derive_key = derive_key or _legacy_derive_key(file_key)
        # Copy-on-write: rotate_kek swaps in new objects, so readers need no lock.
        self._keks = dict(keks)
        self._active: tuple[int, bytes] | None = (current, self._keks[current])
        self._signer: SoftwareSigner | None = SoftwareSigner(signing_key)
        self._signing_key = signing_key
        self._pending_key = pending_signing_key
        self._pending: SoftwareSigner | None = (
            SoftwareSigner(pending_signing_key) if pending_signing_key is not None else None
        )
        self._lock = threading.RLock()  # _require_open may re-read the file under it
        # Other processes of the node open the same file and may rotate or destroy KEKs:
        # the KEKs are re-read when the file changed (checked at most every KEK_REFRESH s,
        # and at once for an unknown version).
        self._checked_at = time.monotonic()
        self._file_state = _file_state(self._path)

    def __repr__(self) -> str:
        address = self._signer.address if self._signer is not None else None
        return (
            f"{type(self).__name__}(path={str(self._path)!r}, "
            f"kek_versions={sorted(self._keks)}, address={address})"
        )

    # -- file -------------------------------------------------------------------------

    @classmethod
    def create(
        cls, path: Path, passphrase: str, *, scrypt_n: int = DEFAULT_SCRYPT_N
    ) -> SoftwareKeyStore:
        """Generate KEK v1 and a signing key and write them, encrypted, to a new file.

        ``scrypt_n`` below the default is for tests. Raises HSMError if ``path`` exists.
        """
        if not passphrase:
            raise ValueError("the key store needs a passphrase")
        if scrypt_n < 2 or scrypt_n & (scrypt_n - 1) or scrypt_n > _MAX_SCRYPT_N:
            raise ValueError(f"scrypt n must be a power of two in [2, {_MAX_SCRYPT_N}]")
        if scrypt_n < DEFAULT_SCRYPT_N:
            logger.warning("key store created with a weak scrypt cost n=%d", scrypt_n)
        salt = secrets.token_bytes(_SALT_SIZE)
        header: dict[str, Any] = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "kdf": "scrypt",
            "kdfparams": {
                "n": scrypt_n,
                "r": SCRYPT_R,
                "p": SCRYPT_P,
                "salt": salt.hex(),
                "dklen": _KEY_SIZE,
            },
            "cipher": "aes-256-gcm",
        }
        store = cls(
            path,
            header=header,
            file_key=_derive(passphrase, salt, scrypt_n, SCRYPT_R, SCRYPT_P),
            keks={1: secrets.token_bytes(_KEY_SIZE)},
            current=1,
            signing_key=_generate_private_key(),
            derive_key=secrets.token_bytes(_KEY_SIZE),
        )
        store._save(store._keks, 1, overwrite=False)
        logger.info("created key store with signer %s", store.signer().address)
        return store

    @classmethod
    def open(cls, path: Path, passphrase: str) -> SoftwareKeyStore:
        """Decrypt the key store at ``path``.

        Raises KeyStoreLocked for a wrong passphrase (or a damaged file, which AES-GCM
        cannot tell apart), KeyNotFound if there is no file, HSMError if it is malformed.
        """
        path = Path(path)
        try:
            raw = path.read_bytes()
            mode = path.stat().st_mode
        except FileNotFoundError:
            raise KeyNotFound(f"no key store at {path}") from None
        except OSError as exc:
            raise HSMError("cannot read the key store file") from exc
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            logger.warning("key store %s is accessible to other users; chmod 600 it", path)
        try:
            document = json.loads(raw)
            header = {k: document[k] for k in ("format", "version", "kdf", "kdfparams", "cipher")}
            params = header["kdfparams"]
            n, r, p = int(params["n"]), int(params["r"]), int(params["p"])
            salt = bytes.fromhex(params["salt"])
            nonce = bytes.fromhex(document["nonce"])
            ciphertext = bytes.fromhex(document["ciphertext"])
        except (ValueError, KeyError, TypeError) as exc:
            raise HSMError("key store file is malformed") from exc
        if header["format"] != FORMAT or header["version"] != FORMAT_VERSION:
            raise HSMError("unsupported key store format or version")
        if (
            header["kdf"] != "scrypt"
            or header["cipher"] != "aes-256-gcm"
            or params.get("dklen") != _KEY_SIZE
            or not (1 < n <= _MAX_SCRYPT_N and n & (n - 1) == 0)
            or not (1 <= r <= 32 and 1 <= p <= 16)
            or len(nonce) != _NONCE_SIZE
        ):
            raise HSMError("unsupported key store parameters")
        if n < DEFAULT_SCRYPT_N:
            # Still opens (the cost is part of the authenticated header); only new stores
            # get the higher cost.
            logger.info(
                "key store %s uses scrypt n=%d; stores created now use n=%d",
                path,
                n,
                DEFAULT_SCRYPT_N,
            )
        file_key = _derive(passphrase, salt, n, r, p)
        try:
            plaintext = AESGCM(file_key).decrypt(nonce, ciphertext, _associated_data(header))
        except InvalidTag:
            raise KeyStoreLocked("wrong passphrase (or the key store file was altered)") from None
        try:
            material = json.loads(plaintext)
            keks = {int(v): bytes.fromhex(k) for v, k in material["keks"].items()}
            current = int(material["current"])
            signing_key = bytes.fromhex(material["signing_key"])
            pending_hex = material.get("pending_signing_key")
            pending = bytes.fromhex(pending_hex) if pending_hex else None
            derive_hex = material.get("derive_key")
            derive_key = bytes.fromhex(derive_hex) if derive_hex else None
            if current not in keks or any(len(k) != _KEY_SIZE for k in keks.values()):
                raise ValueError("inconsistent key material")
            if derive_key is not None and len(derive_key) != _KEY_SIZE:
                raise ValueError("inconsistent key material")
            return cls(
                path,
                header=header,
                file_key=file_key,
                keks=keks,
                current=current,
                signing_key=signing_key,
                pending_signing_key=pending,
                derive_key=derive_key,
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            # from None: the decrypted payload must not ride along in a traceback.
            raise HSMError("key store contents are malformed") from None

    def _save(
        self,
        keks: dict[int, bytes],
        current: int,
        *,
        overwrite: bool,
        signing_key: bytes | None = None,
        pending_signing_key: bytes | bool | None = False,
    ) -> None:
        """Write the file; ``signing_key`` / ``pending_signing_key`` default to the store's
        (False: keep the pending key as is, None: no pending key)."""
        pending = self._pending_key if pending_signing_key is False else pending_signing_key
        body: dict[str, Any] = {
            "keks": {str(v): k.hex() for v, k in sorted(keks.items())},
            "current": current,
            "signing_key": (signing_key or self._signing_key).hex(),
        }
        if isinstance(pending, bytes):
            body["pending_signing_key"] = pending.hex()
        if self._stored_derive_key is not None:
            body["derive_key"] = self._stored_derive_key.hex()
        material = json.dumps(body).encode("utf-8")
        nonce = secrets.token_bytes(_NONCE_SIZE)  # fresh per write of the same file key
        ciphertext = AESGCM(self._file_key).encrypt(nonce, material, _associated_data(self._header))
        document = {**self._header, "nonce": nonce.hex(), "ciphertext": ciphertext.hex()}
        try:
            _write_file(
                self._path, json.dumps(document, indent=2).encode("utf-8"), overwrite=overwrite
            )
        except FileExistsError:
            raise HSMError(f"a key store already exists at {self._path}") from None
        except OSError as exc:
            raise HSMError("cannot write the key store file") from exc
        self._file_state = _file_state(self._path)

    # -- KeyStoreAPI ------------------------------------------------------------------

    def _require_open(self) -> tuple[int, bytes]:
        active = self._active
        if active is None:
            raise KeyStoreLocked("key store is closed")
        if time.monotonic() - self._checked_at >= KEK_REFRESH:
            self._reload_keks()
            active = self._active or active
        return active

    def _reload_keks(self) -> None:
        """Take the KEKs another process wrote to the file (a rotation, a destruction)."""
        with self._lock:
            self._checked_at = time.monotonic()
            state = _file_state(self._path)
            if state is None or state == self._file_state or self._active is None:
                return
            try:
                document = json.loads(self._path.read_bytes())
                nonce = bytes.fromhex(document["nonce"])
                ciphertext = bytes.fromhex(document["ciphertext"])
                material = json.loads(
                    AESGCM(self._file_key).decrypt(
                        nonce, ciphertext, _associated_data(self._header)
                    )
                )
                keks = {int(v): bytes.fromhex(k) for v, k in material["keks"].items()}
                current = int(material["current"])
                if current not in keks:
                    raise ValueError("inconsistent key material")
            except (OSError, ValueError, KeyError, TypeError, InvalidTag):
                # Caught mid-write or another passphrase: keep what this process has.
                logger.warning("key store %s changed but could not be re-read", self._path)
                return
            self._keks = keks
            self._active = (current, keks[current])
            self._file_state = state
            logger.info("key store re-read: KEK versions %s, current %d", sorted(keks), current)

    @property
    def current_kek_version(self) -> int:
        return self._require_open()[0]

    def kek_versions(self) -> list[int]:
        self._require_open()
        return sorted(self._keks)

    def wrap(self, data_key: bytes) -> WrappedKey:
        version, kek = self._require_open()
        return WrappedKey(kek_version=version, blob=aes_key_wrap_with_padding(kek, data_key))

    def wrap_many(self, data_keys: Sequence[bytes]) -> list[WrappedKey]:
        # One snapshot for the batch: every key of a batch is wrapped by the same KEK even
        # if rotate_kek runs concurrently.
        version, kek = self._require_open()
        return [
            WrappedKey(kek_version=version, blob=aes_key_wrap_with_padding(kek, k))
            for k in data_keys
        ]

    def unwrap(self, wrapped: WrappedKey) -> bytes:
        self._require_open()
        kek = self._keks.get(wrapped.kek_version)
        if kek is None:  # wrapped by a KEK another process made since: re-read the file
            self._checked_at = 0.0
            self._reload_keks()
            kek = self._keks.get(wrapped.kek_version)
        if kek is None:
            raise KeyNotFound(f"no KEK version {wrapped.kek_version}")
        try:
            return aes_key_unwrap_with_padding(kek, wrapped.blob)
        except (InvalidUnwrap, ValueError) as exc:
            raise UnwrapError(
                f"wrapped key does not unwrap with KEK version {wrapped.kek_version}"
            ) from exc

    def signer(self) -> SignerAPI:
        signer = self._signer
        if signer is None:
            raise KeyStoreLocked("key store is closed")
        return signer

    def derive_secret(self, label: str) -> bytes:
        message = derive_message(label)
        self._require_open()
        return hmac.new(self._derive_key, message, hashlib.sha256).digest()

    def rotate_kek(self) -> int:
        """Add a new KEK version, persist it, then make it current; return the version.

        Older versions stay available for unwrapping (re-wrapping existing data keys is a
        separate job). The file is written before the new KEK is used, so no data key is
        ever wrapped by a KEK that a crash could lose.
        """
        with self._lock:
            self._require_open()
            version = max(self._keks) + 1
            keks = {**self._keks, version: secrets.token_bytes(_KEY_SIZE)}
            self._save(keks, version, overwrite=True)
            self._keks = keks
            self._active = (version, keks[version])
        logger.info("KEK rotated to version %d", version)
        return version

    def destroy_kek(self, version: int) -> None:
        """Drop KEK ``version`` and rewrite the file without it.

        The old file is replaced atomically; its bytes may survive on the disk's free
        blocks, so shredding is only as good as the file system (an HSM does better).
        """
        with self._lock:
            current, _ = self._require_open()
            if version == current:
                raise HSMError(f"KEK version {version} is current; rotate before destroying it")
            if version not in self._keks:
                raise KeyNotFound(f"no KEK version {version}")
            keks = {v: k for v, k in self._keks.items() if v != version}
            self._save(keks, current, overwrite=True)
            self._keks = keks
        logger.info("KEK version %d destroyed", version)

    def rotate_signer(self) -> SignerAPI:
        """Generate a new signing key and persist it as pending (before anyone learns its
        address, so a crash never loses a key the consortium may have admitted)."""
        with self._lock:
            current, _ = self._require_open()
            if self._pending is None:
                key = _generate_private_key()
                self._save(self._keks, current, overwrite=True, pending_signing_key=key)
                self._pending_key, self._pending = key, SoftwareSigner(key)
                logger.info("new signing key %s pending", self._pending.address)
            return self._pending

    def pending_signer(self) -> SignerAPI | None:
        return self._pending

    def commit_signer(self) -> SignerAPI:
        """Make the pending key current and drop the old one from the file."""
        with self._lock:
            current, _ = self._require_open()
            if self._pending is None or self._pending_key is None:
                raise HSMError("no pending signing key to commit")
            self._save(
                self._keks,
                current,
                overwrite=True,
                signing_key=self._pending_key,
                pending_signing_key=None,
            )
            old = self._signer
            self._signing_key, self._signer = self._pending_key, self._pending
            self._pending_key, self._pending = None, None
        logger.info(
            "signing key rotated from %s to %s",
            old.address if old else None,
            self._signer.address,
        )
        return self._signer

    def close(self) -> None:
        # Best effort only: CPython cannot wipe immutable bytes; drop every reference.
        with self._lock:
            self._active = None
            self._keks = {}
            self._signer = None
            self._signing_key = b""
            self._pending = None
            self._pending_key = None
            self._file_key = b""
            self._derive_key = b""
            self._stored_derive_key = None
