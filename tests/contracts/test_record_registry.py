"""RecordRegistry: batch anchoring, Merkle verification, audit events, and erasure tombstones
that only the hospital a record id belongs to (its namespace: the hospital that anchors it) can
write, also after a signing-key rotation."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from contract_helpers import (
    ZERO32,
    Chain,
    StandardMerkleTree,
    address_topic,
    expect_revert,
    namespaced_id,
    process_proof,
    record_leaf,
)
from eth_account.signers.local import LocalAccount
from eth_utils import keccak
from web3.logs import DISCARD

ADMIT, REMOVE, ROTATE = 0, 1, 2
A, B, C = 1, 2, 3  # the founders' member ids (chain.a, chain.b, chain.c)


def _records(
    patients: list[str], n: int, tag: str = "r", member: int = A
) -> list[tuple[bytes, str, bytes, bytes]]:
    """n record versions (id, patient, content hash, previous id) of hospital ``member``;
    every third links back."""
    out: list[tuple[bytes, str, bytes, bytes]] = []
    for i in range(n):
        rid = namespaced_id(member, f"{tag}-{i}")
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
    records = _records([patient.address, patient2.address], 5, member=B)
    tree, batch_id, receipt = _anchor(chain, records, chain.b)
    assert batch_id == 1
    assert r.batchCount().call() == 1
    block = chain.w3.eth.get_block(receipt["blockNumber"])
    assert r.batch(1).call() == [tree.root, chain.b, block["timestamp"], 5, B]

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
    assert r.batch(3).call() == [ZERO32, "0x0000000000000000000000000000000000000000", 0, 0, 0]


def test_anchored_records_filterable_by_patient_record_and_hospital(
    chain: Chain, patient: LocalAccount, patient2: LocalAccount
) -> None:
    records = _records([patient.address, patient2.address], 6)
    _anchor(chain, records, chain.a)
    _anchor(chain, _records([patient.address], 2, "other", B), chain.b)
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
    assert not verify(batch_id, namespaced_id(A, "other"), who, content, previous, proof).call()
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
    rid = namespaced_id(A, "x")
    fn = chain.records.functions.anchorBatch(b"\x01" * 32, [rid], [patient.address])
    args = expect_revert(lambda: fn.transact({"from": chain.outsider}), "ConsortiumGatedNotMember")
    assert args == (chain.outsider,)


def test_invalid_batches(chain: Chain, patient: LocalAccount) -> None:
    anchor = chain.records.functions.anchorBatch
    rid = namespaced_id(A, "r")
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

REASON = keccak(text="patient request, art. 17")


def _erased(chain: Chain, receipt: Any) -> list[dict[str, Any]]:
    events = chain.records.events.RecordErased().process_receipt(receipt, errors=DISCARD)
    return [dict(e["args"]) for e in events]


def _govern(chain: Chain, kind: int, subject: str, name: str, proposer: str, voter: str) -> None:
    """A Consortium change proposed by ``proposer`` and carried by ``voter``'s vote (2 of 3)."""
    c = chain.consortium
    receipt = chain.send(c.functions.propose(kind, subject, name), proposer)
    [created] = c.events.ProposalCreated().process_receipt(receipt, errors=DISCARD)
    chain.send(c.functions.vote(created["args"]["id"]), voter)


