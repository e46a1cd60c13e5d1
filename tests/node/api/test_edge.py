"""The HTTP edge against a running node (issue 10, item 2, and headers/CORS): bodies are
bounded and authenticated before anything parses them, slow bodies time out, every
response carries the hardening headers, and CORS answers only configured origins.

Raw sockets where the point is what the server does before the body is sent: a response
that arrives while the client has sent only the headers proves the body was not read.
"""

from __future__ import annotations

import asyncio
import json
import re
import select
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from eth_account import Account

from node.api.app import create_app
from node.api.edge import (
    SecurityHeaders,
    TrustedHosts,
    body_rules,
    host_name,
    json_nesting_exceeds,
)
from node.settings import ApiSettings
from tests.node.conftest import RunningNode, make_settings, start_node

PUBLIC_URL = "https://emr.hospital.example"
PORTAL = "https://portal.hospital.example"
MAX_UPLOAD = 64 * 1024
UPLOAD_LIMIT = MAX_UPLOAD + 64 * 1024  # the upload route's limit: file plus multipart room
MAX_JSON = 4096
MAX_HEADERS = 8192
BOUNDARY = "emrtestboundary"


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningNode]:
    data_dir = tmp_path_factory.mktemp("edge") / "node"
    api = ApiSettings(
        max_upload_bytes=MAX_UPLOAD,
        max_json_bytes=MAX_JSON,
        body_timeout=1.0,
        body_total_timeout=3.0,
        max_header_bytes=MAX_HEADERS,
        header_timeout=1.0,
        public_url=PUBLIC_URL,
        cors_origins=[PORTAL],
    )
    rn = start_node(data_dir, make_settings(data_dir).model_copy(update={"api": api}))
    yield rn
    rn.stop()


@pytest.fixture(scope="module")
def hospital_token(node: RunningNode) -> str:
    with node.client(node.admin_token) as admin:
        return admin.create_token("ehr", "hospital")


# -- raw HTTP ------------------------------------------------------------------------------


def _port(rn: RunningNode) -> int:
    return int(rn.url.rsplit(":", 1)[1])


def _open(rn: RunningNode, method: str, path: str, headers: dict[str, str]) -> socket.socket:
    """A connection that has sent the request line and headers, and nothing of the body."""
    sock = socket.create_connection(("127.0.0.1", _port(rn)), timeout=20)
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{_port(rn)}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    return sock


