"""The worker role's internal HTTP endpoint, for the node's API processes.

Routes (every one needs ``Authorization: Bearer <secret hex>``; answers are JSON):

- ``POST /rpc``: JSON-RPC 2.0 (single or batch) passed to the embedded chain, read methods
  only (``READ_METHODS``); anything else is answered with a JSON-RPC error (-32601). 404
  when this worker hosts no chain (an external chain is read at its own RPC URL).
- ``POST /send``: ``{"to": "0x..", "data": "0x..", "gas": int}``: signs with the
  hospital's key, sends, waits until it is mined: ``{"tx_hash": "0x..", "from": "0x.."}``.
  A revert is 409 ``{"error": "ContractReverted", "name", "args"}``; the chain unreachable
  503; another chain refusal 502; a malformed body 400.
- ``POST /wake/{worker}``: wake a named background worker: ``{"woken": name}``, 404 if no
  worker has that name.
- ``GET /status``: whatever ``status()`` returns, with ``"address"`` (the sending account).

Errors are ``{"error": <kind>, "message": <text>}``, never a stack trace; 401 without the
secret. The server is the standard library's ``ThreadingHTTPServer`` speaking HTTP/1.1 with
keep-alive (one thread per connection), which serves a few thousand ``eth_blockNumber`` a
second to another process; the embedded chain, one request at a time, is the bound.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import re
import socket
import threading
from collections.abc import Callable, Mapping
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from eth_utils import is_address, to_checksum_address
from hexbytes import HexBytes
from web3 import EthereumTesterProvider, Web3
from web3.middleware import combine_middleware

from node.chain.abc import TransactionSenderAPI
from node.chain.exceptions import ChainError, ChainUnavailable, ContractReverted
from node.chain.sender import encode_error_args
from node.chain.worker_rpc import authorization
from storage.exceptions import BackendUnavailable

__all__ = ["READ_METHODS", "WorkerEndpoint", "embedded_rpc"]

log = logging.getLogger(__name__)

RpcCall = Callable[[str, list[Any]], Any]

#: What ``POST /rpc`` serves: every read Web3ChainClient, Web3ZkGate and the access
#: decider make (and web3's transaction building needs), none that changes the chain.
READ_METHODS = frozenset(
    {
        "eth_blockNumber",
        "eth_call",
        "eth_chainId",
        "eth_estimateGas",
        "eth_feeHistory",
        "eth_gasPrice",
        "eth_getBalance",
        "eth_getBlockByHash",
        "eth_getBlockByNumber",
        "eth_getCode",
        "eth_getLogs",
        "eth_getStorageAt",
        "eth_getTransactionByHash",
        "eth_getTransactionCount",
        "eth_getTransactionReceipt",
        "eth_maxPriorityFeePerGas",
        "eth_syncing",
        "net_version",
        "web3_clientVersion",
    }
)

MAX_BODY = 8 * 1024 * 1024  # an eth_call carrying a 1,000-record anchor is ~100 KiB
MAX_GAS = 60_000_000
_WAKE = re.compile(r"^/wake/([A-Za-z0-9_.-]{1,64})$")


def embedded_rpc(w3: Web3) -> RpcCall:
    """A JSON-RPC request function for the embedded chain behind ``w3``: wire-format
    params in (hex quantities, camelCase keys), as an HTTP node takes them.

    It runs the provider's own formatting middleware (which a bare ``make_request``
    skips) but none of ``w3``'s: results stay raw for ``WorkerEndpoint`` to encode.
    """
    provider = w3.provider
    request = combine_middleware(
        middleware=tuple(provider._middleware), w3=w3, provider_request_fn=provider.make_request
    )

    def call(method: str, params: list[Any]) -> Any:
        return request(method, params)

    return call


class WorkerEndpoint:
    """Serves the routes above on ``host:port`` (port 0: any free port, see ``url``) from
    construction until ``close()``."""

    def __init__(
        self,
        *,
        rpc: RpcCall | None,
        sender: TransactionSenderAPI,
        wake: Callable[[str], bool],
        status: Callable[[], Mapping[str, Any]],
        secret: bytes,
        host: str = "127.0.0.1",
        port: int = 8701,
    ) -> None:
        """:param rpc: the embedded chain's request function (``embedded_rpc``; a bare
            ``EthereumTesterProvider.make_request`` is wrapped into one), None without
            an embedded chain.
        :param sender: signs and sends ``/send`` transactions (the worker's
            ``LocalTransactionSender``).
        :param wake: wakes the named background worker; False if there is none.
        :param status: the worker's status for ``GET /status``.
        :param secret: the bearer secret (raw bytes; hex on the wire).
        :raises OSError: the address is taken.
        """
        owner = getattr(rpc, "__self__", None)
        if isinstance(owner, EthereumTesterProvider):
            rpc = embedded_rpc(Web3(owner))
        self._rpc = rpc
        self._sender = sender
        self._wake = wake
        self._status = status
        self._expected = authorization(secret).encode()
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        self._server = _Server((host, port), _Handler)
        self._server.endpoint = self
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.2},
            name="worker-endpoint",
            daemon=True,
        )
        self._thread.start()
        log.info("worker endpoint listening on %s", self.url)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        shown = str(host)
        return f"http://[{shown}]:{port}" if ":" in shown else f"http://{shown}:{port}"

    def close(self) -> None:
        """Stop serving and drop every open connection (idempotent)."""
        if self._server.endpoint is None:
            return
        self._server.endpoint = None
        self._server.shutdown()
        self._server.server_close()
        with self._connections_lock:
            connections, self._connections = self._connections, set()
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        self._thread.join(timeout=5)

    # -- requests ---------------------------------------------------------------------
    def _track(self, connection: socket.socket, open_: bool) -> None:
        with self._connections_lock:
            if open_:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)

    def authorized(self, header: str | None) -> bool:
        return header is not None and hmac.compare_digest(header.encode(), self._expected)

    def handle(self, method: str, path: str, body: bytes) -> tuple[int, Any]:
        """(HTTP status, JSON answer) for an authorized request."""
        if path == "/rpc":
            if method != "POST":
                return _error(HTTPStatus.METHOD_NOT_ALLOWED, "MethodNotAllowed", "use POST")
            if self._rpc is None:
                return _error(HTTPStatus.NOT_FOUND, "NoChain", "this worker hosts no chain")
            return self._handle_rpc(body)
        if path == "/send":
            if method != "POST":
                return _error(HTTPStatus.METHOD_NOT_ALLOWED, "MethodNotAllowed", "use POST")
            return self._handle_send(body)
        if path == "/status":
            if method != "GET":
                return _error(HTTPStatus.METHOD_NOT_ALLOWED, "MethodNotAllowed", "use GET")
            return HTTPStatus.OK, {**self._status(), "address": self._sender.address}
        woken = _WAKE.match(path)
        if woken is not None:
            if method != "POST":
                return _error(HTTPStatus.METHOD_NOT_ALLOWED, "MethodNotAllowed", "use POST")
            name = woken.group(1)
            if not self._wake(name):
                return _error(HTTPStatus.NOT_FOUND, "UnknownWorker", "no worker by that name")
            return HTTPStatus.OK, {"woken": name}
        return _error(HTTPStatus.NOT_FOUND, "NotFound", "no such route")

    def _handle_rpc(self, body: bytes) -> tuple[int, Any]:
        try:
            request = json.loads(body)
        except ValueError:
            return HTTPStatus.OK, _rpc_error(None, -32700, "parse error")
        if isinstance(request, list):
            if not request:
                return HTTPStatus.OK, _rpc_error(None, -32600, "empty batch")
            return HTTPStatus.OK, [self._rpc_one(r) for r in request]
        return HTTPStatus.OK, self._rpc_one(request)

    def _rpc_one(self, request: Any) -> dict[str, Any]:
        if not isinstance(request, dict):
            return _rpc_error(None, -32600, "invalid request")
        request_id = request.get("id")
        method, params = request.get("method"), request.get("params", [])
        if not isinstance(method, str) or not isinstance(params, list):
            return _rpc_error(request_id, -32600, "invalid request")
        if method not in READ_METHODS:
            return _rpc_error(
                request_id, -32601, f"method {method[:64]} is not served here (read only)"
            )
        assert self._rpc is not None
        try:
            response = self._rpc(method, params)
        except Exception as err:  # eth-tester validation, a failed historical call...
            log.debug("worker rpc %s failed", method, exc_info=True)
            return _rpc_error(request_id, -32000, _message(err))
        error = response.get("error") if isinstance(response, Mapping) else None
        if error is not None:
            return {"jsonrpc": "2.0", "id": request_id, "error": _jsonable(dict(error))}
        result = response.get("result") if isinstance(response, Mapping) else response
        return {"jsonrpc": "2.0", "id": request_id, "result": _to_wire(result)}

    def _handle_send(self, body: bytes) -> tuple[int, Any]:
        try:
            request = json.loads(body)
            to, data, gas = request["to"], request["data"], request["gas"]
            if not (isinstance(to, str) and is_address(to)):
                raise ValueError("to")
            if not (isinstance(data, str) and data.startswith("0x")):
                raise ValueError("data")
            if not (isinstance(gas, int) and not isinstance(gas, bool) and 0 < gas <= MAX_GAS):
                raise ValueError("gas")
            calldata = bytes(HexBytes(data))
        except (ValueError, KeyError, TypeError) as err:
            return _error(
                HTTPStatus.BAD_REQUEST,
                "BadRequest",
                'expected {"to": address, "data": "0x..", "gas": int}'
                + (f" (bad {err.args[0]})" if isinstance(err, ValueError) and err.args else ""),
            )
        try:
            tx_hash = self._sender.send(to_checksum_address(to), calldata, gas)
        except ContractReverted as err:
            return HTTPStatus.CONFLICT, {
                "error": "ContractReverted",
                "message": "the contract refused the transaction",
                "name": err.name,
                "args": encode_error_args(err.error_args),
            }
        except ChainUnavailable as err:
            return _error(HTTPStatus.SERVICE_UNAVAILABLE, "ChainUnavailable", _message(err))
        except BackendUnavailable as err:
            # The key audit log (written before each signature) is down: nothing was signed
            # or sent, so the caller may retry or queue, as for an unreachable chain.
            return _error(HTTPStatus.SERVICE_UNAVAILABLE, "BackendUnavailable", _message(err))
        except ChainError as err:
            return _error(HTTPStatus.BAD_GATEWAY, "ChainError", _message(err))
        return HTTPStatus.OK, {"tx_hash": "0x" + tx_hash.hex(), "from": self._sender.address}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    endpoint: WorkerEndpoint | None = None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: API processes pool their connections
    disable_nagle_algorithm = True
    timeout = 120  # an idle keep-alive connection's thread ends after this
    server: _Server

    def setup(self) -> None:
        super().setup()
        endpoint = self.server.endpoint
        if endpoint is not None:
            endpoint._track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            endpoint = self.server.endpoint
            if endpoint is not None:
                endpoint._track(self.connection, False)

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def _serve(self, method: str) -> None:
        endpoint = self.server.endpoint
        if endpoint is None:
            self.close_connection = True
            self._answer(*_error(HTTPStatus.SERVICE_UNAVAILABLE, "Stopping", "shutting down"))
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY:
            self.close_connection = True
            self._answer(*_error(HTTPStatus.BAD_REQUEST, "BadRequest", "bad Content-Length"))
            return
        body = self.rfile.read(length) if length else b""
        if not endpoint.authorized(self.headers.get("Authorization")):
            self._answer(
                *_error(HTTPStatus.UNAUTHORIZED, "Unauthorized", "missing or wrong secret"),
                extra=b"WWW-Authenticate: Bearer\r\n",
            )
            return
        try:
            status, answer = endpoint.handle(method, self.path.split("?", 1)[0], body)
        except Exception:
            log.exception("worker endpoint: %s %s failed", method, self.path[:64])
            status, answer = _error(HTTPStatus.INTERNAL_SERVER_ERROR, "InternalError", "failed")
        self._answer(status, answer)

    def _answer(self, status: int, answer: Any, extra: bytes = b"") -> None:
        payload = json.dumps(answer, separators=(",", ":")).encode()
        reason = HTTPStatus(status).phrase
        head = (
            f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\n"
        ).encode()
        if self.close_connection:
            head += b"Connection: close\r\n"
        self.wfile.write(head + extra + b"\r\n" + payload)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("worker endpoint: " + format, *args)


# -- JSON ----------------------------------------------------------------------------------
def _error(status: int, kind: str, message: str) -> tuple[int, dict[str, str]]:
    return status, {"error": kind, "message": message}


def _rpc_error(request_id: Any, code: int, message: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "error": {"code": code, "message": message}}


def _message(err: BaseException) -> str:
    text = str(err).splitlines()[0] if str(err) else ""
    return f"{type(err).__name__}: {text}"[:300]


def _to_wire(value: Any, key: str | None = None) -> Any:
    """A provider result as an HTTP JSON-RPC node sends it: quantities as hex strings,
    bytes as 0x hex, the logs bloom as 256 bytes."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        if key == "logsBloom":
            return "0x" + value.to_bytes(256, "big").hex()
        return hex(value)
    if isinstance(value, bytes | bytearray):
        return "0x" + bytes(value).hex()
    if isinstance(value, Mapping):
        return {str(k): _to_wire(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_to_wire(v) for v in value]
    return str(value)


def _jsonable(value: Any) -> Any:
    """An error object as JSON (codes stay numbers; bytes become 0x hex)."""
    if isinstance(value, bytes | bytearray):
        return "0x" + bytes(value).hex()
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value
