"""The worker role's process: take the hospital's lease, run every background worker and
the internal endpoint, and stop cleanly on SIGTERM or at once when the lease is lost."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from types import FrameType

from node.settings import Settings

log = logging.getLogger(__name__)


def run_worker(settings: Settings, *, announce: Callable[[str], None] = print) -> int:
    """Run until SIGTERM/SIGINT (exit 0) or until the lease is lost (exit 3)."""
    from node.wiring import build_node

    stop = threading.Event()
    lost = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    announce("worker role: waiting for the hospital's worker lease")
    node = build_node(settings, role="worker")
    assert node.lease is not None

    def fenced_out() -> None:
        node.fenced_out()
        lost.set()
        stop.set()

    node.lease.on_lost = fenced_out
    for note in node.notes:
        announce(f"note: {note}")
    node.start()
    announce(
        f"worker role for {node.hospital}: lease fence {node.lease.fence}, "
        f"endpoint {settings.worker.resolved_url}, workers "
        + ", ".join(w.name for w in node.workers)
    )
    stop.wait()
    node.stop()
    if lost.is_set():
        log.error("worker lease lost: exiting so that only the new holder sends")
        return 3
    return 0
