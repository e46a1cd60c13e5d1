"""Structured logs: one JSON object per line with the request id, which the response
echoes (header and error body); no PHI, keys or tokens in the logs of real flows."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import httpx
import pytest
from eth_account import Account

from node.client import ApiError, Scope
from node.observability.logging import configure_logging, new_request_id, scrub
from tests.node.conftest import RunningNode


class Captured:
    def __init__(self) -> None:
        self.stream = io.StringIO()

    def text(self) -> str:
        return self.stream.getvalue()


@pytest.fixture
def json_logs() -> Iterator[Captured]:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    captured = Captured()
    configure_logging("json", "INFO", stream=captured.stream)
    try:
        yield captured
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])


def _lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_request_ids(embedded_node: RunningNode, json_logs: Captured) -> None:
    rn = embedded_node
    ok = httpx.get(f"{rn.url}/info", headers={"X-Request-ID": "lb-1234.abc"})
    assert ok.status_code == 200 and ok.headers["x-request-id"] == "lb-1234.abc"
    unsafe = httpx.get(f"{rn.url}/info", headers={"X-Request-ID": "a b<script>"})
    generated = unsafe.headers["x-request-id"]
    assert generated != "a b<script>" and len(generated) == 32
    # an error body carries the id too
    missing = httpx.get(f"{rn.url}/records", headers={"X-Request-ID": "req-401"})
    assert missing.status_code == 401
    assert missing.json()["request_id"] == "req-401" == missing.headers["x-request-id"]
    assert httpx.get(f"{rn.url}/nowhere").json()["request_id"]

    lines = _lines(json_logs.text())
    requests = [e for e in lines if e["logger"] == "node.api.request"]
    seen = {e["request_id"]: e for e in requests}
    assert {"lb-1234.abc", generated, "req-401"} <= set(seen)
    entry = seen["req-401"]
    assert entry["route"] == "/records" and entry["status"] == 401
    assert {"time", "level", "message", "duration", "method"} <= set(entry)
    assert seen[generated]["route"] == "/info"


def test_a_500_names_its_request(
    embedded_node: RunningNode,
    json_logs: Captured,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rn = embedded_node

    def broken() -> list[tuple[str, str]]:
        raise RuntimeError("boom")

    monkeypatch.setattr(rn.node.chain, "members", broken)
    r = httpx.get(f"{rn.url}/info", headers={"X-Request-ID": "trace-500"})
    assert r.status_code == 500
    assert r.headers["x-request-id"] == "trace-500"
    assert r.json()["request_id"] == "trace-500" and "trace-500" in r.json()["detail"]
    lines = _lines(json_logs.text())
    failure = [e for e in lines if e["level"] == "error" and e.get("request_id") == "trace-500"]
    assert failure and "RuntimeError" in str(failure[0]["exception"])


def test_no_phi_keys_or_tokens_in_logs(embedded_node: RunningNode, json_logs: Captured) -> None:
    rn = embedded_node
    patient, ada = Account.create(), Account.create()
    content = b"HIV viral load undetectable 2026-12-01"
    with rn.client(rn.admin_token) as admin:
        token = admin.create_token("ehr", "hospital")
    with rn.client(token) as hospital, rn.client() as public:
        rid = hospital.upload(patient.address, content, category="lab")["record_id"]
        hospital.wait_anchored(rid, timeout=30)
        public.grant(patient, ada.address, Scope.record(rid))
        session = public.login(ada)
        assert public.read(rid, session).content == content
        with pytest.raises(ApiError):
            public.read(rid, public.login(Account.create()))
        httpx.get(f"{rn.url}/metrics", headers={"Authorization": f"Bearer {token}"})
        httpx.get(
            f"{rn.url}/records",
            params={"patient": patient.address},
            headers={"Authorization": f"Bearer {token}"},
        )
    rn.node.access_flusher.flush_now()
    text = json_logs.text()
    lines = _lines(text)  # every line is one JSON object
    assert len(lines) >= 8
    lowered = text.lower()
    for secret in (
        patient.address.lower(),
        patient.address.lower()[2:],
        ada.address.lower()[2:],
        token.lower(),
        session.lower(),
        rn.admin_token.lower(),
        "test passphrase",
        content.decode().lower(),
        content.hex(),
    ):
        assert secret not in lowered, secret


def test_scrub_and_request_id_rules() -> None:
    assert scrub("Authorization: Bearer emr_abcdefgh12345678") == "Authorization: [redacted]"
    assert "emrs_" not in scrub("session emrs_0123456789abcdef failed")
    assert "hunter2" not in scrub("passphrase=hunter2")
    assert new_request_id("ok-1") == "ok-1"
    assert new_request_id("x" * 65) != "x" * 65
    assert new_request_id(None) != new_request_id(None)


def test_default_handler_follows_stderr_after_its_stand_in_is_closed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A CLI runner or a test's capture swaps sys.stderr and closes its stand-in: records
    logged afterwards reach the stderr of the moment, with no '--- Logging error ---'."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    first, second = io.StringIO(), io.StringIO()
    try:
        monkeypatch.setattr("sys.stderr", first)
        configure_logging("json", "INFO")
        logging.getLogger("node.test").info("while swapped")
        first.close()
        monkeypatch.setattr("sys.stderr", second)
        logging.getLogger("node.test").info("after the stand-in closed")
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    lines = _lines(second.getvalue())
    assert [e["message"] for e in lines] == ["after the stand-in closed"], second.getvalue()
    assert "Logging error" not in second.getvalue()
