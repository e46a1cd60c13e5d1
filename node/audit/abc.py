"""Interfaces of the node's own audit stores: the durable queue that carries access entries to
the on-chain AccessLog, and the key audit log."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

from node.chain.models import AccessEntry


class AccessLogQueueAPI(ABC):
    @abstractmethod
    def enqueue(self, entries: Sequence[AccessEntry]) -> None:
        """Persist ``entries`` durably; they reach the chain in the next flush."""

    @abstractmethod
    def pending(self, limit: int) -> list[tuple[int, AccessEntry]]:
        """Up to ``limit`` (queue id, entry) pairs, oldest first."""

    @abstractmethod
    def remove(self, ids: Sequence[int]) -> None:
        """Drop entries once their transaction is mined."""

    @abstractmethod
    def count(self) -> int: ...


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
