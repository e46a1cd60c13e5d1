"""RecordRegistry: batch anchoring, Merkle verification, audit events."""

from __future__ import annotations

import hashlib

import pytest
from contract_helpers import (
    ZERO32,
    Chain,
    StandardMerkleTree,
    address_topic,
    expect_revert,
    process_proof,
    record_leaf,
)
from eth_account.signers.local import LocalAccount
from eth_utils import keccak
from web3.logs import DISCARD


def _records(patients: list[str], n: int, tag: str = "r") -> list[tuple[bytes, str, bytes, bytes]]:
    """n record versions (id, patient, content hash, previous id); every third links back."""
    out: list[tuple[bytes, str, bytes, bytes]] = []
    for i in range(n):
        rid = keccak(text=f"{tag}-{i}")
        previous = out[i - 1][0] if i % 3 == 2 else ZERO32
        content = hashlib.sha256(f"plaintext {tag} {i}".encode()).digest()
        out.append((rid, patients[i % len(patients)], content, previous))
    return out


def _anchor(chain: Chain, records: list[tuple[bytes, str, bytes, bytes]], sender: str):
    tree = StandardMerkleTree([record_leaf(*r) for r in records])
    fn = chain.records.functions.anchorBatch(
        tree.root, [r[0] for r in records], [r[1] for r in records]
    )
    receipt = chain.send(fn, sender)
    batch_id = chain.records.events.BatchAnchored().process_receipt(receipt, errors=DISCARD)[0][
        "args"
    ]["batchId"]
    return tree, batch_id, receipt


def test_leaf_hash_matches_off_chain(chain: Chain, patient: LocalAccount) -> None:
    for rid, addr, content, previous in _records([patient.address], 3):
        on_chain = chain.records.functions.leafHash(rid, addr, content, previous).call()
        assert on_chain == record_leaf(rid, addr, content, previous)


def test_anchor_batch_stores_and_emits(
    chain: Chain, patient: LocalAccount, patient2: LocalAccount
) -> None:
    r = chain.records.functions
    assert r.batchCount().call() == 0
    records = _records([patient.address, patient2.address], 5)
    tree, batch_id, receipt = _anchor(chain, records, chain.b)
    assert batch_id == 1
    assert r.batchCount().call() == 1
    block = chain.w3.eth.get_block(receipt["blockNumber"])
    assert r.batch(1).call() == [tree.root, chain.b, block["timestamp"], 5]

    anchored = chain.records.events.BatchAnchored().process_receipt(receipt, errors=DISCARD)
    assert len(anchored) == 1
    assert dict(anchored[0]["args"]) == {
        "batchId": 1,
        "root": tree.root,
        "hospital": chain.b,
        "count": 5,
    }
    per_record = chain.records.events.RecordAnchored().process_receipt(receipt, errors=DISCARD)
    assert [(e["args"]["recordId"], e["args"]["patient"]) for e in per_record] == [
        (rec[0], rec[1]) for rec in records
    ]
    assert all(e["args"]["hospital"] == chain.b and e["args"]["batchId"] == 1 for e in per_record)

    _, second, _ = _anchor(chain, _records([patient.address], 1, "s"), chain.a)
    assert second == 2 and r.batchCount().call() == 2
    assert r.batch(3).call() == [ZERO32, "0x0000000000000000000000000000000000000000", 0, 0]


def test_anchored_records_filterable_by_patient_record_and_hospital(
    chain: Chain, patient: LocalAccount, patient2: LocalAccount
) -> None:
    records = _records([patient.address, patient2.address], 6)
    _anchor(chain, records, chain.a)
    _anchor(chain, _records([patient.address], 2, "other"), chain.b)
    event = chain.records.events.RecordAnchored
    mine = event.get_logs(from_block=0, argument_filters={"patient": patient.address})
    assert len(mine) == 3 + 2
    by_hospital = event.get_logs(
        from_block=0, argument_filters={"patient": patient.address, "hospital": chain.b}
    )
    assert len(by_hospital) == 2
    # raw topic filter, as the node's audit query does it
    logs = chain.w3.eth.get_logs(
        {
            "fromBlock": 0,
            "address": chain.records.address,
            "topics": [None, address_topic(patient2.address), "0x" + records[1][0].hex()],
        }
    )
    assert len(logs) == 1
    batches = chain.records.events.BatchAnchored.get_logs(
        from_block=0, argument_filters={"hospital": chain.a}
    )
    assert [e["args"]["batchId"] for e in batches] == [1]


@pytest.mark.parametrize("n", [1, 2, 5, 8])
def test_verify_record_with_real_proofs(chain: Chain, patient: LocalAccount, n: int) -> None:
    records = _records([patient.address], n)
    tree, batch_id, _ = _anchor(chain, records, chain.a)
    for rec in records:
        leaf = record_leaf(*rec)
        proof = tree.proof(leaf)
        assert process_proof(leaf, proof) == tree.root
        assert chain.records.functions.verifyRecord(batch_id, *rec, proof).call() is True


