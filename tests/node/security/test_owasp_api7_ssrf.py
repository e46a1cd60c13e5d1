"""OWASP API7:2023 Server Side Request Forgery: no URL a caller sends is ever fetched.

Statically: the server side opens outbound HTTP in two modules only, each to a URL from the
node's settings (the chain's JSON-RPC node, the hospital's IPFS nodes), and no request
schema has a URL-typed or URL-named field. Dynamically: a URL pointing at a socket the test
listens on goes into every string field of every route (path, query, JSON body, form
fields, headers), sent with credentials that pass every role check, and no connection ever
reaches the socket.
"""

from __future__ import annotations

import ast
import json
import socket
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from node.api.edge import api_routes
from tests.node.conftest import RunningNode
from tests.node.security.helpers import Callers

ROOT = Path(__file__).resolve().parents[3]
SERVER_PACKAGES = ("node", "storage", "hsm", "zk")
# Modules of the server packages that may open outbound connections, and where their
# addresses come from. A new one fails the test until it is reviewed and listed here.
OUTBOUND = {
    "node/chain/external.py": "settings.chain.rpc_url (the chain's JSON-RPC node)",
    "storage/backends/ipfs_rpc.py": "settings.storage.ipfs_nodes (the hospital's IPFS nodes)",
    "storage/backends/redis.py": "settings.storage.redis_url",
    "node/throttle.py": "settings.storage.redis_url (shared throttle buckets)",
    "storage/backends/mysql.py": "settings.storage.mysql_host/port",
    "storage/sql.py": "settings.storage.mysql_host/port (the node's shared state)",
    # The worker role's endpoint: API processes reach the worker at the URL in the lease
    # row of the index database (written by the lease holder from settings.worker), else
    # settings.worker; requests carry the worker secret, so the index database is trusted
    # like the key store (docs/scaling.md).
    "node/chain/sender.py": "the worker role's URL (lease row or settings.worker)",
    "node/chain/worker_rpc.py": "the worker role's URL (lease row or settings.worker)",
    "node/roles/control.py": "the worker role's URL (lease row or settings.worker)",
    "node/chain/worker_endpoint.py": "listens on settings.worker.host/port; connects nowhere",
    "node/roles/supervisor.py": "settings.worker (waits for its own child's endpoint)",
    "node/wiring.py": "socket.gethostname() for the lease holder's name; connects nowhere",
    # issue 12: H-DICOM
    "node/dicom/scp.py": "listens on settings.dicom.host/port (TCP_NODELAY); connects nowhere",
    # issue 14: the backup reads the node's own index database
    "node/backup/archive.py": "settings.storage.mysql_host/port (the index database it backs up)",
    # client side: the CLI, the Python client, the demo and the benchmark call a node
    "node/client.py": "the node URL its user passes",
    "node/cli/main.py": "the node URL on the command line",
    "node/bench.py": "the node URL on the command line",
}
NETWORK_MODULES = {
    "httpx",
    "requests",
    "urllib.request",
    "urllib3",
    "http.client",
    "aiohttp",
    "ipfshttpclient",
    "socket",
    "redis",
    "pymysql",
    "websockets",
    "web3.HTTPProvider",
    "web3.AsyncHTTPProvider",
    "web3.WebSocketProvider",
    "web3.LegacyWebSocketProvider",
    "web3.IPCProvider",
    "web3.providers",
}


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def _uses_network(imports: set[str]) -> set[str]:
    return {m for m in imports for n in NETWORK_MODULES if m == n or m.startswith(n + ".")}


def test_outbound_connections_only_where_reviewed() -> None:
    users = {}
    for package in SERVER_PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            used = _uses_network(_imports(path))
            if used:
                users[str(path.relative_to(ROOT))] = sorted(used)
    unreviewed = {p: u for p, u in users.items() if p not in OUTBOUND}
    assert not unreviewed, f"outbound network code not reviewed for SSRF: {unreviewed}"
    assert set(OUTBOUND) <= set(users), set(OUTBOUND) - set(users)


def test_no_request_field_is_a_url(module_node: RunningNode) -> None:
    spec = module_node.server.config.app.openapi()  # type: ignore[union-attr]
    words = ("url", "uri", "callback", "webhook", "endpoint", "href", "link")
    suspicious = []

    def walk(schema: Any, where: str) -> None:
        if isinstance(schema, dict):
            if schema.get("format") in ("uri", "url", "iri"):
                suspicious.append(where)
            for name, sub in (schema.get("properties") or {}).items():
                if any(w in name.lower() for w in words):
                    suspicious.append(f"{where}.{name}")
                walk(sub, f"{where}.{name}")
            for key in ("items", "anyOf", "oneOf", "allOf", "additionalProperties"):
                if key in schema:
                    walk(schema[key], where)
        elif isinstance(schema, list):
            for item in schema:
                walk(item, where)

    components = spec.get("components", {}).get("schemas", {})
    for path, item in spec["paths"].items():
        for method, op in item.items():
            for param in op.get("parameters", []):
                if any(w in param["name"].lower() for w in words):
                    suspicious.append(f"{method} {path} ?{param['name']}")
            for media in (op.get("requestBody") or {}).get("content", {}).values():
                ref = media["schema"].get("$ref", "")
                schema = components.get(ref.rsplit("/", 1)[-1], media["schema"])
                walk(schema, f"{method} {path}")
    assert not suspicious, suspicious


