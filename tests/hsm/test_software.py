"""SoftwareKeyStore and SoftwareSigner: the conformance suite plus file-format specifics."""

from __future__ import annotations

import json
import logging
import os
import stat
from pathlib import Path

import pytest
from eth_account import Account
from eth_keys import keys
from eth_keys.constants import SECPK1_N

from hsm.abc import KeyStoreAPI, WrappedKey
from hsm.exceptions import HSMError, KeyNotFound, KeyStoreLocked
from hsm.software import SoftwareKeyStore, SoftwareSigner
from node.settings import HSMSettings, Settings
from node.wiring import _open_keystore
from tests.hsm.conformance import KeyStoreConformance

PASSPHRASE = "correct horse battery staple"
# scrypt n=2**4 keeps a test under a millisecond; new stores default to 2**17.
TEST_N = 2**4


def store_path(location: Path) -> Path:
    return location / "keystore.json"


def secrets_of(store: SoftwareKeyStore) -> list[bytes]:
    return [*store._keks.values(), store._signing_key, store._file_key, store._derive_key]


class TestSoftwareKeyStore(KeyStoreConformance):
    def make_keystore(self, location: Path) -> KeyStoreAPI:
        return SoftwareKeyStore.create(store_path(location), PASSPHRASE, scrypt_n=TEST_N)

    def reopen_keystore(self, location: Path) -> KeyStoreAPI:
        return SoftwareKeyStore.open(store_path(location), PASSPHRASE)

    def key_material(self, store: KeyStoreAPI) -> list[bytes]:
        assert isinstance(store, SoftwareKeyStore)
        return secrets_of(store)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return store_path(tmp_path)


@pytest.fixture
def store(path: Path) -> SoftwareKeyStore:
    return SoftwareKeyStore.create(path, PASSPHRASE, scrypt_n=TEST_N)


def test_file_holds_only_ciphertext(store: SoftwareKeyStore, path: Path) -> None:
    raw = path.read_bytes()
    document = json.loads(raw)
    assert set(document) == {
        "format",
        "version",
        "kdf",
        "kdfparams",
        "cipher",
        "nonce",
        "ciphertext",
    }
    assert document["kdf"] == "scrypt"
    assert document["kdfparams"]["n"] == TEST_N
    assert {"r", "p", "salt"} <= set(document["kdfparams"])
    assert document["cipher"] == "aes-256-gcm"
    assert len(bytes.fromhex(document["nonce"])) == 12
    lowered = raw.lower()
    for secret in secrets_of(store):
        assert secret not in raw
        assert secret.hex().encode() not in lowered
    assert PASSPHRASE.encode() not in raw
    assert store.signer().address.lower().encode() not in lowered
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_default_scrypt_cost(tmp_path: Path) -> None:
    path = store_path(tmp_path)
    SoftwareKeyStore.create(path, PASSPHRASE)
    params = json.loads(path.read_text())["kdfparams"]
    assert (params["n"], params["r"], params["p"]) == (2**17, 8, 1)
    assert HSMSettings().scrypt_n == 2**17  # what the node creates new stores with


