"""``RecoverableWalletsAPI`` and ``ContractSignaturesAPI`` over web3.

Sends go through the node's ``Web3ChainClient`` (one nonce lock for the node's account, the
worker's sender in an API process), as ``Web3ZkGate`` does.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

from eth_abi import encode
from eth_utils import keccak, to_checksum_address
from hexbytes import HexBytes
from web3.logs import DISCARD

from node.chain.abc import ContractSignaturesAPI, RecoverableWalletsAPI
from node.chain.artifacts import load_artifact
from node.chain.client import Web3ChainClient, simulation_errors
from node.chain.exceptions import ChainUnavailable
from node.chain.models import TxResult, WalletState
from node.chain.wallet_deploy import FACTORY, WalletDeployment

ERC1271_MAGIC = bytes.fromhex("1626ba7e")
# isValidSignature asked with at most this much gas: a contract that loops cannot make
# a sign-in cost the chain node more than a bounded call.
ERC1271_CALL_GAS = 200_000
ZERO_SALT = b"\x00" * 32


def clone_code(implementation: str) -> bytes:
    """The runtime code of an EIP-1167 minimal proxy to ``implementation`` (45 bytes)."""
    return (
        bytes.fromhex("363d3d373d3d3d363d73")
        + bytes.fromhex(to_checksum_address(implementation)[2:])
        + bytes.fromhex("5af43d82803e903d91602b57fd5bf3")
    )


def _mask_members(mask: int, guardians: Sequence[str]) -> tuple[str, ...]:
    return tuple(g for i, g in enumerate(guardians) if mask >> i & 1)


class Web3ContractSignatures(ContractSignaturesAPI):
    def __init__(self, client: Web3ChainClient) -> None:
        self._client = client

    def is_valid_signature(self, account: str, digest: bytes, signature: bytes) -> bool:
        w3 = self._client.web3
        selector = keccak(text="isValidSignature(bytes32,bytes)")[:4]
        data = selector + encode(["bytes32", "bytes"], [bytes(digest), bytes(signature)])
        call: dict[str, Any] = {
            "to": to_checksum_address(account),
            "data": HexBytes(data),
            "gas": ERC1271_CALL_GAS,
        }
        try:
            answer = bytes(self._client.call(lambda: w3.eth.call(call)))  # type: ignore[arg-type]
        except ChainUnavailable:
            raise
        except Exception:  # a revert, out of gas, an invalid opcode: not a valid signature
            return False
        return len(answer) >= 32 and answer[:4] == ERC1271_MAGIC


class Web3RecoverableWallets(RecoverableWalletsAPI):
    def __init__(self, client: Web3ChainClient, deployment: WalletDeployment) -> None:
        self._client = client
        self._deployment = deployment
        w3 = client.web3
        self._factory = w3.eth.contract(address=deployment.factory, abi=load_artifact(FACTORY).abi)
        self._abi = load_artifact("RecoverableWallet").abi
        self._code_hash = keccak(clone_code(deployment.implementation))
        self._known: set[str] = set()  # wallets seen: a clone's code never changes
        self._lock = threading.Lock()

    @property
    def chain_id(self) -> int:
        return self._client.chain_id

    @property
    def factory(self) -> str:
        return self._deployment.factory

    def _wallet(self, address: str) -> Any:
        return self._client.web3.eth.contract(address=to_checksum_address(address), abi=self._abi)

    def chain_time(self) -> int:
        # The time a transaction sent now would see: the pending block's. A chain that mines
        # only on demand (hardhat) has an old latest block, and its clock may run ahead of
        # the wall clock; a deadline or an eta is judged as the contract will judge it.
        pending = self._client.call(lambda: self._client.web3.eth.get_block("pending"))
        return max(int(pending["timestamp"]), int(time.time()))

    def is_wallet(self, address: str) -> bool:
        address = to_checksum_address(address)
        if address in self._known:
            return True
        code = bytes(self._client.call(lambda: self._client.web3.eth.get_code(address)))
        if keccak(code) != self._code_hash:
            return False
        with self._lock:
            if len(self._known) >= 100_000:
                self._known.clear()
            self._known.add(address)
        return True

    def wallet(self, address: str) -> WalletState | None:
        if not self.is_wallet(address):
            return None
        f = self._wallet(address).functions
        read = self._client.call
        guardians = tuple(to_checksum_address(g) for g in read(f.guardians().call))
        pending, eta, mask = read(f.pendingRecovery().call)
        return WalletState(
            address=to_checksum_address(address),
            owner=to_checksum_address(read(f.owner().call)),
            guardians=guardians,
            threshold=int(read(f.threshold().call)),
            delay=int(read(f.recoveryDelay().call)),
            nonce=int(read(f.nonce().call)),
            pending_owner=None if int(eta) == 0 else to_checksum_address(pending),
            eta=None if int(eta) == 0 else int(eta),
            pending_approvals=_mask_members(int(mask), guardians),
        )

    def approvals(self, address: str, new_owner: str) -> tuple[str, ...]:
        f = self._wallet(address).functions
        guardians = [to_checksum_address(g) for g in self._client.call(f.guardians().call)]
        mask = int(self._client.call(f.approvals(to_checksum_address(new_owner)).call))
        return _mask_members(mask, guardians)

    def _create_args(
        self, owner: str, guardians: Sequence[str], threshold: int, delay: int
    ) -> tuple[Any, ...]:
        return (
            to_checksum_address(owner),
            [to_checksum_address(g) for g in guardians],
            int(threshold),
            int(delay),
            ZERO_SALT,
        )

    def predict(self, owner: str, guardians: Sequence[str], threshold: int, delay: int) -> str:
        fn = self._factory.functions.predictWallet(
            *self._create_args(owner, guardians, threshold, delay)
        )
        return to_checksum_address(self._client.call(fn.call))

    def create(
        self, owner: str, guardians: Sequence[str], threshold: int, delay: int
    ) -> tuple[str, TxResult]:
        fn = self._factory.functions.createWallet(
            *self._create_args(owner, guardians, threshold, delay)
        )
        tx_hash, receipt = self._send(fn)
        created = self._factory.events.WalletCreated().process_receipt(receipt, errors=DISCARD)
        address = to_checksum_address(created[0]["args"]["wallet"])
        return address, TxResult(tx_hash, int(receipt["blockNumber"]))

    def approve_recovery(
        self, wallet: str, new_owner: str, guardian: str, deadline: int, signature: bytes
    ) -> TxResult:
        fn = self._wallet(wallet).functions.approveRecovery(
            to_checksum_address(new_owner), to_checksum_address(guardian), deadline, signature
        )
        return self._transact(fn)

    def cancel_recovery(self, wallet: str, deadline: int, signature: bytes) -> TxResult:
        return self._transact(self._wallet(wallet).functions.cancelRecovery(deadline, signature))

    def finalize_recovery(self, wallet: str) -> TxResult:
        return self._transact(self._wallet(wallet).functions.finalizeRecovery())

    def _transact(self, fn: Any) -> TxResult:
        tx_hash, receipt = self._send(fn)
        return TxResult(tx_hash, int(receipt["blockNumber"]))

    def _send(self, fn: Any) -> tuple[bytes, dict[str, Any]]:
        """Simulate at "pending" (the next block's time: a JSON-RPC node runs a call at
        "latest" with the last block's timestamp, which would refuse a finalize due since),
        then have the node's sender sign and send it; return (tx hash, receipt)."""
        sender = self._client.sender
        with sender.exclusive():
            with simulation_errors():
                estimate = fn.estimate_gas({"from": sender.address}, block_identifier="pending")
            data = bytes(HexBytes(fn._encode_transaction_data()))
            tx_hash = sender.send(fn.address, data, estimate + estimate // 5 + 10_000)
        w3 = self._client.web3
        receipt = self._client.call(lambda: w3.eth.get_transaction_receipt(HexBytes(tx_hash)))
        return tx_hash, dict(receipt)


__all__ = ["Web3ContractSignatures", "Web3RecoverableWallets", "clone_code"]
