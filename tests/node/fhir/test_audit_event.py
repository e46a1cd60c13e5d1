"""FHIR AuditEvent over real HTTP, built from the on-chain audit trail: reads granted and
denied, break-glass as a BALP Privacy Disclosure, anchors and consents as creates and
updates, each naming its patient and chain transaction; search filters, paging and who may
see what."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from eth_account import Account
from fhir.resources.R4B.auditevent import AuditEvent
from fhir.resources.R4B.bundle import Bundle

from node.client import ApiError, Scope
from tests.node.conftest import RunningNode, start_node

FHIR_JSON = "application/fhir+json"
BALP = "https://profiles.ihe.net/ITI/BALP/StructureDefinition/"
DCM = "http://dicom.nema.org/resources/ontology/DCM"


@dataclass
class Trail:
    rn: RunningNode
    patient: str
    rid: str
    ada: str
    bob: str
    auditor: str
    hospital: str
    patient_session: str
    ada_session: str
    chain_events: list[dict[str, Any]]


@pytest.fixture(scope="module")
def trail(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Trail]:
    """One patient's story: anchored record, consent, granted and denied reads, the
    patient's own read, break-glass and a read under it, revocation."""
    rn = start_node(tmp_path_factory.mktemp("fhir-audit") / "node")
    try:
        with rn.client(rn.admin_token) as admin:
            hospital_token = admin.create_token("ehr", "hospital")
            auditor_token = admin.create_token("audit", "auditor")
        patient, ada, bob = Account.create(), Account.create(), Account.create()
        chief = Account.create().address
        with rn.client(hospital_token) as hospital, rn.client() as public:
            rid = hospital.upload(patient.address, b"ECG normal", category="ecg")["record_id"]
            hospital.wait_anchored(rid, timeout=30)
            public.grant(patient, ada.address, Scope.record(rid))
            ada_s, bob_s, pat_s = public.login(ada), public.login(bob), public.login(patient)
            public.read(rid, ada_s)
            with pytest.raises(ApiError):
                public.read(rid, bob_s)
            public.read(rid, pat_s)
            hospital.add_clinician(bob.address, "physician")
            hospital.add_clinician(chief, "emergency")
            hospital.break_glass(
                patient.address, bob.address, "unconscious, ER", approved_by=chief, duration=600
            )
            public.read(rid, bob_s)
            public.revoke(patient, ada.address, Scope.record(rid))
            rn.node.access_flusher.flush_now()
        with rn.client(auditor_token) as auditor:
            events = auditor.audit_events(patient=patient.address)
        yield Trail(
            rn,
            patient.address,
            rid,
            ada.address,
            bob.address,
            auditor_token,
            hospital_token,
            pat_s,
            ada_s,
            events,
        )
    finally:
        rn.stop()


@pytest.fixture
def http(trail: Trail) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=trail.rn.url + "/fhir", timeout=60) as c:
        yield c


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Accept": FHIR_JSON}


def search(http: httpx.Client, token: str, query: str) -> list[dict[str, Any]]:
    r = http.get(f"/AuditEvent?{query}", headers=bearer(token))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith(FHIR_JSON)
    bundle = r.json()
    Bundle.model_validate(bundle)
    found = [e["resource"] for e in bundle.get("entry", [])]
    for resource in found:
        AuditEvent.model_validate(resource)  # every event is a valid R4B AuditEvent
    return found


def codes(event: dict[str, Any]) -> set[str]:
    return {event["type"]["code"], *(s["code"] for s in event.get("subtype", []))}


def profile(event: dict[str, Any]) -> str | None:
    profiles = event.get("meta", {}).get("profile", [])
    return profiles[0].removeprefix(BALP) if profiles else None


def agent_wallets(event: dict[str, Any]) -> set[str]:
    return {a["who"]["identifier"]["value"] for a in event["agent"] if "identifier" in a["who"]}


