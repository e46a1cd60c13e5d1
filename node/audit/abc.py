"""Interface of the durable queue that carries access entries to the on-chain AccessLog."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

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
