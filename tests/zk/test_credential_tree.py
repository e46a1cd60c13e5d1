"""zk.merkle.LeanIMT is zk-kit's LeanIMT: checked node for node against the TypeScript
reference (npm @zk-kit/lean-imt, run under node with the same test hash) and against
hand-built trees with circomlib Poseidon."""

from __future__ import annotations

import hashlib
import json
import random
import subprocess
from pathlib import Path

import pytest

from zk.exceptions import InputError
from zk.field import R
from zk.merkle import LeanIMT, LeanIMTProof, verify_proof
from zk.poseidon import poseidon2

REPO = Path(__file__).resolve().parents[2]


def sha(a: int, b: int) -> int:
    """A non-commutative test hash both Python and node compute (sha256 of "a,b")."""
    return int.from_bytes(hashlib.sha256(f"{a},{b}".encode()).digest(), "big") % R


# Replays a list of operations on the TypeScript LeanIMT; prints the state after each.
TS_REPLAY = r"""
const { LeanIMT } = require("@zk-kit/lean-imt");
const { createHash } = require("crypto");
const R = 21888242871839275222246405745257275088548364400416034343698204186575808495617n;
const hash = (a, b) => BigInt("0x" + createHash("sha256").update(`${a},${b}`).digest("hex")) % R;
const ops = JSON.parse(require("fs").readFileSync(0, "utf8"));
const tree = new LeanIMT(hash);
const out = [];
for (const [op, a, b] of ops) {
  if (op === "insert") tree.insert(BigInt(a));
  else if (op === "insertMany") tree.insertMany(a.map(BigInt));
  else if (op === "update") tree.update(a, BigInt(b));
  const proofs = [];
  for (let i = 0; i < tree.size; i++) {
    const p = tree.generateProof(i);
    proofs.push([p.root.toString(), p.leaf.toString(), p.index, p.siblings.map(String)]);
  }
  const root = tree.size ? tree.root.toString() : "0";
  out.push({ root, depth: tree.depth, size: tree.size, proofs });
}
console.log(JSON.stringify(out));
"""


