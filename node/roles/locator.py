"""Where the worker role is, for API processes."""

from __future__ import annotations

import time

from storage.abc import WorkerLeaseAPI


class WorkerLocator:
    """Where the worker role is: its lease row's URL, re-read every few seconds (a standby
    taking over may listen elsewhere), else the configured address."""

    TTL = 2.0

    def __init__(self, leases: WorkerLeaseAPI, lease: str, default: str) -> None:
        self._leases = leases
        self._lease = lease
        self._default = default
        self._cached: tuple[float, str] | None = None

    def __call__(self) -> str:
        now = time.monotonic()
        if self._cached is not None and now - self._cached[0] < self.TTL:
            return self._cached[1]
        try:
            lease = self._leases.current(self._lease)
        except Exception:  # the database is down: keep the last known address
            lease = None
        url = lease.url if lease is not None and lease.url else self._default
        if self._cached is not None and lease is None:
            url = self._cached[1]
        self._cached = (now, url)
        return url
