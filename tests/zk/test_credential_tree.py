"""zk.merkle mirrors @zk-kit/imt.sol InternalBinaryIMT (default zeroes)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from zk.exceptions import InputError
from zk.field import R
from zk.merkle import DEFAULT_DEPTH, MAX_DEPTH, CredentialTree, MerklePath, zeros
from zk.poseidon import poseidon

IMT_SOL = (
    Path(__file__).resolve().parents[2]
    / "node_modules/@zk-kit/imt.sol/internal/InternalBinaryIMT.sol"
)


def solidity_zeroes() -> dict[int, int]:
    found = re.findall(r"uint256 internal constant Z_(\d+) = (\d+);", IMT_SOL.read_text())
    return {int(i): int(v) for i, v in found}


def full_root(leaves: list[int], depth: int) -> int:
    """Reference: hash a dense tree with zero padding (no shortcuts)."""
    level = list(leaves) + [0] * ((1 << depth) - len(leaves))
    for _ in range(depth):
        level = [poseidon([level[i], level[i + 1]]) for i in range(0, len(level), 2)]
    return level[0]


def test_zeros_match_imt_sol_constants() -> None:
    expected = solidity_zeroes()
    assert len(expected) == MAX_DEPTH + 1
    assert zeros(MAX_DEPTH) == [expected[i] for i in range(MAX_DEPTH + 1)]
    assert zeros(3) == [expected[i] for i in range(4)]


def test_empty_root_is_default_zero() -> None:
    assert CredentialTree().root == solidity_zeroes()[DEFAULT_DEPTH]
    assert CredentialTree(4).root == zeros(4)[4]


def test_insert_matches_dense_reference() -> None:
    leaves = [poseidon([i]) for i in range(1, 12)]
    tree = CredentialTree(4)
    for i, leaf in enumerate(leaves):
        assert tree.insert(leaf) == i
        assert tree.root == full_root(leaves[: i + 1], 4)
    assert tree.size == len(tree) == 11
    assert tree.leaves() == leaves


def test_insert_many_equals_sequential_inserts() -> None:
    leaves = list(range(1, 40))
    one = CredentialTree(DEFAULT_DEPTH)
    for leaf in leaves:
        one.insert(leaf)
    many = CredentialTree(DEFAULT_DEPTH)
    assert many.insert_many(leaves[:7]) == 0
    assert many.insert_many(leaves[7:]) == 7
    assert many.insert_many([]) == 39
    assert many.root == one.root
    assert many.path(20) == one.path(20)


def test_paths_recompute_root_for_every_leaf() -> None:
    tree = CredentialTree(5)
    tree.insert_many(range(100, 121))
    for index in range(tree.size):
        path = tree.path(index)
        assert path.depth == 5
        assert path.index == index
        assert path.indices == tuple((index >> i) & 1 for i in range(5))
        assert path.root(tree.leaf(index)) == tree.root
        assert path.verify(tree.leaf(index), tree.root)
        assert not path.verify(tree.leaf(index) + 1, tree.root)


def test_path_of_depth_20_tree() -> None:
    tree = CredentialTree()
    tree.insert_many([11, 22, 33])
    path = tree.path(2)
    assert len(path.siblings) == len(path.indices) == 20
    assert path.indices[:2] == (0, 1)
    assert path.siblings[0] == 0  # right neighbour of leaf 2 is empty
    assert path.siblings[1] == poseidon([11, 22])
    assert path.siblings[2:] == tuple(zeros(20)[2:20])
    assert path.root(33) == tree.root


def test_remove_sets_leaf_to_zero() -> None:
    leaves = [5, 6, 7, 8, 9]
    tree = CredentialTree(3)
    tree.insert_many(leaves)
    before = tree.root
    tree.remove(1)
    assert tree.leaf(1) == 0
    assert tree.root == full_root([5, 0, 7, 8, 9], 3) != before
    assert 6 not in tree
    with pytest.raises(InputError):
        tree.index_of(6)
    with pytest.raises(InputError):
        tree.remove(1)  # already zero: BinaryIMT reverts NewLeafCannotEqualOldLeaf
    assert tree.size == 5  # the slot is kept
    assert tree.insert(10) == 5


def test_update_and_index_of() -> None:
    tree = CredentialTree(3)
    tree.insert_many([5, 6, 7])
    assert tree.index_of(7) == 2
    tree.update(2, 70)
    assert tree.index_of(70) == 2
    assert 7 not in tree and 70 in tree
    assert tree.root == full_root([5, 6, 70], 3)
    with pytest.raises(InputError):
        tree.update(2, 70)


def test_duplicate_leaves_are_tracked() -> None:
    tree = CredentialTree(3)
    tree.insert_many([9, 9, 4])
    assert tree.index_of(9) == 0
    tree.remove(0)
    assert tree.index_of(9) == 1
    tree.remove(1)
    assert 9 not in tree


def test_rejects_non_field_leaves() -> None:
    tree = CredentialTree(3)
    for bad in (R, -1, 1.5, True, "1"):
        with pytest.raises(InputError):
            tree.insert(bad)  # type: ignore[arg-type]
    with pytest.raises(InputError):
        tree.insert_many([1, R])
    assert tree.size == 0  # nothing half-inserted
    assert tree.root == zeros(3)[3]


def test_unknown_index_and_full_tree() -> None:
    tree = CredentialTree(2)
    tree.insert_many([1, 2, 3])
    for bad in (-1, 3, 100, True):
        with pytest.raises(InputError):
            tree.leaf(bad)
        with pytest.raises(InputError):
            tree.path(bad)
    with pytest.raises(InputError):
        tree.remove(3)
    tree.insert(4)
    with pytest.raises(InputError):
        tree.insert(5)
    with pytest.raises(InputError):
        tree.insert_many([5, 6])
    assert tree.size == 4


@pytest.mark.parametrize("depth", [0, MAX_DEPTH + 1])
def test_bad_depth(depth: int) -> None:
    with pytest.raises(InputError):
        CredentialTree(depth)


def test_merkle_path_validation() -> None:
    with pytest.raises(InputError):
        MerklePath((1, 2), (0,))
    with pytest.raises(InputError):
        MerklePath((1,), (2,))
    with pytest.raises(InputError):
        MerklePath((1,), (0,)).root(R)