def test_verify_record_rejects_tampering(
    chain: Chain, patient: LocalAccount, patient2: LocalAccount
) -> None:
    records = _records([patient.address, patient2.address], 7)
    tree, batch_id, _ = _anchor(chain, records, chain.a)
    other_tree, other_batch, _ = _anchor(chain, _records([patient.address], 3, "x"), chain.a)
    verify = chain.records.functions.verifyRecord
    rid, who, content, previous = records[2]  # a version with a predecessor
    assert previous != ZERO32
    proof = tree.proof(record_leaf(*records[2]))
    assert verify(batch_id, rid, who, content, previous, proof).call()

    tampered = [bytes([proof[0][0] ^ 1]) + proof[0][1:], *proof[1:]]
    assert not verify(batch_id, rid, who, content, previous, tampered).call()
    assert not verify(batch_id, rid, who, content, previous, proof[:-1]).call()
    assert not verify(batch_id, rid, who, content, previous, []).call()
    wrong_content = hashlib.sha256(b"altered plaintext").digest()
    assert not verify(batch_id, rid, who, wrong_content, previous, proof).call()
    assert not verify(batch_id, rid, patient2.address, content, previous, proof).call()
    assert not verify(batch_id, rid, who, content, ZERO32, proof).call()
    assert not verify(batch_id, keccak(text="other id"), who, content, previous, proof).call()
    # right proof, wrong or unknown batch
    assert not verify(other_batch, rid, who, content, previous, proof).call()
    assert not verify(0, rid, who, content, previous, proof).call()
    assert not verify(99, rid, who, content, previous, proof).call()
    assert other_tree.root != tree.root


def test_inner_node_is_not_a_leaf(chain: Chain, patient: LocalAccount) -> None:
    """The double-hashed leaf keeps an inner node from passing as a record."""
    records = _records([patient.address], 4)
    tree, batch_id, _ = _anchor(chain, records, chain.a)
    # tree[1] is an inner node; its proof is [tree[2]]
    assert process_proof(tree.tree[1], [tree.tree[2]]) == tree.root
    verify = chain.records.functions.verifyRecord
    assert not verify(
        batch_id, tree.tree[1], patient.address, ZERO32, ZERO32, [tree.tree[2]]
    ).call()


def test_non_member_cannot_anchor(chain: Chain, patient: LocalAccount) -> None:
    fn = chain.records.functions.anchorBatch(b"\x01" * 32, [b"\x02" * 32], [patient.address])
    args = expect_revert(lambda: fn.transact({"from": chain.outsider}), "ConsortiumGatedNotMember")
    assert args == (chain.outsider,)


def test_invalid_batches(chain: Chain, patient: LocalAccount) -> None:
    anchor = chain.records.functions.anchorBatch
    rid = keccak(text="r")
    for args in [
        (ZERO32, [rid], [patient.address]),  # zero root
        (b"\x01" * 32, [], []),  # empty
        (b"\x01" * 32, [rid, rid], [patient.address]),  # lengths differ
        (b"\x01" * 32, [rid], [patient.address, patient.address]),
    ]:
        expect_revert(
            lambda a=args: anchor(*a).transact({"from": chain.a}), "RecordRegistryInvalidBatch"
        )
    assert chain.records.functions.batchCount().call() == 0


def test_consortium_getter(chain: Chain) -> None:
    assert chain.records.functions.consortium().call() == chain.consortium.address


# -- erasure tombstones (crypto-shredding, GDPR art. 17) ------------------------------------


def test_erase_records_emits_tombstones_and_keeps_the_proof(
    chain: Chain, patient: LocalAccount
) -> None:
    records = _records([patient.address], 4, "erase")
    tree, batch_id, _ = _anchor(chain, records, chain.a)
    r = chain.records.functions
    erased = [records[0][0], records[2][0]]
    reason = keccak(text="patient request, art. 17")
    assert not any(r.isErased(rid).call() for rid, *_ in records)
    receipt = chain.send(r.eraseRecords(erased, reason), chain.a)
    events = chain.records.events.RecordErased().process_receipt(receipt, errors=DISCARD)
    assert [dict(e["args"]) for e in events] == [
        {"recordId": rid, "hospital": chain.a, "reasonHash": reason} for rid in erased
    ]
    assert [r.isErased(rid).call() for rid, *_ in records] == [True, False, True, False]
    # The anchored hash stays: the tombstone does not undo the evidence.
    for rec in records:
        assert r.verifyRecord(batch_id, *rec, tree.proof(record_leaf(*rec))).call() is True
    logs = chain.records.events.RecordErased.get_logs(
        from_block=0, argument_filters={"recordId": erased[1]}
    )
    assert len(logs) == 1 and logs[0]["args"]["hospital"] == chain.a


def test_erase_twice_is_a_no_op(chain: Chain) -> None:
    """A retried batch (sent, then the node crashed before noting it) changes nothing."""
    r = chain.records.functions
    first, second = keccak(text="e1"), keccak(text="e2")
    reason = keccak(text="r")
    chain.send(r.eraseRecords([first], reason), chain.a)
    receipt = chain.send(r.eraseRecords([first, second], keccak(text="other")), chain.b)
    events = chain.records.events.RecordErased().process_receipt(receipt, errors=DISCARD)
    assert [(e["args"]["recordId"], e["args"]["hospital"]) for e in events] == [(second, chain.b)]
    again = chain.send(r.eraseRecords([first, second], reason), chain.a)
    assert chain.records.events.RecordErased().process_receipt(again, errors=DISCARD) == ()
    assert r.isErased(first).call() and r.isErased(second).call()


def test_erase_records_rejects_outsiders_and_bad_input(chain: Chain) -> None:
    r = chain.records.functions
    rid, reason = keccak(text="x"), keccak(text="why")
    args = expect_revert(
        lambda: r.eraseRecords([rid], reason).transact({"from": chain.outsider}),
        "ConsortiumGatedNotMember",
    )
    assert args == (chain.outsider,)
    for ids, why in (([], reason), ([rid], ZERO32), ([rid, ZERO32], reason)):
        expect_revert(
            lambda ids=ids, why=why: r.eraseRecords(ids, why).transact({"from": chain.a}),
            "RecordRegistryInvalidErasure",
        )
    assert not r.isErased(rid).call()