def test_the_trail_as_balp_audit_events(trail: Trail, http: httpx.Client) -> None:
    events = search(http, trail.auditor, f"patient=Patient/{trail.patient}&_sort=date")
    mirrored = [e for e in trail.chain_events if e["event"] != "BatchAnchored"]
    assert len(events) == len(mirrored)
    # same order, same transactions: the chain's trail, one AuditEvent per log
    for resource, chain_event in zip(events, mirrored, strict=True):
        assert resource["id"] == f"{chain_event['block_number']}-{chain_event['log_index']}"
        tx = chain_event["tx_hash"]
        assert resource["source"]["observer"]["identifier"]["value"] == tx
        assert resource["source"]["site"].startswith("eip155:")
        entity_tx = next(
            e for e in resource["entity"] if e["type"].get("code") == "chain-transaction"
        )
        assert entity_tx["what"]["identifier"]["value"] == tx
        details = {d["type"]: d["valueString"] for d in entity_tx["detail"]}
        assert details["blockNumber"] == str(chain_event["block_number"])
        assert details["event"] == chain_event["event"]
        # every event names its patient (BALP "with a Patient")
        patient = resource["entity"][0]
        assert patient["what"]["reference"] == f"Patient/{trail.patient}"
        assert patient["role"]["code"] == "1" and patient["type"]["code"] == "1"
        stamp = datetime.fromtimestamp(chain_event["timestamp"], UTC)
        assert resource["recorded"] == stamp.strftime("%Y-%m-%dT%H:%M:%SZ")

    # reads are logged in batches, so their place among the other events may vary
    kinds = Counter((profile(e), e["outcome"], e["action"]) for e in events)
    assert kinds == Counter(
        {
            ("IHE.BasicAudit.PatientCreate", "0", "C"): 2,  # RecordAnchored, ConsentGranted
            ("IHE.BasicAudit.PatientRead", "0", "R"): 2,  # ada by consent, the patient
            (None, "4", "R"): 1,  # bob, denied
            ("IHE.BasicAudit.PrivacyDisclosure.Source", "0", "R"): 2,  # opened, read under it
            ("IHE.BasicAudit.PatientUpdate", "0", "U"): 1,  # ConsentRevoked
        }
    )
    by_profile: dict[str | None, list[dict[str, Any]]] = {}
    for e in events:
        by_profile.setdefault(profile(e), []).append(e)

    creates = by_profile["IHE.BasicAudit.PatientCreate"]
    record_ref = f"DocumentReference/{trail.rid.removeprefix('0x')}"
    anchored = next(e for e in creates if e["entity"][1]["what"].get("reference") == record_ref)
    assert codes(anchored) == {"rest", "create"}
    custodian = next(a for a in anchored["agent"] if a["requestor"])
    assert custodian["who"]["identifier"]["value"] == trail.rn.node.hospital

    reads = by_profile["IHE.BasicAudit.PatientRead"]
    assert {a for e in reads for a in agent_wallets(e)} >= {trail.ada, trail.patient}
    assert all(codes(e) == {"rest", "read"} for e in reads)
    own = next(e for e in reads if trail.patient in agent_wallets(e))
    user = next(a for a in own["agent"] if a["requestor"])
    assert user["purposeOfUse"][0]["coding"][0]["code"] == "PATRQT"
    assert user["who"]["reference"] == f"Patient/{trail.patient}"

    denied = by_profile[None]
    assert len(denied) == 1 and denied[0]["outcome"] == "4"
    assert trail.bob in agent_wallets(denied[0]) and "denied" in denied[0]["outcomeDesc"]

    disclosures = by_profile["IHE.BasicAudit.PrivacyDisclosure.Source"]
    assert len(disclosures) == 2
    for d in disclosures:
        assert d["type"] == {"system": DCM, "code": "110106", "display": "Export"}
        assert "disclose" in codes(d)
        assert d["purposeOfEvent"][0]["coding"][0]["code"] == "BTG"
        recipient = next(a for a in d["agent"] if a["type"]["coding"][0]["code"] == "110152")
        assert recipient["who"]["identifier"]["value"] == trail.bob
    opened, read_under = disclosures
    assert "read" not in codes(opened) and "read" in codes(read_under)
    reason = {x["type"]: x["valueString"] for x in opened["entity"][1]["detail"]}
    assert reason["reasonHash"].startswith("0x") and "unconscious" not in str(opened)

    created = next(e for e in creates if e is not anchored)
    revoked = by_profile["IHE.BasicAudit.PatientUpdate"][0]
    consent_ref = created["entity"][1]["what"]["reference"]
    assert consent_ref.startswith("Consent/")
    assert revoked["entity"][1]["what"]["reference"] == consent_ref  # names what it ended
    consent = http.get(f"/{consent_ref}", headers=bearer(trail.auditor)).json()
    assert consent["status"] == "inactive"


