"""The worker's batches on the embedded chain: sent without a simulation, a refused batch is
mined as a revert and still raised as a named ContractReverted; logs decoded without web3's
generic decoder read exactly as web3 reads them."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from eth_account import Account
from web3._utils.events import get_event_data

from node.chain.client import Web3ChainClient
from node.chain.embedded import EmbeddedChain
from node.chain.exceptions import ContractReverted
from node.chain.external import ensure_deployment
from node.chain.models import AccessEntry
from node.chain.record_ids import new_record_id
from node.consent.typed_data import AccessBasis


@pytest.fixture
def chain(tmp_path: Path) -> Iterator[Web3ChainClient]:
    account = Account.create()
    embedded = EmbeddedChain(tmp_path / "chain.sqlite", funded_accounts={account.address: 10**24})
    deployment = ensure_deployment(
        embedded.web3, tmp_path / "deployment.json", account, [(account.address, "Test General")]
    )
    client = Web3ChainClient(embedded.web3, deployment, account)
    yield client
    client.close()
    embedded.close()


def test_a_refused_batch_is_mined_as_a_named_revert(chain: Web3ChainClient) -> None:
    w3 = chain.web3
    block = w3.eth.block_number
    with pytest.raises(ContractReverted) as invalid:
        chain.anchor_batch(b"\x00" * 32, [b"\x02" * 32], [Account.create().address])
    assert invalid.value.name == "RecordRegistryInvalidBatch"
    assert w3.eth.block_number == block + 1  # not simulated: mined (and reverted)
    assert chain.batch(1) is None
    # The nonce moved on with the mined revert: the next batch goes through.
    member = chain.member_id(chain.hospital)
    result = chain.anchor_batch(secrets.token_bytes(32), [new_record_id(member)], [chain.hospital])
    assert result.batch_id == 1


def test_simulating_batches_refuses_before_sending(tmp_path: Path) -> None:
    account = Account.create()
    with EmbeddedChain(tmp_path / "c.sqlite", funded_accounts={account.address: 10**24}) as emb:
        deployment = ensure_deployment(
            emb.web3, tmp_path / "d.json", account, [(account.address, "Test General")]
        )
        client = Web3ChainClient(emb.web3, deployment, account, simulate_batches=True)
        block = emb.web3.eth.block_number
        with pytest.raises(ContractReverted) as invalid:
            client.anchor_batch(b"\x00" * 32, [b"\x02" * 32], [account.address])
        assert invalid.value.name == "RecordRegistryInvalidBatch"
        assert emb.web3.eth.block_number == block


def test_audit_events_decode_as_web3_does(chain: Web3ChainClient) -> None:
    member = chain.member_id(chain.hospital)
    ids = [new_record_id(member) for _ in range(3)]
    patients = [Account.create().address for _ in ids]
    chain.anchor_batch(secrets.token_bytes(32), ids, patients)
    chain.record_accesses(
        [
            AccessEntry(p, rid, chain.hospital, i % 2 == 0, AccessBasis.RECORD_CONSENT)
            for i, (p, rid) in enumerate(zip(patients, ids, strict=True))
        ]
    )
    events = chain.audit_events()
    assert {e.event for e in events} >= {"BatchAnchored", "RecordAnchored", "AccessRecorded"}
    logs = chain.web3.eth.get_logs(
        {"fromBlock": chain.deployment.block_number, "toBlock": "latest"}
    )
    by_position = {(int(x["blockNumber"]), int(x["logIndex"])): x for x in logs}
    for event in events:
        entry = by_position[(event.block_number, event.log_index)]
        _contract, abi, _args = chain._decode_log(entry)
        expected = dict(get_event_data(chain.web3.codec, abi, entry)["args"])
        assert list(event.args.items()) == list(expected.items())
        assert [type(v) for v in event.args.values()] == [type(v) for v in expected.values()]
