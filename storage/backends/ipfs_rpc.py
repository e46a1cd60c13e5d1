"""A thin client of the Kubo RPC API (``/api/v0``), the calls the IPFS blob store needs.

Why our own client and not ipfshttpclient 0.7.0: its ``connect()`` rejects every daemon
newer than 0.8 (Kubo and js-ipfs alike), its httpx backend is broken, it is unmaintained,
and it has no ``dag/import``, the batch write path we depend on. The store uses seven
endpoints; over httpx (already a dependency, thread-safe, pooled keep-alive connections)
that is less code than adapting a library, and adds no pin.

Works against Kubo and js-ipfs 0.66 (what scripts/ipfs.sh runs). Deviations handled here:
js-ipfs answers ``pin/rm`` of an unpinned CID slowly (~1 s) and ``pin/ls`` with
``type=all`` walks every recursive pin, so callers check ``pin/ls?type=recursive`` first.

Errors are two internal classes the store turns into storage errors: NodeUnreachable (no
usable answer: connection refused, timeout, proxy error) and CommandFailed (the daemon
answered and refused: "not pinned", "request timed out").
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import httpx

__all__ = ["CommandFailed", "KuboRPC", "KuboRPCError", "NodeUnreachable", "display_url"]

logger = logging.getLogger(__name__)

# Connecting to a dead host should fail over quickly even when reads may take longer.
_CONNECT_TIMEOUT = 3.0


class KuboRPCError(Exception):
    """Root of the client's errors (internal: the store wraps them)."""


class NodeUnreachable(KuboRPCError):
    """The daemon gave no usable answer (refused, timed out, broken response)."""


class CommandFailed(KuboRPCError):
    """The daemon answered with an error (``{"Message": ..., "Type": "error"}``)."""

    def __init__(self, command: str, message: str) -> None:
        super().__init__(f"{command}: {message}")
        self.command = command
        self.message = message