def test_erase_records_emits_tombstones_and_keeps_the_proof(
    chain: Chain, patient: LocalAccount
) -> None:
    records = _records([patient.address], 4, "erase")
    tree, batch_id, _ = _anchor(chain, records, chain.a)
    r = chain.records.functions
    erased = [records[0][0], records[2][0]]
    assert not any(r.isErased(rid).call() for rid, *_ in records)
    receipt = chain.send(r.eraseRecords(erased, REASON), chain.a)
    assert _erased(chain, receipt) == [
        {"recordId": rid, "hospital": chain.a, "reasonHash": REASON} for rid in erased
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
    first, second = namespaced_id(A, "e1"), namespaced_id(A, "e2")
    chain.send(r.eraseRecords([first], REASON), chain.a)
    receipt = chain.send(r.eraseRecords([first, second], keccak(text="other")), chain.a)
    assert [(e["recordId"], e["hospital"]) for e in _erased(chain, receipt)] == [(second, chain.a)]
    again = chain.send(r.eraseRecords([first, second], REASON), chain.a)
    assert _erased(chain, again) == []
    assert r.isErased(first).call() and r.isErased(second).call()


def test_member_cannot_erase_another_hospitals_record(chain: Chain, patient: LocalAccount) -> None:
    """The attack of issue 10 item 8: hospital B tombstones a record hospital A anchored."""
    records = _records([patient.address], 3, "owned-by-a")
    _anchor(chain, records, chain.a)
    r = chain.records.functions
    theirs, mine = records[0][0], namespaced_id(B, "owned-by-b")
    for ids in ([theirs], [mine, theirs]):  # all or nothing: B's own id is not erased either
        args = expect_revert(
            lambda ids=ids: r.eraseRecords(ids, REASON).transact({"from": chain.b}),
            "RecordRegistryForeignRecord",
        )
        assert args == (theirs, chain.b)
    assert not r.isErased(theirs).call() and not r.isErased(mine).call()
    assert list(chain.records.events.RecordErased.get_logs(from_block=0)) == []
    # Nobody else either, whatever the namespace (0 is no member's).
    for sender, rid in ((chain.c, theirs), (chain.a, namespaced_id(0, "nobody's"))):
        expect_revert(
            lambda s=sender, i=rid: r.eraseRecords([i], REASON).transact({"from": s}),
            "RecordRegistryForeignRecord",
        )
    # The anchoring hospital can.
    receipt = chain.send(r.eraseRecords([theirs], REASON), chain.a)
    assert _erased(chain, receipt) == [
        {"recordId": theirs, "hospital": chain.a, "reasonHash": REASON}
    ]
    assert r.isErased(theirs).call()


def test_a_forged_batch_gives_no_hold_on_another_hospitals_record(
    chain: Chain, patient: LocalAccount
) -> None:
    """B cannot make A's record its own by anchoring it: listing A's id is refused, and a root
    hiding a leaf with A's id (what a Merkle-proof ownership check would accept) neither
    verifies nor lets B erase the record."""
    victim = _records([patient.address], 1, "victim")[0]
    _anchor(chain, [victim], chain.a)
    r = chain.records.functions
    args = expect_revert(
        lambda: r.anchorBatch(keccak(text="root"), [victim[0]], [patient.address]).transact(
            {"from": chain.b}
        ),
        "RecordRegistryForeignRecord",
    )
    assert args == (victim[0], chain.b)
    forged = (victim[0], patient.address, hashlib.sha256(b"forged").digest(), ZERO32)
    cover = _records([patient.address], 1, "cover", B)[0]
    tree = StandardMerkleTree([record_leaf(*forged), record_leaf(*cover)])
    receipt = chain.send(r.anchorBatch(tree.root, [cover[0]], [cover[1]]), chain.b)
    [anchored] = chain.records.events.BatchAnchored().process_receipt(receipt, errors=DISCARD)
    batch_id = anchored["args"]["batchId"]
    proof = tree.proof(record_leaf(*forged))
    assert process_proof(record_leaf(*forged), proof) == tree.root  # the leaf is in the root
    assert r.verifyRecord(batch_id, *forged, proof).call() is False  # but proves nothing
    assert r.verifyRecord(batch_id, *cover, tree.proof(record_leaf(*cover))).call() is True
    expect_revert(
        lambda: r.eraseRecords([victim[0]], REASON).transact({"from": chain.b}),
        "RecordRegistryForeignRecord",
    )
    assert not r.isErased(victim[0]).call()


def test_rotated_hospital_erases_what_its_old_key_anchored(
    chain: Chain, patient: LocalAccount
) -> None:
    records = _records([patient.address], 2, "before-rotation")
    tree, batch_id, _ = _anchor(chain, records, chain.a)
    new = chain.accounts[4]
    _govern(chain, ROTATE, new, "", chain.a, chain.b)
    c, r = chain.consortium.functions, chain.records.functions
    assert c.isMember(new).call() and c.memberId(new).call() == A
    args = expect_revert(  # the old key is no member any more
        lambda: r.eraseRecords([records[0][0]], REASON).transact({"from": chain.a}),
        "ConsortiumGatedNotMember",
    )
    assert args == (chain.a,)
    receipt = chain.send(r.eraseRecords([records[0][0]], REASON), new)
    assert _erased(chain, receipt) == [
        {"recordId": records[0][0], "hospital": new, "reasonHash": REASON}
    ]
    # The new key anchors in the same namespace; the old batch still verifies.
    later = _records([patient.address], 1, "after-rotation")
    _, later_batch, _ = _anchor(chain, later, new)
    assert r.batch(batch_id).call()[1::3] == [chain.a, A]
    assert r.batch(later_batch).call()[1::3] == [new, A]
    assert r.verifyRecord(batch_id, *records[1], tree.proof(record_leaf(*records[1]))).call()
    expect_revert(  # and the others still cannot erase
        lambda: r.eraseRecords([records[1][0]], REASON).transact({"from": chain.b}),
        "RecordRegistryForeignRecord",
    )


def test_removed_then_readmitted_hospital_keeps_its_old_records(
    chain: Chain, patient: LocalAccount
) -> None:
    """Readmission gives a new member id; the old namespace stays with the same address."""
    old = _records([patient.address], 2, "gamma-before", C)
    _anchor(chain, old[:1], chain.c)
    _govern(chain, REMOVE, chain.c, "", chain.a, chain.b)
    r = chain.records.functions
    expect_revert(
        lambda: r.eraseRecords([old[0][0]], REASON).transact({"from": chain.c}),
        "ConsortiumGatedNotMember",
    )
    _govern(chain, ADMIT, chain.c, "Gamma Reopened", chain.a, chain.b)
    assert chain.consortium.functions.memberId(chain.c).call() == 4
    new = _records([patient.address], 1, "gamma-after", 4)
    tree, batch_id, _ = _anchor(chain, [old[1], *new], chain.c)  # both namespaces
    assert r.batch(batch_id).call()[4] == 4
    for rec in (old[1], new[0]):
        assert r.verifyRecord(batch_id, *rec, tree.proof(record_leaf(*rec))).call()
    receipt = chain.send(r.eraseRecords([old[0][0], new[0][0]], REASON), chain.c)
    assert [e["recordId"] for e in _erased(chain, receipt)] == [old[0][0], new[0][0]]


def test_a_record_may_be_tombstoned_before_its_batch_is_anchored(
    chain: Chain, patient: LocalAccount
) -> None:
    records = _records([patient.address], 2, "early")
    r = chain.records.functions
    expect_revert(  # the namespace decides, anchored or not
        lambda: r.eraseRecords([records[0][0]], REASON).transact({"from": chain.b}),
        "RecordRegistryForeignRecord",
    )
    chain.send(r.eraseRecords([records[0][0]], REASON), chain.a)
    tree, batch_id, _ = _anchor(chain, records, chain.a)
    assert r.isErased(records[0][0]).call() and not r.isErased(records[1][0]).call()
    assert r.verifyRecord(batch_id, *records[0], tree.proof(record_leaf(*records[0]))).call()


def test_anchoring_outside_the_own_namespace_is_refused(
    chain: Chain, patient: LocalAccount
) -> None:
    r = chain.records.functions
    own, foreign = namespaced_id(A, "own"), namespaced_id(B, "foreign")
    for rid in (foreign, namespaced_id(0, "nobody's"), namespaced_id(99, "unknown member")):
        args = expect_revert(
            lambda i=rid: r.anchorBatch(
                keccak(text="root"), [own, i], [patient.address] * 2
            ).transact({"from": chain.a}),
            "RecordRegistryForeignRecord",
        )
        assert args == (rid, chain.a)
    assert r.batchCount().call() == 0


def test_erase_records_rejects_outsiders_and_bad_input(chain: Chain) -> None:
    r = chain.records.functions
    rid, reason = namespaced_id(A, "x"), keccak(text="why")
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
