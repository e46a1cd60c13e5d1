"""How the node's HTTP server runs: uvicorn options, and a bound on request heads.

uvicorn's httptools protocol keeps every header byte a client sends until the head ends,
with no size or time limit (a client streaming headers grows the process without bound,
or holds a connection open forever). ``BoundedHttpToolsProtocol`` answers 431 when the
request line and headers pass ``api.max_header_bytes`` and 408 when they take longer than
``api.header_timeout``. Bodies are bounded by ``node.api.edge.BodyGuard``.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from node.api.edge import API_CSP, HARDENING
from node.settings import ApiSettings

try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # uvicorn without httptools: h11 bounds heads itself (no head timeout)
    HttpToolsProtocol = None  # type: ignore[assignment,misc]

_REASONS = {408: "Request Timeout", 431: "Request Header Fields Too Large"}


def server_options(api: ApiSettings) -> dict[str, Any]:
    """Keyword arguments for ``uvicorn.run`` / ``uvicorn.Config`` beyond host and port."""
    options: dict[str, Any] = {"h11_max_incomplete_event_size": api.max_header_bytes}
    if HttpToolsProtocol is not None:
        options["http"] = bounded_protocol(api.max_header_bytes, api.header_timeout)
    return options


class TakingTurnsEventLoop(asyncio.SelectorEventLoop):
    """An event loop for API processes that share one listening socket: it accepts one
    connection each time the socket is readable, so the processes take turns.

    uvicorn's worker processes all wait on the socket their manager opened; the one that
    wakes first would otherwise accept every connection queued (asyncio accepts up to the
    backlog per wake-up, libuv until the queue is empty), and a client opening its
    keep-alive connections in a burst (a load test, an EHR's connection pool) would have all
    of them served by one process while the others idle. uvicorn takes a custom loop
    factory by import string (``loop=``)."""

    def _accept_connection(  # type: ignore[override]
        self,
        protocol_factory: Any,
        sock: Any,
        sslcontext: Any = None,
        server: Any = None,
        backlog: int = 100,
        *args: Any,
        **kwargs: Any,
    ) -> None:
        super()._accept_connection(  # type: ignore[misc]
            protocol_factory, sock, sslcontext, server, 1, *args, **kwargs
        )


def process_server_options(api: ApiSettings, processes: int = 1) -> dict[str, Any]:
    """``server_options`` for uvicorn's worker processes: the protocol class must be
    importable (the config is pickled for each process), so each process sets the module
    class's limits from its settings (``configure_bounded_protocol``, in the app factory).
    Several processes take turns accepting connections (``TakingTurnsEventLoop``)."""
    options: dict[str, Any] = {"h11_max_incomplete_event_size": api.max_header_bytes}
    if processes > 1:
        options["loop"] = "node.api.server:TakingTurnsEventLoop"
    if HttpToolsProtocol is not None:
        options["http"] = BoundedHttpToolsProtocol
    return options


def configure_bounded_protocol(api: ApiSettings) -> None:
    if HttpToolsProtocol is not None:
        BoundedHttpToolsProtocol.max_head_bytes = api.max_header_bytes
        BoundedHttpToolsProtocol.head_timeout = api.header_timeout


def bounded_protocol(max_head_bytes: int, head_timeout: float) -> type[asyncio.Protocol]:
    return type(
        "BoundedHttpToolsProtocol",
        (BoundedHttpToolsProtocol,),
        {"max_head_bytes": max_head_bytes, "head_timeout": head_timeout},
    )


if HttpToolsProtocol is not None:

    class BoundedHttpToolsProtocol(HttpToolsProtocol):
        max_head_bytes = 32 * 1024
        head_timeout = 15.0

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._head_pending = False  # a request has begun and its headers have not ended
            self._head_bytes = 0
            self._head_timer: asyncio.TimerHandle | None = None

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if not self._head_pending or self.transport.is_closing():
                return
            # Counts the whole chunk: at most one read too many when requests are
            # pipelined, never a byte of an unbounded head too few.
            self._head_bytes += len(data)
            if self._head_bytes > self.max_head_bytes:
                self._refuse(
                    431,
                    "headers_too_large",
                    f"the request line and headers exceed {self.max_head_bytes} bytes",
                )
            elif self._head_timer is None:
                self._head_timer = self.loop.call_later(self.head_timeout, self._head_late)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._head_pending = True
            self._head_bytes = 0

        def on_headers_complete(self) -> None:
            self._head_pending = False
            self._cancel_head_timer()
            super().on_headers_complete()

        def connection_lost(self, exc: Exception | None) -> None:
            self._cancel_head_timer()
            super().connection_lost(exc)

        def _cancel_head_timer(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _head_late(self) -> None:
            self._head_timer = None
            if self._head_pending and not self.transport.is_closing():
                self._refuse(
                    408,
                    "request_timeout",
                    f"the request headers did not arrive within {self.head_timeout:g} s",
                )

        def _refuse(self, status: int, code: str, detail: str) -> None:
            self._cancel_head_timer()
            if self.cycle is None or self.cycle.response_complete:  # not mid-response
                body = json.dumps({"error": code, "detail": detail}).encode()
                headers = [
                    ("content-type", "application/json"),
                    ("content-length", str(len(body))),
                    ("connection", "close"),
                    *HARDENING,
                    ("Content-Security-Policy", API_CSP),
                ]
                head = f"HTTP/1.1 {status} {_REASONS[status]}\r\n"
                head += "".join(f"{k}: {v}\r\n" for k, v in headers) + "\r\n"
                self.transport.write(head.encode() + body)
            self.transport.close()
