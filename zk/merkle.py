"""The credential tree: a Lean Incremental Merkle Tree, node for node zk-kit's.

Same algorithm as npm ``@zk-kit/lean-imt`` (TypeScript) and ``@zk-kit/lean-imt.sol``
(``InternalLeanIMT``, which CredentialRegistry runs on chain with PoseidonT3):

* binary, no zero hashes, dynamic depth ``ceil(log2(size))``;
* a node without a right sibling is carried up unhashed;
* empty tree root 0, a one-leaf tree's root is the leaf;
* a removed leaf is updated to 0 (its slot stays, the root changes).

Levels are stored as lists like the TypeScript tree's ``_nodes``: ``insert`` and ``update`` hash
O(depth) nodes, ``insert_many`` hashes each new node once. Leaves obey the Solidity library's
rules (non-zero on insert, below the field modulus, no duplicates), so a mirror built from the
registry's events can never accept what the contract refused.

Merkle proofs are LeanIMT's ``generateProof``: ``siblings`` only for the levels where a sibling
exists, and bit i of ``index`` (LSB first) says whether the path node at the i-th of those
levels is a right child.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from zk.exceptions import InputError
from zk.field import require_field_element
from zk.poseidon import poseidon2

Hash = Callable[[int, int], int]

MAX_DEPTH = 20  # the ClinicianAccess circuit's LeanIMTRoot(20): at most 2^20 credentials


@dataclass(frozen=True)
class LeanIMTProof:
    """zk-kit's ``LeanIMTMerkleProof``: (root, leaf, index, siblings)."""

    root: int
    leaf: int
    index: int
    siblings: tuple[int, ...]

    @property
    def depth(self) -> int:
        """Levels that hash (the circuit's ``depth`` input)."""
        return len(self.siblings)

    def compute_root(self, hash: Hash = poseidon2) -> int:
        """The root this proof leads to from its leaf."""
        node = self.leaf
        for i, sibling in enumerate(self.siblings):
            node = hash(sibling, node) if self.index >> i & 1 else hash(node, sibling)
        return node

    def verify(self, hash: Hash = poseidon2) -> bool:
        """LeanIMT.verifyProof: the leaf and siblings lead to ``root``."""
        return self.compute_root(hash) == self.root

    def padded_siblings(self, length: int = MAX_DEPTH) -> list[int]:
        """``siblings`` padded with zeros to the circuit's fixed length."""
        if self.depth > length:
            raise InputError(f"a Merkle proof of depth {self.depth} exceeds {length}")
        return [*self.siblings, *([0] * (length - self.depth))]


def verify_proof(proof: LeanIMTProof, hash: Hash = poseidon2) -> bool:
    """``LeanIMT.verifyProof(proof, hash)``."""
    return proof.verify(hash)


