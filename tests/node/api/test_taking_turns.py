"""API processes sharing one listening socket take turns: each readiness event accepts one
connection (``TakingTurnsEventLoop``), where asyncio's loop accepts the whole queue."""

from __future__ import annotations

import asyncio
import contextlib
import socket

import pytest

from node.api.server import TakingTurnsEventLoop


def _accepted_in_one_event(loop: asyncio.SelectorEventLoop, queued: int) -> int:
    server = socket.create_server(("127.0.0.1", 0))
    server.setblocking(False)
    clients = [socket.create_connection(server.getsockname()) for _ in range(queued)]
    try:
        loop._accept_connection(asyncio.Protocol, server)  # type: ignore[attr-defined]
        left = 0
        while True:
            try:
                conn, _ = server.accept()
            except BlockingIOError:
                break
            conn.close()
            left += 1
        return queued - left
    finally:
        for task in asyncio.all_tasks(loop):
            task.cancel()
        with contextlib.suppress(Exception):
            loop.run_until_complete(asyncio.sleep(0))
        loop.close()
        for c in clients:
            c.close()
        server.close()


@pytest.mark.parametrize(
    ("loop_class", "expected"), [(asyncio.SelectorEventLoop, 5), (TakingTurnsEventLoop, 1)]
)
def test_one_connection_per_readiness_event(
    loop_class: type[asyncio.SelectorEventLoop], expected: int
) -> None:
    assert _accepted_in_one_event(loop_class(), queued=5) == expected
