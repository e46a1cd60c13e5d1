"""The FHIR façade over real HTTP against an in-process node: DocumentReference, Binary,
Bundles, Provenance, Patient, errors and negotiation, SMART scope enforcement."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from fhir.resources.R4B.documentreference import DocumentReference
from fhir.resources.R4B.provenance import Provenance

from node.client import Scope
from node.fhir.common import CATEGORY_SYSTEM, FHIR_JSON, WALLET_SYSTEM
from tests.node.conftest import RunningNode, start_node
from tests.node.fhir.helpers import Fhir, document, issues, transaction
from tests.node.security.helpers import Callers, host_header, make_callers, raw_request


@pytest.fixture(scope="module")
def rn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningNode]:
    node = start_node(tmp_path_factory.mktemp("fhir") / "node")
    yield node
    node.stop()


@pytest.fixture(scope="module")
def callers(rn: RunningNode) -> Callers:
    return make_callers(rn)


@pytest.fixture(scope="module")
def hospital(rn: RunningNode, callers: Callers) -> Iterator[Fhir]:
    client = Fhir(rn.url, callers.hospital)
    yield client
    client.close()


@pytest.fixture
def patient() -> LocalAccount:
    return Account.create()


def _session(rn: RunningNode, account: LocalAccount) -> Fhir:
    with rn.client() as c:
        return Fhir(rn.url, c.login(account))


def _create(hospital: Fhir, doc: dict[str, Any]) -> dict[str, Any]:
    r = hospital.post("/DocumentReference", doc)
    assert r.status_code == 201, r.text
    return dict(r.json())


def test_capability_statement_lists_exactly_what_is_served(rn: RunningNode) -> None:
    r = httpx.get(rn.url + "/fhir/metadata", timeout=30)
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/fhir+json; fhirVersion=4.0"
    statement = CapabilityStatement.model_validate(r.json())  # a valid R4B resource
    assert statement.fhirVersion == "4.0.1"
    rest = statement.rest[0]
    by_type = {res.type: res for res in rest.resource}
    docs = by_type["DocumentReference"]
    assert [i.code for i in docs.interaction] == [
        "read",
        "vread",
        "search-type",
        "create",
        "history-instance",
    ]
    assert docs.conditionalCreate is True
    assert {p.name for p in docs.searchParam} >= {"patient", "category", "type", "date", "status"}
    assert {i.code for i in rest.interaction} >= {"transaction", "batch"}
    # every interaction it names is served by a route of that shape, and no route is left out
    served = _served(rn)
    for res in rest.resource:
        for interaction in res.interaction:
            method, shape = _SHAPES[interaction.code]
            path = shape.format(type=res.type)
            assert any(m == method and re.fullmatch(path, p) for p, m in served), (
                f"{res.type} {interaction.code} is not served"
            )
    for p, m in served:
        if m == "HEAD" or p in ("/fhir", "/fhir/", "/fhir/metadata"):
            continue
        kind = p.split("/")[2]
        codes = {i.code for i in by_type[kind].interaction}
        assert any(
            _SHAPES[c][0] == m and re.fullmatch(_SHAPES[c][1].format(type=kind), p) for c in codes
        ), f"{m} {p} is served but not in the CapabilityStatement"


_SHAPES = {
    "read": ("GET", r"/fhir/{type}/\{{\w+\}}"),
    "vread": ("GET", r"/fhir/{type}/\{{\w+\}}/_history/\{{\w+\}}"),
    "search-type": ("GET", r"/fhir/{type}"),
    "create": ("POST", r"/fhir/{type}"),
    "update": ("PUT", r"/fhir/{type}/\{{\w+\}}"),
    "patch": ("PATCH", r"/fhir/{type}/\{{\w+\}}"),
    "delete": ("DELETE", r"/fhir/{type}/\{{\w+\}}"),
    "history-instance": ("GET", r"/fhir/{type}/\{{\w+\}}/_history"),
}


def _served(rn: RunningNode) -> set[tuple[str, str]]:
    from node.api.edge import api_routes

    app = rn.server.config.app
    return {
        (p, m)
        for p, r in api_routes(app)  # type: ignore[arg-type]
        for m in r.methods or ()
        if p.startswith("/fhir")
    }


def test_create_read_and_headers(hospital: Fhir, patient: LocalAccount) -> None:
    r = hospital.post("/DocumentReference", document(patient.address, b"hello", identifier="c1"))
    assert r.status_code == 201, r.text
    created = r.json()
    rid = created["id"]
    assert r.headers["etag"] == f'W/"{rid}"'
    assert r.headers["location"].endswith(f"/fhir/DocumentReference/{rid}/_history/{rid}")
    got = hospital.get(f"/DocumentReference/{rid}")
    assert got.status_code == 200
    model = DocumentReference.model_validate(got.json())
    assert model.status == "current"
    assert model.subject.reference == f"Patient/{patient.address}"
    assert model.identifier[0].value == "c1"
    att = model.content[0].attachment
    assert att.url == f"Binary/{rid}" and att.size == 5 and att.contentType == "text/plain"
    assert bytes(att.hash) == hashlib.sha1(b"hello").digest()
    sha256 = [e.valueString for e in att.extension if e.url.endswith("content-sha256")]
    assert sha256 == [hashlib.sha256(b"hello").hexdigest()]
    assert model.date.isoformat().startswith("2024-01-01T10:00:00")
    links = {e.url: e for e in model.extension[0].extension}
    assert links["provenance"].valueReference.reference == f"Provenance/{rid}"
    # the Location is served (vread); another version id of this record is not
    version = hospital.http.get(r.headers["location"])
    assert version.status_code == 200 and version.json()["id"] == rid
    assert hospital.get(f"/DocumentReference/{rid}/_history/{'ab' * 32}").status_code == 404
    # the 0x spelling of the node's own API reads too
    assert hospital.get(f"/DocumentReference/0x{rid}").json()["id"] == rid


def test_conditional_create_and_duplicate_identifier(hospital: Fhir, patient: LocalAccount) -> None:
    first = _create(hospital, document(patient.address, identifier="dup-1"))
    again = hospital.post(
        "/DocumentReference",
        document(patient.address, b"other", identifier="dup-1"),
        **{"If-None-Exist": "identifier=urn:oid:1.2.3|dup-1"},
    )
    assert again.status_code == 200 and again.json()["id"] == first["id"]
    clash = hospital.post("/DocumentReference", document(patient.address, identifier="dup-1"))
    assert clash.status_code == 409
    assert issues(clash)[0]["code"] == "conflict"


def test_invalid_resources_get_the_validators_messages(
    hospital: Fhir, patient: LocalAccount
) -> None:
    bad_date = {**document(patient.address), "date": "yesterday", "bogus": 1}
    r = hospital.post("/DocumentReference", bad_date)
    assert r.status_code == 400
    found = issues(r)
    where = {tuple(i.get("expression", [])) for i in found}
    assert ("DocumentReference.date",) in where and ("DocumentReference.bogus",) in where
    no_category = document(patient.address)
    del no_category["category"]
    r = hospital.post("/DocumentReference", no_category)
    assert r.status_code == 400 and issues(r)[0]["expression"] == ["DocumentReference.category"]
    r = hospital.post("/DocumentReference", {"resourceType": "Patient"})
    assert r.status_code == 400
    r = hospital.post("/DocumentReference", [1, 2])
    assert r.status_code == 400 and issues(r)[0]["code"] == "structure"


def test_negotiation(hospital: Fhir, patient: LocalAccount) -> None:
    assert hospital.get("/metadata", params={"_format": "xml"}).status_code == 406
    assert hospital.get("/metadata", headers={"Accept": "application/fhir+xml"}).status_code == 406
    assert hospital.get("/metadata", params={"_format": "json"}).status_code == 200
    ok = hospital.get("/metadata", headers={"Accept": "application/fhir+json"})
    assert ok.status_code == 200
    r = hospital.http.post(
        "/DocumentReference",
        content=b"{}",
        headers={"Content-Type": "application/xml"},
    )
    assert r.status_code == 415 and issues(r)[0]["code"] == "not-supported"
    r = hospital.http.post(
        "/DocumentReference",
        json=document(patient.address),  # application/json is accepted too
    )
    assert r.status_code == 201


def test_errors_are_operation_outcomes_only_under_fhir(rn: RunningNode, hospital: Fhir) -> None:
    r = hospital.get("/Observation")
    assert r.status_code == 404 and issues(r)[0]["code"] == "not-found"
    r = hospital.http.delete("/metadata")
    assert r.status_code == 405 and "GET" in r.headers["allow"]
    anonymous = httpx.get(rn.url + "/fhir/DocumentReference", timeout=30)
    assert anonymous.status_code == 401 and anonymous.headers["www-authenticate"] == "Bearer"
    assert issues(anonymous)[0]["code"] == "login"
    # the node's own routes keep the node's error body
    plain = httpx.get(rn.url + "/records/nope", timeout=30)
    assert plain.status_code in (400, 401) and "error" in plain.json()
    unknown = httpx.get(rn.url + "/nowhere", timeout=30)
    assert unknown.json()["error"] == "not_found"


def test_smart_scopes_are_enforced(
    rn: RunningNode, callers: Callers, patient: LocalAccount
) -> None:
    auditor = Fhir(rn.url, callers.auditor)
    wallet = Fhir(rn.url, callers.wallet)
    try:
        r = auditor.post("/DocumentReference", document(patient.address))
        assert r.status_code == 403
        assert (
            "system/DocumentReference.write" not in issues(r)[0]["diagnostics"].split("carries")[1]
        )
        r = wallet.post("/DocumentReference", document(callers.wallet_account.address))
        assert r.status_code == 403
        # a wallet sees its own compartment only
        r = wallet.get("/DocumentReference", params={"patient": patient.address})
        assert r.status_code == 403
        assert wallet.get("/DocumentReference").status_code == 200
        assert (
            auditor.get("/DocumentReference", params={"patient": patient.address}).status_code
            == 200
        )
        # content reads are for wallet sessions (the read flow), not tokens
        assert auditor.get("/Binary/" + "00" * 32).status_code == 403
    finally:
        auditor.close()
        wallet.close()


def test_search_paging_filters_and_sort(
    rn: RunningNode, hospital: Fhir, patient: LocalAccount
) -> None:
    days = ["2024-03-01", "2024-03-02", "2024-03-03", "2024-03-04", "2024-03-05"]
    ids = {}
    for i, day in enumerate(days):
        doc = document(
            patient.address,
            f"doc {i}".encode(),
            category="lab" if i % 2 == 0 else "note",
            date=f"{day}T08:00:00Z",
            type_code="11502-2" if i < 3 else "18842-5",
        )
        ids[day] = _create(hospital, doc)["id"]
    seen: list[str] = []
    url: str | None = f"/DocumentReference?patient=Patient/{patient.address}&_count=2"
    pages = 0
    while url is not None:
        r = hospital.get(url)
        assert r.status_code == 200, r.text
        bundle = Bundle.model_validate(r.json())
        assert bundle.total == 5
        seen += [e.resource.id for e in bundle.entry or []]
        links = {link.relation: link.url for link in bundle.link}
        url = links.get("next")
        if pages:
            assert "previous" in links
        pages += 1
    assert pages == 3
    assert seen == [ids[d] for d in reversed(days)]  # newest first by default
    asc = hospital.get("/DocumentReference", params={"patient": patient.address, "_sort": "date"})
    assert [e["resource"]["id"] for e in asc.json()["entry"]] == [ids[d] for d in days]

    def matches(**params: str) -> set[str]:
        r = hospital.get("/DocumentReference", params={"patient": patient.address, **params})
        assert r.status_code == 200, r.text
        return {e["resource"]["id"] for e in r.json().get("entry", [])}

    assert matches(category="urn:emr-node:category|note") == {ids[days[1]], ids[days[3]]}
    assert matches(type="http://loinc.org|18842-5") == {ids[days[3]], ids[days[4]]}
    assert matches(date="2024-03-02") == {ids[days[1]]}
    r = hospital.get(
        "/DocumentReference",
        params=[("patient", patient.address), ("date", "ge2024-03-02"), ("date", "lt2024-03-04")],
    )
    assert {e["resource"]["id"] for e in r.json()["entry"]} == {ids[days[1]], ids[days[2]]}
    assert matches(date="gt2024-03-04T08:00:00Z") == {ids[days[4]]}
    assert hospital.get("/DocumentReference", params={"colour": "red"}).status_code == 400
    assert hospital.get("/DocumentReference", params={"date": "bogus"}).status_code == 400
    assert hospital.get("/DocumentReference", params={"_count": "0"}).json()["total"] >= 5


def test_versions_status_and_history(hospital: Fhir, patient: LocalAccount) -> None:
    v1 = _create(hospital, document(patient.address, b"v1"))["id"]
    v2 = _create(hospital, document(patient.address, b"v2", replaces=v1))["id"]
    v3 = _create(hospital, document(patient.address, b"v3", replaces=v2))["id"]
    assert hospital.get(f"/DocumentReference/{v1}").json()["status"] == "superseded"
    got = hospital.get(f"/DocumentReference/{v3}").json()
    assert got["status"] == "current"
    assert got["relatesTo"][0]["target"]["reference"] == f"DocumentReference/{v2}"
    history = hospital.get(f"/DocumentReference/{v2}/_history")
    assert history.status_code == 200
    bundle = Bundle.model_validate(history.json())
    assert bundle.type == "history"
    assert [e.resource.id for e in bundle.entry] == [v3, v2, v1]
    current = hospital.get(
        "/DocumentReference", params={"patient": patient.address, "status": "current"}
    )
    assert [e["resource"]["id"] for e in current.json()["entry"]] == [v3]
    old = hospital.get(
        "/DocumentReference", params={"patient": patient.address, "status": "superseded"}
    )
    assert {e["resource"]["id"] for e in old.json()["entry"]} == {v1, v2}
    stranger = Account.create().address
    r = hospital.post("/DocumentReference", document(stranger, replaces=v3))
    assert r.status_code == 400  # a new version belongs to the same patient


def test_binary_create_and_consented_reads(
    rn: RunningNode, hospital: Fhir, patient: LocalAccount
) -> None:
    body = {
        "resourceType": "Binary",
        "contentType": "application/pdf",
        "securityContext": {"reference": f"Patient/{patient.address}"},
        "data": base64.b64encode(b"%PDF-1.4 scan").decode(),
    }
    assert hospital.post("/Binary", body).status_code == 400  # no category
    r = hospital.post("/Binary", body, **{"X-Category": "imaging"})
    assert r.status_code == 201, r.text
    rid = r.json()["id"]
    assert "data" not in r.json()
    with_ext = {**body, "meta": {"tag": [{"system": CATEGORY_SYSTEM, "code": "imaging"}]}}
    assert hospital.post("/Binary", with_ext).status_code == 201
    # the hospital token reads metadata, not content
    assert hospital.get(f"/Binary/{rid}").status_code == 403
    own = _session(rn, patient)
    clinician_account = Account.create()
    clinician = _session(rn, clinician_account)
    try:
        raw = own.http.get(f"/Binary/{rid}", headers={"Accept": "*/*"})
        assert raw.status_code == 200 and raw.content == b"%PDF-1.4 scan"
        assert raw.headers["content-type"] == "application/pdf"
        assert raw.headers["x-access-basis"] == "patient"
        res = own.get(f"/Binary/{rid}")
        assert res.json()["resourceType"] == "Binary"
        assert base64.b64decode(res.json()["data"]) == b"%PDF-1.4 scan"
        assert own.get(f"/Binary/{rid}", params={"_format": "xml"}).status_code == 406
        denied = clinician.get(f"/Binary/{rid}")
        assert denied.status_code == 403 and issues(denied)[0]["code"] == "forbidden"
        assert clinician.get(f"/DocumentReference/{rid}").status_code == 403
        with rn.client() as c:
            c.grant(patient, clinician_account.address, Scope.record("0x" + rid))
        granted = clinician.http.get(f"/Binary/{rid}", headers={"Accept": "*/*"})
        assert granted.status_code == 200 and granted.content == b"%PDF-1.4 scan"
        assert granted.headers["x-access-basis"] == "record_consent"
        # user/DocumentReference.read: the same consent admits the metadata
        assert clinician.get(f"/DocumentReference/{rid}").status_code == 200
    finally:
        own.close()
        clinician.close()


def _count(rn: RunningNode, patient: str) -> int:
    return len(rn.node.index.list_records(patient=patient, limit=10_000))


def test_transaction_is_all_or_nothing(
    rn: RunningNode, hospital: Fhir, patient: LocalAccount
) -> None:
    docs = [document(patient.address, f"t{i}".encode(), identifier=f"tx-{i}") for i in range(4)]
    broken = [*docs[:3], {**docs[3], "status": "entered-in-error"}]
    r = hospital.post("", transaction(broken))
    assert r.status_code == 400
    assert issues(r)[0]["expression"] == ["Bundle.entry[3].resource.status"]
    assert _count(rn, patient.address) == 0
    r = hospital.post("", transaction(docs))
    assert r.status_code == 200, r.text
    answer = Bundle.model_validate(r.json())
    assert answer.type == "transaction-response"
    assert [e.response.status for e in answer.entry] == ["201 Created"] * 4
    ids = [e.response.location.split("/")[1] for e in answer.entry]
    assert _count(rn, patient.address) == 4
    assert hospital.get(f"/DocumentReference/{ids[2]}").json()["identifier"][0]["value"] == "tx-2"
    # the same identifiers again: the whole transaction is refused
    again = hospital.post("", transaction(docs))
    assert again.status_code == 409
    assert _count(rn, patient.address) == 4
    # with ifNoneExist each entry answers the stored document
    conditional = transaction(docs)
    for i, entry in enumerate(conditional["entry"]):
        entry["request"]["ifNoneExist"] = f"identifier=urn:oid:1.2.3|tx-{i}"
    r = hospital.post("/", conditional)  # the base URL with its trailing slash
    assert r.status_code == 200
    assert [e["response"]["status"] for e in r.json()["entry"]] == ["200 OK"] * 4
    assert _count(rn, patient.address) == 4


def test_batch_answers_each_entry(rn: RunningNode, hospital: Fhir, patient: LocalAccount) -> None:
    good = document(patient.address, b"b0", identifier="batch-0")
    bad = {**document(patient.address), "date": "nope"}
    observation = {"resourceType": "Observation", "status": "final"}
    bundle = transaction([good, bad, good, observation], kind="batch")
    r = hospital.post("", bundle, Prefer="return=representation")
    assert r.status_code == 200, r.text
    entries = r.json()["entry"]
    assert [e["response"]["status"].split()[0] for e in entries] == ["201", "400", "409", "400"]
    assert entries[0]["resource"]["identifier"][0]["value"] == "batch-0"
    assert entries[1]["response"]["outcome"]["resourceType"] == "OperationOutcome"
    assert _count(rn, patient.address) == 1


def test_bundle_binary_reference_and_refused_references(
    rn: RunningNode, hospital: Fhir, patient: LocalAccount
) -> None:
    binary = {
        "resourceType": "Binary",
        "contentType": "text/plain",
        "data": base64.b64encode(b"by reference").decode(),
    }
    doc = document(patient.address)
    doc["content"] = [{"attachment": {"url": "urn:uuid:00000000-0000-4000-8000-000000000000"}}]
    r = hospital.post("", transaction([binary, doc]))
    assert r.status_code == 200, r.text
    binary_loc, doc_loc = (e["response"]["location"] for e in r.json()["entry"])
    assert binary_loc.split("/")[1] == doc_loc.split("/")[1]  # one record
    stored = hospital.get("/" + "/".join(doc_loc.split("/")[:2])).json()
    assert stored["content"][0]["attachment"]["size"] == len(b"by reference")
    assert _count(rn, patient.address) == 1
    chained = document(patient.address)
    chained["relatesTo"] = [
        {
            "code": "replaces",
            "target": {"reference": "urn:uuid:00000000-0000-4000-8000-000000000000"},
        }
    ]
    r = hospital.post("", transaction([document(patient.address), chained]))
    assert r.status_code == 400 and "relatesTo" in issues(r)[0]["diagnostics"]
    assert hospital.post("", {"resourceType": "Bundle", "type": "collection"}).status_code == 400


def test_bundle_entry_limit(rn: RunningNode, hospital: Fhir, patient: LocalAccount) -> None:
    limit = rn.node.settings.fhir.bundle_max_entries
    too_many = transaction([document(patient.address, b"x")] * (limit + 1))
    r = hospital.post("", too_many)
    assert r.status_code == 413 and "bundle_max_entries" in issues(r)[0]["diagnostics"]


def test_provenance_of_an_anchored_document(
    rn: RunningNode, hospital: Fhir, callers: Callers, patient: LocalAccount
) -> None:
    rid = _create(hospital, document(patient.address, b"anchor me"))["id"]
    pending = hospital.get("/Provenance", params={"target": f"DocumentReference/{rid}"})
    with rn.client(callers.hospital) as c:
        receipt = c.wait_anchored("0x" + rid)
    assert pending.status_code == 200 and pending.json()["total"] in (0, 1)
    r = hospital.get("/Provenance", params={"target": f"DocumentReference/{rid}"})
    assert r.status_code == 200 and r.json()["total"] == 1
    prov = Provenance.model_validate(r.json()["entry"][0]["resource"])
    assert prov.target[0].reference == f"DocumentReference/{rid}"
    anchor = prov.extension[0].extension
    values = {e.url: e.valueString for e in anchor if e.valueString is not None}
    assert values["transaction"] == receipt["tx_hash"]
    assert values["root"] == receipt["root"]
    assert [e.valueString for e in anchor if e.url == "proof"] == receipt["proof"]
    assert prov.agent[0].who.identifier.value == rn.node.chain.hospital
    assert hospital.get(f"/Provenance/{rid}").json()["id"] == rid
    doc = hospital.get(f"/DocumentReference/{rid}").json()
    status = [e for e in doc["extension"][0]["extension"] if e["url"] == "status"]
    assert status[0]["valueCode"] == "anchored"
    assert hospital.get("/Provenance").status_code == 400
    assert hospital.get(f"/Provenance/{'ab' * 32}").status_code == 404


def test_patient_by_wallet_and_directory_identifier(
    rn: RunningNode, hospital: Fhir, patient: LocalAccount
) -> None:
    assert hospital.get(f"/Patient/{patient.address}").status_code == 404  # nothing known
    _create(hospital, document(patient.address))
    r = hospital.get(f"/Patient/{patient.address}")
    assert r.status_code == 200
    assert r.json()["identifier"][0] == {
        "use": "official",
        "system": WALLET_SYSTEM,
        "value": patient.address,
    }
    rn.node.patients.link(
        "urn:oid:2.16.840.1.113883.19.5", "MRN-77", patient.address, source="test"
    )
    found = hospital.get("/Patient", params={"identifier": "urn:oid:2.16.840.1.113883.19.5|MRN-77"})
    assert (
        found.json()["total"] == 1 and found.json()["entry"][0]["resource"]["id"] == patient.address
    )
    by_wallet = hospital.get(
        "/Patient", params={"identifier": f"{WALLET_SYSTEM}|{patient.address}"}
    )
    assert by_wallet.json()["total"] == 1
    assert hospital.get("/Patient", params={"identifier": "urn:x|none"}).json()["total"] == 0
    own = _session(rn, patient)
    try:
        assert own.get(f"/Patient/{patient.address}").status_code == 200
        assert own.get("/Patient").json()["total"] == 1
        other = Account.create()
        _create(hospital, document(other.address))
        assert own.get(f"/Patient/{other.address}").status_code == 403
    finally:
        own.close()


def test_subject_by_directory_identifier(
    rn: RunningNode, hospital: Fhir, patient: LocalAccount
) -> None:
    rn.node.patients.link("urn:oid:9.9", "MRN-1", patient.address, source="test")
    doc = document(patient.address)
    doc["subject"] = {"identifier": {"system": "urn:oid:9.9", "value": "MRN-1"}}
    created = _create(hospital, doc)
    assert created["subject"]["reference"] == f"Patient/{patient.address}"
    doc["subject"] = {"identifier": {"system": "urn:oid:9.9", "value": "unknown"}}
    assert hospital.post("/DocumentReference", doc).status_code == 400


def test_fhir_json_content_type_on_success(hospital: Fhir) -> None:
    r = hospital.get("/metadata")
    assert r.headers["content-type"] == "application/fhir+json; fhirVersion=4.0"
    assert FHIR_JSON in r.headers["content-type"]


def test_edge_refusals_under_fhir_are_operation_outcomes(rn: RunningNode, callers: Callers) -> None:
    """Refused before a route runs (the body guard): still an OperationOutcome under /fhir."""
    limit = rn.node.settings.api.batch_max_bytes
    too_big = raw_request(
        rn.url,
        b"POST /fhir HTTP/1.1\r\n"
        + host_header(rn.url)
        + f"\r\nAuthorization: Bearer {callers.hospital}\r\n".encode()
        + b"Content-Type: application/fhir+json\r\n"
        + f"Content-Length: {limit + 1}".encode(),
    )
    assert too_big.status == 413
    assert json.loads(too_big.body)["issue"][0]["code"] == "too-long"
    assert (too_big.header("content-type") or "").startswith(FHIR_JSON)
    stranger = httpx.post(
        rn.url + "/fhir/DocumentReference",
        content=b"{}",
        headers={"Authorization": "Bearer emr_" + "A" * 43, "Content-Type": FHIR_JSON},
        timeout=30,
    )
    assert stranger.status_code == 401 and issues(stranger)[0]["code"] == "login"
    # the node's own routes keep their body there too
    plain = httpx.post(rn.url + "/records/batch", content=b"x", headers={"Content-Type": "a/b"})
    assert plain.status_code == 401 and plain.json()["error"] == "unauthenticated"
