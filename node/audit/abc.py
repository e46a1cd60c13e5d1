"""Interfaces of the node's own audit stores: the durable queue that carries access entries to
the on-chain AccessLog, and the key audit log."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import anyio.to_thread

from node.chain.models import AccessEntry


class AccessLogQueueAPI(ABC):
    @abstractmethod
    def enqueue(self, entries: Sequence[AccessEntry]) -> None:
        """Persist ``entries`` durably; they reach the chain in the next flush."""

    @abstractmethod
    def pending(self, limit: int, fence: int | None = None) -> list[tuple[int, AccessEntry]]:
        """Up to ``limit`` (queue id, entry) pairs, oldest first, claimed for the worker
        holding lease ``fence``: another worker is not given them while the claim holds
        (None: no claim, for a queue only one process drains)."""

    @abstractmethod
    def remove(self, ids: Sequence[int]) -> None:
        """Drop entries once their transaction is mined (a crash before this sends them
        again: delivery is at least once)."""

    @abstractmethod
    def count(self) -> int: ...

    async def enqueue_async(self, entries: Sequence[AccessEntry]) -> None:
        """``enqueue`` for a coroutine: returns once ``entries`` are durable. This default
        runs ``enqueue`` in a worker thread; a queue with group commit awaits its commit
        on the event loop instead."""
        await anyio.to_thread.run_sync(self.enqueue, entries)

    def close(self) -> None:  # noqa: B027 - optional hook
        """Commit what is buffered and release what the queue opened itself (a queue on a
        shared database leaves the database to whoever opened it)."""


@dataclass(frozen=True, slots=True)
class KeyAuditEntry:
    """One key operation: ``hash`` = sha256(``prev_hash`` || the entry's canonical JSON)."""

    seq: int
    at: int  # unix seconds
    actor: str  # API token name, node address or "system"
    action: str  # kek.generate, kek.rotate, kek.destroy, wrap.batch, unwrap.batch, sign, ...
    subject: str  # KEK version, digest, count, address: never key material
    prev_hash: bytes
    hash: bytes


class KeyAuditLogAPI(ABC):
    """Append-only, hash-chained log of key operations."""

    @abstractmethod
    def append(self, action: str, subject: str, actor: str | None = None) -> KeyAuditEntry:
        """Durably append an entry (``actor`` defaults to the context's, see ``acting_as``)
        and return it with its hash."""

    @abstractmethod
    def entries(
        self, *, after: int = 0, limit: int = 1000, action: str | None = None
    ) -> list[KeyAuditEntry]:
        """Up to ``limit`` entries with seq > ``after``, oldest first."""

    @abstractmethod
    def head(self) -> KeyAuditEntry | None:
        """The latest entry, None for an empty log."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the database."""
