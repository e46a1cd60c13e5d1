"""The MLLP listener alone over real TCP, with a handler that records what reaches it: peers
outside the allowed networks, idle connections, the connection cap, stop; and the framer."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator

import pytest

from node.exceptions import NodeError
from node.hl7 import mllp
from node.hl7.mllp import Frame, FramingError, MllpFramer, MllpListener, Oversized, frame
from node.settings import Hl7Settings
from tests.node.hl7.messages import MllpConnection, connect


class RecordingHandler:
    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self.closed = False

    def handle(self, raw: bytes) -> bytes:
        self.frames.append(raw)
        return b"MSH|^~\\&|||||||ACK|1|P|2.5.1\rMSA|AA|" + raw[:8] + b"\r"

    def too_large(self, head: bytes) -> bytes:
        return b"MSH|^~\\&|||||||ACK|1|P|2.5.1\rMSA|AR|\r"

    def close(self) -> None:
        self.closed = True


def _listener(**kw: object) -> tuple[MllpListener, RecordingHandler]:
    settings = Hl7Settings(enabled=True, port=0, **kw)  # type: ignore[arg-type]
    handler = RecordingHandler()
    listener = MllpListener(settings, handler)
    listener.start()
    return listener, handler


@pytest.fixture
def listener() -> Iterator[tuple[MllpListener, RecordingHandler]]:
    pair = _listener(idle_timeout=30.0)
    yield pair
    pair[0].stop()


def test_a_peer_outside_the_allowed_networks_is_disconnected_unread() -> None:
    listener, handler = _listener(allowed_peers=["10.0.0.0/8", "fd00::/8"])
    try:
        with connect(listener.address) as conn:
            with contextlib.suppress(OSError):  # reset before the write: closed all the same
                conn.send_raw(frame(b"MSH|^~\\&|A|GENHOSP"))
            assert conn.closed_by_peer()
        assert handler.frames == []
    finally:
        listener.stop()
    assert handler.closed


def test_ipv4_mapped_and_bad_peers() -> None:
    nets = [mllp.ipaddress.ip_network("127.0.0.0/8")]
    assert mllp.peer_allowed(("127.0.0.1", 1), nets)
    assert mllp.peer_allowed(("::ffff:127.0.0.2", 1, 0, 0), nets)
    assert not mllp.peer_allowed(("10.1.1.1", 1), nets)
    assert not mllp.peer_allowed(("not-an-ip", 1), nets)
    assert not mllp.peer_allowed(None, nets)
    with pytest.raises(NodeError):
        MllpListener(Hl7Settings(allowed_peers=["300.0.0.0/8"]), RecordingHandler())


def test_an_idle_connection_is_closed() -> None:
    listener, _handler = _listener(idle_timeout=0.2)
    try:
        with connect(listener.address) as conn:
            conn.send_raw(b"\x0bMSH|partial")  # never finished
            assert conn.closed_by_peer()  # (the socket itself waits up to 30 s)
        with connect(listener.address) as conn:  # the listener still serves
            conn.send_raw(frame(b"MSH|after"))
            assert b"MSA|AA|MSH|afte" in conn.ack_bytes()
    finally:
        listener.stop()


def test_connections_past_the_cap_are_closed(
    listener: tuple[MllpListener, RecordingHandler], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mllp, "MAX_CONNECTIONS", 2)
    server, _handler = listener
    held = [MllpConnection(server.address) for _ in range(2)]
    try:
        for c in held:  # served: both are counted
            c.send_raw(frame(b"MSH|x"))
            c.ack_bytes()
        with connect(server.address) as extra:
            assert extra.closed_by_peer()
        held.pop().close()
    finally:
        for c in held:
            c.close()


def test_a_port_in_use_fails_start() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        listener = MllpListener(Hl7Settings(port=port), RecordingHandler())
        with pytest.raises(NodeError, match="cannot bind"):
            listener.start()


def test_stop_closes_open_connections(listener: tuple[MllpListener, RecordingHandler]) -> None:
    server, handler = listener
    conn = MllpConnection(server.address)
    conn.send_raw(frame(b"MSH|1"))
    conn.ack_bytes()
    stopper = threading.Thread(target=server.stop)
    stopper.start()
    assert conn.closed_by_peer()
    stopper.join(timeout=30)
    assert not stopper.is_alive() and handler.closed
    conn.close()


# -- the framer ------------------------------------------------------------------------


def test_framer_takes_frames_across_chunks_and_skips_garbage() -> None:
    framer = MllpFramer(100)
    data = b"junk" + frame(b"one") + b"\r\n" + frame(b"two") + frame(b"three")
    events = [e for byte in data for e in framer.feed(bytes([byte]))]
    assert events == [Frame(b"one"), Frame(b"two"), Frame(b"three")]
    # The CR after FS is optional.
    assert MllpFramer(100).feed(b"\x0ba\x1c\x0bb\x1c\r") == [Frame(b"a"), Frame(b"b")]


def test_framer_drops_a_restarted_frame_and_skips_an_oversized_one() -> None:
    framer = MllpFramer(10)
    assert framer.feed(b"\x0bpartial\x0bwhole\x1c\r") == [Frame(b"whole")]
    events = framer.feed(b"\x0b" + b"x" * 25)
    assert events == []
    # Its first bytes (up to 4 KiB) are kept to address the AR; the rest is skipped.
    assert framer.feed(b"y" * 5 + b"\x1c\r" + frame(b"next")) == [
        Oversized(b"x" * 25),
        Frame(b"next"),
    ]
    # An oversized frame cut short by a new start block is answered too.
    assert MllpFramer(4).feed(b"\x0b123456\x0bok\x1c") == [Oversized(b"123456"), Frame(b"ok")]


def test_framer_gives_up_on_endless_garbage() -> None:
    framer = MllpFramer(10)
    framer.feed(b"x" * 10)
    with pytest.raises(FramingError):
        framer.feed(b"x")
    restarts = MllpFramer(10)
    with pytest.raises(FramingError):
        restarts.feed(b"\x0babcd" * 5)
