"""FHIR Consent over real HTTP: a patient's EIP-712 signed Grant posted as a Consent is
relayed and honoured by the read flow; a signed Revoke (PUT, status inactive) ends it; a
resource that disagrees with its signature, or asks for a deny, is refused with an
OperationOutcome; search by patient, actor, status and period."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.consent import Consent

from node.chain.exceptions import ChainUnavailable
from node.chain.models import AuditEvent
from node.client import ApiError, EmrClient, Scope
from node.fhir.consent import SIGNATURE_EXTENSION, consent_states, to_fhir
from tests.node.conftest import RunningNode, start_node

FHIR_JSON = "application/fhir+json"
PRIVACY = {
    "system": "http://terminology.hl7.org/CodeSystem/consentscope",
    "code": "patient-privacy",
}
LOINC_CONSENT = {"system": "http://loinc.org", "code": "59284-0"}


def iso(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def consent_resource(
    signed: dict[str, Any],
    *,
    primary: str = "Grant",
    status: str = "active",
    patient: str | None = None,
    grantee: str | None = None,
    grantee_type: str = "Practitioner",
    record: str | None = None,
    category: str | None = None,
    expires_at: int | None = None,
) -> dict[str, Any]:
    """A FHIR Consent stating ``signed`` (EmrClient.sign_consent's body); the keyword
    arguments override what the resource says (not what was signed)."""
    m = signed["message"]
    typed = {"primaryType": primary, "domain": signed["domain"], "message": m}
    provision: dict[str, Any] = {
        "type": "permit",
        "actor": [
            {
                "role": {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                            "code": "IRCP",
                        }
                    ]
                },
                "reference": {"reference": f"{grantee_type}/{grantee or m['grantee']}"},
            }
        ],
        "action": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/consentaction",
                        "code": "access",
                    }
                ]
            }
        ],
    }
    expiry = expires_at if expires_at is not None else m.get("expiresAt")
    if expiry is not None:
        provision["period"] = {"end": iso(expiry)}
    if record is not None:
        provision["data"] = [
            {"meaning": "instance", "reference": {"reference": f"DocumentReference/{record}"}}
        ]
    elif category is not None:
        provision["code"] = [{"coding": [{"system": "urn:emr-node:category", "code": category}]}]
    return {
        "resourceType": "Consent",
        "status": status,
        "scope": {"coding": [PRIVACY]},
        "category": [{"coding": [LOINC_CONSENT]}],
        "patient": {"reference": f"Patient/{patient or m['patient']}"},
        "policyRule": {
            "coding": [
                {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTIN"}
            ]
        },
        "extension": [
            {
                "url": SIGNATURE_EXTENSION,
                "extension": [
                    {"url": "typedData", "valueString": json.dumps(typed)},
                    {"url": "signature", "valueString": signed["signature"]},
                ],
            }
        ],
        "provision": provision,
    }


def hexid(record_id: str) -> str:
    return record_id.removeprefix("0x")


@pytest.fixture(scope="module")
def fhir_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningNode]:
    rn = start_node(tmp_path_factory.mktemp("fhir-consent") / "node")
    yield rn
    rn.stop()


@pytest.fixture(scope="module")
def tokens(fhir_node: RunningNode) -> dict[str, str]:
    with fhir_node.client(fhir_node.admin_token) as admin:
        return {
            "hospital": admin.create_token("ehr", "hospital"),
            "auditor": admin.create_token("audit", "auditor"),
            "admin": fhir_node.admin_token,
        }


@pytest.fixture
def api(fhir_node: RunningNode) -> Iterator[EmrClient]:
    with fhir_node.client() as c:
        yield c


@pytest.fixture
def hospital(fhir_node: RunningNode, tokens: dict[str, str]) -> Iterator[EmrClient]:
    with fhir_node.client(tokens["hospital"]) as c:
        yield c


@pytest.fixture
def http(fhir_node: RunningNode) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fhir_node.url + "/fhir", timeout=60) as c:
        yield c


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Accept": FHIR_JSON}


def post(http: httpx.Client, resource: dict[str, Any], path: str = "/Consent") -> httpx.Response:
    return http.post(path, content=json.dumps(resource), headers={"Content-Type": FHIR_JSON})


def put(http: httpx.Client, resource: dict[str, Any], cid: str) -> httpx.Response:
    return http.put(
        f"/Consent/{cid}", content=json.dumps(resource), headers={"Content-Type": FHIR_JSON}
    )


def assert_outcome(r: httpx.Response, status: int, *words: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(FHIR_JSON)
    body = r.json()
    assert body["resourceType"] == "OperationOutcome", body
    text = " ".join(i.get("diagnostics", "") for i in body["issue"])
    for word in words:
        assert word in text, (word, text)
    return body


def grant(
    api: EmrClient, http: httpx.Client, patient: LocalAccount, grantee: str, scope: Scope, **kw: Any
) -> dict[str, Any]:
    signed = api.sign_consent(patient, "Grant", grantee, scope)
    r = post(http, consent_resource(signed, **kw))
    assert r.status_code == 201, r.text
    return dict(r.json())


def test_grant_via_fhir_is_honoured_and_revoke_ends_it(
    fhir_node: RunningNode, api: EmrClient, hospital: EmrClient, http: httpx.Client
) -> None:
    patient, ada, bob = Account.create(), Account.create(), Account.create()
    rid = hospital.upload(patient.address, b"Hb 13.9 g/dL", category="lab")["record_id"]
    ada_s, bob_s, pat_s = api.login(ada), api.login(bob), api.login(patient)
    with pytest.raises(ApiError):
        api.read(rid, ada_s)  # no consent yet

    signed = api.sign_consent(patient, "Grant", ada.address, Scope.record(rid))
    r = post(http, consent_resource(signed, record=hexid(rid)))
    assert r.status_code == 201, r.text
    assert r.headers["content-type"].startswith(FHIR_JSON)
    created = r.json()
    Consent.model_validate(created)  # a valid R4B Consent
    cid = created["id"]
    assert r.headers["location"].endswith(f"/fhir/Consent/{cid}")
    assert created["status"] == "active"
    assert created["patient"]["reference"] == f"Patient/{patient.address}"
    actor = created["provision"]["actor"][0]["reference"]
    assert actor["reference"] == f"Practitioner/{ada.address}"
    assert created["provision"]["data"][0]["reference"]["reference"] == (
        f"DocumentReference/{hexid(rid)}"
    )
    assert created["provision"]["period"]["end"] == iso(signed["message"]["expiresAt"])
    assert created["identifier"][0]["value"].startswith("0x")

    # the read flow honours it: the grantee reads, a stranger does not
    got = api.read(rid, ada_s)
    assert got.content == b"Hb 13.9 g/dL"
    assert got.headers["x-access-basis"] == "record_consent"
    with pytest.raises(ApiError):
        api.read(rid, bob_s)

    # the patient reads their own Consent; another wallet may not
    mine = http.get(f"/Consent/{cid}", headers=bearer(pat_s))
    assert mine.status_code == 200, mine.text
    assert mine.json() == created
    assert_outcome(http.get(f"/Consent/{cid}", headers=bearer(bob_s)), 403)

    # a Revoke of something else, or an update that is not a revocation, changes nothing
    wrong = api.sign_consent(patient, "Revoke", bob.address, Scope.record(rid))
    body = consent_resource(
        wrong, primary="Revoke", status="inactive", record=hexid(rid), expires_at=None
    )
    assert_outcome(put(http, body, cid), 422, "grantee", f"Consent/{cid}")  # not this one
    body = consent_resource(
        wrong, primary="Revoke", status="inactive", grantee=ada.address, record=hexid(rid)
    )
    assert_outcome(put(http, body, cid), 422, "signed typed data")  # not what it says
    assert_outcome(put(http, consent_resource(signed, record=hexid(rid)), cid), 422, "inactive")
    assert_outcome(put(http, body, "nope"), 404)
    assert api.read(rid, ada_s).status_code == 200

    # revoke: PUT status inactive with the signed Revoke
    revoked = api.sign_consent(patient, "Revoke", ada.address, Scope.record(rid))
    body = consent_resource(
        revoked, primary="Revoke", status="inactive", record=hexid(rid), expires_at=None
    )
    body["id"] = cid
    r = put(http, body, cid)
    assert r.status_code == 200, r.text
    after = r.json()
    Consent.model_validate(after)
    assert after["id"] == cid and after["status"] == "inactive"
    assert {
        "url": "urn:emr-node:fhir:StructureDefinition:consent-inactive-reason",
        "valueCode": "revoked",
    } in after["extension"]
    with pytest.raises(ApiError) as refused:
        api.read(rid, ada_s)
    assert refused.value.status == 403
    # nothing left to revoke
    again = api.sign_consent(patient, "Revoke", ada.address, Scope.record(rid))
    again_body = consent_resource(
        again, primary="Revoke", status="inactive", record=hexid(rid), expires_at=None
    )
    assert_outcome(put(http, again_body, cid), 409, "already inactive")
    read_back = http.get(f"/Consent/{cid}", headers=bearer(pat_s)).json()
    assert read_back["status"] == "inactive"


def test_category_consent_via_fhir(api: EmrClient, hospital: EmrClient, http: httpx.Client) -> None:
    patient, nurse = Account.create(), Account.create()
    lab = hospital.upload(patient.address, b"lab", category="lab")["record_id"]
    img = hospital.upload(patient.address, b"img", category="imaging")["record_id"]
    created = grant(api, http, patient, nurse.address, Scope.category("lab"), category="lab")
    assert created["provision"]["code"][0]["coding"][0]["system"] == "urn:emr-node:category-hash"
    session = api.login(nurse)
    assert api.read(lab, session).headers["x-access-basis"] == "category_consent"
    with pytest.raises(ApiError):
        api.read(img, session)


def test_a_resource_that_disagrees_with_its_signature_is_refused(
    api: EmrClient, hospital: EmrClient, http: httpx.Client
) -> None:
    patient, ada, mallory = Account.create(), Account.create(), Account.create()
    rid = hospital.upload(patient.address, b"x", category="lab")["record_id"]
    other = hospital.upload(patient.address, b"y", category="lab")["record_id"]
    nonce = api.nonce(patient.address)
    signed = api.sign_consent(patient, "Grant", ada.address, Scope.record(rid))
    expiry = signed["message"]["expiresAt"]
    cases = [
        (consent_resource(signed, grantee=mallory.address, record=hexid(rid)), "grantee"),
        (consent_resource(signed, patient=mallory.address, record=hexid(rid)), "patient"),
        (consent_resource(signed, record=hexid(other)), "scope"),
        (consent_resource(signed, category="lab"), "scope"),
        (consent_resource(signed), "scope"),  # no data: "everything", more than was signed
        (consent_resource(signed, record=hexid(rid), expires_at=expiry + 1), "expiry"),
    ]
    for resource, word in cases:
        body = assert_outcome(post(http, resource), 422, word)
        assert body["issue"][0]["code"] == "business-rule"
    # a status other than active, a missing signature, a signed Revoke
    assert_outcome(post(http, consent_resource(signed, status="proposed", record=hexid(rid))), 422)
    unsigned = consent_resource(signed, record=hexid(rid))
    del unsigned["extension"]
    assert_outcome(post(http, unsigned), 422, "eip712-signature")
    revoke = api.sign_consent(patient, "Revoke", ada.address, Scope.record(rid))
    as_revoke = consent_resource(revoke, primary="Revoke", record=hexid(rid), expires_at=expiry)
    assert_outcome(post(http, as_revoke), 422, "signed Grant")
    # a signature by someone else than the patient: refused by the relay flow, before any tx
    forged = dict(
        signed,
        signature=api.sign_consent(mallory, "Grant", ada.address, Scope.record(rid))["signature"],
    )
    assert_outcome(post(http, consent_resource(forged, record=hexid(rid))), 400, "signature")
    # nothing was relayed: the patient's nonce did not move, and the grantee cannot read
    assert api.nonce(patient.address) == nonce
    with pytest.raises(ApiError):
        api.read(rid, api.login(ada))


def test_deny_provisions_are_refused(
    api: EmrClient, hospital: EmrClient, http: httpx.Client
) -> None:
    patient, ada = Account.create(), Account.create()
    rid = hospital.upload(patient.address, b"x", category="lab")["record_id"]
    signed = api.sign_consent(patient, "Grant", ada.address, Scope.record(rid))
    deny = consent_resource(signed, record=hexid(rid))
    deny["provision"]["type"] = "deny"
    body = assert_outcome(post(http, deny), 422, "deny", "permit-only")
    assert body["issue"][0]["code"] == "not-supported"
    nested = consent_resource(signed, record=hexid(rid))
    nested["provision"]["provision"] = [{"type": "deny", "period": {"end": "2030-01-01T00:00:00Z"}}]
    assert_outcome(post(http, nested), 422, "deny")
    purpose = consent_resource(signed, record=hexid(rid))
    purpose["provision"]["purpose"] = [
        {"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "HRESCH"}
    ]
    assert_outcome(post(http, purpose), 422, "purpose")
    assert api.nonce(patient.address) == signed["message"]["nonce"]


def test_invalid_resources_get_the_validators_messages(http: httpx.Client) -> None:
    r = post(http, {"resourceType": "Consent", "status": "active"})
    body = assert_outcome(r, 400)
    paths = [e for i in body["issue"] for e in i.get("expression", [])]
    assert "Consent.scope" in paths and "Consent.category" in paths
    assert_outcome(http.post("/Consent", content=b"{", headers={"Content-Type": FHIR_JSON}), 400)
    assert_outcome(
        http.post("/Consent", content=b"{}", headers={"Content-Type": "text/plain"}), 415
    )
    assert_outcome(post(http, {"resourceType": "Patient"}), 400, "Consent")
    assert_outcome(http.get("/Consent/nope", headers=bearer("emr_" + "A" * 43)), 401)


def test_search_by_patient_actor_status_period(
    fhir_node: RunningNode,
    api: EmrClient,
    hospital: EmrClient,
    http: httpx.Client,
    tokens: dict[str, str],
) -> None:
    patient, ada, bob, carol = (Account.create() for _ in range(4))
    rid = hospital.upload(patient.address, b"x", category="lab")["record_id"]
    g_ada = grant(api, http, patient, ada.address, Scope.record(rid), record=hexid(rid))
    g_bob = grant(api, http, patient, bob.address, Scope.category("lab"), category="lab")
    org = fhir_node.node.hospital
    g_org = grant(api, http, patient, org, Scope.all(), grantee_type="Organization")
    assert g_org["provision"]["actor"][0]["reference"]["reference"] == f"Organization/{org}"
    other = grant(api, http, carol, ada.address, Scope.all())
    revoked = api.sign_consent(patient, "Revoke", bob.address, Scope.category("lab"))
    r = put(
        http,
        consent_resource(revoked, primary="Revoke", status="inactive", category="lab"),
        g_bob["id"],
    )
    assert r.status_code == 200, r.text

    auditor = bearer(tokens["auditor"])

    def ids(query: str, headers: dict[str, str] = auditor) -> list[str]:
        res = http.get(f"/Consent?{query}", headers=headers)
        assert res.status_code == 200, res.text
        bundle = res.json()
        Bundle.model_validate(bundle)
        assert bundle["type"] == "searchset"
        found = [e["resource"]["id"] for e in bundle.get("entry", [])]
        assert bundle["total"] == len(found) or "_count" in query
        return found

    p = f"patient=Patient/{patient.address}"
    assert ids(p) == [g_org["id"], g_bob["id"], g_ada["id"]]  # newest first
    assert ids(p + "&_sort=date") == [g_ada["id"], g_bob["id"], g_org["id"]]
    assert ids(f"patient={patient.address.lower()}") == ids(p)
    assert ids(p + "&status=active") == [g_org["id"], g_ada["id"]]
    assert ids(p + "&status=inactive") == [g_bob["id"]]
    assert set(ids(f"actor=Practitioner/{ada.address}")) == {g_ada["id"], other["id"]}
    assert ids(f"{p}&actor=Practitioner/{ada.address}") == [g_ada["id"]]
    assert ids(f"actor=Organization/{org}&{p}") == [g_org["id"]]
    year = datetime.now(UTC).year
    assert len(ids(f"{p}&period=ge{year}-01-01")) == 3
    assert ids(f"{p}&period=lt2001-01-01") == []
    assert ids(f"{p}&period=gt{year + 5}") == []
    assert ids(f"{p}&_id={g_ada['id']},{other['id']}") == [g_ada["id"]]
    # paging keeps the search and moves the offset
    page = http.get(f"/Consent?{p}&_count=2", headers=auditor).json()
    assert page["total"] == 3 and len(page["entry"]) == 2
    nxt = next(link["url"] for link in page["link"] if link["relation"] == "next")
    rest = httpx.get(nxt, headers=auditor, timeout=30).json()
    assert [e["resource"]["id"] for e in rest["entry"]] == [g_ada["id"]]

    # who may search: hospital and auditor tokens any patient; a wallet only its own
    assert ids(p, bearer(tokens["hospital"])) == ids(p)
    pat_s = api.login(patient)
    assert ids("", bearer(pat_s)) == ids(p)
    assert_outcome(http.get(f"/Consent?patient={carol.address}", headers=bearer(pat_s)), 403)
    assert_outcome(http.get("/Consent", headers={"Accept": FHIR_JSON}), 401)
    # bad parameters
    assert_outcome(http.get("/Consent?foo=1", headers=auditor), 400, "foo")
    assert_outcome(http.get("/Consent?status=maybe", headers=auditor), 400, "status")
    assert_outcome(http.get("/Consent?patient=Patient/xyz", headers=auditor), 400, "patient")
    assert_outcome(http.get("/Consent?period=soon", headers=auditor), 400)


def test_state_replay_revoked_superseded_expired() -> None:
    """The chain's events replayed into Consent statuses (a pure function: ``now`` given)."""
    patient, ada = Account.create().address, Account.create().address
    scope = b"\x00" * 32

    def event(name: str, block: int, **args: Any) -> AuditEvent:
        base = {"patient": patient, "grantee": ada, "scope": scope, "scopeKind": 2}
        return AuditEvent(
            name, "ConsentRegistry", block, 1000 + block, bytes([block]) * 32, 0, {**base, **args}
        )

    states = consent_states(
        [
            event("ConsentGranted", 3, expiresAt=5000),
            event("ConsentGranted", 1, expiresAt=5000),  # any order in, chain order out
            event("ConsentRevoked", 4),
            event("ConsentGranted", 5, expiresAt=2000),
        ]
    )
    assert [(s.block_number, s.ended_by) for s in states] == [
        (1, "superseded"),
        (3, "revoked"),
        (5, None),
    ]
    assert [s.status(1500) for s in states] == ["inactive", "inactive", "active"]
    last = states[-1]
    assert last.why_inactive(2000) == "expired" and last.status(2000) == "inactive"
    resource = to_fhir(last, 2000, organizations=frozenset())
    Consent.model_validate(resource)
    assert resource["status"] == "inactive"
    assert resource["provision"]["period"] == {
        "start": iso(1005),
        "end": iso(2000),
    }
    assert "data" not in resource["provision"] and "code" not in resource["provision"]
    assert resource["id"] == f"{patient[2:].lower()}-5-0"


def test_unknown_ids(http: httpx.Client, tokens: dict[str, str]) -> None:
    auditor = bearer(tokens["auditor"])
    assert_outcome(http.get("/Consent/1", headers=auditor), 404)
    assert_outcome(http.get(f"/Consent/{'ab' * 20}-999999999-0", headers=auditor), 404)
    assert_outcome(http.get(f"/Consent/{'ab' * 20}-1-0", headers=auditor), 404)


def test_chain_away_the_grant_is_queued_then_relayed(
    fhir_node: RunningNode,
    api: EmrClient,
    hospital: EmrClient,
    http: httpx.Client,
    tokens: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """While the chain cannot be reached, a patient-signed Grant is queued (202, an
    OperationOutcome naming the relay) and the relay worker sends it once the chain is back;
    a forged one is not queued."""
    patient, ada = Account.create(), Account.create()
    rid = hospital.upload(patient.address, b"queued", category="lab")["record_id"]
    signed = api.sign_consent(patient, "Grant", ada.address, Scope.record(rid))
    forged = dict(
        signed,
        signature=api.sign_consent(Account.create(), "Grant", ada.address, Scope.record(rid))[
            "signature"
        ],
    )
    chain = fhir_node.node.chain

    def away(*_args: Any, **_kw: Any) -> Any:
        raise ChainUnavailable("test: the chain is away")

    for name in ("consent_domain", "consent_nonce", "grant_with_sig"):
        monkeypatch.setattr(chain, name, away)
    r = post(http, consent_resource(signed, record=hexid(rid)))
    body = assert_outcome(r, 202, "queued")
    assert body["issue"][0]["severity"] == "information"
    relay = r.headers["content-location"]
    assert relay.startswith("/consents/relays/")
    assert_outcome(post(http, consent_resource(forged, record=hexid(rid))), 503)
    monkeypatch.undo()
    fhir_node.node.background.wake("consent-relay")
    deadline = time.monotonic() + 60
    while httpx.get(fhir_node.url + relay, timeout=30).json()["status"] != "relayed":
        assert time.monotonic() < deadline, "the queued grant was never relayed"
        time.sleep(0.2)
    found = http.get(
        f"/Consent?patient={patient.address}&status=active", headers=bearer(tokens["auditor"])
    ).json()
    assert found["total"] == 1
    assert api.read(rid, api.login(ada)).content == b"queued"


def test_a_forever_consent_granted_elsewhere_reads_cleanly(
    api: EmrClient, http: httpx.Client, tokens: dict[str, str]
) -> None:
    """A Grant relayed by POST /consents/grant may expire at uint64's last second (beyond
    FHIR's year 9999): it reads as the last instant FHIR can write, never a 500."""
    patient, ada = Account.create(), Account.create()
    api.grant(patient, ada.address, Scope.all(), expires_at=2**64 - 1)
    auditor = bearer(tokens["auditor"])
    found = http.get(f"/Consent?patient={patient.address}", headers=auditor)
    assert found.status_code == 200, found.text
    (entry,) = found.json()["entry"]
    assert entry["resource"]["provision"]["period"]["end"] == "9999-12-31T23:59:59Z"
    assert entry["resource"]["status"] == "active"
    Consent.model_validate(entry["resource"])
    trail = http.get(f"/AuditEvent?patient={patient.address}", headers=auditor)
    assert trail.status_code == 200, trail.text
