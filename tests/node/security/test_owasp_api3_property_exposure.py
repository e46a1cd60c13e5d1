"""OWASP API3:2023 Broken Object Property Level Authorization: excessive data exposure and
mass assignment.

Exposure: every GET route, called by every kind of caller, answers without credentials
(tokens, sessions or their hashes), wrapped data keys, the key store passphrase, record
content (outside the content route) or another patient's data; KEK versions reach admins
only; error bodies do not echo what the caller sent.

Mass assignment: fields a caller adds to a body to set what the node decides (creator,
record id, KEK version, token, role, times, SIWE domain, the reader of a consent) are
refused (422) or ignored, never applied.
"""

from __future__ import annotations

import base64
import hashlib
import time
from typing import Any

import httpx
from eth_account import Account
from eth_account.messages import encode_defunct

from node.api.edge import api_routes
from node.client import EmrClient, Scope
from tests.node.conftest import RunningNode
from tests.node.security.helpers import make_callers

PHI = b"SECRET-PHI potassium 9.9 mmol/L"
# Routes whose answer is not JSON metadata: the content routes (the record's own route and its
# FHIR Binary and DICOMweb WADO-RS façades, each the consent-checked read flow), the proving
# key and the documentation pages.
NOT_JSON = {
    "/zk/proving-key",
    "/records/{record_id}/content",
    "/fhir/Binary/{record_id}",
    "/dicomweb/studies/{study}/series/{series}/instances/{sop}",
    "/docs",
    "/redoc",
}


def _secrets(rn: RunningNode, tokens: list[str], record_id: str) -> dict[str, str]:
    row = rn.node.index.get_record(bytes.fromhex(record_id[2:]))
    found = {
        "record content": PHI.decode(),
        "record content in base64": base64.b64encode(PHI).decode(),  # FHIR attachment data
        "wrapped data key": row.wrapped_key.hex(),
    }
    for i, token in enumerate(tokens):
        found[f"credential {i}"] = token
        found[f"credential {i} hash"] = hashlib.sha256(token.encode()).hexdigest()
    passphrase = rn.node.settings.hsm.passphrase
    if passphrase is not None:
        found["key store passphrase"] = passphrase.get_secret_value()
    return found


def test_no_route_exposes_secrets_or_other_patients_data(
    running_node: RunningNode, hospital: EmrClient, public: EmrClient
) -> None:
    rn = running_node
    callers = make_callers(rn)
    patient, other = Account.create(), Account.create()
    rid = hospital.upload(patient.address, PHI, category="lab")["record_id"]
    other_rid = hospital.upload(other.address, b"other patient", category="lab")["record_id"]
    hospital.wait_anchored(rid)
    patient_s = public.login(patient)
    secrets = _secrets(
        rn, [callers.admin, callers.hospital, callers.auditor, callers.wallet, patient_s], rid
    )
    values = {
        "record_id": rid,
        "patient": patient.address,
        "address": patient.address,
        "category": "lab",
        "proposal_id": "1",
        "relay_id": "1",
    }
    who_headers = {
        "anonymous": {},
        "patient": {"Authorization": f"Bearer {patient_s}"},
        "hospital": callers.headers("hospital"),
        "auditor": callers.headers("auditor"),
        "admin": callers.headers("admin"),
    }
    app = rn.server.config.app
    answered = 0
    with httpx.Client(base_url=rn.url, timeout=60) as http:
        for path, route in api_routes(app):  # type: ignore[arg-type]
            if "GET" not in (route.methods or ()) or path in NOT_JSON:
                continue
            try:
                url = path.format(**values)
            except KeyError:
                continue  # a path parameter with no meaningful value here (reason hash)
            params = {"record_id": rid} if path == "/zk/accesses/readers" else None
            for who, headers in who_headers.items():
                r = http.get(url, headers=headers, params=params)
                assert r.status_code < 500, (who, path, r.text)
                text = r.text
                for name, secret in secrets.items():
                    assert secret not in text, f"{path} shows {who} the {name}"
                assert "wrapped_key" not in text and "token_hash" not in text, (who, path)
                if who != "admin":
                    assert "kek_version" not in text, (who, path)
                if who == "patient" and r.status_code == 200:
                    assert other.address[2:].lower() not in text.lower(), path
                    assert other_rid[2:] not in text, path
                answered += r.status_code == 200
    assert answered >= 40


