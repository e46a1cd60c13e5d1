"""Group commit: coalesce concurrent single-item writes into batches.

The API serves each upload on its own thread and calls ``put()`` once per record. An IPFS
daemon takes about 125 single-blob requests per second but over 1,000 blobs per second in
one CAR import (RECIPES.md), so ``put()`` calls that arrive within a short window share one
request per node.

Leader/follower, no background thread: the first caller to find no open group opens one
and becomes its leader. It waits up to ``window`` seconds (less if the group fills up),
closes the group, writes it with ``flush`` and hands every member its own outcome.
Followers just wait. Callers arriving while a group is being written open the next group,
so batches pipeline instead of queueing behind each other, and nothing runs (or has to be
shut down) when nobody writes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

__all__ = ["GroupCommit"]

T = TypeVar("T")
R = TypeVar("R")


class _Group(Generic[T, R]):
    __slots__ = ("done", "full", "items", "results", "size")

    def __init__(self) -> None:
        self.items: list[T] = []
        self.size = 0
        self.full = threading.Event()
        self.done = threading.Event()
        self.results: Sequence[R | BaseException] = ()


class GroupCommit(Generic[T, R]):
    """Run ``flush`` on groups of items submitted concurrently.

    ``flush(items)`` returns one outcome per item, in order: a result, or an exception to
    raise in that item's caller. If ``flush`` itself raises, every member gets that error.
    A group closes after ``window`` seconds, or at ``max_items`` items or ``max_bytes``
    (as measured by ``size_of``), whichever comes first.
    """

    def __init__(
        self,
        flush: Callable[[list[T]], Sequence[R | BaseException]],
        *,
        window: float,
        max_items: int,
        max_bytes: int,
        size_of: Callable[[T], int],
    ) -> None:
        if window < 0 or max_items < 1 or max_bytes < 1:
            raise ValueError("window must be >= 0 and the group limits positive")
        self._flush = flush
        self._window = window
        self._max_items = max_items
        self._max_bytes = max_bytes
        self._size_of = size_of
        self._lock = threading.Lock()
        self._open: _Group[T, R] | None = None

    def submit(self, item: T) -> R:
        """Add ``item`` to the open group (opening one if needed); block until the group
        is written and return this item's result or raise its error."""
        size = self._size_of(item)
        with self._lock:
            group = self._open
            leader = group is None
            if group is None:
                group = self._open = _Group()
            index = len(group.items)
            group.items.append(item)
            group.size += size
            if len(group.items) >= self._max_items or group.size >= self._max_bytes:
                # Full: later callers start the next group; wake the leader now.
                self._open = None
                group.full.set()
        if leader:
            self._lead(group)
        else:
            group.done.wait()
        outcome = group.results[index]
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def _lead(self, group: _Group[T, R]) -> None:
        if self._window > 0:
            group.full.wait(self._window)
        with self._lock:
            if self._open is group:
                self._open = None
        try:
            results = self._flush(group.items)
            if len(results) != len(group.items):
                raise RuntimeError("flush returned the wrong number of outcomes")
        except BaseException as exc:
            # Every member, the leader included, raises it from submit().
            results = [exc] * len(group.items)
        group.results = results
        group.done.set()