def replay_in_typescript(ops: list[list]) -> list[dict]:
    done = subprocess.run(
        ["node", "-e", TS_REPLAY],
        input=json.dumps(ops),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(done.stdout)


def state(tree: LeanIMT) -> dict:
    proofs = []
    for i in range(tree.size):
        p = tree.generate_proof(i)
        proofs.append([str(p.root), str(p.leaf), p.index, [str(s) for s in p.siblings]])
    return {"root": str(tree.root), "depth": tree.depth, "size": tree.size, "proofs": proofs}


def test_matches_typescript_lean_imt_after_every_operation() -> None:
    rng = random.Random(9)
    ops: list[list] = []
    live: list[int] = []
    size = 0
    fresh = iter(range(1, 10**6))
    for _ in range(120):
        kind = rng.random()
        if kind < 0.45 or size == 0:
            leaf = next(fresh)
            ops.append(["insert", str(leaf)])
            live.append(size)
            size += 1
        elif kind < 0.7:
            batch = [next(fresh) for _ in range(rng.randint(1, 9))]
            ops.append(["insertMany", [str(x) for x in batch]])
            live += range(size, size + len(batch))
            size += len(batch)
        elif live:
            index = rng.choice(live)
            if rng.random() < 0.5:
                ops.append(["update", index, "0"])  # revoke
                live.remove(index)
            else:
                ops.append(["update", index, str(next(fresh))])
    expected = replay_in_typescript(ops)
    tree = LeanIMT(hash=sha)
    for op, want in zip(ops, expected, strict=True):
        if op[0] == "insert":
            tree.insert(int(op[1]))
        elif op[0] == "insertMany":
            tree.insert_many([int(x) for x in op[1]])
        else:
            tree.update(op[1], int(op[2]))
        assert state(tree) == want, op
    assert tree.size > 64 and tree.depth >= 7  # the run reached a ragged, deep tree


def test_empty_single_and_small_trees_with_poseidon() -> None:
    tree = LeanIMT()
    assert (tree.root, tree.depth, tree.size) == (0, 0, 0)
    tree.insert(5)
    assert (tree.root, tree.depth) == (5, 0)  # size 1: the root is the leaf
    assert tree.generate_proof(0) == LeanIMTProof(5, 5, 0, ())
    tree.insert(6)
    assert (tree.root, tree.depth) == (poseidon2(5, 6), 1)
    tree.insert(7)  # carried up unhashed: root = H(H(5, 6), 7)
    assert (tree.root, tree.depth) == (poseidon2(poseidon2(5, 6), 7), 2)
    proof = tree.generate_proof(2)
    assert proof.siblings == (poseidon2(5, 6),) and proof.index == 1  # one hashing level
    assert proof.depth == 1 and proof.verify() and verify_proof(proof)
    p0 = tree.generate_proof(0)
    assert p0.siblings == (6, 7) and p0.index == 0 and p0.verify()
    assert tree.generate_proof(1).index == 0b01


def test_insert_many_equals_inserts_and_is_one_pass() -> None:
    calls = {"n": 0}

    def counted(a: int, b: int) -> int:
        calls["n"] += 1
        return sha(a, b)

    one = LeanIMT(hash=sha)
    for leaf in range(1, 1001):
        one.insert(leaf)
    many = LeanIMT(hash=counted)
    assert many.insert_many(range(1, 1001)) == 0
    assert many.root == one.root and many.depth == one.depth == 10
    assert calls["n"] == 999  # every internal node hashed once: n - 1 for n leaves
    calls["n"] = 0
    assert many.insert_many([2000, 2001, 2002]) == 1000
    one.insert_many([2000, 2001, 2002])
    assert many.root == one.root
    assert calls["n"] <= 3 * 10  # only the new right edge is rehashed
    assert many.generate_proof(500) == one.generate_proof(500)


def test_single_insert_hashes_at_most_depth_nodes() -> None:
    calls = {"n": 0}

    def counted(a: int, b: int) -> int:
        calls["n"] += 1
        return sha(a, b)

    tree = LeanIMT(range(1, 5000), hash=counted)
    calls["n"] = 0
    tree.insert(10**6)
    assert calls["n"] <= tree.depth
    calls["n"] = 0
    tree.update(1234, 777_777)
    assert calls["n"] <= tree.depth


def test_update_remove_has_index_of() -> None:
    tree = LeanIMT([11, 22, 33, 44, 55], hash=sha)
    assert tree.index_of(33) == 2 and tree.has(33) and 33 in tree
    tree.remove(2)
    assert tree.leaf(2) == 0 and not tree.has(33) and tree.size == 5
    expected = sha(sha(sha(11, 22), sha(0, 44)), 55)
    assert tree.root == expected
    with pytest.raises(InputError, match="does not exist"):
        tree.remove(2)  # as LeanIMT.sol: the removed leaf no longer exists
    with pytest.raises(InputError):
        tree.index_of(33)
    tree.update(4, 66)
    assert tree.index_of(66) == 4 and not tree.has(55)
    with pytest.raises(InputError, match="already"):
        tree.update(0, 66)  # duplicates refused, as on chain
    assert tree.insert(33) == 5  # a removed value may come back (LeanIMT.sol allows it)
    for i in range(tree.size):
        if tree.leaf(i):
            assert tree.generate_proof(i).verify(sha)


def test_leaves_are_checked_like_lean_imt_sol() -> None:
    tree = LeanIMT([1, 2], hash=sha)
    for bad in (0, R, -1, True, "3", 1.5):
        with pytest.raises(InputError):
            tree.insert(bad)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="already"):
        tree.insert(2)
    with pytest.raises(InputError):
        tree.insert_many([3, 4, 3])  # a duplicate inside the batch
    with pytest.raises(InputError):
        tree.insert_many([3, 0])
    with pytest.raises(InputError):
        tree.insert_many([])
    assert tree.leaves == [1, 2]  # nothing half-inserted
    for bad_index in (-1, 2, True):
        with pytest.raises(InputError):
            tree.generate_proof(bad_index)


def test_proofs_of_a_ragged_poseidon_tree_verify_and_detect_tampering() -> None:
    tree = LeanIMT(range(100, 113))  # 13 leaves: depth 4, ragged right edge
    assert tree.depth == 4
    depths = set()
    for i in range(tree.size):
        proof = tree.generate_proof(i)
        depths.add(proof.depth)
        assert proof.verify() and tree.verify_proof(proof)
        if proof.siblings:
            bad = LeanIMTProof(proof.root, proof.leaf, proof.index ^ 1, proof.siblings)
            assert not bad.verify()
        assert not LeanIMTProof(proof.root, proof.leaf + 1, proof.index, proof.siblings).verify()
    assert depths == {2, 4}  # leaf 12 is carried up two levels unhashed
    assert tree.generate_proof(12).padded_siblings(20)[2:] == [0] * 18
