"""Off-chain mirror of the credential registry's Merkle tree.

Same tree as @zk-kit/imt.sol ``InternalBinaryIMT`` with default zeroes: Z_0 = 0,
Z_{i+1} = Poseidon(Z_i, Z_i), node = Poseidon(left, right), leaves appended left to right and
"removed" by setting them to 0. Nodes are stored sparsely (one dict per level), so a depth-20
tree costs memory only for the leaves it holds.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass

from zk.exceptions import InputError
from zk.field import require_field_element
from zk.poseidon import poseidon2

DEFAULT_DEPTH = 20
MAX_DEPTH = 32  # imt.sol Constants.MAX_DEPTH


@functools.cache
def _zeros(depth: int) -> tuple[int, ...]:
    if depth == 0:
        return (0,)
    below = _zeros(depth - 1)
    return (*below, poseidon2(below[-1], below[-1]))


def zeros(depth: int = DEFAULT_DEPTH) -> list[int]:
    """[Z_0, ..., Z_depth]: the empty node at each level; Z_depth is the empty tree's root."""
    if not 0 <= depth <= MAX_DEPTH:
        raise InputError(f"tree depth must be in 0..{MAX_DEPTH}")
    return list(_zeros(depth))


@dataclass(frozen=True)
class MerklePath:
    """Membership proof of one leaf: ``siblings[i]`` is the sibling at level i and
    ``indices[i]`` is 1 iff the path node at level i is a right child (bit i of the index)."""

    siblings: tuple[int, ...]
    indices: tuple[int, ...]

    def __post_init__(self) -> None:
        if len(self.siblings) != len(self.indices):
            raise InputError("a Merkle path needs one index bit per sibling")
        if any(b not in (0, 1) for b in self.indices):
            raise InputError("Merkle path indices must be 0 or 1")

    @property
    def depth(self) -> int:
        return len(self.siblings)

    @property
    def index(self) -> int:
        """The leaf index this path belongs to."""
        return sum(b << i for i, b in enumerate(self.indices))

    def root(self, leaf: int) -> int:
        """The root a tree holding ``leaf`` at this path would have."""
        node = require_field_element(leaf, "leaf")
        for sibling, bit in zip(self.siblings, self.indices, strict=True):
            node = poseidon2(sibling, node) if bit else poseidon2(node, sibling)
        return node

    def verify(self, leaf: int, root: int) -> bool:
        return self.root(leaf) == root


class CredentialTree:
    """Append-only binary Merkle tree of credential commitments (revocation zeroes a leaf)."""

    def __init__(self, depth: int = DEFAULT_DEPTH) -> None:
        if not 1 <= depth <= MAX_DEPTH:
            raise InputError(f"tree depth must be in 1..{MAX_DEPTH}")
        self.depth = depth
        self._zeros = _zeros(depth)
        # _nodes[0] holds leaves; _nodes[depth] holds the root (index 0) once non-empty.
        self._nodes: list[dict[int, int]] = [{} for _ in range(depth + 1)]
        self._size = 0
        # Non-zero leaf -> indices holding it (duplicates are legal on chain), ascending.
        self._where: dict[int, list[int]] = {}

    # -- queries ---------------------------------------------------------------------------

    @property
    def size(self) -> int:
        """Number of leaves ever inserted (removed leaves keep their slot)."""
        return self._size

    @property
    def capacity(self) -> int:
        return 1 << self.depth

    @property
    def root(self) -> int:
        return self._node(self.depth, 0)

    def __len__(self) -> int:
        return self._size

    def __contains__(self, leaf: object) -> bool:
        return isinstance(leaf, int) and leaf != 0 and leaf in self._where

    def leaf(self, index: int) -> int:
        self._check_index(index)
        return self._nodes[0].get(index, 0)

    def leaves(self) -> list[int]:
        return [self._nodes[0].get(i, 0) for i in range(self._size)]

    def index_of(self, leaf: int) -> int:
        """Lowest index holding ``leaf``; InputError if the tree does not hold it."""
        indices = self._where.get(leaf) if leaf != 0 else None
        if not indices:
            raise InputError("leaf is not in the tree")
        return indices[0]

    def path(self, index: int) -> MerklePath:
        self._check_index(index)
        siblings = tuple(self._node(level, (index >> level) ^ 1) for level in range(self.depth))
        indices = tuple((index >> level) & 1 for level in range(self.depth))
        return MerklePath(siblings, indices)

    # -- changes ---------------------------------------------------------------------------

    def insert(self, leaf: int) -> int:
        """Append ``leaf``; return its index."""
        return self.insert_many([leaf])

    def insert_many(self, leaves: Iterable[int]) -> int:
        """Append ``leaves`` in order, hashing each level once; return the first new index."""
        new = [require_field_element(v, "leaf") for v in leaves]
        start = self._size
        if not new:
            return start
        if start + len(new) > self.capacity:
            raise InputError("credential tree is full")
        for offset, value in enumerate(new):
            self._set_leaf(start + offset, value)
        self._size = start + len(new)
        self._rehash(start, self._size - 1)
        return start

    def update(self, index: int, leaf: int) -> None:
        """Replace the leaf at ``index`` (as BinaryIMT ``update``: the value must change)."""
        self._check_index(index)
        require_field_element(leaf, "leaf")
        if self._nodes[0].get(index, 0) == leaf:
            raise InputError("new leaf equals the old leaf")
        self._set_leaf(index, leaf)
        self._rehash(index, index)

    def remove(self, index: int) -> None:
        """Revoke the leaf at ``index`` (set it to Z_0 = 0)."""
        self.update(index, 0)

    # -- internals -------------------------------------------------------------------------

    def _check_index(self, index: int) -> None:
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < self._size:
            raise InputError("leaf index is not in the tree")

    def _node(self, level: int, index: int) -> int:
        return self._nodes[level].get(index, self._zeros[level])

    def _set_leaf(self, index: int, value: int) -> None:
        old = self._nodes[0].get(index, 0)
        if old:
            holders = self._where[old]
            holders.remove(index)
            if not holders:
                del self._where[old]
        if value:
            self._nodes[0][index] = value
            holders = self._where.setdefault(value, [])
            holders.append(index)
            holders.sort()
        else:
            self._nodes[0].pop(index, None)

    def _rehash(self, first: int, last: int) -> None:
        """Recompute the parents of leaves first..last, level by level."""
        for level in range(self.depth):
            first >>= 1
            last >>= 1
            below = self._nodes[level]
            zero = self._zeros[level]
            above = self._nodes[level + 1]
            for i in range(first, last + 1):
                left = below.get(2 * i, zero)
                right = below.get(2 * i + 1, zero)
                above[i] = poseidon2(left, right)
