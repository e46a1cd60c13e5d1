"""SignerAccount: eth-account compatibility and web3's signing middleware."""

from __future__ import annotations

from typing import Any

import pytest
from eth_account import Account
from eth_account.datastructures import SignedMessage, SignedTransaction
from eth_account.messages import encode_defunct
from eth_keys.constants import SECPK1_N
from web3 import EthereumTesterProvider, Web3
from web3.middleware import SignAndSendRawMiddlewareBuilder

from hsm.abc import EcdsaSignature, SignerAPI
from hsm.account import SignerAccount
from hsm.exceptions import HSMError
from hsm.software import SoftwareSigner

KEY = bytes.fromhex("4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318")
TO = "0x09616C3d61b3331fc4109a9E41a8BDB7d9776609"

TRANSACTIONS: dict[str, dict[str, Any]] = {
    "eip1559": {
        "type": 2,
        "chainId": 1337,
        "nonce": 34,
        "gas": 100_000,
        "maxFeePerGas": 2_000_000_000,
        "maxPriorityFeePerGas": 1_000_000_000,
        "to": TO,
        "value": 10**15,
        "data": "0x616263646566",
        "accessList": (
            {
                "address": "0x0000000000000000000000000000000000000001",
                "storageKeys": ("0x" + "01" * 32,),
            },
        ),
    },
    "eip1559_implicit_type": {
        "chainId": 1,
        "nonce": 0,
        "gas": 21_000,
        "maxFeePerGas": 30_000_000_000,
        "maxPriorityFeePerGas": 1_000_000_000,
        "to": TO,
        "value": 1,
    },
    "eip2930": {
        "type": 1,
        "chainId": 1337,
        "nonce": 1,
        "gas": 100_000,
        "gasPrice": 10**9,
        "to": TO,
        "value": 0,
        "data": b"\x01\x02",
        "accessList": (),
    },
    "legacy_eip155": {
        "chainId": 1337,
        "nonce": 0,
        "gas": 2_000_000,
        "gasPrice": 234_567_897_654_321,
        "to": TO,
        "value": 10**9,
    },
    "legacy_pre_eip155": {
        "nonce": 5,
        "gas": 21_000,
        "gasPrice": 10**9,
        "to": TO,
        "value": 7,
    },
    "contract_creation": {
        "type": 2,
        "chainId": 31337,
        "nonce": 3,
        "gas": 500_000,
        "maxFeePerGas": 10**10,
        "maxPriorityFeePerGas": 10**9,
        "data": "0x6080604052",
    },
}

TYPED_DATA: dict[str, Any] = {
    "domain_data": {
        "name": "ConsentRegistry",
        "version": "1",
        "chainId": 1337,
        "verifyingContract": "0xCcCCccccCCCCcCCCCCCcCcCccCcCCCcCcccccccC",
    },
    "message_types": {
        "Consent": [
            {"name": "patient", "type": "address"},
            {"name": "grantee", "type": "address"},
            {"name": "category", "type": "bytes32"},
            {"name": "expiry", "type": "uint64"},
            {"name": "nonce", "type": "uint256"},
        ]
    },
    "message_data": {
        "patient": "0xCD2a3d9F938E13CD947Ec05AbC7FE734Df8DD826",
        "grantee": "0xbBbBBBBbbBBBbbbBbbBbbbbBBbBbbbbBbBbbBBbB",
        "category": b"\x11" * 32,
        "expiry": 1_900_000_000,
        "nonce": 0,
    },
}


@pytest.fixture
def account() -> SignerAccount:
    return SignerAccount(SoftwareSigner(KEY))


