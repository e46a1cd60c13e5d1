"""Conformance suite for KeyStoreAPI (and envelope encryption on top of it).

A backend's test module subclasses ``KeyStoreConformance``::

    class TestPkcs11KeyStore(KeyStoreConformance):
        def make_keystore(self, location: Path) -> KeyStoreAPI: ...
        def reopen_keystore(self, location: Path) -> KeyStoreAPI: ...
        def key_material(self, store: KeyStoreAPI) -> list[bytes]: ...  # if extractable

``make_keystore`` creates a new store at ``location`` (a per-test ``tmp_path``);
``reopen_keystore`` opens the same store again. Hooks that a backend cannot implement
(a PKCS#11 token never reveals its keys) leave their tests skipped.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from eth_keys import keys
from eth_keys.constants import SECPK1_N
from eth_utils import is_checksum_address

from hsm.abc import KeyStoreAPI, WrappedKey
from hsm.envelope import BLOB_VERSION, SealedRecord, open_sealed, seal, seal_many
from hsm.exceptions import DecryptionError, HSMError, KeyNotFound, UnwrapError


def flip(data: bytes, index: int) -> bytes:
    """``data`` with one bit of byte ``index`` flipped."""
    altered = bytearray(data)
    altered[index] ^= 0x01
    return bytes(altered)


class KeyStoreConformance:
    """Behaviour every KeyStoreAPI backend must have."""

    def make_keystore(self, location: Path) -> KeyStoreAPI:
        raise NotImplementedError

    def reopen_keystore(self, location: Path) -> KeyStoreAPI:
        pytest.skip("backend cannot be reopened in tests")

    def key_material(self, store: KeyStoreAPI) -> list[bytes]:
        """Every secret the store holds (KEKs, signing key), for leak checks."""
        pytest.skip("backend does not reveal its keys")

    def make_other_keystore(self, location: Path) -> KeyStoreAPI:
        """A second, independent store (a backend with one store per token skips)."""
        location.mkdir(parents=True, exist_ok=True)
        return self.make_keystore(location)

    @pytest.fixture
    def location(self, tmp_path: Path) -> Path:
        return tmp_path

    @pytest.fixture
    def keystore(self, location: Path) -> Iterator[KeyStoreAPI]:
        store = self.make_keystore(location)
        yield store
        store.close()

    # -- wrap / unwrap --------------------------------------------------------------------

    @pytest.mark.parametrize("size", [16, 32])
    def test_wrap_round_trip(self, keystore: KeyStoreAPI, size: int) -> None:
        data_key = os.urandom(size)
        wrapped = keystore.wrap(data_key)
        assert wrapped.kek_version == keystore.current_kek_version
        assert data_key not in wrapped.blob
        assert keystore.unwrap(wrapped) == data_key

    def test_wrap_many(self, keystore: KeyStoreAPI) -> None:
        data_keys = [os.urandom(32) for _ in range(10)]
        wrapped = keystore.wrap_many(data_keys)
        assert len(wrapped) == len(data_keys)
        assert [keystore.unwrap(w) for w in wrapped] == data_keys
        assert keystore.wrap_many([]) == []

    def test_tampered_wrapped_key(self, keystore: KeyStoreAPI) -> None:
        wrapped = keystore.wrap(os.urandom(32))
        for index in (0, len(wrapped.blob) // 2, len(wrapped.blob) - 1):
            with pytest.raises(UnwrapError):
                keystore.unwrap(WrappedKey(wrapped.kek_version, flip(wrapped.blob, index)))
        for blob in (wrapped.blob[:-8], wrapped.blob + b"\x00" * 8, b""):
            with pytest.raises(UnwrapError):
                keystore.unwrap(WrappedKey(wrapped.kek_version, blob))

    def test_unknown_kek_version(self, keystore: KeyStoreAPI) -> None:
        wrapped = keystore.wrap(os.urandom(32))
        with pytest.raises(KeyNotFound):
            keystore.unwrap(WrappedKey(wrapped.kek_version + 1000, wrapped.blob))

    def test_unwrap_error_carries_no_key_material(self, keystore: KeyStoreAPI) -> None:
        data_key = os.urandom(32)
        wrapped = keystore.wrap(data_key)
        with pytest.raises(UnwrapError) as excinfo:
            keystore.unwrap(WrappedKey(wrapped.kek_version, flip(wrapped.blob, 3)))
        text = str(excinfo.value)
        assert data_key.hex() not in text and wrapped.blob.hex() not in text

    # -- KEK lifecycle ------------------------------------------------------------------

    def test_kek_versions(self, keystore: KeyStoreAPI) -> None:
        versions = keystore.kek_versions()
        assert versions == sorted(versions)
        assert versions[-1] == keystore.current_kek_version

    def test_rotate_kek(self, keystore: KeyStoreAPI) -> None:
        old_key = os.urandom(32)
        old = keystore.wrap(old_key)
        version = keystore.rotate_kek()
        assert version == old.kek_version + 1
        assert keystore.current_kek_version == version
        assert keystore.kek_versions()[-2:] == [old.kek_version, version]
        new = keystore.wrap(old_key)
        assert new.kek_version == version
        assert all(w.kek_version == version for w in keystore.wrap_many([old_key] * 3))
        assert keystore.unwrap(old) == old_key
        assert keystore.unwrap(new) == old_key
        # Distinct keys: the old version's blob does not unwrap under the new version.
        with pytest.raises(UnwrapError):
            keystore.unwrap(WrappedKey(version, old.blob))

    def test_destroy_kek(self, keystore: KeyStoreAPI) -> None:
        data_key = os.urandom(32)
        old = keystore.wrap(data_key)
        keystore.rotate_kek()
        keystore.destroy_kek(old.kek_version)
        assert old.kek_version not in keystore.kek_versions()
        with pytest.raises(KeyNotFound):
            keystore.unwrap(old)
        with pytest.raises(KeyNotFound):
            keystore.destroy_kek(old.kek_version)
        fresh = keystore.wrap(data_key)
        assert keystore.unwrap(fresh) == data_key

    def test_destroy_current_kek_is_refused(self, keystore: KeyStoreAPI) -> None:
        current = keystore.current_kek_version
        wrapped = keystore.wrap(b"k" * 32)
        with pytest.raises(HSMError, match="current"):
            keystore.destroy_kek(current)
        assert keystore.kek_versions()[-1] == current
        assert keystore.unwrap(wrapped) == b"k" * 32
        with pytest.raises(KeyNotFound):
            keystore.destroy_kek(current + 1000)

    def test_lifecycle_persists(self, location: Path) -> None:
        store = self.make_keystore(location)
        data_key = os.urandom(32)
        first = store.wrap(data_key)
        second_version = store.rotate_kek()
        second = store.wrap(data_key)
        third_version = store.rotate_kek()
        store.destroy_kek(first.kek_version)
        store.close()
        reopened = self.reopen_keystore(location)
        try:
            assert reopened.current_kek_version == third_version
            assert reopened.kek_versions() == [second_version, third_version]
            assert reopened.unwrap(second) == data_key
            with pytest.raises(KeyNotFound):
                reopened.unwrap(first)
            assert reopened.rotate_kek() == third_version + 1
        finally:
            reopened.close()

    # -- signer ---------------------------------------------------------------------------

    def test_signer(self, keystore: KeyStoreAPI) -> None:
        signer = keystore.signer()
        assert is_checksum_address(signer.address)
        for i in range(32):
            digest = os.urandom(32) if i else b"\x00" * 32
            sig = signer.sign_digest(digest)
            assert sig.y_parity in (0, 1)
            assert 0 < sig.r < SECPK1_N
            assert 0 < sig.s <= SECPK1_N // 2  # EIP-2 low s
            recovered = keys.Signature(
                vrs=(sig.y_parity, sig.r, sig.s)
            ).recover_public_key_from_msg_hash(digest)
            assert recovered.to_checksum_address() == signer.address

    def test_signer_rejects_non_digests(self, keystore: KeyStoreAPI) -> None:
        with pytest.raises(ValueError):
            keystore.signer().sign_digest(b"\x00" * 31)

    # -- derived secrets ------------------------------------------------------------------

    def test_derive_secret(self, keystore: KeyStoreAPI) -> None:
        first = keystore.derive_secret("cache-integrity v1")
        assert len(first) == 32
        assert keystore.derive_secret("cache-integrity v1") == first
        assert keystore.derive_secret("cache-integrity v2") != first
        assert keystore.derive_secret("é") != keystore.derive_secret("e")
        with pytest.raises(ValueError):
            keystore.derive_secret("")
        # Independent of the KEKs: a rotation (or destroying the first KEK) changes nothing.
        first_kek = keystore.current_kek_version
        keystore.rotate_kek()
        keystore.destroy_kek(first_kek)
        assert keystore.derive_secret("cache-integrity v1") == first

    def test_derived_secret_survives_reopen(self, location: Path) -> None:
        store = self.make_keystore(location)
        secret = store.derive_secret("cache-integrity v1")
        store.rotate_kek()
        store.close()
        reopened = self.reopen_keystore(location)
        try:
            assert reopened.derive_secret("cache-integrity v1") == secret
        finally:
            reopened.close()

    def test_derived_secret_differs_between_stores(self, location: Path) -> None:
        (location / "one").mkdir()
        one = self.make_keystore(location / "one")
        secret = one.derive_secret("cache-integrity v1")
        one.close()
        other = self.make_other_keystore(location / "other")
        try:
            assert other.derive_secret("cache-integrity v1") != secret
        finally:
            other.close()

    def test_derived_secret_is_no_key_material(self, keystore: KeyStoreAPI) -> None:
        derived = keystore.derive_secret("cache-integrity v1")
        assert derived not in self.key_material(keystore)

    def test_closed_store_derives_nothing(self, location: Path) -> None:
        store = self.make_keystore(location)
        store.close()
        with pytest.raises(HSMError):
            store.derive_secret("cache-integrity v1")

    # -- leaks and persistence ------------------------------------------------------------

    def test_repr_has_no_key_material(self, keystore: KeyStoreAPI) -> None:
        texts = [repr(keystore), str(keystore), repr(keystore.signer()), str(keystore.signer())]
        for secret in self.key_material(keystore):
            for text in texts:
                assert secret.hex() not in text.lower()
                assert str(int.from_bytes(secret, "big")) not in text

    def test_restart_persistence(self, location: Path) -> None:
        store = self.make_keystore(location)
        data_key = os.urandom(32)
        wrapped = store.wrap(data_key)
        address = store.signer().address
        store.close()
        reopened = self.reopen_keystore(location)
        try:
            assert reopened.unwrap(wrapped) == data_key
            assert reopened.signer().address == address
            assert reopened.current_kek_version == wrapped.kek_version
        finally:
            reopened.close()

    # -- envelope encryption through this store -------------------------------------------

    def test_envelope_round_trip(self, keystore: KeyStoreAPI) -> None:
        plaintext = b'{"resourceType": "Observation"}' * 100
        record_id = os.urandom(32)
        sealed = seal(plaintext, record_id, keystore)
        assert plaintext[:32] not in sealed.blob
        assert sealed.blob[0] == BLOB_VERSION == 2
        assert len(sealed.blob) == 1 + 12 + len(plaintext) + 16
        assert open_sealed(sealed.blob, sealed.wrapped_key, record_id, keystore) == plaintext

    def test_envelope_empty_plaintext(self, keystore: KeyStoreAPI) -> None:
        sealed = seal(b"", b"id", keystore)
        assert open_sealed(sealed.blob, sealed.wrapped_key, b"id", keystore) == b""

    def test_envelope_fresh_key_and_nonce_per_record(self, keystore: KeyStoreAPI) -> None:
        first, second = seal(b"same", b"id", keystore), seal(b"same", b"id", keystore)
        assert first.blob != second.blob
        assert first.blob[1:13] != second.blob[1:13]
        assert keystore.unwrap(first.wrapped_key) != keystore.unwrap(second.wrapped_key)

    def test_envelope_seal_many(self, keystore: KeyStoreAPI) -> None:
        items = [(os.urandom(100), os.urandom(32)) for _ in range(10)]
        sealed = seal_many(items, keystore)
        assert len(sealed) == len(items)
        assert all(isinstance(s, SealedRecord) for s in sealed)
        for s, (plaintext, aad) in zip(sealed, items, strict=True):
            assert open_sealed(s.blob, s.wrapped_key, aad, keystore) == plaintext
        assert seal_many([], keystore) == []

    def test_envelope_wrong_aad(self, keystore: KeyStoreAPI) -> None:
        sealed = seal(b"record", b"record-1", keystore)
        for aad in (b"record-2", b"", b"record-1\x00"):
            with pytest.raises(DecryptionError):
                open_sealed(sealed.blob, sealed.wrapped_key, aad, keystore)

    def test_envelope_blob_swapped_between_records(self, keystore: KeyStoreAPI) -> None:
        one, two = seal(b"one", b"id-1", keystore), seal(b"two", b"id-2", keystore)
        with pytest.raises(DecryptionError):
            open_sealed(two.blob, two.wrapped_key, b"id-1", keystore)
        with pytest.raises(DecryptionError):
            open_sealed(two.blob, one.wrapped_key, b"id-2", keystore)

    def test_envelope_tampered_blob(self, keystore: KeyStoreAPI) -> None:
        sealed = seal(b"record body", b"id", keystore)
        blob = sealed.blob
        for altered in (
            flip(blob, 5),  # nonce
            flip(blob, 14),  # ciphertext
            flip(blob, len(blob) - 1),  # tag
            blob[:-1],
            blob[:20],
            b"",
            b"\x01" + blob[1:],  # a version 2 blob presented as version 1
            b"\x03" + blob[1:],  # unknown version
            blob + b"\x00",
        ):
            with pytest.raises(DecryptionError):
                open_sealed(altered, sealed.wrapped_key, b"id", keystore)

    def test_envelope_tampered_wrapped_key(self, keystore: KeyStoreAPI) -> None:
        sealed = seal(b"record body", b"id", keystore)
        wrapped = sealed.wrapped_key
        with pytest.raises(UnwrapError):
            open_sealed(
                sealed.blob, WrappedKey(wrapped.kek_version, flip(wrapped.blob, 0)), b"id", keystore
            )
        with pytest.raises(KeyNotFound):
            open_sealed(
                sealed.blob, WrappedKey(wrapped.kek_version + 99, wrapped.blob), b"id", keystore
            )

    def test_envelope_repr_hides_contents(self, keystore: KeyStoreAPI) -> None:
        sealed = seal(b"PATIENT NAME", b"id", keystore)
        assert "PATIENT" not in repr(sealed)
        assert sealed.blob.hex() not in repr(sealed)

    # -- signer rotation ---------------------------------------------------------------

    def test_signer_rotation(self, keystore: KeyStoreAPI) -> None:
        old = keystore.signer().address
        assert keystore.pending_signer() is None
        with pytest.raises(HSMError):
            keystore.commit_signer()
        new = keystore.rotate_signer()
        assert new.address != old and is_checksum_address(new.address)
        assert keystore.signer().address == old  # until the governance step
        assert keystore.rotate_signer().address == new.address  # resumes, no second key
        digest = os.urandom(32)
        sig = new.sign_digest(digest)
        recovered = keys.Signature(
            vrs=(sig.y_parity, sig.r, sig.s)
        ).recover_public_key_from_msg_hash(digest)
        assert recovered.to_checksum_address() == new.address
        assert keystore.commit_signer().address == new.address
        assert keystore.signer().address == new.address and keystore.pending_signer() is None

    def test_signer_rotation_survives_reopen(self, keystore: KeyStoreAPI, location: Path) -> None:
        old = keystore.signer().address
        new = keystore.rotate_signer().address
        keystore.close()
        store = self.reopen_keystore(location)
        try:
            pending = store.pending_signer()
            assert store.signer().address == old and pending is not None
            assert pending.address == new
            store.commit_signer()
            store.close()
            store = self.reopen_keystore(location)
            assert store.signer().address == new and store.pending_signer() is None
            assert store.rotate_signer().address not in (old, new)  # a third key
        finally:
            store.close()
