"""A local copy of the on-chain credential tree (a LeanIMT), rebuilt from the registry's
CredentialIssued / CredentialRevoked events.

After every batch of events the local root must equal the root the contract emitted, so
the tree served at ``GET /zk/tree`` (the same for every caller) always matches a root the
gate knew. Beside the tree the mirror keeps each live leaf's preimage (identity
commitment, issuing member id, role, licence expiry): a revocation needs it, and anyone may
revoke a removed member's credentials.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from node.chain.abc import ZkGateAPI
from node.exceptions import NodeError, NotFound
from zk.merkle import LeanIMT, LeanIMTProof

# get_logs ranges: bounded so a long chain is read in pieces.
_SPAN = 5_000


class CredentialTreeDiverged(NodeError):
    """The local tree does not reproduce a root the contract emitted."""


@dataclass(frozen=True, slots=True)
class LiveCredential:
    """A live leaf and what the registry hashed into it (all public on-chain)."""

    leaf: int
    index: int
    identity_commitment: int
    hospital_id: int
    role: int
    expiry: int


@dataclass(frozen=True, slots=True)
class TreeSnapshot:
    root: int
    size: int
    depth: int
    leaves: tuple[int, ...]


class CredentialMirror:
    def __init__(self, head_block: Callable[[], int], gate: ZkGateAPI, start_block: int) -> None:
        self._head_block = head_block
        self._gate = gate
        self._next_block = start_block
        self._tree = LeanIMT()
        self._live: dict[int, LiveCredential] = {}
        self._lock = threading.Lock()

    def sync(self) -> int:
        """Apply the events up to the chain head; return how many were applied. Raises
        ``CredentialTreeDiverged`` when the local root differs from an emitted one."""
        with self._lock:
            head = self._head_block()
            applied = 0
            while self._next_block <= head:
                to_block = min(head, self._next_block + _SPAN - 1)
                events = self._gate.credential_events(self._next_block, to_block)
                for i, event in enumerate(events):
                    if event.kind == "issued":
                        index = self._tree.insert(event.leaf)
                        if index != event.index:
                            raise CredentialTreeDiverged(
                                f"credential inserted at {index}, the contract says {event.index}"
                            )
                        self._live[event.leaf] = LiveCredential(
                            event.leaf,
                            index,
                            event.identity_commitment,
                            event.hospital_id,
                            event.role,
                            event.expiry,
                        )
                    else:
                        if self._tree.leaf(event.index) != event.leaf:
                            raise CredentialTreeDiverged(
                                f"revoked leaf at {event.index} is not the mirror's leaf"
                            )
                        self._tree.remove(event.index)
                        self._live.pop(event.leaf, None)
                    # A batch emits one event per leaf, each with the batch's final root.
                    following = events[i + 1] if i + 1 < len(events) else None
                    same_batch = (
                        following is not None
                        and following.kind == event.kind == "issued"
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

    def snapshot(self) -> TreeSnapshot:
        """Every leaf (0 for revoked ones) in index order, with root and depth; synced."""
        self.sync()
        with self._lock:
            t = self._tree
            return TreeSnapshot(t.root, t.size, t.depth, tuple(t.leaves))

    def credential(self, leaf: int) -> LiveCredential | None:
        """The live credential with this leaf, or None (never issued, or revoked)."""
        with self._lock:
            return self._live.get(leaf)

    def credentials_of(self, hospital_id: int) -> list[LiveCredential]:
        """Every live credential issued under member id ``hospital_id``, by index."""
        with self._lock:
            found = [c for c in self._live.values() if c.hospital_id == hospital_id]
        return sorted(found, key=lambda c: c.index)

    def proof(self, leaf: int) -> tuple[LiveCredential, LeanIMTProof]:
        """A live credential and its current Merkle proof (for a revocation). Raises
        ``NotFound`` when the leaf is not live."""
        self.sync()
        with self._lock:
            credential = self._live.get(leaf)
            if credential is None:
                raise NotFound("no live credential has this leaf")
            return credential, self._tree.generate_proof(credential.index)
