"""``emr-node run``'s process tree: one worker-role process, kept alive, beside the API
processes that uvicorn's own process manager runs (and restarts).

The worker is a child process (``emr-node worker``); if it dies it is started again, and the
new one takes the hospital's lease once the old holder's lease has expired (or at once, when
the old one released it). Settings reach every process through ``EMR_*`` variables.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from urllib.parse import urlsplit

from node.roles.lifetime import die_with_parent

log = logging.getLogger(__name__)


def wait_listening(url: str, timeout: float, alive: subprocess.Popen[bytes] | None = None) -> bool:
    """Whether something accepts TCP connections at ``url`` within ``timeout`` seconds."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if alive is not None and alive.poll() is not None:
            return False
        try:
            with socket.create_connection((host, port), timeout=1.0):
                return True
        except OSError:
            time.sleep(0.2)
    return False


class WorkerSupervisor:
    """Starts ``emr-node worker`` and restarts it when it exits unexpectedly."""

    RESTART_DELAY = 1.0

    def __init__(self, env: Mapping[str, str], url: str) -> None:
        self._env = dict(env)
        self._url = url
        self._stopping = threading.Event()
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._watch, name="worker-supervisor", daemon=True)
        self.restarts = 0

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def _spawn(self) -> subprocess.Popen[bytes]:
        # The worker ends with this process, even when it is SIGKILLed: the kernel sends
        # SIGTERM (PR_SET_PDEATHSIG, set between fork and exec; prctl is async-signal-safe).
        return subprocess.Popen(
            [sys.executable, "-m", "node.cli.main", "worker"],
            env=self._env,
            preexec_fn=die_with_parent,
        )

    def start(self, ready_timeout: float) -> bool:
        """Start the worker; True once its endpoint listens (it has the lease and is built)."""
        with self._lock:
            self._proc = self._spawn()
        ok = wait_listening(self._url, ready_timeout, self._proc)
        self._thread.start()
        return ok

    def _watch(self) -> None:
        while not self._stopping.is_set():
            proc = self._proc
            assert proc is not None
            code = proc.wait()
            if self._stopping.is_set():
                return
            log.error("the worker role exited (code %s): starting it again", code)
            time.sleep(self.RESTART_DELAY)
            with self._lock:
                if self._stopping.is_set():
                    return
                self._proc = self._spawn()
                self.restarts += 1

    def stop(self, timeout: float = 60.0) -> None:
        """SIGTERM the worker (it flushes its queues and releases the lease), then wait."""
        self._stopping.set()
        with self._lock:
            proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def process_env(overrides: Mapping[str, object]) -> dict[str, str]:
    """This process's environment with ``overrides`` (``EMR_*`` names) set."""
    env = dict(os.environ)
    env.update({k: str(v) for k, v in overrides.items() if v is not None})
    return env
