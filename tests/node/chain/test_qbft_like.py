"""The node's chain client against a chain set up like the consortium's QBFT network.

Besu cannot be installed here, so ``scripts/chain.sh`` starts the hardhat node with
``EMR_CHAIN_QBFT=1``: base fee 0, no automine, one block every ``BLOCK_PERIOD`` seconds
(QBFT's ``blockperiodseconds``), as the genesis of ``emr-node consortium genesis`` sets up.
The client reaches it through a small JSON-RPC facade that answers as a Besu node started
with ``min-gas-price=0`` and ``min-priority-fee=0`` does (``eth_gasPrice`` and
``eth_maxPriorityFeePerGas`` 0x0; Hardhat answers 1 gwei) and, as Besu does, refuses the
``hardhat_*`` / ``evm_*`` methods. The hospital accounts hold no ether at all: every send
must cost nothing.

The operations are test_external.py's own tests, collected here again with this module's
fixtures (deploy, anchor + Merkle verification, relayed consent, access log, audit events,
members); its tests that stop automining or count blocks do not apply to a chain that
mines on a timer.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from web3 import Web3

from hsm.account import SignerAccount
from node.chain.client import Web3ChainClient
from node.chain.deploy import Deployment
from node.chain.exceptions import ChainError
from node.chain.external import connect_rpc, fund_account
from node.chain.models import AccessEntry
from node.consent.typed_data import AccessBasis
from tests.node.chain.test_external import (  # the suite, re-collected with these fixtures
    HardhatNode,
    _free_port,
    anchor_records,
    client,
    deployment,
    manifest,
    new_account,
    test_access_log_and_audit_filters,
    test_anchor_and_verify_with_merkle_proofs,
    test_consent_grant_relayed_then_replay_refused,
    test_members,
)

pytestmark = pytest.mark.integration

BLOCK_PERIOD = 1  # seconds, QBFT blockperiodseconds
REUSED = (
    client,
    deployment,
    manifest,
    test_access_log_and_audit_filters,
    test_anchor_and_verify_with_merkle_proofs,
    test_consent_grant_relayed_then_replay_refused,
    test_members,
)  # names pytest must see in this module (fixtures and tests)


@dataclass(frozen=True)
class QbftLikeNode(HardhatNode):
    """``scripts/chain.sh`` with the QBFT-like switch on."""

    def extra_env(self) -> dict[str, str]:
        return {"EMR_CHAIN_QBFT": "1", "EMR_CHAIN_BLOCK_PERIOD": str(BLOCK_PERIOD)}


class _BesuLikeRpc(BaseHTTPRequestHandler):
    """Forwards JSON-RPC to the hardhat node, answering fee queries as a zero-gas Besu."""

    upstream = ""  # set per server class
    ZERO = frozenset({"eth_gasPrice", "eth_maxPriorityFeePerGas"})

    def _answer(self, request: dict[str, Any]) -> dict[str, Any] | None:
        method = request.get("method", "")
        if method in self.ZERO:
            return {"jsonrpc": "2.0", "id": request.get("id"), "result": "0x0"}
        if method.startswith(("hardhat_", "evm_")):
            error = {"code": -32601, "message": "Method not found"}
            return {"jsonrpc": "2.0", "id": request.get("id"), "error": error}
        return None

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        request = json.loads(body)
        local = None if isinstance(request, list) else self._answer(request)
        if local is not None:
            payload = json.dumps(local).encode()
        else:
            upstream = urllib.request.Request(
                self.upstream, data=body, headers={"Content-Type": "application/json"}
            )
            with urllib.request.urlopen(upstream, timeout=30) as response:
                payload = response.read()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="session")  # like the suite's fixtures it feeds
def hardhat(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HardhatNode]:
    node = QbftLikeNode(_free_port(), tmp_path_factory.mktemp("qbft-like-chain"))
    node.start()
    try:
        yield node
    finally:
        node.run("stop")


@pytest.fixture(scope="session")  # like the suite's fixtures it feeds
def besu_like_url(hardhat: HardhatNode) -> Iterator[str]:
    handler = type("Handler", (_BesuLikeRpc,), {"upstream": hardhat.url})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="session")  # like the suite's fixtures it feeds
def w3(besu_like_url: str) -> Web3:
    return connect_rpc(besu_like_url)


@pytest.fixture(scope="session")  # like the suite's fixtures it feeds
def raw_w3(hardhat: HardhatNode) -> Web3:
    """The hardhat node itself (block and balance checks)."""
    return connect_rpc(hardhat.url)


@pytest.fixture(scope="session")  # like the suite's fixtures it feeds
def hospital() -> SignerAccount:
    return new_account()  # no ether: the network's gas is free


@pytest.fixture(scope="session")  # like the suite's fixtures it feeds
def hospital_b() -> SignerAccount:
    return new_account()


def test_chain_is_set_up_like_qbft(w3: Web3, raw_w3: Web3, hardhat: HardhatNode) -> None:
    assert w3.eth.gas_price == 0 and w3.eth.max_priority_fee == 0
    first = raw_w3.eth.block_number
    deadline = time.monotonic() + 20 * BLOCK_PERIOD
    while raw_w3.eth.block_number < first + 3:  # blocks come on the timer, no tx needed
        assert time.monotonic() < deadline, "no blocks without transactions: still automine?"
        time.sleep(0.1)
    head = raw_w3.eth.get_block("latest")
    parent = raw_w3.eth.get_block(head["number"] - 1)
    assert head["baseFeePerGas"] == 0
    assert len(head["transactions"]) == 0
    assert head["timestamp"] - parent["timestamp"] >= BLOCK_PERIOD
    # A production node refuses development methods, and so does the facade.
    with pytest.raises(ChainError, match="only works on development chains"):
        fund_account(w3, Account.create().address, 1)


def test_sends_cost_nothing(
    w3: Web3, raw_w3: Web3, client: Web3ChainClient, hospital: SignerAccount
) -> None:
    """Deploy (the client fixture), anchor, access log: all from an account without ether,
    each send mined in a later timer block (no automine)."""
    block = raw_w3.eth.block_number
    batch_id, records = anchor_records(client, 3)
    info = client.batch(batch_id)
    assert info is not None and info.count == 3
    rid, patient, _ = records[0]
    client.record_accesses(
        [AccessEntry(patient, rid, Account.create().address, True, AccessBasis.BREAK_GLASS)]
    )
    events = client.audit_events(record_id=rid)
    assert [e.event for e in events] == ["RecordAnchored", "AccessRecorded"]
    assert events[0].block_number > block
    assert events[1].block_number > events[0].block_number  # one send per block period
    assert raw_w3.eth.get_balance(hospital.address) == 0
    assert raw_w3.eth.get_transaction_count(hospital.address) >= 6  # deploy + these sends
    receipts = [
        raw_w3.eth.get_transaction_receipt(tx)
        for n in (events[0].block_number, events[1].block_number)
        for tx in raw_w3.eth.get_block(n)["transactions"]
    ]
    assert receipts and all(r["effectiveGasPrice"] == 0 for r in receipts)


def test_manifest_records_the_deployment(
    deployment: Deployment, manifest: Path, hospital: SignerAccount
) -> None:
    data = json.loads(manifest.read_text())
    assert data["chain_id"] == 31337 and data["deployer"] == hospital.address
    assert Deployment.load(manifest) == deployment
