"""The embedded chain: genesis, auto-mining, wall-clock timestamps, and surviving
restarts and crashes."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from eth_abi import encode
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import function_signature_to_4byte_selector, keccak
from web3 import Web3
from web3.exceptions import ContractCustomError, ContractLogicError
from web3.middleware import SignAndSendRawMiddlewareBuilder
from web3.types import TxReceipt

from node.chain.embedded import ChainDBLockedError, ChainDBMismatchError, EmbeddedChain

REPO_ROOT = Path(__file__).resolve().parents[3]
FUNDS = 10**30
RECIPIENT = "0x" + "22" * 20

# A contract with no source: every call stores block.timestamp in slot 0, emits
# LOG1(topic=STAMPED, data=calldata) and returns block.timestamp.
STAMPED = keccak(text="Stamped(bytes)")
STAMP_RUNTIME = (
    bytes.fromhex("42805f55")  # TIMESTAMP DUP1 PUSH0 SSTORE
    + bytes.fromhex("365f5f37")  # CALLDATACOPY(0, 0, CALLDATASIZE)
    + b"\x7f"
    + STAMPED
    + bytes.fromhex("365fa1")  # LOG1(0, CALLDATASIZE, STAMPED)
    + bytes.fromhex("5f5260205ff3")  # MSTORE(0, ts) RETURN(0, 32)
)
# CODECOPY(0, 9, len) RETURN(0, len): the 9-byte prefix deploys the runtime after it.
STAMP_INIT = (
    bytes([0x60, len(STAMP_RUNTIME), 0x80, 0x60, 9, 0x5F, 0x39, 0x5F, 0xF3]) + STAMP_RUNTIME
)

# Reverts with its calldata as revert data: CALLDATACOPY(0, 0, size) REVERT(0, size).
REVERT_RUNTIME = bytes.fromhex("365f5f37365ffd")
REVERT_INIT = bytes([0x60, len(REVERT_RUNTIME), 0x80, 0x60, 9, 0x5F, 0x39, 0x5F, 0xF3])
REVERT_INIT += REVERT_RUNTIME


@pytest.fixture
def account() -> LocalAccount:
    return Account.from_key(keccak(text="emr-node test hospital"))


@pytest.fixture
def chain_path(tmp_path: Path) -> Path:
    return tmp_path / "chain.db"


@pytest.fixture
def chain(chain_path: Path, account: LocalAccount) -> Iterator[EmbeddedChain]:
    with EmbeddedChain(chain_path, funded_accounts={account.address: FUNDS}) as opened:
        yield opened


def send(w3: Web3, account: LocalAccount, **fields: Any) -> TxReceipt:
    """Sign an EIP-1559 transaction locally, send it raw, return its receipt."""
    tx: dict[str, Any] = {
        "chainId": w3.eth.chain_id,
        "nonce": w3.eth.get_transaction_count(account.address),
        "maxPriorityFeePerGas": w3.eth.max_priority_fee,
        "maxFeePerGas": 2 * w3.eth.get_block("latest")["baseFeePerGas"] + 10**9,
        "value": 0,
        **fields,
    }
    if "gas" not in tx:
        tx["gas"] = w3.eth.estimate_gas({"from": account.address, **tx})
    tx_hash = w3.eth.send_raw_transaction(account.sign_transaction(tx).raw_transaction)
    # Auto-mining: the receipt exists as soon as the send returns.
    return w3.eth.get_transaction_receipt(tx_hash)


def deploy_stamp(w3: Web3, account: LocalAccount) -> str:
    receipt = send(w3, account, data=STAMP_INIT)
    assert receipt["status"] == 1
    assert w3.eth.get_code(receipt["contractAddress"]) == STAMP_RUNTIME
    return receipt["contractAddress"]


def stamp_time(w3: Web3, address: str, sender: str | None = None) -> int:
    """block.timestamp as a view sees it."""
    call: dict[str, Any] = {"to": address, "data": b"view"}
    if sender is not None:
        call["from"] = sender
    return int.from_bytes(w3.eth.call(call), "big")


def test_genesis_funds_the_accounts(chain: EmbeddedChain, account: LocalAccount) -> None:
    w3 = chain.web3
    assert chain.chain_id == w3.eth.chain_id == 131277322940537
    assert w3.eth.block_number == 0
    assert w3.eth.get_balance(account.address) == FUNDS
    assert w3.eth.get_balance(RECIPIENT) == 0
    assert w3.eth.accounts == []  # no eth-tester test accounts: the node signs
    assert w3.eth.get_block(0)["gasLimit"] > 29_000_000


def test_raw_transaction_is_mined_at_once(chain: EmbeddedChain, account: LocalAccount) -> None:
    w3 = chain.web3
    receipt = send(w3, account, to=RECIPIENT, value=12345, gas=21000)
    assert receipt["status"] == 1
    assert receipt["blockNumber"] == w3.eth.block_number == 1
    assert receipt["type"] == 2
    fee = receipt["gasUsed"] * receipt["effectiveGasPrice"]
    assert fee > 0  # the node's account pays for gas
    assert w3.eth.get_balance(account.address) == FUNDS - 12345 - fee
    assert w3.eth.get_balance(RECIPIENT) == 12345
    assert w3.eth.get_transaction_count(account.address) == 1


def test_sign_and_send_raw_middleware(chain: EmbeddedChain, account: LocalAccount) -> None:
    w3 = chain.web3
    w3.middleware_onion.inject(SignAndSendRawMiddlewareBuilder.build(account), layer=0)
    # web3 fills nonce, gas and the EIP-1559 fees.
    tx_hash = w3.eth.send_transaction({"from": account.address, "to": RECIPIENT, "value": 7})
    receipt = w3.eth.get_transaction_receipt(tx_hash)
    assert receipt["status"] == 1
    assert w3.eth.get_transaction(tx_hash)["type"] == 2
    deployed = w3.eth.get_transaction_receipt(
        w3.eth.send_transaction({"from": account.address, "data": STAMP_INIT})
    )
    call = w3.eth.get_transaction_receipt(
        w3.eth.send_transaction(
            {"from": account.address, "to": deployed["contractAddress"], "data": b"hi"}
        )
    )
    assert call["logs"][0]["data"] == b"hi"
    assert w3.eth.get_balance(RECIPIENT) == 7


def test_views_need_no_sender_nor_funds(chain: EmbeddedChain, account: LocalAccount) -> None:
    w3 = chain.web3
    stamp = deploy_stamp(w3, account)
    unfunded = Account.create().address
    head = w3.eth.get_block("latest")["timestamp"]
    assert stamp_time(w3, stamp) > head
    assert stamp_time(w3, stamp, unfunded) > head
    assert w3.eth.estimate_gas({"from": unfunded, "to": stamp, "data": b"x"}) > 21000


def test_reverts_surface_as_on_a_json_rpc_node(chain: EmbeddedChain, account: LocalAccount) -> None:
    w3 = chain.web3
    reverter = send(w3, account, data=REVERT_INIT)["contractAddress"]
    custom = function_signature_to_4byte_selector("Unauthorized(address)") + encode(
        ["address"], [account.address]
    )
    reason = function_signature_to_4byte_selector("Error(string)") + encode(["string"], ["no"])
    for probe in (w3.eth.call, w3.eth.estimate_gas):
        with pytest.raises(ContractCustomError) as raised:
            probe({"to": reverter, "data": custom})
        assert raised.value.data == "0x" + custom.hex()
        with pytest.raises(ContractLogicError, match="execution reverted: no"):
            probe({"to": reverter, "data": reason})
        with pytest.raises(ContractLogicError, match="execution reverted"):
            probe({"to": reverter, "data": b""})
    # The signing middleware estimates gas first: the revert surfaces, nothing is sent.
    w3.middleware_onion.inject(SignAndSendRawMiddlewareBuilder.build(account), layer=0)
    nonce = w3.eth.get_transaction_count(account.address)
    with pytest.raises(ContractCustomError):
        w3.eth.send_transaction({"from": account.address, "to": reverter, "data": custom})
    assert w3.eth.get_transaction_count(account.address) == nonce
    # Sent anyway (gas given), it is mined and fails, as on any chain.
    receipt = send(w3, account, to=reverter, data=custom, gas=100_000)
    assert receipt["status"] == 0
    assert w3.eth.get_transaction_count(account.address) == nonce + 1


def test_restart_preserves_the_chain(
    chain_path: Path, chain: EmbeddedChain, account: LocalAccount
) -> None:
    w3 = chain.web3
    stamp = deploy_stamp(w3, account)
    stamped = [send(w3, account, to=stamp, data=f"record {i}".encode()) for i in range(3)]
    transfer = send(w3, account, to=RECIPIENT, value=99, gas=21000)
    receipts = [w3.eth.get_transaction_receipt(r["transactionHash"]) for r in stamped]
    before = {
        "block_number": w3.eth.block_number,
        "blocks": [w3.eth.get_block(n) for n in range(w3.eth.block_number + 1)],
        "balances": (w3.eth.get_balance(account.address), w3.eth.get_balance(RECIPIENT)),
        "nonce": w3.eth.get_transaction_count(account.address),
        "storage": w3.eth.get_storage_at(stamp, 0),
        "logs": w3.eth.get_logs({"fromBlock": 0, "address": stamp, "topics": [STAMPED]}),
    }
    assert len(before["logs"]) == 3
    chain.close()

    # funded_accounts only seed a new chain: reopening with none changes nothing.
    with EmbeddedChain(chain_path, funded_accounts={}) as reopened:
        w3 = reopened.web3
        assert w3.eth.block_number == before["block_number"] == 5
        assert [w3.eth.get_block(n) for n in range(6)] == before["blocks"]
        assert (w3.eth.get_balance(account.address), w3.eth.get_balance(RECIPIENT)) == before[
            "balances"
        ]
        assert w3.eth.get_transaction_count(account.address) == before["nonce"] == 5
        assert w3.eth.get_storage_at(stamp, 0) == before["storage"]
        assert w3.eth.get_code(stamp) == STAMP_RUNTIME
        logs = w3.eth.get_logs({"fromBlock": 0, "address": stamp, "topics": [STAMPED]})
        assert logs == before["logs"]
        assert [log["data"] for log in logs] == [b"record 0", b"record 1", b"record 2"]
        assert w3.eth.get_logs({"fromBlock": 0, "topics": [keccak(text="Other()")]}) == []
        for receipt in receipts:
            assert w3.eth.get_transaction_receipt(receipt["transactionHash"]) == receipt
        assert w3.eth.get_transaction(transfer["transactionHash"])["value"] == 99
        # ... and the chain goes on from its head.
        receipt = send(w3, account, to=stamp, data=b"after restart")
        assert receipt["blockNumber"] == 6
        assert len(w3.eth.get_logs({"fromBlock": 0, "topics": [STAMPED]})) == 4


def test_timestamps_follow_the_wall_clock_across_restart(
    chain_path: Path, chain: EmbeddedChain, account: LocalAccount, monkeypatch: pytest.MonkeyPatch
) -> None:
    w3 = chain.web3
    stamp = deploy_stamp(w3, account)
    first = send(w3, account, to=stamp, data=b"now")
    first_ts = w3.eth.get_block(first["blockNumber"])["timestamp"]
    assert abs(first_ts - time.time()) < 5
    chain.close()

    # Restart an hour later: move both clocks (eth-tester/web3 read time.time, py-evm
    # stamps headers through eth._utils.headers.eth_now).
    import eth._utils.headers

    later = time.time() + 3600
    monkeypatch.setattr(time, "time", lambda: later)
    monkeypatch.setattr(eth._utils.headers, "eth_now", lambda: int(later))
    with EmbeddedChain(chain_path, funded_accounts={}) as reopened:
        w3 = reopened.web3
        # A view sees ~now, not the time of the last block.
        assert int(later) <= stamp_time(w3, stamp) <= int(later) + 1
        receipt = send(w3, account, to=stamp, data=b"an hour later")
        ts = w3.eth.get_block(receipt["blockNumber"])["timestamp"]
        assert ts == int(later)
        assert int.from_bytes(w3.eth.get_storage_at(stamp, 0), "big") == ts
        # Strictly increasing even within one second.
        again = send(w3, account, to=stamp, data=b"same second")
        assert w3.eth.get_block(again["blockNumber"])["timestamp"] == ts + 1


def test_the_file_holds_every_acknowledged_tx_without_close(
    tmp_path: Path, chain_path: Path, chain: EmbeddedChain, account: LocalAccount
) -> None:
    receipts = [send(chain.web3, account, to=RECIPIENT, value=1, gas=21000) for _ in range(3)]
    # What a crash would leave: the files as they are now, the chain still open.
    crashed = tmp_path / "crashed"
    crashed.mkdir()
    for file in tmp_path.glob("chain.db*"):
        shutil.copyfile(file, crashed / file.name)
    with EmbeddedChain(crashed / "chain.db", funded_accounts={}) as reopened:
        w3 = reopened.web3
        assert w3.eth.block_number == 3
        for receipt in receipts:
            assert w3.eth.get_transaction_receipt(receipt["transactionHash"]) == receipt


CRASH_CHILD = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from eth_account import Account
    from node.chain.embedded import EmbeddedChain

    account = Account.from_key(bytes.fromhex(sys.argv[2]))
    chain = EmbeddedChain(Path(sys.argv[1]), funded_accounts={account.address: 10**30})
    w3 = chain.web3
    for nonce in range(10_000):
        tx = {"chainId": chain.chain_id, "nonce": nonce, "to": "0x" + "22" * 20,
              "value": 1, "gas": 21000, "maxFeePerGas": 2 * 10**9,
              "maxPriorityFeePerGas": 10**9}
        tx_hash = w3.eth.send_raw_transaction(account.sign_transaction(tx).raw_transaction)
        receipt = w3.eth.get_transaction_receipt(tx_hash)
        print(tx_hash.hex(), receipt["blockNumber"], flush=True)
    """
)