class LeanIMT:
    """A LeanIMT of field elements (Poseidon(2) nodes unless another ``hash`` is given)."""

    def __init__(self, leaves: Iterable[int] = (), *, hash: Hash = poseidon2) -> None:
        self._hash = hash
        self._nodes: list[list[int]] = [[]]
        self._index: dict[int, int] = {}  # live (non-zero) leaf -> its index
        leaves = list(leaves)
        if leaves:
            self.insert_many(leaves)

    # -- queries ---------------------------------------------------------------------------

    @property
    def root(self) -> int:
        """The root; 0 for an empty tree."""
        top = self._nodes[-1]
        return top[0] if top else 0

    @property
    def depth(self) -> int:
        return len(self._nodes) - 1

    @property
    def size(self) -> int:
        """Leaves ever inserted (a removed leaf keeps its slot, as 0)."""
        return len(self._nodes[0])

    def __len__(self) -> int:
        return self.size

    @property
    def leaves(self) -> list[int]:
        return list(self._nodes[0])

    def leaf(self, index: int) -> int:
        self._check_index(index)
        return self._nodes[0][index]

    def has(self, leaf: int) -> bool:
        """True iff ``leaf`` is a live leaf (0, a removed slot, is never "had")."""
        return isinstance(leaf, int) and leaf != 0 and leaf in self._index

    __contains__ = has

    def index_of(self, leaf: int) -> int:
        """The index of a live leaf; InputError if the tree does not hold it."""
        if not self.has(leaf):
            raise InputError("leaf is not in the tree")
        return self._index[leaf]

    def generate_proof(self, index: int) -> LeanIMTProof:
        """``LeanIMT.generateProof(index)``."""
        self._check_index(index)
        leaf = self._nodes[0][index]
        siblings: list[int] = []
        bits = 0
        for level in range(self.depth):
            nodes = self._nodes[level]
            right = index & 1
            sibling_index = index - 1 if right else index + 1
            if sibling_index < len(nodes):
                bits |= right << len(siblings)
                siblings.append(nodes[sibling_index])
            index >>= 1
        return LeanIMTProof(self.root, leaf, bits, tuple(siblings))

    def verify_proof(self, proof: LeanIMTProof) -> bool:
        """The proof leads to its root with this tree's hash (not necessarily this root)."""
        return proof.verify(self._hash)

    # -- changes ---------------------------------------------------------------------------

    def insert(self, leaf: int) -> int:
        """Append ``leaf`` (InternalLeanIMT._insert); return its index."""
        self._check_new(leaf)
        index = self.size
        if 1 << self.depth < index + 1:
            self._nodes.append([])
        node = leaf
        for level in range(self.depth):
            nodes = self._nodes[level]
            if index < len(nodes):
                nodes[index] = node
            else:
                nodes.append(node)
            if index & 1:
                node = self._hash(nodes[index - 1], node)
            index >>= 1
        self._nodes[self.depth] = [node]
        self._index[leaf] = self.size - 1
        return self.size - 1

    def insert_many(self, leaves: Sequence[int] | Iterable[int]) -> int:
        """Append ``leaves`` in order (InternalLeanIMT._insertMany: one pass, each new node
        hashed once); return the index of the first. All are checked before any is added."""
        new = list(leaves)
        if not new:
            raise InputError("there are no leaves to add")
        seen: set[int] = set()
        for leaf in new:
            self._check_new(leaf)
            if leaf in seen:
                raise InputError("leaf already in the tree")
            seen.add(leaf)
        first = self.size
        self._nodes[0].extend(new)
        while 1 << self.depth < self.size:
            self._nodes.append([])
        start = first >> 1
        hash = self._hash
        for level in range(self.depth):
            below = self._nodes[level]
            above = self._nodes[level + 1]
            del above[start:]
            n_below = len(below)
            for i in range(start, (n_below + 1) >> 1):
                left = 2 * i
                if left + 1 < n_below:
                    above.append(hash(below[left], below[left + 1]))
                else:
                    above.append(below[left])  # no right sibling: carried up unhashed
            start >>= 1
        for offset, leaf in enumerate(new):
            self._index[leaf] = first + offset
        return first

    def update(self, index: int, new_leaf: int) -> None:
        """Replace the live leaf at ``index`` (InternalLeanIMT._update); 0 removes it."""
        self._check_index(index)
        require_field_element(new_leaf, "leaf")
        old = self._nodes[0][index]
        if old == 0:
            raise InputError("leaf does not exist (it was removed)")
        if new_leaf != 0 and new_leaf in self._index:
            raise InputError("leaf already in the tree")
        node = new_leaf
        position = index
        for level in range(self.depth):
            nodes = self._nodes[level]
            nodes[position] = node
            if position & 1:
                node = self._hash(nodes[position - 1], node)
            elif position + 1 < len(nodes):
                node = self._hash(node, nodes[position + 1])
            position >>= 1
        self._nodes[self.depth] = [node]
        del self._index[old]
        if new_leaf != 0:
            self._index[new_leaf] = index

    def remove(self, index: int) -> None:
        """Revoke the leaf at ``index``: update it to 0."""
        self.update(index, 0)

    # -- internals -------------------------------------------------------------------------

    def _check_index(self, index: int) -> None:
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < self.size:
            raise InputError("leaf index is not in the tree")

    def _check_new(self, leaf: int) -> None:
        require_field_element(leaf, "leaf")
        if leaf == 0:
            raise InputError("a leaf cannot be 0")
        if leaf in self._index:
            raise InputError("leaf already in the tree")
