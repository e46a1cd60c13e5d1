"""Sign-In with Ethereum for contract wallets (ERC-1271): when the signature does not
recover to the challenged address, the node asks the contract at it. EOAs sign in as
before; the ERC1271WalletMock and a RecoverableWallet sign in with their owner's key; any
other key, an EOA's wrong signature and a contract that says no are refused (401); a chain
that cannot be asked is 503."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount

from node.auth import siwe
from node.chain.abc import ContractSignaturesAPI
from node.chain.artifacts import load_artifact
from node.chain.exceptions import ChainUnavailable
from node.client import ApiError, EmrClient
from node.settings import WalletsSettings
from tests.node.conftest import RunningNode, make_settings, start_node


@pytest.fixture
def rn(tmp_path: Any) -> Iterator[RunningNode]:
    settings = make_settings(tmp_path / "node").model_copy(
        update={"wallets": WalletsSettings(min_recovery_delay=0)}
    )
    node = start_node(tmp_path / "node", settings)
    yield node
    node.stop()


def _deploy_mock(rn: RunningNode, owner: str) -> str:
    """Deploy ERC1271WalletMock(owner) from the node's account (its lock and nonce)."""
    chain = rn.node.chain
    w3 = chain.web3  # type: ignore[attr-defined]
    art = load_artifact("ERC1271WalletMock")
    with chain._lock:  # type: ignore[attr-defined]
        account = chain._account  # type: ignore[attr-defined]
        tx = (
            w3.eth.contract(abi=art.abi, bytecode=art.bytecode)
            .constructor(owner)
            .build_transaction(
                {
                    "from": account.address,
                    "nonce": w3.eth.get_transaction_count(account.address, "pending"),
                    "gas": 1_000_000,
                    "gasPrice": w3.eth.gas_price,
                }
            )
        )
        receipt = w3.eth.wait_for_transaction_receipt(
            w3.eth.send_raw_transaction(account.sign_transaction(tx).raw_transaction)
        )
        chain._nonce = None  # type: ignore[attr-defined]
    return str(receipt["contractAddress"])


def _login(client: EmrClient, address: str, signer: LocalAccount) -> dict[str, Any]:
    challenge = client._json("POST", "/auth/challenge", json={"address": address})
    signed = signer.sign_message(encode_defunct(text=challenge["message"]))
    body = {"message": challenge["message"], "signature": "0x" + signed.signature.hex()}
    return dict(client._json("POST", "/auth/login", json=body))


def _refused(call: Any, status: int) -> ApiError:
    with pytest.raises(ApiError) as info:
        call()
    assert info.value.status == status, info.value.detail
    return info.value


def test_eoa_still_signs_in(rn: RunningNode) -> None:
    person = Account.create()
    with rn.client() as c:
        assert _login(c, person.address, person)["address"] == person.address
        _refused(lambda: _login(c, person.address, Account.create()), 401)


def test_erc1271_mock_signs_in_with_its_owner_key(rn: RunningNode) -> None:
    owner, stranger = Account.create(), Account.create()
    mock = _deploy_mock(rn, owner.address)
    with rn.client() as c:
        session = _login(c, mock, owner)
        assert session["address"] == mock
        assert "not made by" in _refused(lambda: _login(c, mock, stranger), 401).detail


def test_recoverable_wallet_signs_in_with_its_owner_key(rn: RunningNode) -> None:
    owner, guardian, stranger = Account.create(), Account.create(), Account.create()
    with rn.client(rn.admin_token) as admin:
        token = admin.create_token("ehr", "hospital")
    with rn.client(token) as hospital:
        wallet = hospital.wallets.create(owner.address, [guardian.address], 1, 60)["address"]
    with rn.client() as c:
        assert _login(c, wallet, owner)["address"] == wallet
        _refused(lambda: _login(c, wallet, stranger), 401)
        _refused(lambda: _login(c, wallet, guardian), 401)  # guardians never sign for it


def test_a_challenge_is_used_once_even_by_a_contract_wallet(rn: RunningNode) -> None:
    owner = Account.create()
    mock = _deploy_mock(rn, owner.address)
    with rn.client() as c:
        challenge = c._json("POST", "/auth/challenge", json={"address": mock})
        signed = owner.sign_message(encode_defunct(text=challenge["message"]))
        body = {"message": challenge["message"], "signature": "0x" + signed.signature.hex()}
        c._json("POST", "/auth/login", json=body)
        _refused(lambda: c._json("POST", "/auth/login", json=body), 401)  # replayed


class _Down(ContractSignaturesAPI):
    def is_valid_signature(self, account: str, digest: bytes, signature: bytes) -> bool:
        raise ChainUnavailable("the chain node cannot be reached")


def test_chain_down_is_503_only_when_a_contract_must_be_asked(rn: RunningNode) -> None:
    person = Account.create()
    saved = rn.node.signatures
    rn.node.signatures = _Down()
    try:
        with rn.client() as c:
            assert _login(c, person.address, person)["address"] == person.address  # no call
            err = _refused(lambda: _login(c, person.address, Account.create()), 503)
            assert err.code == "chain_unavailable"
    finally:
        rn.node.signatures = saved


class _Says(ContractSignaturesAPI):
    def __init__(self, answer: bool) -> None:
        self.answer = answer
        self.asked: list[tuple[str, bytes]] = []

    def is_valid_signature(self, account: str, digest: bytes, signature: bytes) -> bool:
        self.asked.append((account, digest))
        return self.answer


def test_signed_by_asks_the_contract_with_the_eip191_hash() -> None:
    wallet, owner = "0x" + "ab" * 20, Account.create()
    message = "example.org wants you to sign in with your Ethereum account:\n..."
    signature = bytes(owner.sign_message(encode_defunct(text=message)).signature)
    yes, no = _Says(True), _Says(False)
    assert siwe.signed_by(message, signature, wallet, contracts=yes)
    assert yes.asked == [(wallet, siwe.message_hash(message))]
    assert not siwe.signed_by(message, signature, wallet, contracts=no)
    assert not siwe.signed_by(message, signature, wallet, contracts=None)
    # the owner's own address is recognised without asking anyone
    assert siwe.signed_by(message, signature, owner.address, contracts=no) and no.asked == [
        (wallet, siwe.message_hash(message))
    ]
