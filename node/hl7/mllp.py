"""MLLP (the Minimal Lower Layer Protocol, HL7 v2 appendix C) over TCP: each message is
framed ``<VT> message <FS><CR>`` and answered with one framed ACK.

The listener runs an asyncio loop in a thread of its own; a message's processing (parse,
directory, group commit) runs in a small thread pool, so a slow commit never stalls the other
connections. Each connection is served in order, one message at a time (an MLLP sender waits
for the ACK before sending the next; a sender that pipelines is answered in order).

Robustness, in the framer (``MllpFramer``) and the connection loop:
- bytes outside a frame are skipped; more than ``max_message_bytes`` of them since the last
  frame close the connection (not an HL7 sender);
- a start block inside a frame drops the partial frame and starts over (a sender that
  reconnected logic-wise without finishing; nothing to answer);
- a frame past ``max_message_bytes`` is not buffered: the rest is skipped and its end is
  answered AR (read from its first bytes: MSA-2 still names its control id);
- the end block is ``<FS>``; the ``<CR>`` after it is taken when present;
- a connection silent for ``idle_timeout`` seconds, or not reading its ACKs, is closed;
- a peer outside ``allowed_peers`` is disconnected before anything is read;
- at most ``MAX_CONNECTIONS`` connections at once; more are closed at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

from node.exceptions import NodeError
from node.listeners import ListenerAPI
from node.settings import Hl7Settings

log = logging.getLogger(__name__)

START_BLOCK = 0x0B
END_BLOCK = 0x1C
CARRIAGE_RETURN = 0x0D
MAX_CONNECTIONS = 64
HANDLER_THREADS = 16
_HEAD = 4096  # bytes of an oversized frame kept to address its AR
_READ = 65536

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class MessageHandlerAPI(Protocol):
    """What the listener hands a frame to (``node.hl7.service.Hl7Service``)."""

    def handle(self, raw: bytes) -> bytes:
        """The ACK to one frame's content. Never raises."""

    def too_large(self, head: bytes) -> bytes:
        """The AR to an oversized frame that began with ``head``."""

    def close(self) -> None:
        """Finish what is in flight."""


def frame(message: bytes) -> bytes:
    return bytes([START_BLOCK]) + message + bytes([END_BLOCK, CARRIAGE_RETURN])


@dataclass(frozen=True, slots=True)
class Frame:
    content: bytes


@dataclass(frozen=True, slots=True)
class Oversized:
    head: bytes  # the frame's first bytes


class FramingError(NodeError):
    """Too many bytes outside any frame: the peer does not speak MLLP."""


class MllpFramer:
    """Incremental MLLP deframing: ``feed`` bytes as they arrive, get complete frames."""

    def __init__(self, max_message_bytes: int) -> None:
        self._max = max_message_bytes
        self._state = "outside"  # outside | inside | skipping | after_end
        self._buffer = bytearray()
        self._garbage = 0

    def feed(self, data: bytes) -> list[Frame | Oversized]:
        """The frames ``data`` completes, in order. Raises FramingError past the garbage
        budget."""
        events: list[Frame | Oversized] = []
        view = memoryview(data)
        i, n = 0, len(data)
        while i < n:
            if self._state == "after_end":
                if data[i] == CARRIAGE_RETURN:
                    i += 1
                self._state = "outside"
            elif self._state == "outside":
                start = data.find(START_BLOCK, i)
                skipped = (n if start < 0 else start) - i
                self._garbage += skipped
                if self._garbage > self._max:
                    raise FramingError("too many bytes outside MLLP frames")
                if start < 0:
                    return events
                self._state, self._buffer, i = "inside", bytearray(), start + 1
            else:
                end = data.find(END_BLOCK, i)
                restart = data.find(START_BLOCK, i, end if end >= 0 else n)
                stop = restart if restart >= 0 else (end if end >= 0 else n)
                if self._state == "inside":
                    self._buffer += view[i:stop]
                    if len(self._buffer) > self._max:
                        del self._buffer[_HEAD:]
                        self._state = "skipping"
                if restart >= 0:
                    if self._state == "skipping":
                        events.append(Oversized(bytes(self._buffer)))
                    else:
                        # A partial frame: it has no end, so nobody waits for its ACK. Its
                        # bytes count as garbage: endless restarts close the connection too.
                        self._garbage += len(self._buffer)
                        if self._garbage > self._max:
                            raise FramingError("too many unfinished MLLP frames")
                    self._state, self._buffer, i = "inside", bytearray(), restart + 1
                elif end >= 0:
                    if self._state == "skipping":
                        events.append(Oversized(bytes(self._buffer)))
                    else:
                        events.append(Frame(bytes(self._buffer)))
                    self._state, self._buffer, self._garbage = "after_end", bytearray(), 0
                    i = end + 1
                else:
                    return events
        return events