def test_sigkill_loses_no_acknowledged_tx(chain_path: Path, account: LocalAccount) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    child = subprocess.Popen(
        [sys.executable, "-c", CRASH_CHILD, str(chain_path), account.key.hex()],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO_ROOT,
    )
    acknowledged: list[tuple[str, int]] = []
    try:
        assert child.stdout is not None
        while len(acknowledged) < 25:
            line = child.stdout.readline()
            assert line, "the child died before acknowledging 25 transactions"
            tx_hash, block = line.split()
            acknowledged.append((tx_hash, int(block)))
        child.send_signal(signal.SIGKILL)  # mid-stream: it is busy sending the next ones
    finally:
        child.kill()
        child.wait()
    assert child.returncode == -signal.SIGKILL
    # Lines printed after our last read were acknowledged too.
    acknowledged += [(h, int(b)) for h, b in (line.split() for line in child.stdout)]

    with EmbeddedChain(chain_path, funded_accounts={}) as reopened:
        w3 = reopened.web3
        assert w3.eth.block_number >= len(acknowledged)
        for tx_hash, block in acknowledged:
            receipt = w3.eth.get_transaction_receipt(tx_hash)
            assert receipt["status"] == 1
            assert receipt["blockNumber"] == block
        # Nothing half-written: the chain's state matches its head block.
        assert w3.eth.get_balance(RECIPIENT) == w3.eth.get_transaction_count(account.address)
        send(w3, account, to=RECIPIENT, value=1, gas=21000)


