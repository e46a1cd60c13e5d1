"""OWASP API4:2023 Unrestricted Resource Consumption.

- Bodies: an upload or JSON body over its limit is refused with 413 from its declared size,
  before the body arrives; an unauthenticated upload gets 401 before its body is read; a
  body streamed without a length is cut at the limit; a stalled body gets 408.
- Parsers: deeply nested JSON (well under the size limit) is refused, and the node process
  survives it; huge numbers and strings in queries, paths and bodies get a 4xx.
- Pages are capped: list sizes and page numbers have bounds.
- Floods: anonymous callers share a strict bucket (429 with Retry-After), made-up tokens
  are anonymous callers, and a hospital's real token keeps being served meanwhile.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from eth_account import Account

from node.settings import ThrottleSettings
from tests.node.conftest import RunningNode, _free_port, make_settings, start_node
from tests.node.production import TEST_ZK_KEYS
from tests.node.security.helpers import Callers, host_header, make_callers, raw_request

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def rn(module_node: RunningNode) -> RunningNode:
    return module_node


@pytest.fixture(scope="module")
def who(module_callers: Callers) -> Callers:
    return module_callers


def _head(rn: RunningNode, request_line: str, *headers: str) -> bytes:
    lines = [request_line.encode(), host_header(rn.url), *(h.encode() for h in headers)]
    return b"\r\n".join(lines)


# -- bodies ------------------------------------------------------------------------------


def test_oversize_upload_refused_from_its_declared_size(rn: RunningNode, who: Callers) -> None:
    limit = rn.node.settings.api.max_upload_bytes
    r = raw_request(
        rn.url,
        _head(
            rn,
            "POST /records HTTP/1.1",
            f"Authorization: Bearer {who.hospital}",
            "Content-Type: multipart/form-data; boundary=xyz",
            f"Content-Length: {100 * limit}",
        ),
        b"--xyz\r\n",  # a first byte, then nothing: the node must not wait for the rest
    )
    assert r.status == 413, r
    assert json.loads(r.body)["error"] == "payload_too_large"


@pytest.mark.parametrize("credential", [None, "emr_" + "B" * 43, "emrs_" + "B" * 43])
def test_unauthenticated_upload_refused_before_its_body(
    rn: RunningNode, credential: str | None
) -> None:
    headers = ["Content-Type: multipart/form-data; boundary=xyz", "Content-Length: 50000"]
    if credential:
        headers.append(f"Authorization: Bearer {credential}")
    r = raw_request(rn.url, _head(rn, "POST /records HTTP/1.1", *headers), b"--xyz\r\n")
    assert r.status == 401, r
    assert json.loads(r.body)["error"] == "unauthenticated"


def test_oversize_json_refused_on_anonymous_routes(rn: RunningNode) -> None:
    limit = rn.node.settings.api.max_json_bytes
    for path in ("/consents/grant", "/auth/login", "/zk/records/0x" + "00" * 32 + "/read"):
        r = raw_request(
            rn.url,
            _head(
                rn,
                f"POST {path} HTTP/1.1",
                "Content-Type: application/json",
                f"Content-Length: {limit + 1}",
            ),
            b'{"message": "',
        )
        assert r.status == 413, (path, r)


def test_chunked_body_cut_at_the_limit(rn: RunningNode) -> None:
    """No declared length: the node counts while it streams and stops reading at the limit."""
    limit = rn.node.settings.api.max_json_bytes
    chunk = b"a" * 65536
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(limit // len(chunk) + 2))
    r = raw_request(
        rn.url,
        _head(
            rn,
            "POST /consents/grant HTTP/1.1",
            "Content-Type: application/json",
            "Transfer-Encoding: chunked",
        ),
        chunks,  # never terminated: only the limit can end it
    )
    assert r.status == 413, r


@pytest.fixture
def impatient_node(tmp_path: Path) -> Iterator[RunningNode]:
    settings = make_settings(tmp_path / "node")
    api = settings.api.model_copy(update={"body_timeout": 1.0, "body_total_timeout": 3.0})
    node = start_node(tmp_path / "node", settings.model_copy(update={"api": api}))
    yield node
    node.stop()


def test_stalled_body_gets_408(impatient_node: RunningNode) -> None:
    rn = impatient_node
    body = json.dumps({"address": Account.create().address}).encode()
    r = raw_request(
        rn.url,
        _head(
            rn,
            "POST /auth/challenge HTTP/1.1",
            "Content-Type: application/json",
            f"Content-Length: {len(body)}",
        ),
        body[:5],  # the rest never comes
        within=20,
    )
    assert r.status == 408, r


# -- parsers ---------------------------------------------------------------------------------


@pytest.fixture
def node_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A node as operators run it (`emr-node run`, its own process): a crash of the process
    shows as a dead process, not as a dead test session."""
    data = tmp_path_factory.mktemp("proc") / "node"
    port = _free_port()
    env = {
        **os.environ,
        "EMR_HSM__PASSPHRASE": "test passphrase",
        "EMR_HSM__SCRYPT_N": str(2**10),
        "EMR_ZK__KEYS_DIR": str(TEST_ZK_KEYS),
        "EMR_CHAIN__KEY_AUDIT_ANCHOR_INTERVAL": "3600",
    }
    log = (data.parent / "node.log").open("wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "node.cli.main",
            "run",
            "--data-dir",
            str(data),
            "--port",
            str(port),
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    try:
        while True:
            assert proc.poll() is None, (data.parent / "node.log").read_text()[-3000:]
            try:
                if httpx.get(url + "/info", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the node process did not start"
            time.sleep(0.3)
        yield url
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def test_deeply_nested_json_is_refused_and_the_node_survives(node_process: str) -> None:
    """~600 KB of nested brackets (under the 1 MiB body limit) must not exhaust the C stack
    of the JSON parser: py_ecc raises the interpreter's recursion limit to 100,000 on
    import, so Python's own guard no longer stops the parser before the stack ends."""
    depth = 300_000
    bodies = [b"[" * depth + b"]" * depth, b'{"a":' * (depth // 5) + b"1" + b"}" * (depth // 5)]
    for path in ("/consents/grant", "/auth/challenge"):
        for body in bodies:
            try:
                r = httpx.post(
                    node_process + path,
                    content=body,
                    headers={"Content-Type": "application/json"},
                    timeout=60,
                )
            except httpx.HTTPError as err:
                pytest.fail(f"{path}: the node dropped the connection ({err!r})")
            assert 400 <= r.status_code < 500, (path, r.status_code, r.text[:200])
            assert httpx.get(node_process + "/info", timeout=10).status_code == 200


def test_huge_numbers_and_strings_get_a_4xx(rn: RunningNode, who: Callers) -> None:
    big = str(2**70)
    huge = "9" * 5000  # past Python's int-from-string digit limit (4300)
    rid = "0x" + "00" * 32
    auditor, admin = who.headers("auditor"), who.headers("admin")
    requests = [
        ("GET", "/records", {"limit": big}, admin),
        ("GET", "/records", {"offset": big}, admin),
        ("GET", "/records", {"offset": huge}, admin),
        ("GET", "/audit/events", {"since": big, "source": "mirror"}, auditor),
        ("GET", "/audit/events", {"until": "-" + big, "source": "mirror"}, auditor),
        ("GET", "/audit/events", {"since": huge}, auditor),
        ("GET", "/audit/keys", {"after": big}, auditor),
        ("GET", "/audit/keys", {"limit": big}, auditor),
        ("GET", "/consents/relays/" + big, None, {}),
        ("GET", "/consents/relays/" + huge, None, {}),
        ("GET", "/governance/proposals/" + huge, None, {}),
        ("GET", "/zk/accesses/readers", {"record_id": rid, "from": big}, auditor),
        ("GET", "/zk/policies/" + "a" * 5000, None, {}),
        ("GET", "/records/" + "0x" + "0" * 5000, None, admin),
    ]
    bodies = [
        ("/consents/grant", b'{"message": {"nonce": ' + huge.encode() + b'}, "signature": "0x"}'),
        ("/auth/challenge", b'{"address": "0x' + b"1" * 100_000 + b'"}'),
        ("/zk/records/" + rid + "/read", b'{"root": ' + huge.encode() + b"}"),
    ]
    wrong = []
    # one connection per request: after a 500 the server may close a kept-alive one
    for method, path, params, headers in requests:
        r = httpx.request(method, rn.url + path, params=params, headers=headers, timeout=60)
        if not (400 <= r.status_code < 500 and r.json().get("detail")):
            wrong.append((path[:60], params, r.status_code, r.text[:120]))
    for path, body in bodies:
        r = httpx.post(
            rn.url + path, content=body, headers={"Content-Type": "application/json"}, timeout=60
        )
        if not 400 <= r.status_code < 500:
            wrong.append((path[:60], body[:40], r.status_code, r.text[:120]))
    assert not wrong, wrong


def test_pages_and_batches_are_capped(rn: RunningNode, who: Callers) -> None:
    with httpx.Client(base_url=rn.url, timeout=60) as http:
        admin, auditor = who.headers("admin"), who.headers("auditor")
        assert http.get("/records", params={"limit": 1001}, headers=admin).status_code == 422
        assert http.get("/audit/keys", params={"limit": 10_001}, headers=auditor).status_code == 422
        many = [
            {"identity_commitment": str(i + 1), "clinician": Account.create().address}
            for i in range(33)
        ]
        r = http.post(
            "/zk/credentials", json={"credentials": many}, headers=who.headers("hospital")
        )
        assert r.status_code == 422
        r = http.post("/zk/policies/lab/proposals", json={"roles": ["nurse"] * 17}, headers=admin)
        assert r.status_code == 422


# -- floods --------------------------------------------------------------------------------


@pytest.fixture
def throttled_node(tmp_path: Path) -> Iterator[RunningNode]:
    settings = make_settings(tmp_path / "node")
    throttle = ThrottleSettings(enabled=True, anonymous_rate=0.5, anonymous_burst=5)
    node = start_node(tmp_path / "node", settings.model_copy(update={"throttle": throttle}))
    yield node
    node.stop()


def test_anonymous_floods_are_throttled_and_real_tokens_are_not(
    throttled_node: RunningNode,
) -> None:
    rn = throttled_node
    callers = make_callers(rn)
    fake = {"Authorization": "Bearer emr_" + "F" * 43}
    hospital = callers.headers("hospital")
    with httpx.Client(base_url=rn.url, timeout=30) as http:
        statuses = [http.get("/info").status_code for _ in range(10)]
        assert 429 in statuses and statuses[0] == 200, statuses
        r = http.get("/info")
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
        assert r.json()["error"] == "rate_limited" and r.json()["detail"]
        # made-up tokens are anonymous callers: they do not escape the bucket ...
        assert http.get("/records", headers=fake).status_code == 429
        for i in range(30):
            http.get("/records", headers={"Authorization": f"Bearer emr_{i:043d}"})
        # ... and do not drain the hospital's: its real token is still served
        for _ in range(20):
            assert http.get("/records", headers=hospital).status_code == 200