def test_a_store_with_the_old_cost_still_opens(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A store created before the cost went up (n = 2**15), opened by a node whose settings
    # now default to 2**17: it opens with the cost recorded in its (authenticated) header.
    data_dir = tmp_path / "node"
    data_dir.mkdir()
    old = SoftwareKeyStore.create(store_path(data_dir), PASSPHRASE, scrypt_n=2**15)
    wrapped = old.wrap(b"k" * 32)
    address = old.signer().address
    old.close()
    settings = Settings(data_dir=data_dir, hsm={"passphrase": PASSPHRASE})
    assert settings.hsm.scrypt_n == 2**17
    caplog.set_level(logging.INFO, logger="hsm.software")
    reopened = _open_keystore(settings, data_dir, [])
    try:
        assert reopened.unwrap(wrapped) == b"k" * 32
        assert reopened.signer().address == address
        assert json.loads(store_path(data_dir).read_text())["kdfparams"]["n"] == 2**15
        assert any("n=32768" in r.getMessage() for r in caplog.records)
    finally:
        reopened.close()
    # A new store made by the same node settings gets the new cost.
    fresh_dir = tmp_path / "fresh"
    fresh_dir.mkdir()
    _open_keystore(settings, fresh_dir, []).close()
    assert json.loads(store_path(fresh_dir).read_text())["kdfparams"]["n"] == 2**17


def test_a_store_without_a_derivation_key_derives_from_its_file_key(path: Path) -> None:
    # Stores written before derive_secret existed hold no derivation key: they derive from
    # an HKDF of the file key, stably across reopens and rewrites of the file.
    store = SoftwareKeyStore.create(path, PASSPHRASE, scrypt_n=TEST_N)
    store._stored_derive_key = None
    store._save(store._keks, store.current_kek_version, overwrite=True)  # the old format
    store.close()
    legacy = SoftwareKeyStore.open(path, PASSPHRASE)
    secret = legacy.derive_secret("cache-integrity v1")
    assert secret not in secrets_of(legacy)[:-1]
    legacy.rotate_kek()  # rewrites the file, still without a derivation key
    legacy.close()
    again = SoftwareKeyStore.open(path, PASSPHRASE)
    assert again.derive_secret("cache-integrity v1") == secret
    again.close()


def test_no_world_readable_file_even_with_permissive_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        SoftwareKeyStore.create(store_path(tmp_path), PASSPHRASE, scrypt_n=TEST_N)
    finally:
        os.umask(old)
    assert stat.S_IMODE(store_path(tmp_path).stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["keystore.json"]


def test_wrong_passphrase(store: SoftwareKeyStore, path: Path) -> None:
    with pytest.raises(KeyStoreLocked, match="wrong passphrase") as excinfo:
        SoftwareKeyStore.open(path, "Correct horse battery staple")
    message = str(excinfo.value)
    assert PASSPHRASE not in message and "Correct horse" not in message
    assert excinfo.value.__cause__ is None and excinfo.value.__suppress_context__


def test_altered_file_is_locked(store: SoftwareKeyStore, path: Path) -> None:
    document = json.loads(path.read_text())
    ciphertext = bytearray(bytes.fromhex(document["ciphertext"]))
    ciphertext[0] ^= 1
    path.write_text(json.dumps({**document, "ciphertext": ciphertext.hex()}))
    with pytest.raises(KeyStoreLocked):
        SoftwareKeyStore.open(path, PASSPHRASE)


def test_header_is_authenticated(store: SoftwareKeyStore, path: Path) -> None:
    # An edit that leaves the derived key unchanged is still caught: the header is GCM's
    # associated data.
    document = json.loads(path.read_text())
    document["kdfparams"]["comment"] = "edited"
    path.write_text(json.dumps(document))
    with pytest.raises(KeyStoreLocked):
        SoftwareKeyStore.open(path, PASSPHRASE)


@pytest.mark.parametrize(
    "content",
    [b"", b"not json", b"[]", b'{"format": "emr-node-keystore"}'],
)
def test_malformed_file(path: Path, content: bytes) -> None:
    path.write_bytes(content)
    with pytest.raises(HSMError):
        SoftwareKeyStore.open(path, PASSPHRASE)


def test_unsupported_version_or_cost(store: SoftwareKeyStore, path: Path) -> None:
    document = json.loads(path.read_text())
    path.write_text(json.dumps({**document, "version": 2}))
    with pytest.raises(HSMError, match="unsupported"):
        SoftwareKeyStore.open(path, PASSPHRASE)
    huge = {**document, "kdfparams": {**document["kdfparams"], "n": 2**30}}
    path.write_text(json.dumps(huge))
    with pytest.raises(HSMError, match="unsupported"):
        SoftwareKeyStore.open(path, PASSPHRASE)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(KeyNotFound):
        SoftwareKeyStore.open(store_path(tmp_path), PASSPHRASE)


def test_create_never_overwrites(store: SoftwareKeyStore, path: Path) -> None:
    before = path.read_bytes()
    with pytest.raises(HSMError, match="already exists"):
        SoftwareKeyStore.create(path, "another passphrase", scrypt_n=TEST_N)
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir()] == [path.name]


@pytest.mark.parametrize("n", [0, 1, 3, 2**15 + 1, 2**21])
def test_create_rejects_bad_cost(tmp_path: Path, n: int) -> None:
    with pytest.raises(ValueError):
        SoftwareKeyStore.create(store_path(tmp_path), PASSPHRASE, scrypt_n=n)


def test_create_rejects_empty_passphrase(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        SoftwareKeyStore.create(store_path(tmp_path), "", scrypt_n=TEST_N)


def test_rotate_kek(store: SoftwareKeyStore, path: Path) -> None:
    old_key = os.urandom(32)
    old = store.wrap(old_key)
    assert old.kek_version == 1
    assert store.rotate_kek() == 2
    assert store.current_kek_version == 2
    assert store.kek_versions() == [1, 2]
    new_key = os.urandom(32)
    new = store.wrap(new_key)
    assert new.kek_version == 2
    assert [w.kek_version for w in store.wrap_many([new_key, old_key])] == [2, 2]
    assert store.unwrap(old) == old_key
    # The versions are distinct keys: v1's blob does not unwrap as v2.
    with pytest.raises(HSMError):
        store.unwrap(WrappedKey(2, old.blob))
    address = store.signer().address

    reopened = SoftwareKeyStore.open(path, PASSPHRASE)
    assert reopened.current_kek_version == 2
    assert reopened.unwrap(old) == old_key
    assert reopened.unwrap(new) == new_key
    assert reopened.signer().address == address
    assert reopened.rotate_kek() == 3
    assert [p.name for p in path.parent.iterdir()] == [path.name]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_closed_store(store: SoftwareKeyStore) -> None:
    wrapped = store.wrap(os.urandom(32))
    store.close()
    for call in (
        lambda: store.wrap(os.urandom(32)),
        lambda: store.unwrap(wrapped),
        lambda: store.signer(),
        lambda: store.current_kek_version,
        lambda: store.rotate_kek(),
    ):
        with pytest.raises(KeyStoreLocked):
            call()
    assert "SoftwareKeyStore" in repr(store)


def test_logs_carry_no_key_material(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    store = SoftwareKeyStore.create(store_path(tmp_path), PASSPHRASE, scrypt_n=TEST_N)
    store.rotate_kek()
    SoftwareKeyStore.open(store_path(tmp_path), PASSPHRASE)
    assert caplog.records  # creation and rotation are logged
    for secret in secrets_of(store):
        assert secret.hex() not in caplog.text.lower()
    assert PASSPHRASE not in caplog.text


# -- SoftwareSigner -----------------------------------------------------------------------

KEY = bytes.fromhex("4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318")


def test_signer_matches_eth_account() -> None:
    signer = SoftwareSigner(KEY)
    account = Account.from_key(KEY)
    assert signer.address == account.address
    for i in range(20):
        digest = os.urandom(32) if i else b"\xff" * 32
        sig = signer.sign_digest(digest)
        expected = Account.unsafe_sign_hash(digest, KEY)
        # RFC 6979: deterministic, so the very same signature.
        assert (sig.r, sig.s, sig.y_parity + 27) == (expected.r, expected.s, expected.v)


def test_signatures_are_low_s_with_the_right_parity() -> None:
    signer = SoftwareSigner(KEY)
    public_key = keys.PrivateKey(KEY).public_key
    for _ in range(64):
        digest = os.urandom(32)
        sig = signer.sign_digest(digest)
        assert sig.s <= SECPK1_N // 2
        recovered = keys.Signature(
            vrs=(sig.y_parity, sig.r, sig.s)
        ).recover_public_key_from_msg_hash(digest)
        assert recovered == public_key
        # The high-s twin verifies too, but only with the other parity: that is what the
        # normalisation must keep consistent.
        twin = keys.Signature(vrs=(sig.y_parity ^ 1, sig.r, SECPK1_N - sig.s))
        assert twin.recover_public_key_from_msg_hash(digest) == public_key


@pytest.mark.parametrize(
    "key",
    [b"", b"\x01" * 31, b"\x01" * 33, b"\x00" * 32, SECPK1_N.to_bytes(32, "big"), b"\xff" * 32],
)
def test_signer_rejects_invalid_keys_without_quoting_them(key: bytes) -> None:
    with pytest.raises(ValueError) as excinfo:
        SoftwareSigner(key)
    text = str(excinfo.value)
    if int.from_bytes(key, "big") > 10**6:
        assert key.hex() not in text
        assert str(int.from_bytes(key, "big")) not in text
    assert excinfo.value.__cause__ is None


def test_signer_repr() -> None:
    signer = SoftwareSigner(KEY)
    assert repr(signer) == f"SoftwareSigner(address={signer.address})"
    assert KEY.hex() not in repr(signer)


def test_another_process_rotation_is_seen(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """API processes and the worker each open the key store file: a KEK rotated in one is
    used to unwrap at once in the others, and becomes their current KEK within
    KEK_REFRESH seconds (here 0)."""
    import hsm.software as software

    path = tmp_path / "keystore.json"
    first = SoftwareKeyStore.create(path, "pw", scrypt_n=1024)
    second = SoftwareKeyStore.open(path, "pw")
    assert first.rotate_kek() == 2
    wrapped = first.wrap(b"k" * 32)
    assert wrapped.kek_version == 2
    assert second.unwrap(wrapped) == b"k" * 32  # unknown version: the file is re-read
    monkeypatch.setattr(software, "KEK_REFRESH", 0.0)
    assert first.rotate_kek() == 3
    assert second.current_kek_version == 3
    first.destroy_kek(1)
    assert second.kek_versions() == [2, 3]
