"""Sign-in phishing through the Host header (issue 10, item 1).

A phishing site that proxies to the node must not get a SIWE message naming itself: the
domain and URI come from the configured public URL, and requests for hosts the node does
not serve are refused before any route runs.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from eth_account import Account
from eth_account.messages import encode_defunct
from pydantic import ValidationError

from node.auth import siwe
from node.settings import ApiSettings, Settings
from tests.node.conftest import RunningNode, make_settings, start_node

PUBLIC_URL = "https://emr.hospital.example"


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningNode]:
    data_dir = tmp_path_factory.mktemp("siwe") / "node"
    settings = make_settings(data_dir)
    api = ApiSettings(max_upload_bytes=64 * 1024, public_url=PUBLIC_URL)
    rn = start_node(data_dir, settings.model_copy(update={"api": api}))
    yield rn
    rn.stop()


def _challenge(rn: RunningNode, address: str, **headers: str) -> httpx.Response:
    return httpx.post(
        f"{rn.url}/auth/challenge", json={"address": address}, headers=headers, timeout=30
    )


def _sign(account: Any, message: str) -> dict[str, str]:
    signature = account.sign_message(encode_defunct(text=message)).signature
    return {"message": message, "signature": "0x" + signature.hex()}


def test_challenge_names_the_configured_domain_whatever_the_request_says(
    node: RunningNode,
) -> None:
    account = Account.create()
    port = node.url.rsplit(":", 1)[1]
    for headers in (
        {},
        {"Host": f"localhost:{port}"},  # a name the node answers to, still not its public one
        {"X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "http"},
        {"Forwarded": "host=evil.example;proto=http"},
    ):
        answer = _challenge(node, account.address, **headers)
        assert answer.status_code == 200, (headers, answer.text)
        lines = answer.json()["message"].split("\n")
        assert lines[0] == "emr.hospital.example wants you to sign in with your Ethereum account:"
        assert f"URI: {PUBLIC_URL}" in lines
        assert "evil" not in answer.text and "localhost" not in answer.text


def test_request_for_another_host_is_refused_and_stores_no_challenge(
    node: RunningNode, monkeypatch: pytest.MonkeyPatch
) -> None:
    issued: list[str] = []
    add_challenge = node.node.auth.add_challenge
    monkeypatch.setattr(
        node.node.auth,
        "add_challenge",
        lambda nonce, *a, **kw: (issued.append(nonce), add_challenge(nonce, *a, **kw)),
    )
    address = Account.create().address
    for host in ("evil.example", "emr.hospital.example.evil.example", "evil.example:443", ""):
        answer = _challenge(node, address, Host=host)
        assert answer.status_code == 400, (host, answer.text)
        assert answer.json()["error"] == "untrusted_host"
        assert answer.headers["content-type"] == "application/json"
    assert issued == []
    assert _challenge(node, address).status_code == 200  # the spy itself works
    assert len(issued) == 1


def test_configured_public_host_is_trusted(node: RunningNode) -> None:
    answer = _challenge(node, Account.create().address, Host="EMR.hospital.example")
    assert answer.status_code == 200


def test_login_with_a_message_altered_to_another_domain_fails(node: RunningNode) -> None:
    victim = Account.create()
    message = _challenge(node, victim.address).json()["message"]
    phished = message.replace("emr.hospital.example", "evil.example")
    assert phished != message
    answer = httpx.post(f"{node.url}/auth/login", json=_sign(victim, phished), timeout=30)
    assert answer.status_code == 401
    assert answer.json()["error"] == "unauthenticated"
    # The nonce was spent by the failed attempt: the genuine message no longer logs in.
    again = httpx.post(f"{node.url}/auth/login", json=_sign(victim, message), timeout=30)
    assert again.status_code == 401
    fresh = _challenge(node, victim.address).json()["message"]
    ok = httpx.post(f"{node.url}/auth/login", json=_sign(victim, fresh), timeout=30)
    assert ok.status_code == 200, ok.text


def test_production_settings_without_public_url_refuse_to_build(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ValidationError, match="public_url"):
        Settings(mode="production", data_dir=tmp_path)
    monkeypatch.setenv("EMR_MODE", "production")
    with pytest.raises(ValidationError, match="EMR_API__PUBLIC_URL"):
        Settings()
    monkeypatch.setenv("EMR_API__PUBLIC_URL", "https://emr.hospital.example/")
    assert Settings().api.resolved_public_url == "https://emr.hospital.example"


@pytest.mark.parametrize(
    "url", ["emr.hospital.example", "ftp://emr.example", "https://u:p@emr.example", "https://x?a"]
)
def test_public_url_must_be_a_plain_http_url(url: str) -> None:
    with pytest.raises(ValidationError, match="public_url"):
        ApiSettings(public_url=url)


def test_domain_and_uri_come_from_configuration() -> None:
    assert ApiSettings(port=8711).resolved_public_url == "http://127.0.0.1:8711"
    assert ApiSettings(host="0.0.0.0").resolved_public_url == "http://127.0.0.1:8700"
    assert siwe.origin("https://emr.example:8443/api") == (
        "emr.example:8443",
        "https://emr.example:8443/api",
    )
    assert siwe.origin("https://emr.example", "login.emr.example")[0] == "login.emr.example"
    message = siwe.build_message(
        domain="emr.example",
        address=Account.create().address,
        uri="https://emr.example",
        chain_id=1,
        nonce=siwe.new_nonce(),
        issued_at=0,
        expires_at=1,
    )
    assert siwe.domain_of(message) == "emr.example"
    assert siwe.domain_of("emr.example wants you to sign in") is None
