"""OWASP API2:2023 Broken Authentication.

Sign-In with Ethereum: forged, replayed, expired, edited (other chain id, other domain)
and phished challenges never give a session. Bearer credentials: only an exact, live token
or session counts. EIP-712 consents: a signature for another chain or contract, by another
key, replayed, or malformed is refused with a reason and changes nothing on-chain.
"""

from __future__ import annotations

import hashlib
import json
import time

import httpx
import pytest
from eth_account import Account
from eth_account.messages import encode_defunct

from node.auth import siwe
from node.client import ApiError, EmrClient, Scope
from tests.node.conftest import RunningNode
from tests.node.security.helpers import host_header, raw_request

SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def _sign(account, message: str) -> str:  # type: ignore[no-untyped-def]
    return "0x" + account.sign_message(encode_defunct(text=message)).signature.hex()


def _login(http: httpx.Client, message: str, signature: str) -> httpx.Response:
    return http.post("/auth/login", json={"message": message, "signature": signature})


@pytest.fixture
def http(running_node: RunningNode) -> httpx.Client:
    with httpx.Client(base_url=running_node.url, timeout=30) as c:
        yield c  # type: ignore[misc]


def _challenge(http: httpx.Client, address: str) -> str:
    r = http.post("/auth/challenge", json={"address": address})
    assert r.status_code == 200, r.text
    return str(r.json()["message"])


# -- Sign-In with Ethereum ------------------------------------------------------------------


def test_forged_and_replayed_sign_ins(running_node: RunningNode, http: httpx.Client) -> None:
    alice, eve = Account.create(), Account.create()
    # forged: Eve signs the challenge issued for Alice
    message = _challenge(http, alice.address)
    r = _login(http, message, _sign(eve, message))
    assert r.status_code == 401 and r.json()["error"] == "unauthenticated"
    # the nonce died with that attempt: Alice's own signature no longer opens it
    assert _login(http, message, _sign(alice, message)).status_code == 401

    # replayed: a message that signed in once does not sign in again
    message = _challenge(http, alice.address)
    signature = _sign(alice, message)
    first = _login(http, message, signature)
    assert first.status_code == 200 and first.json()["address"] == alice.address
    again = _login(http, message, signature)
    assert again.status_code == 401 and "nonce" in again.json()["detail"]

    # a nonce the node never issued, in an otherwise well-formed message
    made_up = message.replace(siwe.nonce_of(message) or "", siwe.new_nonce())
    assert _login(http, made_up, _sign(alice, made_up)).status_code == 401


def test_edited_challenges_other_chain_or_domain(
    running_node: RunningNode, http: httpx.Client
) -> None:
    alice = Account.create()
    chain_id = running_node.node.chain.chain_id
    message = _challenge(http, alice.address)
    assert f"Chain ID: {chain_id}" in message
    edits = [
        message.replace(f"Chain ID: {chain_id}", "Chain ID: 1"),  # another chain
        message.replace(message.split(" ", 1)[0], "phish.example", 1),  # another domain
        message.replace("Expiration Time:", "Expiration Time: 2999-01-01T00:00:00Z\nX:"),
        message + "\nResources:\n- https://phish.example/all",
    ]
    for edited in edits:
        assert edited != message
        r = _login(http, edited, _sign(alice, edited))
        assert r.status_code == 401, (edited, r.text)
        message = _challenge(http, alice.address)  # each attempt burns its nonce


def test_expired_challenge(running_node: RunningNode, http: httpx.Client) -> None:
    alice = Account.create()
    api = running_node.node.settings.api
    domain, uri = siwe.origin(api.resolved_public_url, api.siwe_domain)
    nonce, now = siwe.new_nonce(), int(time.time())
    message = siwe.build_message(
        domain=domain,
        address=alice.address,
        uri=uri,
        chain_id=running_node.node.chain.chain_id,
        nonce=nonce,
        issued_at=now - 600,
        expires_at=now - 300,
    )
    running_node.node.auth.add_challenge(nonce, alice.address, message, now - 300)
    r = _login(http, message, _sign(alice, message))
    assert r.status_code == 401 and "expired" in r.json()["detail"]


def test_a_phishing_host_gets_no_challenge(running_node: RunningNode) -> None:
    """A site that proxies to the node under its own name gets no challenge naming itself
    (issue item 1): the Host is refused, and forwarded-host headers change nothing."""
    alice = Account.create()
    body = json.dumps({"address": alice.address}).encode()
    head = (
        b"POST /auth/challenge HTTP/1.1\r\nHost: phish.example\r\n"
        b"Content-Type: application/json\r\nContent-Length: " + str(len(body)).encode()
    )
    r = raw_request(running_node.url, head, body)
    assert 400 <= r.status < 500 and b"phish.example wants you" not in r.body
    head = (
        b"POST /auth/challenge HTTP/1.1\r\n" + host_header(running_node.url) + b"\r\n"
        b"X-Forwarded-Host: phish.example\r\nForwarded: host=phish.example\r\n"
        b"Content-Type: application/json\r\nContent-Length: " + str(len(body)).encode()
    )
    r = raw_request(running_node.url, head, body)
    assert r.status == 200, r.body
    assert b"phish.example" not in r.body


