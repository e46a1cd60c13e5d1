"""``ZkGateAPI`` over web3: the CredentialRegistry and ZkAccessGate contracts.

Sends go through the node's ``Web3ChainClient`` (one nonce lock for the node's account).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eth_utils import to_checksum_address
from web3._utils.events import get_event_data

from node.chain.abc import ZkGateAPI
from node.chain.artifacts import load_artifact
from node.chain.client import Web3ChainClient
from node.chain.models import CredentialEvent, TxResult, ZkAccessEvent, ZkAccessRequest
from node.chain.zk_deploy import ZkDeployment

MAX_ZK_BATCH = 32


def access_gas_limit(proofs: int) -> int:
    """Headroom over docs/gas.md: a pairing per proof plus three, scalar multiplications, a
    fresh nullifier slot and an event each."""
    return 400_000 + 160_000 * proofs


def credential_gas_limit(commitments: int) -> int:
    """An insertion hashes 20 levels with PoseidonT3 (~670k gas; ~1.6M for the tree's
    first, which initialises its storage)."""
    return 1_800_000 + 750_000 * commitments


MAX_CREDENTIAL_BATCH = 32  # keeps an addCredentials call inside a 30M-gas block


class Web3ZkGate(ZkGateAPI):
    def __init__(self, client: Web3ChainClient, deployment: ZkDeployment) -> None:
        self._client = client
        self._deployment = deployment
        w3 = client.web3
        self._registry = w3.eth.contract(
            address=deployment.credential_registry, abi=load_artifact("CredentialRegistry").abi
        )
        self._gate = w3.eth.contract(
            address=deployment.zk_access_gate, abi=load_artifact("ZkAccessGate").abi
        )
        self._credential_events: dict[str, dict[str, Any]] = {
            item["name"]: item
            for item in self._registry.abi
            if item.get("type") == "event"
            and item["name"] in ("CredentialAdded", "CredentialRevoked")
        }

    @property
    def deployment(self) -> ZkDeployment:
        return self._deployment

    # -- credentials ---------------------------------------------------------------
    def add_credentials(self, commitments: Sequence[int]) -> TxResult:
        fn = self._registry.functions.addCredentials(list(commitments))
        tx_hash, receipt = self._client.transact(fn, credential_gas_limit(len(commitments)))
        return TxResult(tx_hash, int(receipt["blockNumber"]))

    def revoke_credential(
        self, commitment: int, siblings: Sequence[int], path_indices: Sequence[int]
    ) -> TxResult:
        fn = self._registry.functions.revokeCredential(
            commitment, list(siblings), list(path_indices)
        )
        tx_hash, receipt = self._client.transact(fn, credential_gas_limit(2))
        return TxResult(tx_hash, int(receipt["blockNumber"]))

    def current_root(self) -> int:
        return int(self._client.call(self._registry.functions.root().call))

    def is_valid_root(self, root: int) -> bool:
        return bool(self._client.call(self._registry.functions.isValidRoot(root).call))

    def credential_events(self, from_block: int, to_block: int) -> list[CredentialEvent]:
        w3 = self._client.web3
        logs = self._client.call(
            lambda: w3.eth.get_logs(
                {
                    "fromBlock": from_block,
                    "toBlock": to_block,
                    "address": self._deployment.credential_registry,
                }
            )
        )
        topics = {
            w3.keccak(text=f"{abi['name']}({','.join(i['type'] for i in abi['inputs'])})"): abi
            for abi in self._credential_events.values()
        }
        events: list[CredentialEvent] = []
        for entry in logs:
            abi = topics.get(bytes(entry["topics"][0]))
            if abi is None:
                continue
            args = get_event_data(w3.codec, abi, entry)["args"]  # type: ignore[arg-type]
            events.append(
                CredentialEvent(
                    kind="added" if abi["name"] == "CredentialAdded" else "revoked",
                    hospital=to_checksum_address(args["hospital"]),
                    commitment=int(args["commitment"]),
                    index=int(args["index"]),
                    root=int(args["root"]),
                    block_number=int(entry["blockNumber"]),
                    log_index=int(entry["logIndex"]),
                )
            )
        events.sort(key=lambda e: (e.block_number, e.log_index))
        return events

    # -- policies and access ---------------------------------------------------------
    def set_category_policy(self, category: bytes, allowed_roles: int) -> TxResult:
        fn = self._gate.functions.setCategoryPolicy(category, allowed_roles)
        tx_hash, receipt = self._client.transact(fn)
        return TxResult(tx_hash, int(receipt["blockNumber"]))

    def category_policy(self, category: bytes) -> int:
        return int(self._client.call(self._gate.functions.categoryPolicy(category).call))

    def nullifier_used(self, nullifier_hash: int) -> bool:
        return bool(self._client.call(self._gate.functions.nullifierUsed(nullifier_hash).call))

    def access_batch(self, requests: Sequence[ZkAccessRequest]) -> TxResult:
        fn = self._gate.functions.accessBatch(
            [r.as_tuple() for r in requests], [list(r.proof) for r in requests]
        )
        tx_hash, receipt = self._client.transact(fn, access_gas_limit(len(requests)))
        return TxResult(tx_hash, int(receipt["blockNumber"]))

    def access_events(
        self, *, record_id: bytes | None = None, from_block: int | None = None
    ) -> list[ZkAccessEvent]:
        w3 = self._client.web3
        abi = next(
            item
            for item in self._gate.abi
            if item.get("type") == "event" and item["name"] == "ZkAccessGranted"
        )
        topic0 = "0x" + w3.keccak(
            text=f"ZkAccessGranted({','.join(i['type'] for i in abi['inputs'])})"
        ).hex().removeprefix("0x")
        topics: list[Any] = [topic0]
        if record_id is not None:
            topics.append("0x" + record_id.hex())
        params: dict[str, Any] = {
            "fromBlock": self._deployment.block_number if from_block is None else from_block,
            "toBlock": "latest",
            "address": self._deployment.zk_access_gate,
            "topics": topics,
        }
        logs = self._client.call(lambda: w3.eth.get_logs(params))  # type: ignore[arg-type]
        events = []
        for entry in logs:
            args = get_event_data(w3.codec, abi, entry)["args"]  # type: ignore[arg-type]
            events.append(
                ZkAccessEvent(
                    record_id=bytes(args["recordId"]),
                    nullifier_hash=int(args["nullifierHash"]),
                    category=bytes(args["category"]),
                    signal=bytes(args["signal"]),
                    root=int(args["root"]),
                    relayer=to_checksum_address(args["relayer"]),
                    tx_hash=bytes(entry["transactionHash"]),
                    block_number=int(entry["blockNumber"]),
                    log_index=int(entry["logIndex"]),
                )
            )
        events.sort(key=lambda e: (e.block_number, e.log_index))
        return events