def test_search_filters(trail: Trail, http: httpx.Client) -> None:
    token = trail.auditor
    p = f"patient=Patient/{trail.patient}"
    everything = search(http, token, p)
    assert [e["recorded"] for e in everything] == sorted(
        (e["recorded"] for e in everything), reverse=True
    )  # newest first by default

    denied = search(http, token, p + "&outcome=4")
    assert len(denied) == 1 and trail.bob in agent_wallets(denied[0])
    assert (
        search(
            http, token, p + "&outcome=http://terminology.hl7.org/CodeSystem/audit-event-outcome|4"
        )
        == denied
    )
    assert len(search(http, token, p + "&outcome=0")) == len(everything) - 1

    by_bob = search(http, token, f"agent=Practitioner/{trail.bob}")
    assert len(by_bob) == 3  # denied read, break-glass opened for him, read under it
    assert all(trail.bob in agent_wallets(e) for e in by_bob)

    disclosures = search(http, token, f"{p}&type={DCM}|110106")
    assert len(disclosures) == 2
    assert search(http, token, f"{p}&type=110106") == disclosures
    rest = search(
        http, token, p + "&type=http://terminology.hl7.org/CodeSystem/audit-event-type|rest"
    )
    assert len(rest) == len(everything) - 2
    reads = search(http, token, p + "&subtype=read")
    assert len(reads) == 4  # ada, bob denied, patient, bob under break-glass
    assert len(search(http, token, p + "&subtype=read&outcome=0&type=rest")) == 2
    assert len(search(http, token, p + "&action=C")) == 2

    rid = trail.rid.removeprefix("0x")
    on_record = search(http, token, f"entity=DocumentReference/{rid}")
    assert {e["id"] for e in on_record} >= {e["id"] for e in reads}

    first, last = everything[-1]["recorded"], everything[0]["recorded"]
    assert len(search(http, token, f"{p}&date=ge{first}&date=le{last}")) == len(everything)
    assert search(http, token, f"{p}&date=gt{last}") == []
    assert search(http, token, f"{p}&date=lt{first}") == []

    one = everything[3]
    assert search(http, token, f"{p}&_id={one['id']}") == [one]
    got = http.get(f"/AuditEvent/{one['id']}", headers=bearer(token))
    assert got.status_code == 200 and got.json() == one

    # paging
    r = http.get(f"/AuditEvent?{p}&_count=3", headers=bearer(token)).json()
    assert r["total"] == len(everything) and len(r["entry"]) == 3
    seen = [e["resource"]["id"] for e in r["entry"]]
    while nxt := next((x["url"] for x in r["link"] if x["relation"] == "next"), None):
        r = httpx.get(nxt, headers=bearer(token), timeout=30).json()
        seen += [e["resource"]["id"] for e in r["entry"]]
    assert seen == [e["id"] for e in everything]


def test_who_may_see_the_trail(trail: Trail, http: httpx.Client) -> None:
    mine = search(http, trail.patient_session, "")
    assert mine == search(http, trail.auditor, f"patient=Patient/{trail.patient}")
    r = http.get(f"/AuditEvent?patient=Patient/{trail.patient}", headers=bearer(trail.ada_session))
    assert r.status_code == 403 and r.json()["resourceType"] == "OperationOutcome"
    # a wallet's own search holds only its own (ada has no records: nothing)
    assert search(http, trail.ada_session, "") == []
    one = mine[0]["id"]
    assert http.get(f"/AuditEvent/{one}", headers=bearer(trail.ada_session)).status_code == 403
    assert http.get(f"/AuditEvent/{one}", headers=bearer(trail.patient_session)).status_code == 200
    # hospital tokens carry no AuditEvent scope (as GET /audit/events)
    r = http.get("/AuditEvent", headers=bearer(trail.hospital))
    assert r.status_code == 403 and "AuditEvent.read" in r.text
    assert http.get("/AuditEvent", headers={"Accept": FHIR_JSON}).status_code == 401
    # admin tokens may
    assert search(http, trail.rn.admin_token, f"patient={trail.patient}") == search(
        http, trail.auditor, f"patient=Patient/{trail.patient}"
    )


def test_bad_parameters_and_ids(trail: Trail, http: httpx.Client) -> None:
    h = bearer(trail.auditor)
    for query, word in [
        ("foo=1", "foo"),
        ("patient=nobody", "patient"),
        ("entity=Binary/1", "entity"),
        ("outcome=7", "outcome"),
        ("date=yesterday", "date"),
        ("_sort=-recorded", "_sort"),
        ("action=X", "action"),
    ]:
        r = http.get(f"/AuditEvent?{query}", headers=h)
        assert r.status_code == 400, (query, r.text)
        body = r.json()
        assert (
            body["resourceType"] == "OperationOutcome" and word in body["issue"][0]["diagnostics"]
        )
    for bad in ("1", "x-1", "999999999-0", "1-999"):
        r = http.get(f"/AuditEvent/{bad}", headers=h)
        assert r.status_code == 404 and r.json()["resourceType"] == "OperationOutcome"
    r = http.get("/AuditEvent", headers={**h, "Accept": "application/fhir+xml"})
    assert r.status_code == 406
