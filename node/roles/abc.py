"""What API code may ask of the background workers, wherever they run.

In one process (``role="all"``) the workers are threads beside the routes; with separate
processes they live in the worker role and are reached over its internal endpoint. Routes and
flows see only this interface, never a ``BatchWorker``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass


@dataclass(frozen=True)
class WorkerStatus:
    running: bool
    last_error: str | None


class BackgroundWorkersAPI(ABC):
    @abstractmethod
    def wake(self, name: str) -> None:
        """Ask worker ``name`` to run a round now (best effort: its interval runs it anyway)."""

    @abstractmethod
    def queued(self, name: str, n: int) -> None:
        """Note ``n`` new items for worker ``name``; a full batch may wake it early."""

    @abstractmethod
    def run_now(self, name: str) -> None:
        """Run worker ``name``'s round before returning where it runs in this process;
        elsewhere, wake it. Raises what the round raises (in process only)."""

    @abstractmethod
    def status(self) -> dict[str, WorkerStatus]:
        """Every worker by name; empty when the worker role cannot be reached."""

    @abstractmethod
    def last_error(self, name: str) -> str | None:
        """The last round's error of worker ``name`` (None when fine or unknown)."""
