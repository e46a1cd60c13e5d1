"""A local copy of the on-chain credential tree, rebuilt from CredentialAdded/Revoked events.

Clinicians ask their hospital's node for a Merkle path; the node answers from this copy, and
checks after every event that its root equals the root the contract emitted, so a path it
hands out always matches a root the gate knows.
"""

from __future__ import annotations

import threading

from node.chain.abc import ChainClientAPI, ZkGateAPI
from node.exceptions import NodeError, NotFound
from zk.merkle import CredentialTree, MerklePath

# get_logs ranges: bounded so a long chain is read in pieces.
_SPAN = 5_000


class CredentialTreeDiverged(NodeError):
    """The local tree does not reproduce a root the contract emitted."""


class CredentialMirror:
    def __init__(self, chain: ChainClientAPI, gate: ZkGateAPI, start_block: int) -> None:
        self._chain = chain
        self._gate = gate
        self._next_block = start_block
        self._tree = CredentialTree()
        self._issuer: dict[int, str] = {}
        self._lock = threading.Lock()

    def sync(self) -> int:
        """Apply the events up to the chain head; return how many were applied."""
        with self._lock:
            head = self._chain.head_block()
            applied = 0
            while self._next_block <= head:
                to_block = min(head, self._next_block + _SPAN - 1)
                events = self._gate.credential_events(self._next_block, to_block)
                for i, event in enumerate(events):
                    if event.kind == "added":
                        index = self._tree.insert(event.commitment)
                        if index != event.index:
                            raise CredentialTreeDiverged(
                                f"credential inserted at {index}, the contract says {event.index}"
                            )
                        self._issuer[event.commitment] = event.hospital
                    else:
                        self._tree.remove(event.index)
                        self._issuer.pop(event.commitment, None)
                    # A batch emits one event per leaf, each with the batch's final root.
                    following = events[i + 1] if i + 1 < len(events) else None
                    same_batch = (
                        following is not None
                        and following.block_number == event.block_number
                        and following.root == event.root
                    )
                    if not same_batch and self._tree.root != event.root:
                        raise CredentialTreeDiverged(
                            f"local credential root differs from the contract's at block "
                            f"{event.block_number}"
                        )
                    applied += 1
                self._next_block = to_block + 1
            return applied

    @property
    def root(self) -> int:
        with self._lock:
            return self._tree.root

    @property
    def size(self) -> int:
        with self._lock:
            return self._tree.size

    def issuer(self, commitment: int) -> str | None:
        with self._lock:
            return self._issuer.get(commitment)

    def path(self, commitment: int) -> tuple[int, MerklePath]:
        """(leaf index, Merkle path) of a registered, unrevoked commitment."""
        self.sync()
        with self._lock:
            if commitment not in self._issuer or commitment not in self._tree:
                raise NotFound("no such credential commitment in the consortium tree")
            index = self._tree.index_of(commitment)
            return index, self._tree.path(index)
