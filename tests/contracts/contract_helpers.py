"""Helpers for the contract tests: an OpenZeppelin-compatible Merkle tree, custom-error
decoding and EIP-712 signing. Kept here, independent of the node's own modules."""

from __future__ import annotations

import ast
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from eth_abi import decode, encode
from eth_account import Account
from eth_tester import EthereumTester
from eth_utils import function_signature_to_4byte_selector, keccak, to_checksum_address
from web3 import Web3
from web3.contract import Contract
from web3.exceptions import ContractCustomError, ContractLogicError

from node.chain.artifacts import load_artifact
from node.chain.deploy import Deployment
from node.consent.typed_data import full_message

ZERO32 = b"\x00" * 32
ALL_CONTRACTS = (
    "Consortium",
    "RecordRegistry",
    "ConsentRegistry",
    "AccessLog",
    "ERC1271WalletMock",
    "CallTargetMock",
)

# ---------------------------------------------------------------- Merkle tree (OZ layout)


def namespaced_id(member_id: int, label: str) -> bytes:
    """A record id in member ``member_id``'s namespace (RecordRegistry: the first 4 bytes are
    the anchoring hospital's member id; founders a, b, c are members 1, 2, 3)."""
    return member_id.to_bytes(4, "big") + keccak(text=label)[4:]


def record_leaf(record_id: bytes, patient: str, content_hash: bytes, previous_id: bytes) -> bytes:
    """RecordRegistry.leafHash: OZ StandardMerkleTree leaf of (bytes32,address,bytes32,bytes32)."""
    encoded = encode(
        ["bytes32", "address", "bytes32", "bytes32"],
        [record_id, patient, content_hash, previous_id],
    )
    return keccak(keccak(encoded))


def hash_pair(a: bytes, b: bytes) -> bytes:
    """Commutative keccak256, as OZ ``Hashes.commutativeKeccak256``."""
    return keccak(a + b) if a < b else keccak(b + a)


class StandardMerkleTree:
    """The array layout of ``@openzeppelin/merkle-tree`` (``makeMerkleTree``): leaves sorted,
    stored from the end of a complete binary tree of ``2n - 1`` nodes."""

    def __init__(self, leaves: Sequence[bytes]) -> None:
        if not leaves:
            raise ValueError("empty tree")
        ordered = sorted(leaves)
        n = len(ordered)
        self.tree: list[bytes] = [b""] * (2 * n - 1)
        for i, leaf in enumerate(ordered):
            self.tree[len(self.tree) - 1 - i] = leaf
        for i in range(len(self.tree) - 1 - n, -1, -1):
            self.tree[i] = hash_pair(self.tree[2 * i + 1], self.tree[2 * i + 2])

    @property
    def root(self) -> bytes:
        return self.tree[0]

    def proof(self, leaf: bytes) -> list[bytes]:
        index = self.tree.index(leaf)
        path: list[bytes] = []
        while index > 0:
            sibling = index + 1 if index % 2 == 1 else index - 1
            path.append(self.tree[sibling])
            index = (index - 1) // 2
        return path


def process_proof(leaf: bytes, proof: Sequence[bytes]) -> bytes:
    computed = leaf
    for sibling in proof:
        computed = hash_pair(computed, sibling)
    return computed


# ---------------------------------------------------------------- custom errors


def _error_table() -> dict[bytes, tuple[str, list[str]]]:
    table: dict[bytes, tuple[str, list[str]]] = {
        function_signature_to_4byte_selector("Error(string)"): ("Error", ["string"]),
        function_signature_to_4byte_selector("Panic(uint256)"): ("Panic", ["uint256"]),
    }
    for name in ALL_CONTRACTS:
        for item in load_artifact(name).abi:
            if item["type"] == "error":
                types = [i["type"] for i in item["inputs"]]
                selector = function_signature_to_4byte_selector(
                    f"{item['name']}({','.join(types)})"
                )
                table[selector] = (item["name"], types)
    return table


ERRORS = _error_table()


def revert_data(err: BaseException) -> bytes | None:
    """Raw revert data of a failed call/transaction (web3 JSON-RPC or eth-tester)."""
    if isinstance(err, ContractCustomError | ContractLogicError):
        data = err.data.get("data") if isinstance(err.data, dict) else err.data
        if isinstance(data, str) and data.startswith("0x"):
            return bytes.fromhex(data.removeprefix("0x"))
    message = err.args[0] if err.args else None
    if isinstance(message, str) and "execution reverted: b" in message:
        literal = message.split("execution reverted: ", 1)[1]
        value = ast.literal_eval(literal)
        return value if isinstance(value, bytes) else None
    return None


