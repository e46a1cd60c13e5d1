"""Keep the hospital's worker lease: take it, renew it, and say so at once when it is lost.

A ``LeaseKeeper`` is a daemon thread over a ``WorkerLeaseAPI`` (the index database every
process of the hospital shares). The holder's ``fence`` tags its fenced writes; once the
lease is lost they are refused (``LeaseLost``) and ``on_lost`` tells the process to stop
sending.

Timing: a renewal that succeeds at local time ``t`` (taken before the call) makes the lease
surely ours until ``t + ttl`` on the local monotonic clock, since the database set its
expiry to its own "now" (no earlier than ``t``) plus ``ttl``; this assumes the two clocks
run at the same rate over one ``ttl`` (no bound on their offset is needed). If renewals keep
failing (database unreachable) the keeper declares the lease lost at that local deadline,
before any other process can take it.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable

from storage.abc import WorkerLeaseAPI
from storage.exceptions import StorageError
from storage.models import Lease

__all__ = ["LeaseKeeper"]

log = logging.getLogger(__name__)


class LeaseKeeper:
    """Acquire lease ``name`` as ``holder`` (advertising ``url``), renew it every ``renew``
    seconds for ``ttl`` seconds, and call ``on_lost()`` (once, from the keeper's thread)
    when it is lost. ``stop()`` releases it so a standby takes over at once.

    Raises ValueError unless ``0 < renew < ttl``.
    """

    def __init__(
        self,
        store: WorkerLeaseAPI,
        name: str,
        holder: str,
        url: str,
        ttl: float,
        renew: float,
        *,
        on_lost: Callable[[], None] | None = None,
    ) -> None:
        if not 0 < renew < ttl:
            raise ValueError("the renew interval must be positive and shorter than the ttl")
        self._store = store
        self.name = name
        self.holder = holder
        self.url = url
        self.ttl = ttl
        self.renew_interval = renew
        self.on_lost = on_lost
        self._lock = threading.Lock()
        self._lease: Lease | None = None
        self._fence: int | None = None
        self._deadline = 0.0  # local monotonic time until which the lease is surely ours
        self._lost = False
        self._decided = threading.Event()  # acquired, lost or stopped
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, holder={self.holder!r})"

    # -- state -----------------------------------------------------------------------

    @property
    def lease(self) -> Lease | None:
        """The lease while held, else None."""
        with self._lock:
            return self._lease

    @property
    def fence(self) -> int | None:
        """The fence of the lease taken (kept after a loss, so fenced writes made with it
        are refused rather than made without a fence); None before the first acquisition."""
        with self._lock:
            return self._fence

    @property
    def held(self) -> bool:
        """Whether the lease is held and surely unexpired now."""
        with self._lock:
            return self._lease is not None and time.monotonic() < self._deadline

    @property
    def lost(self) -> bool:
        """Whether a lease once held was lost (this keeper never takes it again)."""
        with self._lock:
            return self._lost

    def valid_for(self) -> float:
        """Seconds the lease is surely still ours (0 when not held): how long a send that
        starts now may take and still land before another holder can exist."""
        with self._lock:
            if self._lease is None:
                return 0.0
            return max(0.0, self._deadline - time.monotonic())

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Start the keeper's thread (idempotent)."""
        with self._lock:
            if self._thread is not None:
                return
            self._thread = threading.Thread(
                target=self._run, name=f"lease-{self.name}", daemon=True
            )
            self._thread.start()

    def wait_acquire(self, timeout: float | None = None) -> Lease | None:
        """Start if needed and block until the lease is held (return it) or ``timeout``
        seconds passed (None: no limit), the keeper stopped or the lease was lost (return
        None)."""
        self.start()
        self._decided.wait(timeout)
        return self.lease

    def stop(self, *, release: bool = True) -> None:
        """Stop renewing and, if ``release``, release the lease (best effort)."""
        self._stop.set()
        self._decided.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=max(5.0, 2 * self.renew_interval))
        with self._lock:
            lease, self._lease = self._lease, None
        if lease is not None and release:
            try:
                self._store.release(lease)
            except StorageError as err:  # it expires on its own
                log.warning(
                    "could not release lease %s (fence %d): %s", self.name, lease.fence, err
                )
            else:
                log.info("released lease %s (fence %d)", self.name, lease.fence)

    # -- the thread ------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            if self.lease is None:
                self._try_acquire()
            elif not self._try_renew():
                self._declare_lost()
                return
            self._stop.wait(self.renew_interval)

    def _try_acquire(self) -> None:
        started = time.monotonic()
        try:
            lease = self._store.acquire(self.name, self.holder, self.url, self.ttl)
        except StorageError as err:
            log.warning("cannot reach the lease store for lease %s: %s", self.name, err)
            return
        if lease is None:
            return
        with self._lock:
            if self._stop.is_set():
                lease_to_release: Lease | None = lease
            else:
                lease_to_release = None
                self._lease = lease
                self._fence = lease.fence
                self._deadline = started + self.ttl
        if lease_to_release is not None:  # stopped while acquiring: give it back
            with contextlib.suppress(StorageError):
                self._store.release(lease_to_release)
            return
        log.info("took lease %s as %s (fence %d)", self.name, self.holder, lease.fence)
        self._decided.set()

    def _try_renew(self) -> bool:
        lease = self.lease
        if lease is None:
            return True  # released by stop() meanwhile
        started = time.monotonic()
        try:
            renewed = self._store.renew(lease, self.ttl)
        except StorageError as err:
            # Unknown: keep trying until the local deadline, then give up before anyone
            # else can take it.
            with self._lock:
                remaining = self._deadline - time.monotonic()
            log.warning(
                "renewing lease %s failed (%s); %.1f s left", self.name, err, max(0.0, remaining)
            )
            return remaining > self.renew_interval
        if renewed:
            with self._lock:
                self._deadline = started + self.ttl
        return renewed

    def _declare_lost(self) -> None:
        with self._lock:
            if self._lease is None:
                return
            fence = self._lease.fence
            self._lease = None
            self._lost = True
        log.error("lost lease %s (fence %d): another holder may take it now", self.name, fence)
        self._decided.set()
        callback = self.on_lost
        if callback is not None:
            try:
                callback()
            except Exception:
                log.exception("lease %s: on_lost failed", self.name)