def test_two_chains_are_independent(tmp_path: Path, account: LocalAccount) -> None:
    other = Account.create()
    with (
        EmbeddedChain(tmp_path / "a.db", funded_accounts={account.address: FUNDS}) as a,
        EmbeddedChain(tmp_path / "b.db", funded_accounts={other.address: 5 * 10**18}) as b,
    ):
        send(a.web3, account, to=RECIPIENT, value=1, gas=21000)
        assert a.web3.eth.block_number == 1
        assert b.web3.eth.block_number == 0
        assert b.web3.eth.get_balance(account.address) == 0
        assert b.web3.eth.get_balance(RECIPIENT) == 0
        send(b.web3, other, to=RECIPIENT, value=2, gas=21000)
        assert a.web3.eth.get_balance(RECIPIENT) == 1
        assert b.web3.eth.get_balance(RECIPIENT) == 2


def test_requests_from_several_threads(chain_path: Path, account: LocalAccount) -> None:
    other = Account.create()
    funded = {account.address: FUNDS, other.address: FUNDS}
    with EmbeddedChain(chain_path, funded_accounts=funded) as chain:
        w3 = chain.web3
        stamp = deploy_stamp(w3, account)
        errors: list[BaseException] = []

        def writer(sender: LocalAccount) -> None:
            try:
                for i in range(15):
                    send(w3, sender, to=stamp, data=b"w%d" % i, gas=60000)
            except BaseException as exc:
                errors.append(exc)

        def reader() -> None:
            try:
                for _ in range(30):
                    assert stamp_time(w3, stamp) > 0
                    w3.eth.get_logs({"fromBlock": w3.eth.block_number, "topics": [STAMPED]})
            except BaseException as exc:
                errors.append(exc)

        threads = [
            threading.Thread(target=writer, args=(account,)),
            threading.Thread(target=writer, args=(other,)),
            threading.Thread(target=reader),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        assert w3.eth.get_transaction_count(account.address) == 16
        assert w3.eth.get_transaction_count(other.address) == 15
        assert w3.eth.block_number == 31
        assert len(w3.eth.get_logs({"fromBlock": 0, "topics": [STAMPED]})) == 30


def test_a_chain_file_opens_once(chain_path: Path, chain: EmbeddedChain) -> None:
    with pytest.raises(ChainDBLockedError, match="in use"):
        EmbeddedChain(chain_path, funded_accounts={})
    chain.close()
    chain.close()  # idempotent
    EmbeddedChain(chain_path, funded_accounts={}).close()


def test_a_foreign_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE patients (id INTEGER)")
        conn.execute("INSERT INTO patients VALUES (1)")
    conn.close()
    with pytest.raises(ChainDBMismatchError, match="not an embedded chain DB"):
        EmbeddedChain(path, funded_accounts={})
    with sqlite3.connect(path) as conn:  # left as it was
        assert conn.execute("SELECT name FROM sqlite_master").fetchall() == [("patients",)]
    conn.close()
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"not sqlite at all" * 100)
    with pytest.raises(ChainDBMismatchError, match="not an embedded chain DB"):
        EmbeddedChain(garbage, funded_accounts={})


