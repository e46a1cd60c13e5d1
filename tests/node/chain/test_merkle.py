import secrets

import pytest
from eth_account import Account

from node.chain.merkle import MerkleTree, record_leaf, verify_proof


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 7, 8, 33, 1000])
def test_every_leaf_proves_against_the_root(n: int) -> None:
    leaves = [secrets.token_bytes(32) for _ in range(n)]
    tree = MerkleTree(leaves)
    for i in (0, n // 2, n - 1):
        assert verify_proof(leaves[i], tree.proof(i), tree.root)


def test_tampered_leaf_or_proof_fails() -> None:
    leaves = [secrets.token_bytes(32) for _ in range(6)]
    tree = MerkleTree(leaves)
    proof = tree.proof(2)
    assert not verify_proof(secrets.token_bytes(32), proof, tree.root)
    bad = list(proof)
    bad[0] = bytes(32)
    assert not verify_proof(leaves[2], bad, tree.root)


def test_leaf_binds_every_field() -> None:
    rid, h = secrets.token_bytes(32), secrets.token_bytes(32)
    patient = Account.create().address
    base = record_leaf(rid, patient, h, None)
    assert base == record_leaf(rid, patient.lower(), h, bytes(32))  # None means no predecessor
    assert base != record_leaf(rid, Account.create().address, h, None)
    assert base != record_leaf(rid, patient, secrets.token_bytes(32), None)
    assert base != record_leaf(rid, patient, h, secrets.token_bytes(32))


def test_empty_tree_is_refused() -> None:
    with pytest.raises(ValueError):
        MerkleTree([])
