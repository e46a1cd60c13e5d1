"""A TCP proxy a test can cut, stall or break mid-statement: outages of real servers
(MariaDB, Redis, a chain node) without stopping the machine's own services."""

from __future__ import annotations

import contextlib
import socket
import threading
import time


class CutProxy:
    """Forward 127.0.0.1:<port> to a real server until cut.

    ``cut()`` closes every proxied connection and stops listening (clients then get
    "connection refused"); ``restore()`` listens again on the same port. ``cut_when_sent(p)``
    cuts the moment a client sends bytes containing ``p``, before forwarding them: the server
    never sees that statement, and sees the connection drop in the middle of its work.
    """

    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self._target = (target_host, target_port)
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._pattern: bytes | None = None
        self._stalled = False
        self.fired = threading.Event()
        self.port = 0
        self._listener: socket.socket | None = None
        self.restore()

    def restore(self) -> None:
        self._stalled = False
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        deadline = time.monotonic() + 2
        while True:
            try:
                listener.bind(("127.0.0.1", self.port))
                break
            except OSError:  # the old listener is still being torn down
                if time.monotonic() > deadline:
                    listener.close()
                    raise
                time.sleep(0.01)
        listener.listen(64)
        listener.settimeout(0.05)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        with self._lock:
            listener, self._listener = self._listener, None
            sockets, self._sockets = self._sockets, set()
        if listener is not None:
            # shutdown() wakes a thread blocked in accept() (Linux), so the port is free
            # for restore() at once.
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stall(self) -> None:
        """Keep every connection open but forward nothing more: a hung server."""
        self._stalled = True

    def cut_when_sent(self, pattern: bytes) -> None:
        self.fired.clear()
        self._pattern = pattern

    def close(self) -> None:
        self.cut()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:  # closed by cut()
                return
            try:
                upstream = socket.create_connection(self._target, timeout=5)
            except OSError:
                client.close()
                continue
            client.settimeout(None)
            upstream.settimeout(None)
            with self._lock:
                if self._listener is not listener:  # cut while connecting
                    client.close()
                    upstream.close()
                    return
                self._sockets |= {client, upstream}
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, inspect: bool) -> None:
        tail = b""
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if self._stalled:
                    continue
                pattern = self._pattern if inspect else None
                if pattern is not None:
                    window = tail + data
                    if pattern in window:
                        self._pattern = None
                        self.fired.set()  # before the client can see the cut
                        self.cut()
                        return
                    tail = window[-len(pattern) :]
                dst.sendall(data)
        except OSError:
            pass
        for sock in (src, dst):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