class Listener:
    """A TCP socket on loopback that records every connection made to it."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.sock.settimeout(0.2)
        self.port = int(self.sock.getsockname()[1])
        self.hits: list[bytes] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            with conn:
                conn.settimeout(1)
                try:
                    self.hits.append(conn.recv(4096))
                except OSError:
                    self.hits.append(b"")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()


def _touch(listener: Listener) -> None:
    with socket.create_connection(("127.0.0.1", listener.port), timeout=2) as conn:
        conn.sendall(b"GET /ssrf HTTP/1.1\r\n\r\n")
    deadline = time.monotonic() + 5
    while not listener.hits and time.monotonic() < deadline:
        time.sleep(0.05)
    assert listener.hits, "the listener does not see connections"
    listener.hits.clear()


@pytest.fixture
def listener() -> Any:
    lst = Listener()
    yield lst
    lst.close()


def _fill(schema: Any, components: dict[str, Any], url: str, depth: int = 0) -> Any:
    """A value for ``schema`` with ``url`` in every string (numbers 1, lists of one)."""
    if depth > 8 or not isinstance(schema, dict):
        return url
    if "$ref" in schema:
        return _fill(components[schema["$ref"].rsplit("/", 1)[-1]], components, url, depth + 1)
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            options = [s for s in schema[key] if s.get("type") != "null"]
            return _fill(options[0] if options else {}, components, url, depth + 1)
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        props = schema.get("properties") or {}
        out = {k: _fill(v, components, url, depth + 1) for k, v in props.items()}
        if not props:  # free-form objects (e.g. an EIP-712 domain): URLs in every field
            out = {k: url for k in ("name", "version", "chainId", "verifyingContract", "url")}
        return out
    if kind == "array":
        return [_fill(schema.get("items", {}), components, url, depth + 1)]
    if kind in ("integer", "number"):
        return 1
    if kind == "boolean":
        return True
    return url


def test_no_url_sent_to_any_route_is_fetched(
    module_node: RunningNode, module_callers: Callers, listener: Listener
) -> None:
    rn, who = module_node, module_callers
    url = f"http://127.0.0.1:{listener.port}/ssrf"
    # the positive control: a fetch of the URL is seen
    _touch(listener)
    spec = rn.server.config.app.openapi()  # type: ignore[union-attr]
    components = spec.get("components", {}).get("schemas", {})
    sent = 0
    with httpx.Client(base_url=rn.url, timeout=60) as http:
        for path, route in api_routes(rn.server.config.app):  # type: ignore[arg-type]
            for method in sorted(route.methods or ()):
                op = spec["paths"][path][method.lower()]
                path_values = {
                    p["name"]: quote(url, safe="")
                    for p in op.get("parameters", [])
                    if p["in"] == "path"
                }
                query = {p["name"]: url for p in op.get("parameters", []) if p["in"] == "query"}
                target = path.format(**path_values)
                content = (op.get("requestBody") or {}).get("content", {})
                for principal in ("admin", "wallet"):
                    headers = {
                        **who.headers(principal),
                        "Referer": url,
                        "Origin": url,
                        "X-Forwarded-Host": url,
                        "X-Callback-Url": url,
                    }
                    kwargs: dict[str, Any] = {"params": query, "headers": headers}
                    if "application/json" in content:
                        schema = content["application/json"]["schema"]
                        kwargs["json"] = _fill(schema, components, url)
                    elif "multipart/form-data" in content:
                        schema = content["multipart/form-data"]["schema"]
                        fields = _fill(schema, components, url)
                        # Structured fields (the batch manifest) travel as JSON text.
                        kwargs["data"] = {
                            k: v if isinstance(v, str) else json.dumps(v)
                            for k, v in fields.items()
                            if k != "file"
                        }
                        kwargs["files"] = {"file": ("r", url.encode(), "text/uri-list")}
                    r = http.request(method, target, **kwargs)
                    assert r.status_code < 500, (method, path, r.text[:200])
                    sent += 1
        # a SIWE login whose message names the URL as its URI and resources
        message = (
            f"x wants you to sign in\nURI: {url}\nNonce: abcdef0123456789\nResources:\n- {url}"
        )
        http.post("/auth/login", json={"message": message, "signature": "0x" + "00" * 65})
    time.sleep(1.0)  # anything fetched in the background (workers) has had time to connect
    assert sent >= 90
    assert listener.hits == [], listener.hits[:3]
