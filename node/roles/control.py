"""The two ``BackgroundWorkersAPI`` implementations: threads in this process, or the worker
role's process over its internal endpoint."""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence

from node.roles.abc import BackgroundWorkersAPI, WorkerStatus
from node.workers import BatchWorker

log = logging.getLogger(__name__)


class InProcessWorkers(BackgroundWorkersAPI):
    def __init__(self, workers: Sequence[BatchWorker]) -> None:
        self._by_name = {w.name: w for w in workers}

    def _get(self, name: str) -> BatchWorker:
        try:
            return self._by_name[name]
        except KeyError:
            raise ValueError(f"no background worker named {name!r}") from None

    def wake(self, name: str) -> None:
        self._get(name).wake()

    def queued(self, name: str, n: int) -> None:
        self._get(name).queued(n)

    def run_now(self, name: str) -> None:
        self._get(name).flush_now()

    def status(self) -> dict[str, WorkerStatus]:
        return {
            name: WorkerStatus(running=w.running, last_error=w.last_error)
            for name, w in self._by_name.items()
        }

    def last_error(self, name: str) -> str | None:
        return self._get(name).last_error


class RemoteWorkers(BackgroundWorkersAPI):
    """The worker role's process, found at ``url_of()`` (its lease row names it).

    Wakes are fire-and-forget hints: a worker that cannot be reached runs the round at its
    interval anyway. Status is cached for a second so /health cannot hammer the worker.
    """

    STATUS_TTL = 1.0

    def __init__(self, url_of: Callable[[], str], secret: bytes, *, timeout: float = 2.0) -> None:
        self._url_of = url_of
        self._auth = f"Bearer {secret.hex()}"
        self._timeout = timeout
        self._lock = threading.Lock()
        self._status: tuple[float, dict[str, WorkerStatus]] | None = None

    def _request(self, method: str, path: str) -> dict[str, object]:
        request = urllib.request.Request(
            self._url_of() + path,
            method=method,
            headers={"Authorization": self._auth, "Content-Type": "application/json"},
            data=b"{}" if method == "POST" else None,
        )
        with urllib.request.urlopen(request, timeout=self._timeout) as response:
            body: dict[str, object] = json.loads(response.read() or b"{}")
            return body

    def wake(self, name: str) -> None:
        try:
            self._request("POST", f"/wake/{name}")
        except (OSError, ValueError) as err:  # the interval runs it anyway
            log.debug("waking worker %s failed: %s", name, err)

    def queued(self, name: str, n: int) -> None:
        # The worker polls its queues (they live in the shared database): no call per item.
        return

    def run_now(self, name: str) -> None:
        self.wake(name)

    def status(self) -> dict[str, WorkerStatus]:
        with self._lock:
            if self._status is not None and time.monotonic() - self._status[0] < self.STATUS_TTL:
                return self._status[1]
            try:
                body = self._request("GET", "/status")
                raw = body.get("workers", {})
                assert isinstance(raw, dict)
                found = {
                    str(name): WorkerStatus(
                        running=bool(w.get("running")), last_error=w.get("last_error")
                    )
                    for name, w in raw.items()
                }
            except (OSError, ValueError, AssertionError, AttributeError) as err:
                log.debug("worker status unavailable: %s", err)
                found = {}
            self._status = (time.monotonic(), found)
            return found

    def last_error(self, name: str) -> str | None:
        status = self.status().get(name)
        if status is None:
            return "the worker role cannot be reached"
        return status.last_error
