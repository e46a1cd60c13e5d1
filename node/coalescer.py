"""Group commit: many threads submit one item each; a flusher commits them in batches.

Each HTTP upload is one record, but durable storage pays per commit (an fsync, a network
round trip), not per record. Waiting at most ``window`` seconds for company turns N
concurrent uploads into one commit, so throughput grows with load while a lone request
waits only the window.

Callers wait in one of two ways: a thread blocks in ``submit``; a coroutine awaits
``submit_async``, which parks no thread at all (an ``async def`` route awaits the commit on
the event loop instead of holding a thread-pool thread that blocks on a Future). The
flusher thread settles the asyncio futures of a batch with one ``call_soon_threadsafe``
per event loop, not one wake-up per item.
"""

from __future__ import annotations

import asyncio
import contextlib
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

# A waiter: a thread's Future (``submit``) or an event loop's (``submit_async``).
_Waiter = Future[R] | asyncio.Future[R]
_Entry = tuple[T, _Waiter[R]]
_Outcome = tuple[_Waiter[R], R | None, BaseException | None]


class Coalescer(Generic[T, R]):
    def __init__(
        self,
        commit: Callable[[Sequence[T]], Sequence[R | BaseException]],
        *,
        commit_all: Callable[[Sequence[T]], Sequence[R]] | None = None,
        window: float,
        max_batch: int,
        name: str = "coalescer",
    ) -> None:
        """``commit`` handles a batch and returns one result per item, in order; if it
        raises, every item of that batch gets the exception. A result that is an exception
        instance is raised to that item's caller alone. ``commit_all`` (default: ``commit``)
        commits ``commit_now``'s batches, all or nothing."""
        self._commit = commit
        self._commit_all = commit_all
        self._window = window
        self._max_batch = max_batch
        self._queue: queue.Queue[_Entry[T, R] | None] = queue.Queue()
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

    async def submit_async(self, item: T) -> R:
        """Await ``item``'s batch commit on the running event loop; return its result or
        raise. No thread waits meanwhile. Cancelling the awaiting task does not withdraw
        the item: once submitted it is committed with its batch (like ``submit``'s)."""
        if self._closed:
            raise RuntimeError("the node is shutting down")
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.put((item, future))
        return await future

    def commit_now(self, items: Sequence[T]) -> Sequence[R]:
        """Commit ``items`` as one batch of their own, in the caller's thread, past the
        queue and its window: for a request that is a batch already (``POST
        /records/batch``). All or nothing, like every commit: if ``commit`` raises, no
        item is committed and the exception propagates."""
        if self._closed:
            raise RuntimeError("the node is shutting down")
        if not items:
            return []
        if self._commit_all is not None:
            return self._commit_all(items)
        results = self._commit(items)
        for r in results:
            if isinstance(r, BaseException):
                raise r
        return results  # type: ignore[return-value]

    def _collect(self, first: _Entry[T, R]) -> tuple[list[_Entry[T, R]], bool]:
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
                _settle([(f, None, err) for _item, f in batch])
            else:
                _settle(
                    [
                        (f, None, r) if isinstance(r, BaseException) else (f, r, None)
                        for (_item, f), r in zip(batch, results, strict=True)
                    ]
                )
            if stop:
                return

    def close(self) -> None:
        """Commit what is queued, then stop the flusher."""
        if not self._closed:
            self._closed = True
            self._queue.put(None)
            self._thread.join(timeout=60)


def _settle(outcomes: list[_Outcome[R]]) -> None:
    """Resolve each waiter: thread futures at once, asyncio futures on their own loop, one
    ``call_soon_threadsafe`` per loop for the whole batch."""
    by_loop: dict[asyncio.AbstractEventLoop, list[_Outcome[R]]] = {}
    for outcome in outcomes:
        future, result, err = outcome
        if isinstance(future, asyncio.Future):
            by_loop.setdefault(future.get_loop(), []).append(outcome)
        elif err is not None:
            future.set_exception(err)
        else:
            future.set_result(result)  # type: ignore[arg-type]
    for loop, waiting in by_loop.items():
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            loop.call_soon_threadsafe(_settle_on_loop, waiting)


def _settle_on_loop(outcomes: list[_Outcome[R]]) -> None:
    for future, result, err in outcomes:
        if future.done():  # the awaiting task was cancelled (client gone)
            continue
        if err is not None:
            future.set_exception(err)
        else:
            future.set_result(result)  # type: ignore[arg-type]
