"""``ZkGateAPI`` over web3: CredentialRegistry v2 (a LeanIMT of credential leaves) and
ZkAccessGate v2.

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
MAX_CREDENTIAL_BATCH = 32  # one insertMany per request, far inside a block


def access_gas_limit(proofs: int) -> int:
    """Headroom over docs/gas.md: a pairing per proof plus three, the input sums, a fresh
    request slot and an event each, plus the consent lookups."""
    return 400_000 + 160_000 * proofs


def credential_gas_limit(leaves: int) -> int:
    """A LeanIMT insertion hashes at most 20 levels with PoseidonT3 (~30k gas per hash is a
    generous bound) and writes a few slots."""
    return 400_000 + 250_000 * leaves


# A revocation recomputes one path twice (the old leaf to check it, then the zero leaf):
# up to 40 PoseidonT3 hashes (~17k each, docs/gas.md) at depth 20, plus the leaf hash.
REVOKE_GAS_LIMIT = 1_200_000


def _event_abi(abi: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return next(item for item in abi if item.get("type") == "event" and item["name"] == name)


def _topic(w3: Any, abi: dict[str, Any]) -> str:
    signature = f"{abi['name']}({','.join(i['type'] for i in abi['inputs'])})"
    return "0x" + bytes(w3.keccak(text=signature)).hex()


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
        self._issued = _event_abi(self._registry.abi, "CredentialIssued")
        self._revoked = _event_abi(self._registry.abi, "CredentialRevoked")
        self._granted = _event_abi(self._gate.abi, "ZkAccessGranted")
        self._chain_id: int | None = None
        self._epoch_length: int | None = None

    @property
    def deployment(self) -> ZkDeployment:
        return self._deployment

    @property
    def chain_id(self) -> int:
        if self._chain_id is None:
            self._chain_id = int(self._client.call(lambda: self._client.web3.eth.chain_id))
        return self._chain_id

    @property
    def gate_address(self) -> str:
        return self._deployment.zk_access_gate

    @property
    def start_block(self) -> int:
        return self._deployment.block_number

    # -- credentials ---------------------------------------------------------------
    def issue_credentials(
        self, identity_commitments: Sequence[int], roles: Sequence[int], expiries: Sequence[int]
    ) -> TxResult:
        fn = self._registry.functions.issueCredentials(
            list(identity_commitments), list(roles), list(expiries)
        )
        tx_hash, receipt = self._client.transact(
            fn, credential_gas_limit(len(identity_commitments))
        )
        return TxResult(tx_hash, int(receipt["blockNumber"]))

    def revoke_credential(
        self,
        identity_commitment: int,
        hospital_id: int,
        role: int,
        expiry: int,
        siblings: Sequence[int],
    ) -> TxResult:
        fn = self._registry.functions.revokeCredential(
            identity_commitment, hospital_id, role, expiry, list(siblings)
        )
        tx_hash, receipt = self._client.transact(fn, REVOKE_GAS_LIMIT)
        return TxResult(tx_hash, int(receipt["blockNumber"]))

    def current_root(self) -> int:
        return int(self._client.call(self._registry.functions.root().call))

    def is_valid_root(self, root: int) -> bool:
        return bool(self._client.call(self._registry.functions.isValidRoot(root).call))

    def credential_events(self, from_block: int, to_block: int) -> list[CredentialEvent]:
        w3 = self._client.web3
        issued, revoked = _topic(w3, self._issued), _topic(w3, self._revoked)
        params: dict[str, Any] = {
            "fromBlock": from_block,
            "toBlock": to_block,
            "address": self._deployment.credential_registry,
            "topics": [[issued, revoked]],
        }
        logs = self._client.call(lambda: w3.eth.get_logs(params))  # type: ignore[arg-type]
        events: list[CredentialEvent] = []
        for entry in logs:
            topic0 = "0x" + bytes(entry["topics"][0]).hex()
            abi = self._issued if topic0 == issued else self._revoked
            args = get_event_data(w3.codec, abi, entry)["args"]  # type: ignore[arg-type]
            is_issue = abi is self._issued
            events.append(
                CredentialEvent(
                    kind="issued" if is_issue else "revoked",
                    leaf=int(args["leaf"]),
                    identity_commitment=int(args["identityCommitment"]) if is_issue else 0,
                    hospital_id=int(args["hospitalId"]),
                    role=int(args["role"]) if is_issue else 0,
                    expiry=int(args["expiry"]) if is_issue else 0,
                    index=int(args["index"]),
                    root=int(args["root"]),
                    revoked_by=None if is_issue else to_checksum_address(args["revokedBy"]),
                    block_number=int(entry["blockNumber"]),
                    log_index=int(entry["logIndex"]),
                )
            )
        events.sort(key=lambda e: (e.block_number, e.log_index))
        return events

    # -- policies and access ---------------------------------------------------------
    def category_policy(self, category: bytes) -> int:
        return int(self._client.call(self._gate.functions.categoryPolicy(category).call))

    def epoch_length(self) -> int:
        if self._epoch_length is None:
            self._epoch_length = int(self._client.call(self._gate.functions.epochLength().call))
        return self._epoch_length

    def request_used(self, record_id: bytes, signal: bytes) -> bool:
        return bool(self._client.call(self._gate.functions.requestUsed(record_id, signal).call))

    def access_batch(self, requests: Sequence[ZkAccessRequest]) -> TxResult:
        fn = self._gate.functions.accessBatch(
            [r.as_tuple() for r in requests], [list(r.proof) for r in requests]
        )
        tx_hash, receipt = self._client.transact(fn, access_gas_limit(len(requests)))
        return TxResult(tx_hash, int(receipt["blockNumber"]))

    def access_events(
        self,
        *,
        record_id: bytes | None = None,
        from_block: int | None = None,
        to_block: int | None = None,
    ) -> list[ZkAccessEvent]:
        w3 = self._client.web3
        topics: list[Any] = [_topic(w3, self._granted)]
        if record_id is not None:
            topics.append("0x" + record_id.hex())
        params: dict[str, Any] = {
            "fromBlock": self._deployment.block_number if from_block is None else from_block,
            "toBlock": "latest" if to_block is None else to_block,
            "address": self._deployment.zk_access_gate,
            "topics": topics,
        }
        logs = self._client.call(lambda: w3.eth.get_logs(params))  # type: ignore[arg-type]
        events = []
        for entry in logs:
            args = get_event_data(w3.codec, self._granted, entry)["args"]  # type: ignore[arg-type]
            events.append(
                ZkAccessEvent(
                    record_id=bytes(args["recordId"]),
                    patient=to_checksum_address(args["patient"]),
                    epoch_nullifier=int(args["epochNullifier"]),
                    epoch=int(args["epoch"]),
                    category=bytes(args["category"]),
                    signal=bytes(args["signal"]),
                    relayer=to_checksum_address(args["relayer"]),
                    tx_hash=bytes(entry["transactionHash"]),
                    block_number=int(entry["blockNumber"]),
                    log_index=int(entry["logIndex"]),
                    timestamp=self._client.block_time(int(entry["blockNumber"])),
                )
            )
        events.sort(key=lambda e: (e.block_number, e.log_index))
        return events