def test_logout_ends_the_session(running_node: RunningNode, public: EmrClient) -> None:
    alice = Account.create()
    session = public.login(alice)
    assert public._json("GET", "/records", token=session) == []
    public.logout(session)
    with pytest.raises(ApiError) as err:
        public._json("GET", "/records", token=session)
    assert err.value.status == 401


# -- bearer credentials ------------------------------------------------------------------


def test_only_exact_live_credentials_count(
    running_node: RunningNode, hospital: EmrClient, http: httpx.Client
) -> None:
    token = hospital.token or ""
    assert http.get("/records", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    leaked_hash = hashlib.sha256(token.encode()).hexdigest()
    wrong = [
        f"Bearer {token}x",
        f"Bearer {token[:-1]}",
        f"Bearer {token.upper()}",
        f"Bearer emr_{leaked_hash}",  # a leaked database row is not a credential
        f"Bearer {leaked_hash}",
        "Bearer emr_",
        "Bearer emrs_" + token.removeprefix("emr_"),  # a token is not a session
        f"Basic {token}",
        f"Token {token}",
        "Bearer",
        "",
    ]
    for header in wrong:
        r = http.get("/records", headers={"Authorization": header})
        assert r.status_code == 401, (header, r.status_code)
        assert r.json()["error"] == "unauthenticated"
        assert r.headers.get("www-authenticate", "").lower().startswith("bearer")


# -- EIP-712 consents -----------------------------------------------------------------------


def _consent_status(public: EmrClient, body: dict) -> tuple[int, str]:  # type: ignore[type-arg]
    with pytest.raises(ApiError) as err:
        public._json("POST", "/consents/grant", json=body)
    assert err.value.detail
    return err.value.status, err.value.detail


def test_consent_signatures_bound_to_chain_contract_key_and_nonce(
    running_node: RunningNode, public: EmrClient
) -> None:
    patient, mallory, reader = Account.create(), Account.create(), Account.create()
    scope = Scope.all()
    domain = public.typed_data()["domain"]
    chain = running_node.node.chain

    for key, value in (
        ("chainId", int(domain["chainId"]) + 1),
        ("chainId", 1),
        ("verifyingContract", Account.create().address),
        ("verifyingContract", running_node.node.chain.deployment.record_registry),
        ("name", "EMR Consent (phish)"),
        ("version", "2"),
    ):
        body = public.sign_consent(
            patient, "Grant", reader.address, scope, domain=dict(domain, **{key: value})
        )
        status, detail = _consent_status(public, body)
        assert status == 400 and key in detail
        body["domain"] = None  # hidden: the signature check refuses it all the same
        status, detail = _consent_status(public, body)
        assert status == 400 and "signature" in detail

    # by another key, presented as the patient's
    body = public.sign_consent(mallory, "Grant", reader.address, scope, nonce=0)
    body["message"]["patient"] = patient.address
    assert _consent_status(public, body)[0] == 400
    # a Revoke signature presented as a Grant
    revoke = public.sign_consent(patient, "Revoke", reader.address, scope)
    grant = public.sign_consent(patient, "Grant", reader.address, scope)
    grant["signature"] = revoke["signature"]
    assert _consent_status(public, grant)[0] == 400
    assert chain.consent_nonce(patient.address) == 0

    # replayed nonce: the same signature twice, and a new signature reusing nonce 0
    body = public.sign_consent(patient, "Grant", reader.address, scope)
    assert public._json("POST", "/consents/grant", json=body)["status"] == "relayed"
    assert _consent_status(public, body)[0] == 409
    reused = public.sign_consent(patient, "Grant", Account.create().address, scope, nonce=0)
    assert _consent_status(public, reused)[0] == 409
    assert chain.consent_nonce(patient.address) == 1


def _variants(signature: bytes) -> list[str]:
    r, s, v = signature[:32], int.from_bytes(signature[32:64], "big"), signature[64]
    high_s = r + (SECP256K1_N - s).to_bytes(32, "big") + bytes([55 - v])  # 27 <-> 28
    return [
        "0x",
        "0x" + "00" * 65,
        "0x" + signature[:64].hex(),  # 64 bytes (no v)
        "0x" + (signature + b"\x00").hex(),  # 66 bytes
        "0x" + (r + s.to_bytes(32, "big") + bytes([v - 27])).hex(),  # v as 0/1
        "0x" + (r + s.to_bytes(32, "big") + bytes([v + 10])).hex(),  # v out of range
        "0x" + high_s.hex(),  # the malleable twin of a valid signature
        "0x" + "ff" * 65,
    ]


def test_malformed_consent_signatures(running_node: RunningNode, public: EmrClient) -> None:
    patient, reader = Account.create(), Account.create()
    body = public.sign_consent(patient, "Grant", reader.address, Scope.all())
    good = bytes.fromhex(body["signature"][2:])
    for variant in _variants(good):
        status, _detail = _consent_status(public, dict(body, signature=variant))
        assert status == 400, variant
    for junk in ("zz", "0xzz", "0x123", "", 5, None, ["0x00"]):
        status, _detail = _consent_status(public, dict(body, signature=junk))
        assert status == 422, junk
    assert running_node.node.chain.consent_nonce(patient.address) == 0
    # the untouched body still works: the refusals were about the signatures
    assert public._json("POST", "/consents/grant", json=body)["status"] == "relayed"
