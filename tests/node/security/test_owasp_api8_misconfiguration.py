"""OWASP API8:2023 Security Misconfiguration: hardening headers and CORS.

Every response, success or error (including the edge's own refusals), carries nosniff,
no-store, a frame ban and a content security policy; a record served in a browser-active
type (HTML, SVG) cannot run as a page of the node's origin. CORS answers only configured
origins, by name: never ``*``, never a reflected stranger, never credentials for a wildcard.
Errors carry no stack trace, and the server does not advertise debug pages.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from eth_account import Account

from tests.node.conftest import RunningNode, make_settings, start_node
from tests.node.security.helpers import Callers, host_header, make_callers, raw_request

ORIGIN = "https://ehr.hospital.example"
EVIL = "https://evil.example"


def _hardened(headers: httpx.Headers | dict[str, str], where: str) -> None:
    h = {k.lower(): v for k, v in headers.items()}
    assert h.get("x-content-type-options") == "nosniff", where
    assert "no-store" in h.get("cache-control", ""), where
    csp = h.get("content-security-policy", "")
    assert "frame-ancestors 'none'" in csp or h.get("x-frame-options") == "DENY", where
    assert csp, where
    assert h.get("access-control-allow-origin") in (None, ORIGIN), where


@pytest.fixture(scope="module")
def cors_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningNode]:
    data = tmp_path_factory.mktemp("cors") / "node"
    settings = make_settings(data)
    api = settings.api.model_copy(update={"cors_origins": [ORIGIN]})
    rn = start_node(data, settings.model_copy(update={"api": api}))
    yield rn
    rn.stop()


@pytest.fixture(scope="module")
def who(cors_node: RunningNode) -> Callers:
    return make_callers(cors_node)


def test_every_kind_of_response_is_hardened(cors_node: RunningNode, who: Callers) -> None:
    rn = cors_node
    with httpx.Client(base_url=rn.url, timeout=30) as http:
        responses = {
            "200 json": http.get("/info"),
            "401": http.get("/records"),
            "403": http.get("/admin/keys", headers=who.headers("hospital")),
            "404 route": http.get("/no/such/route"),
            "404 record": http.get("/records/0x" + "00" * 32, headers=who.headers("hospital")),
            "405": http.delete("/info"),
            "422": http.post("/auth/challenge", json={"address": "nope"}),
            "400": http.get("/records/12", headers=who.headers("hospital")),
            "openapi": http.get("/openapi.json"),
        }
    for where, r in responses.items():
        _hardened(r.headers, where)
    # the edge's own refusals too: a body too large, an untrusted host
    refused = raw_request(
        rn.url,
        b"POST /consents/grant HTTP/1.1\r\n"
        + host_header(rn.url)
        + b"\r\nContent-Type: application/json\r\nContent-Length: 99999999",
    )
    assert refused.status == 413
    _hardened({k: refused.header(k) or "" for k in _NAMES}, "413 edge")
    refused = raw_request(rn.url, b"GET /info HTTP/1.1\r\nHost: evil.example")
    assert refused.status == 400
    _hardened({k: refused.header(k) or "" for k in _NAMES}, "400 untrusted host")


_NAMES = ("x-content-type-options", "cache-control", "content-security-policy", "x-frame-options")


@pytest.mark.parametrize(
    "media_type", ["text/html", "image/svg+xml", "application/javascript", "text/xml"]
)
def test_active_content_in_records_cannot_run(
    cors_node: RunningNode, who: Callers, media_type: str
) -> None:
    """A record is patient data, never a page of the node: stored HTML or script is served
    with a policy that forbids scripts and framing, and without sniffing."""
    rn = cors_node
    patient = Account.create()
    payload = b"<html><script>fetch('/admin/keys')</script></html>"
    with httpx.Client(base_url=rn.url, timeout=30) as http:
        r = http.post(
            "/records",
            headers=who.headers("hospital"),
            data={"patient": patient.address, "category": "note", "content_type": media_type},
            files={"file": ("r", payload, media_type)},
        )
        assert r.status_code == 201, r.text
        with rn.client() as c:
            session = c.login(patient)
        read = http.get(
            f"/records/{r.json()['record_id']}/content",
            headers={"Authorization": f"Bearer {session}"},
        )
    assert read.status_code == 200 and read.content == payload
    _hardened(read.headers, media_type)
    csp = read.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src" not in csp


def test_cors_only_for_configured_origins(cors_node: RunningNode, who: Callers) -> None:
    with httpx.Client(base_url=cors_node.url, timeout=30) as http:
        preflight = {
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "Authorization",
        }
        for origin in (EVIL, "null", ORIGIN + ".evil.example", "http://ehr.hospital.example"):
            r = http.options("/records", headers={"Origin": origin, **preflight})
            assert "access-control-allow-origin" not in r.headers, origin
            r = http.get("/info", headers={"Origin": origin})
            assert "access-control-allow-origin" not in r.headers, origin
            assert "access-control-allow-credentials" not in r.headers, origin
        r = http.options("/records", headers={"Origin": ORIGIN, **preflight})
        assert r.status_code in (200, 204)
        assert r.headers["access-control-allow-origin"] == ORIGIN
        assert "authorization" in r.headers["access-control-allow-headers"].lower()
        r = http.get("/records", headers={"Origin": ORIGIN, **who.headers("hospital")})
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == ORIGIN
        assert "origin" in r.headers.get("vary", "").lower()


def test_default_node_allows_no_cross_origin_calls(tmp_path: Path) -> None:
    rn = start_node(tmp_path / "node")
    try:
        with httpx.Client(base_url=rn.url, timeout=30) as http:
            r = http.options(
                "/info", headers={"Origin": ORIGIN, "Access-Control-Request-Method": "GET"}
            )
            assert "access-control-allow-origin" not in r.headers
            assert (
                "access-control-allow-origin"
                not in http.get("/info", headers={"Origin": "*"}).headers
            )
    finally:
        rn.stop()


def test_errors_carry_no_stack_trace_or_server_internals(
    cors_node: RunningNode, who: Callers
) -> None:
    with httpx.Client(base_url=cors_node.url, timeout=30) as http:
        for r in (
            http.post(
                "/consents/grant",
                content=b"{not json",
                headers={"Content-Type": "application/json"},
            ),
            http.get("/records", params={"limit": "x"}, headers=who.headers("hospital")),
            http.post("/records", headers=who.headers("hospital"), files={"file": ("r", b"")}),
            http.request("TRACE", "/info"),
        ):
            assert 400 <= r.status_code < 500
            # issue 14: and the request's id, as in the X-Request-ID header
            assert set(r.json()) == {"error", "detail", "request_id"}, r.text
            assert r.json()["request_id"] == r.headers["x-request-id"]
            for leak in ("Traceback", 'File "', "/work/", "site-packages", "sqlite3."):
                assert leak not in r.text, r.text
