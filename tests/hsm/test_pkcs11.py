"""Pkcs11KeyStore against a real SoftHSM2 token: conformance suite plus HSM specifics.

One token per test session, in a private SOFTHSM2_CONF (the PKCS#11 module reads it once
per process); each test starts from an empty token.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pkcs11
import pytest
from cryptography.hazmat.primitives.keywrap import aes_key_wrap_with_padding
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_keys import keys
from eth_keys.constants import SECPK1_N
from pkcs11 import Attribute, KeyType, ObjectClass
from pkcs11 import exceptions as p11
from web3 import EthereumTesterProvider, Web3
from web3.middleware import SignAndSendRawMiddlewareBuilder

from hsm.abc import KeyStoreAPI, WrappedKey, derive_message
from hsm.account import SignerAccount
from hsm.exceptions import HSMError, KeyNotFound, ModuleLoadError, TokenNotFound, WrongPin
from hsm.pkcs11 import _WRAP, DEFAULT_MODULE, DERIVE_LABEL, SIGNER_LABEL, Pkcs11KeyStore
from node.exceptions import NodeError
from node.settings import Settings
from node.wiring import _open_keystore
from tests.hsm.conformance import KeyStoreConformance

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "emr-test"
PIN = "user-pin-7f3a9c"
SO_PIN = "so-pin-51d2e8"


@pytest.fixture(scope="session")
def softhsm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A SoftHSM2 token initialised by scripts/softhsm.sh; yields the module path."""
    if shutil.which("softhsm2-util") is None or not DEFAULT_MODULE.is_file():
        pytest.fail("SoftHSM2 is not installed: run bash scripts/softhsm.sh install")
    directory = tmp_path_factory.mktemp("softhsm")
    env = {**os.environ, "EMR_HSM_SO_PIN": SO_PIN, "EMR_HSM_PIN": PIN}
    subprocess.run(
        ["bash", str(ROOT / "scripts/softhsm.sh"), "init", str(directory), TOKEN],
        env=env,
        check=True,
        capture_output=True,
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SOFTHSM2_CONF", str(directory / "softhsm2.conf"))
        yield DEFAULT_MODULE


def wipe_token(module: Path) -> None:
    """Destroy every object on the test token (no store may be open)."""
    token = pkcs11.lib(str(module)).get_token(token_label=TOKEN)
    with token.open(rw=True, user_pin=PIN) as session:
        for obj in list(session.get_objects({Attribute.TOKEN: True})):
            obj.destroy()


@pytest.fixture
def module(softhsm: Path) -> Path:
    wipe_token(softhsm)
    return softhsm


def open_store(module: Path) -> Pkcs11KeyStore:
    return Pkcs11KeyStore.open(module, TOKEN, PIN)


class TestPkcs11KeyStore(KeyStoreConformance):
    @pytest.fixture
    def location(self, module: Path, tmp_path: Path) -> Path:
        return tmp_path

    def make_keystore(self, location: Path) -> KeyStoreAPI:
        return open_store(DEFAULT_MODULE)

    def reopen_keystore(self, location: Path) -> KeyStoreAPI:
        return open_store(DEFAULT_MODULE)

    def make_other_keystore(self, location: Path) -> KeyStoreAPI:
        pytest.skip("one test token: a second store is the same token")


@pytest.fixture
def store(module: Path) -> Iterator[Pkcs11KeyStore]:
    s = open_store(module)
    yield s
    s.close()


def test_first_open_creates_kek_and_signer(store: Pkcs11KeyStore) -> None:
    assert store.kek_versions() == [1]
    assert store.current_kek_version == 1
    labels = {
        (obj[Attribute.CLASS], obj[Attribute.LABEL])
        for obj in store._session.get_objects({Attribute.TOKEN: True})
    }
    assert labels == {
        (ObjectClass.SECRET_KEY, "kek-v1"),
        (ObjectClass.SECRET_KEY, DERIVE_LABEL),
        (ObjectClass.PRIVATE_KEY, SIGNER_LABEL),
        (ObjectClass.PUBLIC_KEY, SIGNER_LABEL),
    }


def test_derive_key_stays_in_the_token(store: Pkcs11KeyStore) -> None:
    [key] = store._session.get_objects({Attribute.TOKEN: True, Attribute.LABEL: DERIVE_LABEL})
    assert key[Attribute.EXTRACTABLE] is False and key[Attribute.SENSITIVE] is True
    assert key[Attribute.SIGN] is True
    for capability in (Attribute.ENCRYPT, Attribute.DECRYPT, Attribute.WRAP, Attribute.DERIVE):
        assert key[capability] is False
    with pytest.raises(p11.AttributeSensitive):
        key[Attribute.VALUE]
    # derive_secret is the token's CKM_SHA256_HMAC of the shared, domain-separated message.
    expected = bytes(key.sign(derive_message("x"), mechanism=pkcs11.Mechanism.SHA256_HMAC))
    assert store.derive_secret("x") == expected


def test_concurrent_first_opens_agree_on_the_derive_key(module: Path) -> None:
    # Two processes creating the derive key at once leave two: all pick the same one.
    first = open_store(module)
    secret = first.derive_secret("cache-integrity v1")
    first._session.generate_key(
        KeyType.GENERIC_SECRET,
        256,
        label=DERIVE_LABEL,
        id=b"\xff" * 16,  # sorts after any other id
        store=True,
        capabilities=pkcs11.MechanismFlag.SIGN,
        template={Attribute.PRIVATE: True, Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: False},
    )
    first.close()
    again = open_store(module)
    try:
        assert again.derive_secret("cache-integrity v1") == secret
    finally:
        again.close()


def test_wrapped_size_is_rfc_5649(store: Pkcs11KeyStore) -> None:
    for size in (16, 24, 32, 64):
        data_key = os.urandom(size)
        wrapped = store.wrap(data_key)
        assert len(wrapped.blob) == size + 8  # multiples of 8: one 8-byte integrity block
        assert store.unwrap(wrapped) == data_key
    for bad in (b"", b"\x01" * 8, b"\x01" * 20):
        with pytest.raises(ValueError):
            store.wrap(bad)


def test_token_wrap_matches_cryptography(store: Pkcs11KeyStore) -> None:
    # The store's KEKs cannot leave the token, so check the mechanism itself with a known
    # session key: the same bytes as the software store's aes_key_wrap_with_padding.
    known = os.urandom(32)
    kek = store._session.create_object(
        {
            Attribute.CLASS: ObjectClass.SECRET_KEY,
            Attribute.KEY_TYPE: KeyType.AES,
            Attribute.VALUE: known,
            Attribute.TOKEN: False,
            Attribute.WRAP: True,
            Attribute.UNWRAP: True,
        }
    )
    try:
        for size in (16, 32):
            data_key = os.urandom(size)
            with store._lock:
                blob = store._wrap_one(kek, data_key)
            assert blob == aes_key_wrap_with_padding(known, data_key)
    finally:
        kek.destroy()
    assert _WRAP == pkcs11.Mechanism.AES_KEY_WRAP_PAD


def test_kek_cannot_be_extracted(store: Pkcs11KeyStore) -> None:
    store.rotate_kek()
    other = store._keks[2]
    for kek in store._keks.values():
        assert kek[Attribute.TOKEN] is True
        assert kek[Attribute.EXTRACTABLE] is False
        assert kek[Attribute.SENSITIVE] is True
        assert kek[Attribute.NEVER_EXTRACTABLE] is True
        assert kek[Attribute.ALWAYS_SENSITIVE] is True
        assert kek[Attribute.VALUE_LEN] == 32
        with pytest.raises(p11.AttributeSensitive):
            kek[Attribute.VALUE]
    # Nor wrapped out by another key of the token.
    with pytest.raises(p11.KeyUnextractable):
        other.wrap_key(store._keks[1], mechanism=_WRAP)
    private = store.signer()._private_key  # type: ignore[attr-defined]
    assert private[Attribute.EXTRACTABLE] is False and private[Attribute.SENSITIVE] is True
    with pytest.raises(p11.AttributeSensitive):
        private[Attribute.VALUE]


def test_signature_recovers_and_s_is_low(store: Pkcs11KeyStore) -> None:
    signer = store.signer()
    high_s_seen = False
    for _ in range(40):
        digest = os.urandom(32)
        raw = store._call(
            "sign",
            lambda d=digest: signer._private_key.sign(d, mechanism=pkcs11.Mechanism.ECDSA),  # type: ignore[attr-defined]
        )
        high_s_seen |= int.from_bytes(raw[32:], "big") > SECPK1_N // 2
        sig = signer.sign_digest(digest)
        assert sig.s <= SECPK1_N // 2
        recovered = keys.Signature(
            vrs=(sig.y_parity, sig.r, sig.s)
        ).recover_public_key_from_msg_hash(digest)
        assert recovered.to_checksum_address() == signer.address
    assert high_s_seen  # the token does produce high s (p = 2**-40 to miss it by chance)


def test_signer_survives_reopen(module: Path) -> None:
    first = open_store(module)
    address = first.signer().address
    first.close()
    second = open_store(module)
    try:
        assert second.signer().address == address
        assert second.kek_versions() == [1]
    finally:
        second.close()


def test_transaction_signed_in_the_token_is_mined(store: Pkcs11KeyStore) -> None:
    account = SignerAccount(store.signer())
    w3 = Web3(EthereumTesterProvider())
    funder = w3.eth.accounts[0]
    fund = w3.eth.send_transaction({"from": funder, "to": account.address, "value": 10**18})
    assert w3.eth.wait_for_transaction_receipt(fund)["status"] == 1
    w3.middleware_onion.inject(SignAndSendRawMiddlewareBuilder.build(account), layer=0)
    recipient = w3.eth.accounts[1]
    for value in (1, 2, 3):
        tx_hash = w3.eth.send_transaction(
            {"from": account.address, "to": recipient, "value": value}
        )
        receipt = w3.eth.wait_for_transaction_receipt(tx_hash)
        assert receipt["status"] == 1
        assert receipt["from"] == account.address
    assert w3.eth.get_transaction_count(account.address) == 3
    message = encode_defunct(text="consent")
    signed = account.sign_message(message)
    assert Account.recover_message(message, signature=signed.signature) == account.address


def test_concurrent_wrap_and_sign(store: Pkcs11KeyStore) -> None:
    errors: list[BaseException] = []
    signer = store.signer()

    def wrapper() -> None:
        try:
            for _ in range(20):
                keys_ = [os.urandom(32) for _ in range(10)]
                wrapped = store.wrap_many(keys_)
                assert [store.unwrap(w) for w in wrapped] == keys_
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def signing() -> None:
        try:
            for _ in range(50):
                digest = os.urandom(32)
                sig = signer.sign_digest(digest)
                recovered = keys.Signature(
                    vrs=(sig.y_parity, sig.r, sig.s)
                ).recover_public_key_from_msg_hash(digest)
                assert recovered.to_checksum_address() == signer.address
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def rotating() -> None:
        try:
            for _ in range(3):
                store.rotate_kek()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=f) for f in (wrapper, wrapper, signing, signing, rotating)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert store.kek_versions() == [1, 2, 3, 4]


