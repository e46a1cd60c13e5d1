"""Servers a hospital's systems push to over their own protocols (HL7 v2 over MLLP, DICOM):
one per hospital, run by the worker role beside the background workers. Each is a thin
façade over the node's flows: it parses, checks who sent it, and calls the same upload and
directory services as the HTTP API."""

from __future__ import annotations

from abc import ABC, abstractmethod


class ListenerAPI(ABC):
    """A TCP listener the node starts and stops with its background workers."""

    name: str

    @abstractmethod
    def start(self) -> None:
        """Bind and serve in background threads; return once the port is bound."""

    @abstractmethod
    def stop(self) -> None:
        """Stop accepting, finish or drop open connections, release the port."""

    @property
    @abstractmethod
    def address(self) -> tuple[str, int]:
        """The bound (host, port): a configured port 0 resolves to the real one."""