def display_url(url: str) -> str:
    """``url`` without user info, safe for logs and errors (an RPC URL may carry a
    basic-auth password)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))


_BASE58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_BASE58_INDEX = {char: value for value, char in enumerate(_BASE58)}


def _base32_cid(cid: str) -> str | None:
    """A CIDv1 string in the base32 multibase (Kubo's default output; js-ipfs prints
    base58btc, ``z...``, unless told otherwise); None for a CIDv0 (``Qm...``)."""
    if cid.startswith("b"):
        return cid
    if not cid.startswith("z"):
        return None
    value = 0
    for char in cid[1:]:
        value = value * 58 + _BASE58_INDEX[char]  # KeyError: not base58
    raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
    raw = b"\0" * (len(cid) - 1 - len(cid[1:].lstrip("1"))) + raw
    return "b" + base64.b32encode(raw).decode("ascii").rstrip("=").lower()


class KuboRPC:
    """One daemon's RPC API. Thread-safe (one pooled httpx client)."""

    def __init__(self, url: str, *, timeout: float) -> None:
        self.name = display_url(url)
        self._timeout = timeout
        parts = urlsplit(url)
        # Credentials in the URL (Kubo's API.Authorizations) become a basic-auth header and
        # leave the URL, which httpx logs with every request.
        auth = None
        if parts.username is not None:
            auth = httpx.BasicAuth(unquote(parts.username), unquote(parts.password or ""))
        self._client = httpx.Client(
            base_url=f"{self.name}/api/v0/",
            auth=auth,
            timeout=httpx.Timeout(timeout, connect=min(timeout, _CONNECT_TIMEOUT)),
            # Kubo's RPC only accepts POST; never follow a redirect to somewhere else.
            follow_redirects=False,
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"

    @property
    def http(self) -> httpx.Client:
        """The underlying httpx client (tests hook its events to count requests)."""
        return self._client

    def close(self) -> None:
        self._client.close()

    # -- transport ----------------------------------------------------------------------

    def _post(
        self,
        command: str,
        params: Mapping[str, str] | None = None,
        *,
        files: Mapping[str, tuple[str, bytes, str]] | None = None,
        stream: bool = False,
    ) -> httpx.Response:
        request = self._client.build_request("POST", command, params=params, files=files)
        try:
            response = self._client.send(request, stream=stream)
        except httpx.TransportError as exc:
            raise NodeUnreachable(f"{command}: {type(exc).__name__}") from exc
        if response.status_code < 300:
            return response
        body = response.read() if stream else response.content
        response.close()
        raise self._error(command, response.status_code, body)

    @staticmethod
    def _error(command: str, status: int, body: bytes) -> KuboRPCError:
        try:
            payload = json.loads(body)
        except ValueError:
            payload = None
        if isinstance(payload, dict) and isinstance(payload.get("Message"), str):
            return CommandFailed(command, payload["Message"])
        if status >= 500:
            # Not an RPC error body: a proxy or something else that is not the daemon.
            return NodeUnreachable(f"{command}: HTTP {status}")
        return CommandFailed(command, f"HTTP {status}")

    def _json(self, command: str, params: Mapping[str, str] | None = None) -> Any:
        response = self._post(command, params)
        try:
            return response.json()
        except ValueError as exc:
            raise NodeUnreachable(f"{command}: malformed JSON answer") from exc

    # -- commands -----------------------------------------------------------------------

    def id(self) -> dict[str, Any]:
        """``id``: the daemon's peer identity and addresses."""
        answer: dict[str, Any] = self._json("id")
        return answer

    def version(self) -> dict[str, Any]:
        """``version``: e.g. ``{"Version": "0.18.1", ...}`` (js-ipfs core) or Kubo's."""
        answer: dict[str, Any] = self._json("version")
        return answer

    def dag_import(self, car: bytes) -> dict[str, str]:
        """``dag/import?pin-roots=true`` of one CAR file.

        Returns ``{root CID (base32): pin error message ("" when pinned)}`` for every root
        the daemon reports. A root missing from the answer was not pinned (the stream can
        end early: the daemon then reports its error in an HTTP trailer httpx cannot read).
        """
        response = self._post(
            "dag/import",
            {"pin-roots": "true"},
            # Every multipart part needs a Content-Type, or js-ipfs rejects it.
            files={"file": ("batch.car", car, "application/vnd.ipld.car")},
            stream=True,
        )
        roots: dict[str, str] = {}
        try:
            for line in response.iter_lines():
                if not line.strip():
                    continue
                entry = json.loads(line)
                root = entry.get("Root")
                if not isinstance(root, dict):
                    # Kubo also streams {"Stats": ...}; an error object ends the answer.
                    if entry.get("Type") == "error":
                        logger.warning("%s dag/import failed: %s", self.name, entry.get("Message"))
                        break
                    continue
                roots[root["Cid"]["/"]] = root.get("PinErrorMsg") or ""
        except (httpx.TransportError, ValueError, KeyError, TypeError) as exc:
            raise NodeUnreachable(f"dag/import: broken answer ({type(exc).__name__})") from exc
        finally:
            response.close()
        return roots

    def is_pinned(self, cid: str) -> bool:
        """Whether ``cid`` is pinned recursively (how dag/import pins every blob).

        ``type=recursive`` is a single key lookup; ``type=all`` would walk every recursive
        pin looking for indirect ones.
        """
        try:
            answer = self._json("pin/ls", {"arg": cid, "type": "recursive"})
        except CommandFailed as exc:
            if "not pinned" in exc.message:
                return False
            raise
        keys = answer.get("Keys") if isinstance(answer, dict) else None
        return bool(keys)

    def pinned(self) -> set[str]:
        """Every recursively pinned CIDv1 (base32); CIDv0 pins are left out (never ours).

        Not streamed on purpose: a streamed answer that fails half-way (js-ipfs cannot
        print a CIDv0 in base32, for one) only says so in an HTTP trailer, which httpx
        cannot read, so a truncated list would pass for a complete one. The whole answer
        fails or succeeds instead, at the cost of holding it in memory (~100 bytes a pin).
        """
        answer = self._json("pin/ls", {"type": "recursive"})
        try:
            keys = answer["Keys"]
            return {cid for cid in map(_base32_cid, keys) if cid is not None}
        except (KeyError, TypeError, ValueError) as exc:
            raise NodeUnreachable(f"pin/ls: malformed answer ({type(exc).__name__})") from exc

    def pin_rm(self, cid: str) -> None:
        """``pin/rm``. Raises CommandFailed (message contains "not pinned") if it was not."""
        self._post("pin/rm", {"arg": cid}).close()

    def block_rm(self, cid: str) -> None:
        """``block/rm`` with ``force`` (a missing block is fine): drop the block from the
        local repo now instead of at the next garbage collection."""
        self._post("block/rm", {"arg": cid, "force": "true"}).close()

    def block_get(self, cid: str) -> bytes:
        """``block/get``: the raw bytes of a block.

        The daemon-side timeout keeps a block that is pinned but missing locally from
        turning into an unbounded network search; it fires before our own read timeout so
        the answer is a CommandFailed, not a dropped connection.
        """
        daemon_timeout = f"{max(int(self._timeout * 800), 100)}ms"
        response = self._post("block/get", {"arg": cid, "timeout": daemon_timeout})
        return response.content

    def swarm_connect(self, address: str) -> None:
        """``swarm/connect`` to a peer multiaddr (``/ip4/.../tcp/.../p2p/<peer id>``)."""
        self._post("swarm/connect", {"arg": address}).close()