def _response(sock: socket.socket) -> tuple[int, dict[str, str], Any]:
    """Status, headers and JSON body of the next response (socket timeout: 20 s)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before a response: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    while len(body) < int(headers.get("content-length", "0")):
        chunk = sock.recv(65536)
        assert chunk, "connection closed mid-response"
        body += chunk
    return int(status_line.split()[1]), headers, json.loads(body) if body else None


def _closed_by_server(sock: socket.socket) -> bool:
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def _multipart_headers(token: str | None, length: int) -> dict[str, str]:
    headers = {
        "Content-Type": f"multipart/form-data; boundary={BOUNDARY}",
        "Content-Length": str(length),
    }
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return headers


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n" % len(data) + data + b"\r\n"


# -- body guard ----------------------------------------------------------------------------


@pytest.mark.parametrize("token", [None, "emr_" + "0" * 40, "emrs_forged", "not-a-token"])
def test_unauthenticated_upload_is_refused_before_its_body_is_sent(
    node: RunningNode, token: str | None
) -> None:
    sock = _open(node, "POST", "/records", _multipart_headers(token, 50 * 1024 * 1024))
    with sock:
        status, headers, body = _response(sock)  # nothing of the 50 MiB was sent
        assert status == 401
        assert body["error"] == "unauthenticated"
        assert headers["www-authenticate"] == "Bearer"
        assert headers["connection"] == "close"
        assert _closed_by_server(sock)


def test_authenticated_oversize_upload_is_refused_before_its_body_is_sent(
    node: RunningNode, hospital_token: str
) -> None:
    sock = _open(node, "POST", "/records", _multipart_headers(hospital_token, UPLOAD_LIMIT + 1))
    with sock:
        status, _, body = _response(sock)
        assert status == 413
        assert body["error"] == "payload_too_large"
        assert str(UPLOAD_LIMIT) in body["detail"]
        assert _closed_by_server(sock)


def test_chunked_oversize_upload_is_refused_while_it_streams(
    node: RunningNode, hospital_token: str
) -> None:
    headers = _multipart_headers(hospital_token, 0)
    del headers["Content-Length"]
    headers["Transfer-Encoding"] = "chunked"
    sock = _open(node, "POST", "/records", headers)
    with sock:
        # One byte past the limit, in pieces, and never the final chunk: the node must
        # stop at the limit rather than wait for (and buffer) the whole body.
        part = (
            f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=file; filename=x\r\n"
            "Content-Type: text/plain\r\n\r\n"
        )
        sent = 0
        for piece in (part.encode(), *([b"x" * 16384] * (UPLOAD_LIMIT // 16384 + 1))):
            piece = piece[: UPLOAD_LIMIT + 1 - sent]
            if piece:
                sock.sendall(_chunk(piece))
                sent += len(piece)
        assert sent == UPLOAD_LIMIT + 1
        status, _, body = _response(sock)
        assert status == 413
        assert body["error"] == "payload_too_large"
        assert _closed_by_server(sock)


def test_json_body_over_the_limit_is_refused(node: RunningNode) -> None:
    declared = _open(
        node,
        "POST",
        "/consents/grant",
        {"Content-Type": "application/json", "Content-Length": str(MAX_JSON + 1)},
    )
    with declared:
        status, _, body = _response(declared)  # before the body
        assert (status, body["error"]) == (413, "payload_too_large")

    streamed = _open(
        node,
        "POST",
        "/consents/grant",
        {"Content-Type": "application/json", "Transfer-Encoding": "chunked"},
    )
    with streamed:
        streamed.sendall(_chunk(b'{"pad": "' + b"x" * MAX_JSON))  # over, and unfinished
        status, _, body = _response(streamed)
        assert (status, body["error"]) == (413, "payload_too_large")
        assert _closed_by_server(streamed)

    # Just under the limit the route sees the body (and judges it: a 4xx of its own).
    small = httpx.post(f"{node.url}/consents/grant", json={"pad": "x" * 100}, timeout=30)
    assert small.status_code not in (408, 413, 500), small.text


def test_deeply_nested_json_is_refused_before_parsing(node: RunningNode) -> None:
    """The JSON parser recurses on the C stack and the node's recursion limit is raised (by
    py_ecc): nesting is judged before the parser runs. 500-1,000 levels here (deep enough
    to tell, shallow enough not to crash this test process were the check missing)."""
    for path, body in (
        ("/consents/grant", b"[" * 1000 + b"]" * 1000),
        ("/auth/challenge", b'{"a":' * 500 + b"1" + b"}" * 500),
    ):
        answer = httpx.post(
            f"{node.url}{path}",
            content=body,
            headers={"Content-Type": "application/json"},
            timeout=30,
        )
        assert answer.status_code == 400, (path, answer.text)
        assert answer.json()["error"] == "invalid_request"
        assert "nested deeper than 64" in answer.json()["detail"]


@pytest.mark.parametrize(
    ("body", "deep"),
    [
        (b"[" * 64 + b"]" * 64, False),
        (b"[" * 65 + b"]" * 65, True),
        (b'[{"a":' * 32 + b"[1]" + b"}]" * 32, True),  # 65 levels, mixed kinds
        (b"[[]," * 65 + b"[]" + b"]" * 65, True),  # siblings do not hide depth
        (b'["]",' * 100 + b"1" + b"]" * 100, True),  # nor closing brackets in strings
        (json.dumps({"reason": "[" * 500 + '\\"' + "{" * 500}).encode(), False),
        (b"[" + b"[]," * 10_000 + b"[]]", False),  # many, but flat
    ],
)
def test_json_nesting_check(body: bytes, deep: bool) -> None:
    json.loads(body)  # every case is JSON
    assert json_nesting_exceeds(body, 64) is deep


def test_slow_body_gets_408_and_the_node_serves_others_meanwhile(
    node: RunningNode, hospital_token: str
) -> None:
    sock = _open(node, "POST", "/records", _multipart_headers(hospital_token, 1000))
    with sock:
        sock.sendall(f"--{BOUNDARY}\r\n".encode())  # a few bytes, then nothing
        other = httpx.get(f"{node.url}/health", timeout=10)  # while the upload stalls
        assert other.status_code == 200
        status, _, body = _response(sock)  # body_timeout is 1 s in this node
        assert status == 408
        assert body["error"] == "request_timeout"
        assert _closed_by_server(sock)
    assert httpx.get(f"{node.url}/health", timeout=10).status_code == 200


def test_dribbled_body_gets_408_at_the_total_bound(node: RunningNode) -> None:
    """One byte at a time, each within body_timeout (1 s), never finishing: the total
    bound (3 s) ends it."""
    sock = _open(
        node,
        "POST",
        "/auth/challenge",
        {"Content-Type": "application/json", "Content-Length": "100"},
    )
    with sock:
        deadline = time.monotonic() + 30
        answered = False
        while not answered and time.monotonic() < deadline:
            try:
                sock.sendall(b" ")
            except (BrokenPipeError, ConnectionResetError):
                break
            answered = bool(select.select([sock], [], [], 0.3)[0])
        status, _, body = _response(sock)
        assert (status, body["error"]) == (408, "request_timeout")


def test_normal_uploads_and_json_routes_still_work(node: RunningNode, hospital_token: str) -> None:
    patient = Account.create()
    content = b"x" * MAX_UPLOAD  # exactly the limit
    with node.client(hospital_token) as hospital:
        record = hospital.upload(patient.address, content, category="lab")
        assert record["patient"] == patient.address
        rows = hospital.records(patient=patient.address)
        assert [r["record_id"] for r in rows] == [record["record_id"]]
    with node.client() as public:
        session = public.login(patient)  # JSON routes: challenge and login
        assert public.read(record["record_id"], session).content == content
    # One byte over max_upload_bytes fits the route's allowance but not the route's own
    # check, which stays as a second line.
    over = httpx.post(
        f"{node.url}/records",
        headers={"Authorization": f"Bearer {hospital_token}"},
        data={"patient": patient.address, "category": "lab"},
        files={"file": ("f", content + b"x", "text/plain")},
        timeout=30,
    )
    assert (over.status_code, over.json()["error"]) == (413, "payload_too_large")


def test_routes_that_need_a_caller_are_found_from_their_dependencies(node: RunningNode) -> None:
    rules = body_rules(create_app(node.node), node.node.settings.api)
    table = {(method, rule.path.pattern): rule for rule in rules for method in rule.methods}

    def rule(method: str, path: str) -> Any:
        return next(r for r in rules if r.matches(method, path))

    assert rule("POST", "/records").needs_caller
    assert rule("POST", "/records").limit == UPLOAD_LIMIT
    for path in ("/records/" + "ab" * 32 + "/erase", "/break-glass", "/admin/tokens"):
        assert rule("POST", path).needs_caller, path
        assert rule("POST", path).limit == MAX_JSON
    for path in ("/auth/challenge", "/auth/login", "/consents/grant", "/consents/revoke"):
        assert not rule("POST", path).needs_caller, path
    assert not rule("POST", "/zk/records/" + "ab" * 32 + "/read").needs_caller  # proofs
    assert len(table) >= 40


@pytest.mark.parametrize("shape", ["many headers", "one endless header", "endless url"])
def test_oversize_request_head_gets_431(node: RunningNode, shape: str) -> None:
    sock = socket.create_connection(("127.0.0.1", _port(node)), timeout=20)
    with sock:
        head = {
            "many headers": b"GET /health HTTP/1.1\r\n" + b"X-Pad: 0123456789\r\n" * 1000,
            "one endless header": b"GET /health HTTP/1.1\r\nX-Pad: " + b"a" * 2 * MAX_HEADERS,
            "endless url": b"GET /health?" + b"a" * 2 * MAX_HEADERS,
        }[shape]
        sock.sendall(head[: MAX_HEADERS + 100])  # past the bound, and the head never ends
        status, headers, body = _response(sock)
        assert (status, body["error"]) == (431, "headers_too_large")
        assert headers["x-content-type-options"] == "nosniff"
        assert _closed_by_server(sock)


def test_slow_request_head_gets_408(node: RunningNode) -> None:
    sock = socket.create_connection(("127.0.0.1", _port(node)), timeout=20)
    with sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # no blank line
        status, _, body = _response(sock)  # header_timeout is 1 s in this node
        assert (status, body["error"]) == (408, "request_timeout")
        assert _closed_by_server(sock)


def test_keep_alive_connections_are_not_cut_between_requests(node: RunningNode) -> None:
    with httpx.Client(base_url=node.url, timeout=10) as client:
        for _ in range(3):
            assert client.get("/health").status_code == 200
            time.sleep(0.6)  # idle, under the keep-alive timeout, across header_timeout


# -- trusted hosts -------------------------------------------------------------------------


def test_other_hosts_are_refused_with_json(node: RunningNode) -> None:
    answer = httpx.get(f"{node.url}/health", headers={"Host": "evil.example"}, timeout=10)
    assert answer.status_code == 400
    assert answer.json()["error"] == "untrusted_host"
    assert answer.headers["x-content-type-options"] == "nosniff"
    for host in (f"127.0.0.1:{_port(node)}", "localhost", "[::1]:1", "emr.hospital.example"):
        ok = httpx.get(f"{node.url}/health", headers={"Host": host}, timeout=10)
        assert ok.status_code == 200, host


def test_host_matching() -> None:
    assert host_name("Example.ORG:8700") == "example.org"
    assert host_name("[::1]:8700") == "::1"
    assert host_name("example.org.") == "example.org"
    for bad in ("", ":80", "a b", "x:port", "[::1", "evil.example/x", "a@b"):
        assert host_name(bad) is None, bad
    guard = TrustedHosts(_app, hosts=["emr.example", "*.hospital.example"])
    assert guard.allows("emr.example") and guard.allows("a.b.hospital.example")
    assert not guard.allows("hospital.example") and not guard.allows("emr.example.evil")
    assert not guard.allows("evilhospital.example") and not guard.allows(None)


# -- security headers and CORS -------------------------------------------------------------


def _hardened(headers: httpx.Headers) -> None:
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["cache-control"] == "no-store"
    assert headers["referrer-policy"] == "no-referrer"
    assert headers["x-frame-options"] == "DENY"


def test_every_response_carries_the_security_headers(
    node: RunningNode, hospital_token: str
) -> None:
    answers = [
        httpx.get(f"{node.url}/health", timeout=10),
        httpx.get(f"{node.url}/records", timeout=10),  # 401 from the route
        httpx.get(f"{node.url}/nowhere", timeout=10),  # 404 from the router
        httpx.get(
            f"{node.url}/records",
            headers={"Authorization": f"Bearer {hospital_token}"},
            timeout=10,
        ),
        httpx.get(f"{node.url}/openapi.json", timeout=10),
    ]
    for answer in answers:
        _hardened(answer.headers)
        assert answer.headers["content-security-policy"] == (
            "default-src 'none'; frame-ancestors 'none'"
        )
        assert answer.headers["strict-transport-security"].startswith("max-age=")  # https URL
    assert [a.status_code for a in answers] == [200, 401, 404, 200, 200]


def test_docs_pages_get_a_policy_that_admits_exactly_their_assets(node: RunningNode) -> None:
    for path in ("/docs", "/redoc"):
        page = httpx.get(f"{node.url}{path}", timeout=10)
        assert page.status_code == 200
        _hardened(page.headers)
        csp = page.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp and "default-src 'none'" in csp
        for url in re.findall(r'(?:src|href)="(https://[^"/]+)/', page.text):
            assert url in csp, (path, url)


def test_cors_answers_only_the_configured_origins(node: RunningNode) -> None:
    url = f"{node.url}/health"
    allowed = httpx.get(url, headers={"Origin": PORTAL}, timeout=10)
    assert allowed.headers["access-control-allow-origin"] == PORTAL
    assert "Origin" in allowed.headers["vary"]
    assert "access-control-allow-credentials" not in allowed.headers
    for origin in ("https://evil.example", "null", PORTAL + ".evil.example"):
        refused = httpx.get(url, headers={"Origin": origin}, timeout=10)
        assert not any(h.startswith("access-control-") for h in refused.headers), origin

    preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "x"}
    ok = httpx.options(f"{node.url}/records", headers={"Origin": PORTAL, **preflight}, timeout=10)
    assert ok.status_code == 204
    assert ok.headers["access-control-allow-origin"] == PORTAL
    assert "POST" in ok.headers["access-control-allow-methods"]
    assert "Authorization" in ok.headers["access-control-allow-headers"]
    evil = httpx.options(
        f"{node.url}/records",
        headers={"Origin": "https://evil.example", **preflight},
        timeout=10,
    )
    assert "access-control-allow-origin" not in evil.headers


async def _app(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


def test_no_cors_and_no_hsts_by_default() -> None:
    async def get() -> httpx.Response:
        app = SecurityHeaders(_app, hsts=False, cors_origins=[])
        transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return await client.get("/health", headers={"Origin": "https://any.example"})

    answer = asyncio.run(get())
    _hardened(answer.headers)
    assert "strict-transport-security" not in answer.headers
    assert not any(h.startswith("access-control-") for h in answer.headers)
    assert "vary" not in answer.headers