def decode_error(data: bytes) -> tuple[str, tuple[Any, ...]]:
    name, types = ERRORS[data[:4]]
    values = decode(types, data[4:])
    return name, tuple(
        to_checksum_address(v) if t == "address" else v for t, v in zip(types, values, strict=True)
    )


def expect_revert(action: Callable[[], Any], name: str) -> tuple[Any, ...]:
    """Run ``action`` (a transact/call), assert it reverts with custom error ``name``; return
    the error's decoded arguments."""
    with pytest.raises(Exception) as info:
        action()
    data = revert_data(info.value)
    assert data is not None, f"no revert data in {info.value!r}"
    got, args = decode_error(data)
    assert got == name, f"expected {name}, got {got}{args}"
    return args


# ---------------------------------------------------------------- EIP-712


def domain_of(consent: Any) -> dict[str, Any]:
    """The EIP-712 domain as the contract reports it (ERC-5267 ``eip712Domain()``)."""
    fields, name, version, chain_id, verifying, _salt, _ext = (
        consent.functions.eip712Domain().call()
    )
    assert fields == b"\x0f"  # name, version, chainId, verifyingContract
    return {"name": name, "version": version, "chainId": chain_id, "verifyingContract": verifying}


def sign(key: bytes, primary: str, message: dict[str, Any], domain: dict[str, Any]) -> bytes:
    payload = full_message(primary, message, domain)
    return bytes(Account.sign_typed_data(key, full_message=payload).signature)


def grant_tuple(m: dict[str, Any]) -> tuple[Any, ...]:
    return (
        m["patient"],
        m["grantee"],
        m["scopeKind"],
        m["scope"],
        m["expiresAt"],
        m["nonce"],
        m["deadline"],
    )


def revoke_tuple(m: dict[str, Any]) -> tuple[Any, ...]:
    return (m["patient"], m["grantee"], m["scopeKind"], m["scope"], m["nonce"], m["deadline"])


def address_topic(address: str) -> str:
    return "0x" + "00" * 12 + address[2:].lower()


# ---------------------------------------------------------------- the test chain

FOUNDER_NAMES = ("Alpha Hospital", "Beta Clinic", "Gamma Medical Center")


@dataclass
class Chain:
    tester: EthereumTester
    w3: Web3
    deployment: Deployment
    consortium: Contract
    records: Contract
    consent: Contract
    access_log: Contract
    accounts: list[str]

    # founders (members) and two outsiders
    @property
    def a(self) -> str:
        return self.accounts[0]

    @property
    def b(self) -> str:
        return self.accounts[1]

    @property
    def c(self) -> str:
        return self.accounts[2]

    @property
    def outsider(self) -> str:
        return self.accounts[3]

    def now(self) -> int:
        return int(self.w3.eth.get_block("latest")["timestamp"])

    def send(self, fn: Any, sender: str) -> Any:
        """Transact from ``sender`` and return the receipt (asserting success)."""
        tx_hash = fn.transact({"from": sender})
        receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash)
        assert receipt["status"] == 1
        return receipt

    def travel_to(self, timestamp: int) -> None:
        """Mine an empty block stamped exactly ``timestamp`` (eth-tester's ``time_travel``
        may land a second early: correct for it)."""
        self.tester.time_travel(timestamp)
        drift = timestamp - self.now()
        if drift:
            self.tester.time_travel(timestamp + drift)
        assert self.now() == timestamp

    def travel(self, seconds: int) -> int:
        """Mine a block ``seconds`` after the latest one; return its timestamp."""
        self.travel_to(self.now() + seconds)
        return self.now()

    def contract(self, name: str, address: str) -> Contract:
        return self.w3.eth.contract(address=address, abi=load_artifact(name).abi)

    def deploy(self, name: str, *args: Any, sender: str | None = None) -> Contract:
        art = load_artifact(name)
        factory = self.w3.eth.contract(abi=art.abi, bytecode=art.bytecode)
        receipt = self.send(factory.constructor(*args), sender or self.a)
        return self.contract(name, receipt["contractAddress"])
