"""Bad input gets a 4xx with a reason, and changes nothing: not the store, index or chain."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import httpx
import pytest
from eth_account import Account

from node.client import ApiError, EmrClient, Scope
from tests.node.conftest import RunningNode


def _blob_count(rn: RunningNode) -> int:
    path = rn.node.settings.resolved_data_dir / "blobs.sqlite"
    with sqlite3.connect(path) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM blobs").fetchone()[0])


def _head(rn: RunningNode) -> int:
    w3 = rn.node.chain._w3  # type: ignore[attr-defined]
    return int(w3.eth.block_number)


def _status(call) -> tuple[int, str]:  # type: ignore[no-untyped-def]
    with pytest.raises(ApiError) as err:
        call()
    return err.value.status, err.value.detail


@pytest.fixture
def running_node(embedded_node: RunningNode) -> RunningNode:
    """Input validation does not depend on the backends: the embedded node is enough."""
    return embedded_node


@pytest.fixture
def http(running_node: RunningNode) -> httpx.Client:
    with httpx.Client(base_url=running_node.url) as c:
        yield c  # type: ignore[misc]


def test_uploads_refused_without_side_effects(
    running_node: RunningNode, hospital: EmrClient, public: EmrClient
) -> None:
    patient = Account.create().address
    before = (_blob_count(running_node), len(running_node.node.index.list_records(limit=1000)))
    too_big = b"x" * (64 * 1024 + 1)
    assert _status(lambda: hospital.upload(patient, too_big, category="lab"))[0] == 413
    status, detail = _status(lambda: hospital.upload("0x1234", b"x", category="lab"))
    assert status == 400 and "patient" in detail
    assert _status(lambda: hospital.upload(patient, b"x", category="Lab Results!"))[0] == 400
    assert _status(lambda: hospital.upload(patient, b"", category="lab"))[0] == 400
    assert (
        _status(lambda: hospital.upload(patient, b"x", category="lab", content_type="nope"))[0]
        == 400
    )
    unknown_prev = "0x" + "ab" * 32
    assert (
        _status(lambda: hospital.upload(patient, b"x", category="lab", previous_id=unknown_prev))[0]
        == 400
    )
    assert (
        _status(lambda: hospital.upload(patient, b"x", category="lab", previous_id="0x12"))[0]
        == 400
    )
    # authentication and roles
    assert _status(lambda: public.upload(patient, b"x", category="lab"))[0] == 401
    with running_node.client("emr_not-a-token") as bogus:
        assert _status(lambda: bogus.upload(patient, b"x", category="lab"))[0] == 401
    with (
        running_node.client(running_node.admin_token) as admin,
        running_node.client(admin.create_token("a", "auditor")) as auditor,
    ):
        assert _status(lambda: auditor.upload(patient, b"x", category="lab"))[0] == 403
    after = (_blob_count(running_node), len(running_node.node.index.list_records(limit=1000)))
    assert after == before
    assert running_node.node.index.count_pending_anchors() == 0


def test_malformed_requests(
    running_node: RunningNode, http: httpx.Client, hospital: EmrClient
) -> None:
    r = http.post(
        "/consents/grant", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert r.status_code == 422 and "json" in r.text.lower()
    r = http.post("/consents/grant", json={"message": {"patient": 5}, "signature": "zz"})
    assert r.status_code == 422
    r = http.post("/auth/challenge", json={"address": "not-an-address"})
    assert r.status_code == 422 and "Ethereum address" in r.text
    assert http.get("/consents/nonce/0xnothex").status_code == 422
    # unknown and malformed ids
    status, _ = _status(lambda: hospital.record("0x" + "00" * 32))
    assert status == 404
    assert _status(lambda: hospital.record("12345"))[0] == 400
    assert _status(lambda: hospital.receipt("0x" + "11" * 32))[0] == 404
    assert (
        http.get(
            "/audit/events",
            headers={"Authorization": "Bearer " + running_node.admin_token},
            params={"patient": "0x1"},
        ).status_code
        == 400
    )


def test_consent_signatures_refused_without_state_change(
    running_node: RunningNode, public: EmrClient
) -> None:
    patient, mallory, grantee = Account.create(), Account.create(), Account.create()
    head = _head(running_node)
    scope = Scope.all()
    domain = public.typed_data()["domain"]

    # signed by someone else
    body = public.sign_consent(mallory, "Grant", grantee.address, scope, nonce=0)
    body["message"]["patient"] = patient.address
    status, detail = _status(lambda: public._json("POST", "/consents/grant", json=body))
    assert status == 400 and "signature" in detail

    # expired deadline
    body = public.sign_consent(patient, "Grant", grantee.address, scope, deadline_in=-10)
    status, detail = _status(lambda: public._json("POST", "/consents/grant", json=body))
    assert status == 400 and "deadline" in detail

    # wrong chain id / wrong contract in the signed domain, named when the domain is sent ...
    for key, value in (("chainId", 1), ("verifyingContract", Account.create().address)):
        bad = dict(domain, **{key: value})
        body = public.sign_consent(patient, "Grant", grantee.address, scope, domain=bad)
        status, detail = _status(lambda b=body: public._json("POST", "/consents/grant", json=b))
        assert status == 400 and key in detail
        # ... and still refused (by the signature check) when the caller hides it
        body["domain"] = None
        status, detail = _status(lambda b=body: public._json("POST", "/consents/grant", json=b))
        assert status == 400 and "signature" in detail

    # scope that does not match its kind
    body = public.sign_consent(patient, "Grant", grantee.address, Scope(scope.kind, b"\x01" * 32))
    assert _status(lambda: public._json("POST", "/consents/grant", json=body))[0] == 400

    assert _head(running_node) == head  # nothing was sent to the chain
    assert running_node.node.chain.consent_nonce(patient.address) == 0

    # a good grant, then its replay
    body = public.sign_consent(patient, "Grant", grantee.address, scope)
    public._json("POST", "/consents/grant", json=body)
    head = _head(running_node)
    status, detail = _status(lambda: public._json("POST", "/consents/grant", json=body))
    assert status == 409 and "nonce" in detail
    assert _head(running_node) == head
    assert running_node.node.chain.consent_nonce(patient.address) == 1


def test_sign_in_refusals(running_node: RunningNode, http: httpx.Client, public: EmrClient) -> None:
    from eth_account.messages import encode_defunct

    alice, eve = Account.create(), Account.create()
    ch = http.post("/auth/challenge", json={"address": alice.address}).json()
    forged = eve.sign_message(encode_defunct(text=ch["message"])).signature.hex()
    r = http.post("/auth/login", json={"message": ch["message"], "signature": "0x" + forged})
    assert r.status_code == 401 and alice.address in r.text
    # the nonce was consumed by that attempt: a correct signature no longer works with it
    good = alice.sign_message(encode_defunct(text=ch["message"])).signature.hex()
    r = http.post("/auth/login", json={"message": ch["message"], "signature": "0x" + good})
    assert r.status_code == 401 and "nonce" in r.text
    # an edited message is refused even with a valid signature over it
    ch = http.post("/auth/challenge", json={"address": alice.address}).json()
    edited = ch["message"].replace("Chain ID:", "Chain ID: 1 ")
    sig = alice.sign_message(encode_defunct(text=edited)).signature.hex()
    r = http.post("/auth/login", json={"message": edited, "signature": "0x" + sig})
    assert r.status_code == 401
    # expired challenge
    running_node.node.auth.add_challenge(
        "deadbeefdeadbeef", alice.address, "Nonce: deadbeefdeadbeef", int(time.time()) - 1
    )
    sig = alice.sign_message(encode_defunct(text="Nonce: deadbeefdeadbeef")).signature.hex()
    r = http.post(
        "/auth/login", json={"message": "Nonce: deadbeefdeadbeef", "signature": "0x" + sig}
    )
    assert r.status_code == 401 and "expired" in r.text
    # bogus session
    assert _status(lambda: public.read("0x" + "00" * 32, "emrs_bogus"))[0] == 401


def test_break_glass_needs_reason_and_bounded_duration(
    running_node: RunningNode, hospital: EmrClient, public: EmrClient
) -> None:
    patient, doc, boss = (Account.create().address for _ in range(3))
    hospital.add_clinician(doc, "physician")
    hospital.add_clinician(boss, "physician")
    head = _head(running_node)
    # A blank reason is schema-invalid (the reason pattern): 422, nothing sent.
    assert _status(lambda: hospital.break_glass(patient, doc, "   ", approved_by=boss))[0] == 422
    assert _status(lambda: hospital.break_glass(patient, doc, "", approved_by=boss))[0] == 422
    assert _status(lambda: hospital.break_glass(patient, doc, "ER"))[0] == 422  # no approver
    status, detail = _status(
        lambda: hospital.break_glass(patient, doc, "ER", approved_by=boss, duration=10**7)
    )
    assert status == 400 and "max_duration" in detail
    assert _head(running_node) == head
    # only hospital systems may open it
    with (
        running_node.client(running_node.admin_token) as admin,
        running_node.client(admin.create_token("a", "auditor")) as auditor,
    ):
        assert _status(lambda: auditor.break_glass(patient, doc, "ER", approved_by=boss))[0] == 403


def test_data_dir_files_keep_secrets_out(running_node: RunningNode) -> None:
    data_dir: Path = running_node.node.settings.resolved_data_dir
    token = running_node.admin_token
    for path in data_dir.rglob("*"):
        if path.is_file() and path.name != "admin-token":
            assert token.encode() not in path.read_bytes(), path
    assert (data_dir / "admin-token").stat().st_mode & 0o077 == 0
