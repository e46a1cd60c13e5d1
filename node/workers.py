"""Background batchers: the anchorer, the access-log flusher, the eraser and the others
the node builds (``Node.workers`` lists them all).

Each wakes when its interval passes or when enough work is queued, and keeps flushing
while full batches remain, so on-chain work is always one transaction per batch.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from node.observability.metrics import NULL_METRICS, MetricsAPI

log = logging.getLogger(__name__)


class BatchWorker:
    def __init__(
        self,
        name: str,
        flush: Callable[[], int],
        *,
        interval: float,
        batch_size: int,
        metrics: MetricsAPI = NULL_METRICS,
    ) -> None:
        """``flush`` does one batch and returns how many items it handled."""
        self.name = name
        self._flush_once = flush
        # One flush at a time: a concurrent flush would send the same queued items twice.
        self._flush_lock = threading.Lock()
        self._interval = interval
        self._batch_size = batch_size
        self._wake = threading.Event()
        self._queued = 0  # items queued since the last flush began (a hint, not a count)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_error: str | None = None
        self.metrics = metrics  # rounds, items and durations (the wiring sets it)

    def _flush(self) -> int:
        with self._flush_lock:
            self._queued = 0
            start = time.perf_counter()
            try:
                n = self._flush_once()
            except BaseException:
                self._record("error", 0, time.perf_counter() - start)
                raise
            self._record("ok", n, time.perf_counter() - start)
            return n

    def _record(self, result: str, items: int, seconds: float) -> None:
        m = self.metrics
        try:
            m.count("emr_worker_rounds_total", worker=self.name, result=result)
            m.observe("emr_worker_round_duration_seconds", seconds, worker=self.name)
            if items:
                m.count("emr_worker_items_total", items, worker=self.name)
        except Exception:  # metrics never stop a worker
            log.exception("recording %s's metrics failed", self.name)

    def queued(self, n: int) -> None:
        """Note ``n`` new items; a full batch wakes the worker before its interval ends."""
        self._queued += n
        if self._queued >= self._batch_size:
            self._wake.set()

    @property
    def running(self) -> bool:
        """Whether the worker's thread is alive (started and not stopped)."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def flush_now(self) -> int:
        """Run flushes until the queue is empty (used at shutdown and by tests)."""
        total = 0
        while (n := self._flush()) > 0:
            total += n
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self._interval)
            self._wake.clear()
            if self._stop.is_set():
                break
            try:
                while self._flush() >= self._batch_size and not self._stop.is_set():
                    pass
                self.last_error = None
            except Exception as err:  # keep the worker alive; the queue is durable
                self.last_error = f"{type(err).__name__}: {err}"
                log.exception("%s flush failed; will retry", self.name)

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