def _networks(peers: list[str]) -> list[_Network]:
    try:
        return [ipaddress.ip_network(p, strict=False) for p in peers]
    except ValueError as err:
        raise NodeError(f"hl7.allowed_peers: {err}") from None


def peer_allowed(peer: object, networks: list[_Network]) -> bool:
    """Whether the socket peer ``(host, port, ...)`` is in one of ``networks``."""
    if not isinstance(peer, tuple) or not peer:
        return False
    try:
        address = ipaddress.ip_address(str(peer[0]).split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in net for net in networks)


class MllpListener(ListenerAPI):
    """The HL7 v2 listener: ``handler`` answers each frame (and is closed on stop)."""

    name = "hl7"

    def __init__(self, settings: Hl7Settings, handler: MessageHandlerAPI) -> None:
        self._settings = settings
        self._handler = handler
        self._networks = _networks(settings.allowed_peers)
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._address: tuple[str, int] = (settings.host, settings.port)
        self._pool = ThreadPoolExecutor(HANDLER_THREADS, thread_name_prefix="hl7-handler")
        self._connections: set[asyncio.Task[None]] = set()

    @property
    def address(self) -> tuple[str, int]:
        return self._address

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="hl7-listener", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            self._thread.join()
            self._thread = None
            raise NodeError(
                f"the HL7 listener cannot bind {self._settings.host}:{self._settings.port}: "
                f"{self._error}"
            ) from self._error

    def stop(self) -> None:
        thread, loop, stopping = self._thread, self._loop, self._stopping
        if thread is not None and loop is not None and stopping is not None:
            with contextlib.suppress(RuntimeError):  # the loop already ended
                loop.call_soon_threadsafe(stopping.set)
            thread.join(timeout=30)
        self._thread = None
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._handler.close()

    # -- the loop ----------------------------------------------------------------------
    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve())
        except BaseException as err:  # a bind failure: start() reports it
            self._error = err
        finally:
            self._ready.set()
            loop.close()

    async def _serve(self) -> None:
        self._stopping = asyncio.Event()
        server = await asyncio.start_server(
            self._connection, self._settings.host, self._settings.port, limit=_READ
        )
        sockname = server.sockets[0].getsockname()
        self._address = (str(sockname[0]), int(sockname[1]))
        log.info("HL7 MLLP listener on %s:%d", *self._address)
        self._ready.set()
        try:
            await self._stopping.wait()
        finally:
            server.close()
            for task in list(self._connections):
                task.cancel()
            if self._connections:
                await asyncio.wait(list(self._connections), timeout=10)
            await server.wait_closed()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        if not peer_allowed(peer, self._networks):
            # The peer network is the part of a sender's identity it cannot just assert.
            log.warning("HL7 connection from %s refused: not in hl7.allowed_peers", peer)
            writer.transport.abort()
            return
        if len(self._connections) >= MAX_CONNECTIONS:
            log.warning("HL7 connection from %s refused: %d open", peer, MAX_CONNECTIONS)
            writer.transport.abort()
            return
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            await self._serve_connection(reader, writer)
        except (TimeoutError, ConnectionError, OSError, FramingError) as err:
            log.info("HL7 connection from %s closed: %s", peer, type(err).__name__)
        except asyncio.CancelledError:
            pass  # the listener stops
        except Exception:  # never let one connection take the listener down
            log.exception("HL7 connection from %s failed", peer)
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancellation.
                async with asyncio.timeout(5):
                    await writer.wait_closed()

    async def _serve_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        loop = asyncio.get_running_loop()
        timeout = self._settings.idle_timeout
        framer = MllpFramer(self._settings.max_message_bytes)
        while True:
            async with asyncio.timeout(timeout):
                data = await reader.read(_READ)
            if not data:
                return  # the peer closed
            for event in framer.feed(data):
                answer: Callable[[bytes], bytes]
                if isinstance(event, Frame):
                    answer, payload = self._handler.handle, event.content
                else:
                    answer, payload = self._handler.too_large, event.head
                ack = await loop.run_in_executor(self._pool, answer, payload)
                writer.write(frame(ack))
                async with asyncio.timeout(timeout):
                    await writer.drain()
