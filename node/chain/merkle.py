"""Merkle trees compatible with OpenZeppelin's ``MerkleProof`` (commutative keccak256 of
sorted pairs) and the RecordRegistry leaf format."""

from __future__ import annotations

from collections.abc import Sequence

from eth_abi import encode
from eth_utils import keccak, to_checksum_address

ZERO32 = b"\x00" * 32


def record_leaf(
    record_id: bytes, patient: str, content_hash: bytes, previous_id: bytes | None
) -> bytes:
    """``keccak256(bytes.concat(keccak256(abi.encode(id, patient, hash, previous))))``: the
    double hash keeps a leaf from ever equalling an inner node (second-preimage safety)."""
    inner = keccak(
        encode(
            ["bytes32", "address", "bytes32", "bytes32"],
            [record_id, to_checksum_address(patient), content_hash, previous_id or ZERO32],
        )
    )
    return keccak(inner)


def _hash_pair(a: bytes, b: bytes) -> bytes:
    return keccak(a + b) if a < b else keccak(b + a)


class MerkleTree:
    """A binary tree over leaves in the given order; an odd node is carried up unchanged."""

    def __init__(self, leaves: Sequence[bytes]) -> None:
        if not leaves:
            raise ValueError("a Merkle tree needs at least one leaf")
        self._layers: list[list[bytes]] = [list(leaves)]
        while len(self._layers[-1]) > 1:
            level = self._layers[-1]
            nxt = [_hash_pair(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
            if len(level) % 2:
                nxt.append(level[-1])
            self._layers.append(nxt)

    @property
    def root(self) -> bytes:
        return self._layers[-1][0]

    def proof(self, index: int) -> list[bytes]:
        """Sibling hashes from the leaf at ``index`` up to the root."""
        path: list[bytes] = []
        for level in self._layers[:-1]:
            sibling = index ^ 1
            if sibling < len(level):
                path.append(level[sibling])
            index //= 2
        return path


def verify_proof(leaf: bytes, proof: Sequence[bytes], root: bytes) -> bool:
    computed = leaf
    for sibling in proof:
        computed = _hash_pair(computed, sibling)
    return computed == root