def test_a_different_chain_is_refused(chain_path: Path, account: LocalAccount) -> None:
    EmbeddedChain(chain_path, funded_accounts={account.address: FUNDS}).close()
    conn = sqlite3.connect(chain_path)
    with conn:
        conn.execute("UPDATE meta SET value = ? WHERE name = 'chain_id'", (b"1",))
    conn.close()
    with pytest.raises(ChainDBMismatchError, match="chain id"):
        EmbeddedChain(chain_path, funded_accounts={})


def test_a_replaced_genesis_is_refused(chain_path: Path, account: LocalAccount) -> None:
    EmbeddedChain(chain_path, funded_accounts={account.address: FUNDS}).close()
    conn = sqlite3.connect(chain_path)
    with conn:
        conn.execute("UPDATE meta SET value = ? WHERE name = 'genesis_hash'", (b"\x01" * 32,))
    conn.close()
    with pytest.raises(ChainDBMismatchError, match="genesis"):
        EmbeddedChain(chain_path, funded_accounts={})


def test_funded_accounts_are_validated(chain_path: Path) -> None:
    with pytest.raises(ValueError, match="not an address"):
        EmbeddedChain(chain_path, funded_accounts={"hospital": 1})
    with pytest.raises(ValueError, match="non-negative"):
        EmbeddedChain(chain_path, funded_accounts={RECIPIENT: -1})