def test_destroy_kek_removes_the_token_object(store: Pkcs11KeyStore) -> None:
    data_key = os.urandom(32)
    old = store.wrap(data_key)
    store.rotate_kek()
    store.destroy_kek(1)
    labels = {o[Attribute.LABEL] for o in store._session.get_objects({Attribute.TOKEN: True})}
    assert "kek-v1" not in labels and "kek-v2" in labels
    with pytest.raises(KeyNotFound):
        store.unwrap(old)
    with pytest.raises(KeyNotFound):
        store.unwrap(WrappedKey(1, old.blob))


def test_wrong_pin(module: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    for pin in ("not-the-pin-1234", "x", ""):
        with pytest.raises(WrongPin) as excinfo:
            Pkcs11KeyStore.open(module, TOKEN, pin)
        text = str(excinfo.value) + repr(excinfo.value)
        assert TOKEN in text
        assert PIN not in text and (not pin or pin not in text)
        exc = excinfo.value  # no chained token error that could carry more detail
        assert exc.__cause__ is None and (exc.__context__ is None or exc.__suppress_context__)
    assert PIN not in caplog.text and "not-the-pin" not in caplog.text
    open_store(module).close()  # the right PIN still works


def test_unknown_token(module: Path) -> None:
    with pytest.raises(TokenNotFound, match="no-such-token") as excinfo:
        Pkcs11KeyStore.open(module, "no-such-token", PIN)
    assert PIN not in str(excinfo.value)


def test_bad_module(module: Path, tmp_path: Path) -> None:
    with pytest.raises(ModuleLoadError, match="no PKCS#11 module") as excinfo:
        Pkcs11KeyStore.open(tmp_path / "missing.so", TOKEN, PIN)
    assert PIN not in str(excinfo.value)
    garbage = tmp_path / "garbage.so"
    garbage.write_bytes(b"not an ELF file")
    with pytest.raises(ModuleLoadError, match="cannot load") as excinfo:
        Pkcs11KeyStore.open(garbage, TOKEN, PIN)
    assert PIN not in str(excinfo.value)


def test_repr_and_logs_have_no_pin(module: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    store = open_store(module)
    try:
        store.rotate_kek()
        store.destroy_kek(1)
        store.wrap_many([os.urandom(32)])
        text = repr(store) + repr(store.signer())
        assert PIN not in text and TOKEN in text and store.signer().address in text
        for event in (
            "generated kek-v1",
            "generated signing key",
            "KEK rotated",
            "destroyed kek-v1",
        ):
            assert event in caplog.text
        assert PIN not in caplog.text
        assert not any(PIN in str(r.args) for r in caplog.records)
    finally:
        store.close()


def test_closed_store(module: Path) -> None:
    store = open_store(module)
    wrapped = store.wrap(os.urandom(32))
    signer = store.signer()
    store.close()
    store.close()  # idempotent
    for call in (
        lambda: store.wrap(os.urandom(32)),
        lambda: store.unwrap(wrapped),
        lambda: store.signer(),
        lambda: store.current_kek_version,
        lambda: store.rotate_kek(),
        lambda: store.kek_versions(),
        lambda: signer.sign_digest(b"\x00" * 32),
    ):
        with pytest.raises(HSMError):
            call()


def test_extractable_kek_is_refused(module: Path) -> None:
    token = pkcs11.lib(str(module)).get_token(token_label=TOKEN)
    with token.open(rw=True, user_pin=PIN) as session:
        session.generate_key(
            KeyType.AES, 256, label="kek-v1", store=True, template={Attribute.EXTRACTABLE: True}
        )
    with pytest.raises(HSMError, match="extractable"):
        open_store(module)


# -- node wiring ----------------------------------------------------------------------------


def hsm_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **hsm: object) -> Settings:
    for name in [k for k in os.environ if k.startswith("EMR_")]:
        monkeypatch.delenv(name)
    return Settings(
        data_dir=tmp_path,
        hsm={"backend": "pkcs11", "pkcs11_module": DEFAULT_MODULE, "token_label": TOKEN, **hsm},
    )


def test_wiring_opens_the_token_with_a_pin_from_env(
    module: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [k for k in os.environ if k.startswith("EMR_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("EMR_HSM__BACKEND", "pkcs11")
    monkeypatch.setenv("EMR_HSM__TOKEN_LABEL", TOKEN)
    monkeypatch.setenv("EMR_HSM__PIN", PIN)
    settings = Settings(data_dir=tmp_path)
    assert PIN not in repr(settings)
    notes: list[str] = []
    store = _open_keystore(settings, tmp_path, notes)
    try:
        assert isinstance(store, Pkcs11KeyStore)
        assert TOKEN in notes[0] and PIN not in " ".join(notes)
        assert not (tmp_path / "keystore.json").exists()
    finally:
        store.close()


def test_wiring_pin_file(module: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pin_file = tmp_path / "hsm.pin"
    pin_file.write_text(PIN + "\n")
    pin_file.chmod(0o600)
    store = _open_keystore(hsm_settings(tmp_path, monkeypatch, pin_file=pin_file), tmp_path, [])
    store.close()
    pin_file.write_text("wrong-pin\n")
    with pytest.raises(WrongPin):
        _open_keystore(hsm_settings(tmp_path, monkeypatch, pin_file=pin_file), tmp_path, [])


def test_wiring_pin_errors(module: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(NodeError, match="needs a PIN"):
        _open_keystore(hsm_settings(tmp_path, monkeypatch), tmp_path, [])
    with pytest.raises(NodeError, match="not both"):
        _open_keystore(
            hsm_settings(tmp_path, monkeypatch, pin=PIN, pin_file=tmp_path / "p"), tmp_path, []
        )
    with pytest.raises(NodeError, match="cannot read") as excinfo:
        _open_keystore(
            hsm_settings(tmp_path, monkeypatch, pin_file=tmp_path / "missing"), tmp_path, []
        )
    assert PIN not in str(excinfo.value)