def test_error_bodies_do_not_echo_input(running_node: RunningNode, hospital: EmrClient) -> None:
    marker = "SECRET-PHI-7f3a"
    rid = hospital.upload(Account.create().address, b"x", category="lab")["record_id"]
    with httpx.Client(base_url=running_node.url, timeout=30) as http:
        auth = {"Authorization": f"Bearer {hospital.token}"}
        attempts = [
            http.post(f"/records/{rid}/erase", json={"reason": marker * 200}, headers=auth),
            http.post("/auth/login", json={"message": marker, "signature": marker}),
            http.post("/auth/challenge", json={"address": marker}),
            http.get("/records", params={"patient": marker}, headers=auth),
            http.get(f"/records/{marker}", headers=auth),
            http.post("/consents/grant", json={"message": {"patient": marker}, "signature": "0x"}),
            http.get("/records", headers={"Authorization": f"Bearer emr_{marker}"}),
        ]
    for r in attempts:
        assert 400 <= r.status_code < 500, r.text
        assert marker not in r.text, r.text


# -- mass assignment ----------------------------------------------------------------------


def _post(rn: RunningNode, path: str, token: str | None, **kw: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.post(rn.url + path, headers=headers, timeout=60, **kw)


def test_upload_ignores_fields_the_node_decides(
    running_node: RunningNode, hospital: EmrClient
) -> None:
    patient = Account.create().address
    chosen_id = "0x" + "ab" * 32
    before = int(time.time())
    r = _post(
        running_node,
        "/records",
        hospital.token,
        data={
            "patient": patient,
            "category": "lab",
            "creator": Account.create().address,
            "record_id": chosen_id,
            "kek_version": "0",
            "wrapped_key": "00" * 40,
            "created_at": "1",
            "erased_at": "1",
            "hospital": Account.create().address,
        },
        files={"file": ("r", b"content", "text/plain")},
    )
    assert r.status_code in (201, 422), r.text
    if r.status_code == 201:
        body = r.json()
        assert body["record_id"] != chosen_id
        assert body["creator"] == running_node.node.hospital
        assert body["created_at"] >= before and body["erased"] is False
        row = running_node.node.index.get_record(bytes.fromhex(body["record_id"][2:]))
        assert row.kek_version >= 1 and row.wrapped_key != bytes(40)


def test_token_creation_ignores_chosen_secrets(running_node: RunningNode) -> None:
    rn = running_node
    chosen = "emr_" + "C" * 43
    r = _post(
        rn,
        "/admin/tokens",
        rn.admin_token,
        json={
            "name": "ehr",
            "role": "hospital",
            "token": chosen,
            "token_hash": hashlib.sha256(chosen.encode()).hexdigest(),
            "id": "aaaaaaaaaaaa",
            "created_at": 1,
            "revoked_at": None,
            "expires_at": None,
        },
    )
    assert r.status_code in (201, 422), r.text
    if r.status_code == 201:
        assert r.json()["token"] != chosen and r.json()["id"] != "aaaaaaaaaaaa"
    assert (
        httpx.get(rn.url + "/records", headers={"Authorization": f"Bearer {chosen}"}).status_code
        == 401
    )


def test_clinician_registration_ignores_node_fields(
    running_node: RunningNode, hospital: EmrClient
) -> None:
    before = int(time.time())
    r = _post(
        running_node,
        "/clinicians",
        hospital.token,
        json={
            "address": Account.create().address,
            "role": "nurse",
            "added_at": 1,
            "hospital": Account.create().address,
            "hospital_id": 2,
        },
    )
    assert r.status_code in (201, 422), r.text
    if r.status_code == 201:
        assert r.json()["added_at"] >= before


def test_sign_in_ignores_caller_chosen_domain_chain_and_address(
    running_node: RunningNode,
) -> None:
    rn = running_node
    alice, eve = Account.create(), Account.create()
    r = _post(
        rn,
        "/auth/challenge",
        None,
        json={
            "address": alice.address,
            "domain": "phish.example",
            "uri": "https://phish.example",
            "chain_id": 1,
            "expires_at": 2**40,
            "nonce": "aaaaaaaaaaaaaaaa",
        },
    )
    assert r.status_code in (200, 422), r.text
    if r.status_code == 422:
        return
    challenge = r.json()
    message = challenge["message"]
    assert "phish.example" not in message and "aaaaaaaaaaaaaaaa" not in message
    assert f"Chain ID: {rn.node.chain.chain_id}" in message
    assert challenge["expires_at"] <= time.time() + rn.node.settings.api.challenge_ttl + 5
    signature = "0x" + alice.sign_message(encode_defunct(text=message)).signature.hex()
    r = _post(
        rn,
        "/auth/login",
        None,
        json={
            "message": message,
            "signature": signature,
            "address": eve.address,
            "expires_at": 2**40,
        },
    )
    assert r.status_code in (200, 422), r.text
    if r.status_code == 200:
        assert r.json()["address"] == alice.address
        assert r.json()["expires_at"] <= time.time() + rn.node.settings.api.session_ttl + 5
        assert rn.node.auth.resolve_session(r.json()["token"]) == alice.address


def test_consent_bodies_cannot_widen_what_was_signed(
    running_node: RunningNode, public: EmrClient
) -> None:
    patient, reader = Account.create(), Account.create()
    # extra fields on an address consent: a class (hospital, roles) is not made of them
    body = public.sign_consent(patient, "Grant", reader.address, Scope.all())
    body["message"].update(hospital=0, roles=0xFFFF, grantee2=Account.create().address)
    r = _post(running_node, "/consents/grant", None, json=body)
    assert r.status_code in (200, 422), r.text
    assert public.class_consents(patient.address) == []
    # class consents refuse unknown fields outright
    body = public.sign_class_consent(patient, "GrantClass", ["nurse"], Scope.all())
    body["message"]["grantee"] = reader.address
    assert _post(running_node, "/consents/class-grants", None, json=body).status_code == 422


def test_strict_bodies_refuse_extra_fields(running_node: RunningNode, hospital: EmrClient) -> None:
    patient, doctor = Account.create().address, Account.create().address
    attempts = [
        (
            "/break-glass",
            {
                "patient": patient,
                "clinician": doctor,
                "approved_by": Account.create().address,
                "duration_seconds": 60,
                "reason": "ER",
                "expires_at": 2**40,
            },
        ),
        (
            "/zk/credentials",
            {
                "credentials": [
                    {"identity_commitment": "1", "clinician": doctor, "role": "physician"}
                ]
            },
        ),
        ("/zk/credentials/revoke", {"leaf": "1", "hospital_id": 1}),
        ("/zk/policies/lab/proposals", {"roles": ["nurse"], "executed": True}),
    ]
    for path, body in attempts:
        r = _post(running_node, path, hospital.token, json=body)
        assert r.status_code == 422, (path, r.text)
        assert r.json()["error"] and r.json()["detail"]


def test_erase_acts_on_the_path_record_only(running_node: RunningNode, hospital: EmrClient) -> None:
    patient = Account.create().address
    one = hospital.upload(patient, b"one", category="lab")["record_id"]
    two = hospital.upload(patient, b"two", category="lab")["record_id"]
    r = _post(
        running_node,
        f"/records/{one}/erase",
        hospital.token,
        json={"reason": "patient request", "record_ids": [two], "patient": patient},
    )
    assert r.status_code in (200, 422), r.text
    assert hospital.record(two)["erased"] is False
    if r.status_code == 200:
        assert [e["record_id"] for e in r.json()["erased"]] == [one]
