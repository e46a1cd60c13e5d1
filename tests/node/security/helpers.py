"""Helpers of the OWASP API Security Top 10 suite: callers of every kind of one node,
raw-socket requests (for what an HTTP client will not send) and bounded fuzzing settings."""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from hypothesis import HealthCheck, settings

from tests.node.conftest import RunningNode

# Fuzzing in CI: a fixed budget and a fixed seed (failures reproduce; nothing is stored).
FUZZ = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@dataclass
class Callers:
    """Every kind of caller of one node: tokens by role, a signed-in wallet, nobody."""

    url: str
    admin: str
    hospital: str
    auditor: str
    wallet: str  # a session of ``wallet_account``
    wallet_account: LocalAccount

    def headers(self, who: str) -> dict[str, str]:
        token = {
            "anonymous": None,
            "bogus": "emr_" + "A" * 43,
            "wallet": self.wallet,
            "hospital": self.hospital,
            "auditor": self.auditor,
            "admin": self.admin,
        }[who]
        return {"Authorization": f"Bearer {token}"} if token else {}


def make_callers(rn: RunningNode) -> Callers:
    with rn.client(rn.admin_token) as admin:
        hospital = admin.create_token("sec-hospital", "hospital")
        auditor = admin.create_token("sec-auditor", "auditor")
        account = Account.create()
        session = admin.login(account)
    return Callers(rn.url, rn.admin_token, hospital, auditor, session, account)


# -- raw HTTP ------------------------------------------------------------------------------


def host_port(url: str) -> tuple[str, int]:
    parsed = httpx.URL(url)
    return parsed.host, int(parsed.port or 80)


@dataclass
class RawResponse:
    status: int
    head: str
    body: bytes

    def header(self, name: str) -> str | None:
        for line in self.head.split("\r\n")[1:]:
            key, _, value = line.partition(":")
            if key.strip().lower() == name.lower():
                return value.strip()
        return None


def raw_request(url: str, head: bytes, body: bytes = b"", *, within: float = 15.0) -> RawResponse:
    """Send ``head`` (request line and headers, without the blank line) and ``body``, then
    read the answer. The node must answer within ``within`` seconds (a bounded wait, not a
    timing claim): the point is that it answers *without* the rest of the body."""
    host, port = host_port(url)
    deadline = time.monotonic() + within
    with socket.create_connection((host, port), timeout=within) as sock:
        sock.sendall(head + b"\r\n\r\n" + body)
        data = b""
        while b"\r\n\r\n" not in data:
            sock.settimeout(max(0.1, deadline - time.monotonic()))
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                pytest.fail(f"no answer within {within} s; got {data[:200]!r}")
            if not chunk:
                break
            data += chunk
        head_text, _, rest = data.partition(b"\r\n\r\n")
        text = head_text.decode("latin-1")
        status = int(text.split(" ", 2)[1]) if text.startswith("HTTP/") else 0
        length = None
        for line in text.split("\r\n")[1:]:
            key, _, value = line.partition(":")
            if key.strip().lower() == "content-length":
                length = int(value.strip())
        while length is not None and len(rest) < length and time.monotonic() < deadline:
            sock.settimeout(max(0.1, deadline - time.monotonic()))
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            rest += chunk
    return RawResponse(status, text, rest)


def host_header(url: str) -> bytes:
    host, port = host_port(url)
    return f"Host: {host}:{port}".encode()


def data_dir(rn: RunningNode) -> Path:
    return rn.node.settings.resolved_data_dir