@pytest.mark.parametrize("name", sorted(TRANSACTIONS))
def test_transactions_match_local_account_byte_for_byte(account: SignerAccount, name: str) -> None:
    tx = TRANSACTIONS[name]
    ours = account.sign_transaction(tx)  # type: ignore[arg-type]
    theirs = Account.from_key(KEY).sign_transaction(tx)  # type: ignore[arg-type]
    assert isinstance(ours, SignedTransaction)
    # RFC 6979 nonces make ECDSA deterministic, so the encodings are identical.
    assert ours == theirs
    assert Account.recover_transaction(ours.raw_transaction) == account.address


def test_from_field(account: SignerAccount) -> None:
    tx = dict(TRANSACTIONS["eip1559"])
    signed = account.sign_transaction({**tx, "from": account.address.lower()})  # type: ignore[typeddict-item]
    assert signed == account.sign_transaction(tx)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="from field"):
        account.sign_transaction({**tx, "from": TO})  # type: ignore[typeddict-item]


def test_messages_match_local_account(account: SignerAccount) -> None:
    local = Account.from_key(KEY)
    message = encode_defunct(text="I♥SF")
    ours = account.sign_message(message)
    assert isinstance(ours, SignedMessage)
    assert ours == local.sign_message(message)
    assert Account.recover_message(message, signature=ours.signature) == account.address

    digest = b"\x42" * 32
    assert account.unsafe_sign_hash(digest) == local.unsafe_sign_hash(digest)
    with pytest.raises(ValueError):
        account.unsafe_sign_hash(b"\x42" * 31)


def test_typed_data_matches_local_account(account: SignerAccount) -> None:
    ours = account.sign_typed_data(**TYPED_DATA)
    assert ours == Account.from_key(KEY).sign_typed_data(**TYPED_DATA)


class TwinSigner(SignerAPI):
    """A signer returning the high-s twin (``flip_parity=False`` also breaks the parity),
    as a careless HSM backend might."""

    def __init__(self, inner: SoftwareSigner, *, flip_parity: bool = True) -> None:
        self._inner = inner
        self._flip = flip_parity

    @property
    def address(self) -> str:
        return self._inner.address

    def sign_digest(self, digest: bytes) -> EcdsaSignature:
        sig = self._inner.sign_digest(digest)
        parity = sig.y_parity ^ 1 if self._flip else sig.y_parity
        return EcdsaSignature(r=sig.r, s=SECPK1_N - sig.s, y_parity=parity)


def test_high_s_from_a_signer_is_normalised(account: SignerAccount) -> None:
    tx = TRANSACTIONS["eip1559"]
    twin = SignerAccount(TwinSigner(SoftwareSigner(KEY)))
    assert twin.sign_transaction(tx) == account.sign_transaction(tx)  # type: ignore[arg-type]


def test_wrong_parity_from_a_signer_is_refused() -> None:
    broken = SignerAccount(TwinSigner(SoftwareSigner(KEY), flip_parity=False))
    with pytest.raises(HSMError, match="does not recover"):
        broken.sign_message(encode_defunct(text="consent"))


def test_repr_has_no_key(account: SignerAccount) -> None:
    assert KEY.hex() not in repr(account)
    assert account.address in repr(account)


def test_web3_middleware_sends_from_the_signer_account(account: SignerAccount) -> None:
    w3 = Web3(EthereumTesterProvider())
    funder = w3.eth.accounts[0]
    fund = w3.eth.send_transaction({"from": funder, "to": account.address, "value": 10**18})
    assert w3.eth.wait_for_transaction_receipt(fund)["status"] == 1

    w3.middleware_onion.inject(SignAndSendRawMiddlewareBuilder.build(account), layer=0)
    recipient = w3.eth.accounts[1]
    before = w3.eth.get_balance(recipient)
    tx_hash = w3.eth.send_transaction({"from": account.address, "to": recipient, "value": 12345})
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash)
    assert receipt["status"] == 1
    assert receipt["from"] == account.address
    assert w3.eth.get_transaction(tx_hash)["from"] == account.address
    assert w3.eth.get_balance(recipient) == before + 12345
    assert w3.eth.get_transaction_count(account.address) == 1
