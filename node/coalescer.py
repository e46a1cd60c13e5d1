"""Group commit: many threads submit one item each; a flusher commits them in batches.

Each HTTP upload is one record, but durable storage pays per commit (an fsync, a network
round trip), not per record. Waiting at most ``window`` seconds for company turns N
concurrent uploads into one commit, so throughput grows with load while a lone request
waits only the window.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


class Coalescer(Generic[T, R]):
    def __init__(
        self,
        commit: Callable[[Sequence[T]], Sequence[R]],
        *,
        window: float,
        max_batch: int,
        name: str = "coalescer",
    ) -> None:
        """``commit`` handles a batch and returns one result per item, in order; if it
        raises, every item of that batch gets the exception."""
        self._commit = commit
        self._window = window
        self._max_batch = max_batch
        self._queue: queue.Queue[tuple[T, Future[R]] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._closed = False
        self._thread.start()

    def submit(self, item: T) -> R:
        """Block until ``item``'s batch is committed; return its result or raise."""
        if self._closed:
            raise RuntimeError("the node is shutting down")
        future: Future[R] = Future()
        self._queue.put((item, future))
        return future.result()

    def _collect(self, first: tuple[T, Future[R]]) -> tuple[list[tuple[T, Future[R]]], bool]:
        batch = [first]
        stop = False
        deadline = None
        while len(batch) < self._max_batch:
            try:
                # Take whatever is already queued at once; then wait out the window.
                entry = self._queue.get_nowait()
            except queue.Empty:
                now = time.monotonic()
                deadline = deadline or now + self._window
                if now >= deadline:
                    break
                try:
                    entry = self._queue.get(timeout=deadline - now)
                except queue.Empty:
                    break
            if entry is None:
                stop = True
                break
            batch.append(entry)
        return batch, stop

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch, stop = self._collect(first)
            try:
                results = self._commit([item for item, _f in batch])
            except BaseException as err:
                for _item, future in batch:
                    future.set_exception(err)
            else:
                for (_item, future), result in zip(batch, results, strict=True):
                    future.set_result(result)
            if stop:
                return

    def close(self) -> None:
        """Commit what is queued, then stop the flusher."""
        if not self._closed:
            self._closed = True
            self._queue.put(None)
            self._thread.join(timeout=60)
