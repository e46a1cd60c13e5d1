"""Unit tests of the FHIR mappings: DocumentReference ↔ record, search parameters, dates,
Bundles, SMART scopes, OperationOutcome and the CapabilityStatement."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime
from typing import Any

import pytest
from eth_account import Account
from fhir.resources.R4B.binary import Binary
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from fhir.resources.R4B.documentreference import DocumentReference
from fhir.resources.R4B.operationoutcome import OperationOutcome
from fhir.resources.R4B.provenance import Provenance

from node.auth.principal import Role, TokenPrincipal, WalletPrincipal
from node.fhir.bundle import check_bundle, check_duplicates, plan, response_bundle
from node.fhir.common import (
    CATEGORY_SYSTEM,
    WALLET_SYSTEM,
    FhirCaller,
    FhirError,
    _covers,
    capability_statement,
    operation_outcome,
    scopes_of,
)
from node.fhir.documents import (
    SHA1_ATTRIBUTE,
    binary_upload,
    date_range,
    parse,
    parse_if_none_exist,
    parse_search,
    record_id,
    to_resource,
    to_upload,
)
from node.fhir.patient import to_patient
from node.fhir.provenance import to_provenance
from storage.models import AnchorBatch, AnchorReceipt, DocumentMeta, RecordRow
from tests.node.fhir.helpers import document, transaction

PATIENT = Account.create().address
HOSPITAL = Account.create().address


def _row(content: bytes = b"hello", **kw: Any) -> RecordRow:
    fields: dict[str, Any] = {
        "record_id": bytes(range(32)),
        "patient": PATIENT,
        "category": "lab",
        "content_type": "text/plain",
        "cid": "bafy",
        "content_hash": hashlib.sha256(content).digest(),
        "size": len(content),
        "wrapped_key": b"k",
        "kek_version": 1,
        "creator": HOSPITAL,
        "created_at": 1_700_000_000,
    }
    fields.update(kw)
    return RecordRow(**fields)


def _ts(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp())


def test_create_maps_every_element_and_reads_back() -> None:
    doc = document(PATIENT, b"hello", identifier="A-1", replaces="ab" * 32)
    upload = to_upload(parse(doc), max_bytes=1000)
    req = upload.request
    assert (req.patient, req.category, req.content_type, req.content) == (
        PATIENT,
        "lab",
        "text/plain",
        b"hello",
    )
    assert req.previous_id == bytes.fromhex("ab" * 32)
    meta = req.document
    assert meta is not None and meta.source == "fhir"
    assert (meta.type_system, meta.type_code) == ("http://loinc.org", "11502-2")
    assert meta.identifier == upload.identifier == "urn:oid:1.2.3|A-1"
    assert meta.title == "CBC"
    assert meta.clinical_time == _ts("2024-01-01T10:00:00")
    sha1 = base64.b64encode(hashlib.sha1(b"hello").digest()).decode()
    assert meta.attributes[SHA1_ATTRIBUTE] == sha1
    # and back: the stored record as a DocumentReference that fhir.resources accepts
    row = _row(document=meta, previous_id=req.previous_id)
    resource = to_resource(row, superseded=True, anchored=False)
    model = DocumentReference.model_validate(resource)
    assert model.status == "superseded"
    assert model.identifier[0].system == "urn:oid:1.2.3" and model.identifier[0].value == "A-1"
    assert model.type.coding[0].code == "11502-2"
    assert model.category[0].coding[0].system == CATEGORY_SYSTEM
    assert model.date == datetime(2024, 1, 1, 10, tzinfo=UTC)
    assert model.relatesTo[0].target.reference == f"DocumentReference/{'ab' * 32}"
    assert base64.b64encode(bytes(model.content[0].attachment.hash)).decode() == sha1
    assert model.meta.versionId == row.record_id.hex() == model.id


def test_record_without_document_metadata_still_maps() -> None:
    model = DocumentReference.model_validate(to_resource(_row(), superseded=False))
    assert model.date == datetime.fromtimestamp(1_700_000_000, UTC)  # created_at
    assert model.content[0].attachment.hash is None  # no SHA-1 was computed for it
    assert model.type is None and model.description is None


@pytest.mark.parametrize(
    ("change", "expression"),
    [
        ({"status": "superseded"}, "DocumentReference.status"),
        ({"subject": {"reference": "Group/1"}}, "DocumentReference.subject.reference"),
        ({"subject": None}, "DocumentReference.subject"),
        (
            {"category": [{"coding": [{"system": "other", "code": "x"}]}]},
            "DocumentReference.category",
        ),
        (
            {"category": [{"coding": [{"system": CATEGORY_SYSTEM, "code": "Bad!"}]}]},
            "DocumentReference.category",
        ),
        (
            {"content": [{"attachment": {"contentType": "text/plain", "url": "http://x/y"}}]},
            "DocumentReference.content[0].attachment.data",
        ),
        (
            {"content": [{"attachment": {"data": "aGk="}}]},
            "DocumentReference.content[0].attachment.contentType",
        ),
        (
            {"content": [{"attachment": {"contentType": "text/plain", "data": "aGk=", "size": 3}}]},
            "DocumentReference.content[0].attachment.size",
        ),
        (
            {
                "content": [
                    {"attachment": {"contentType": "text/plain", "data": "aGk=", "hash": "AAAA"}}
                ]
            },
            "DocumentReference.content[0].attachment.hash",
        ),
        (
            {"relatesTo": [{"code": "appends", "target": {"reference": "DocumentReference/1"}}]},
            "DocumentReference.relatesTo[0].code",
        ),
        (
            {"identifier": [{"system": "a", "value": "1"}, {"system": "b", "value": "2"}]},
            "DocumentReference.identifier",
        ),
    ],
)
def test_create_refuses_what_cannot_be_stored(change: dict[str, Any], expression: str) -> None:
    doc = {**document(PATIENT), **change}
    doc = {k: v for k, v in doc.items() if v is not None}
    with pytest.raises(FhirError) as err:
        to_upload(parse(doc), max_bytes=1000)
    assert err.value.status == 400
    assert err.value.issues[0].expression == (expression,)


def test_create_size_limit_and_directory_subject() -> None:
    with pytest.raises(FhirError) as err:
        to_upload(parse(document(PATIENT, b"x" * 11)), max_bytes=10)
    assert err.value.status == 413
    doc = document(PATIENT)
    doc["subject"] = {"identifier": {"system": "urn:mrn", "value": "7"}}
    resolved = to_upload(
        parse(doc), resolve=lambda s, v: PATIENT if v == "7" else None, max_bytes=99
    )
    assert resolved.request.patient == PATIENT
    doc["subject"] = {"identifier": {"system": WALLET_SYSTEM, "value": PATIENT.lower()}}
    assert to_upload(parse(doc), max_bytes=99).request.patient == PATIENT


def test_validator_messages_become_issues() -> None:
    with pytest.raises(FhirError) as err:
        parse({**document(PATIENT), "date": "2024-13-99", "colour": "red"})
    outcome = operation_outcome(err.value.issues)
    OperationOutcome.model_validate(outcome)
    assert {tuple(i["expression"]) for i in outcome["issue"]} == {
        ("DocumentReference.date",),
        ("DocumentReference.colour",),
    }


def test_binary_upload_needs_patient_and_category() -> None:
    body = {
        "resourceType": "Binary",
        "contentType": "application/pdf",
        "securityContext": {"reference": f"Patient/{PATIENT}"},
        "data": base64.b64encode(b"%PDF").decode(),
    }
    model = Binary.model_validate(body)
    with pytest.raises(FhirError):
        binary_upload(model, category_header=None, max_bytes=100)
    req = binary_upload(model, category_header="imaging", max_bytes=100)
    assert (req.patient, req.category, req.content) == (PATIENT, "imaging", b"%PDF")
    tagged = Binary.model_validate(
        {**body, "meta": {"tag": [{"system": CATEGORY_SYSTEM, "code": "lab"}]}}
    )
    assert binary_upload(tagged, category_header=None, max_bytes=100).category == "lab"
    with pytest.raises(FhirError):  # two different categories
        binary_upload(tagged, category_header="imaging", max_bytes=100)


def test_date_ranges() -> None:
    day = _ts("2024-03-02T00:00:00")
    assert date_range("2024-03-02") == (day, day + 86400)
    assert date_range("ge2024-03-02") == (day, None)
    assert date_range("lt2024-03-02") == (None, day)
    assert date_range("le2024-03-02") == (None, day + 86400)
    assert date_range("gt2024-03-02") == (day + 86400, None)
    assert date_range("2024-03") == (_ts("2024-03-01T00:00:00"), _ts("2024-04-01T00:00:00"))
    assert date_range("2024-12")[1] == _ts("2025-01-01T00:00:00")
    assert date_range("2024") == (_ts("2024-01-01T00:00:00"), _ts("2025-01-01T00:00:00"))
    noon = _ts("2024-03-02T12:00:00")
    assert date_range("eq2024-03-02T14:00+02:00") == (noon, noon + 60)
    assert date_range("2024-03-02T12:00:00Z") == (noon, noon + 1)
    assert date_range("ge2024-03-02T12:00:05Z") == (noon + 5, None)
    for bad in ("2024-02-30", "ne2024-01-01", "yesterday", "2024-1-1"):
        with pytest.raises(FhirError):
            date_range(bad)


def test_search_parameters() -> None:
    s = parse_search(
        [
            ("patient", f"Patient/{PATIENT.lower()}"),
            ("category", f"{CATEGORY_SYSTEM}|lab"),
            ("type", "http://loinc.org|11502-2"),
            ("date", "ge2024-01-01"),
            ("date", "lt2024-02-01"),
            ("status", "superseded"),
            ("identifier", "urn:x|1"),
            ("_sort", "date"),
        ]
    )
    q = s.query(limit=5, offset=10, patient=s.patient)
    assert q.patient == PATIENT and q.category == "lab" and q.type_code == "11502-2"
    assert (q.since, q.until) == (_ts("2024-01-01T00:00:00"), _ts("2024-02-01T00:00:00"))
    assert q.status == "superseded" and q.identifier == "urn:x|1" and not q.newest_first
    assert (q.limit, q.offset) == (5, 10)
    for bad in (
        [("colour", "red")],
        [("category", "other|lab")],
        [("status", "entered-in-error")],
        [("_sort", "title")],
        [("patient", "Patient/1")],
        [("identifier", "nosystem")],
        [("status", "current"), ("status", "current")],
    ):
        with pytest.raises(FhirError):
            parse_search(bad)


def test_if_none_exist_and_ids() -> None:
    assert parse_if_none_exist("identifier=urn%3Aoid%3A1|a%7Cb") == "urn:oid:1|a|b"
    with pytest.raises(FhirError):
        parse_if_none_exist("patient=Patient/1")
    assert record_id("0x" + "ab" * 32) == record_id("AB" * 32)
    with pytest.raises(FhirError) as err:
        record_id("123")
    assert err.value.status == 404


def test_smart_scopes_of_each_credential() -> None:
    hospital = scopes_of(TokenPrincipal("h", Role.HOSPITAL))
    auditor = scopes_of(TokenPrincipal("a", Role.AUDITOR))
    admin = scopes_of(TokenPrincipal("x", Role.ADMIN))
    wallet = scopes_of(WalletPrincipal(PATIENT))

    def allows(scopes: tuple[str, ...], kind: str, action: str) -> bool:
        return any(_covers(s, kind, action) for s in scopes)  # type: ignore[arg-type]

    assert allows(hospital, "DocumentReference", "write") and allows(hospital, "Bundle", "write")
    assert not allows(hospital, "Binary", "read")  # content only through a wallet session
    assert not allows(hospital, "AuditEvent", "read")
    assert allows(auditor, "AuditEvent", "read") and not allows(
        auditor, "DocumentReference", "write"
    )
    assert set(hospital) | set(auditor) == set(admin)
    assert allows(wallet, "Patient", "read") and allows(wallet, "Consent", "write")
    assert not allows(wallet, "DocumentReference", "write")
    caller = FhirCaller(WalletPrincipal(PATIENT), wallet, frozenset({"patient", "user"}))
    assert caller.require_patient(None) == PATIENT
    with pytest.raises(FhirError):
        caller.require_patient(HOSPITAL)
    system = FhirCaller(TokenPrincipal("h", Role.HOSPITAL), hospital, frozenset({"system"}))
    assert system.require_patient(None) is None and system.require_patient(PATIENT) == PATIENT


def test_bundle_plan_transaction_answers() -> None:
    writes = frozenset({"DocumentReference", "Binary"})
    docs = [document(PATIENT, f"d{i}".encode(), identifier=f"i{i}") for i in range(3)]
    kind, raw = check_bundle(transaction(docs), 10)
    entries = plan(raw, resolve=None, max_bytes=100, may_write=writes)
    check_duplicates(entries)
    assert kind == "transaction" and all(e.ok for e in entries)
    for i, e in enumerate(entries):
        e.row = _row(f"d{i}".encode(), record_id=bytes([i]) * 32)
    answer = response_bundle("transaction", entries, representation=False)
    assert [e["response"]["status"] for e in answer["entry"]] == ["201 Created"] * 3
    assert (
        answer["entry"][1]["response"]["location"]
        == f"DocumentReference/{'01' * 32}/_history/{'01' * 32}"
    )
    with pytest.raises(FhirError) as err:
        check_bundle(transaction(docs), 2)
    assert err.value.status == 413
    with pytest.raises(FhirError):
        check_bundle(
            {
                "resourceType": "Bundle",
                "type": "transaction",
                "entry": [{"request": {"method": "GO"}}],
            },
            5,
        )


def test_bundle_plan_errors_name_the_entry() -> None:
    writes = frozenset({"DocumentReference"})
    docs = [document(PATIENT, identifier="same"), document(PATIENT, identifier="same")]
    binary = {"resourceType": "Binary", "contentType": "text/plain", "data": "aGk="}
    _, raw = check_bundle(transaction([*docs, binary]), 10)
    raw[0]["request"]["method"] = "PUT"
    entries = plan(raw, resolve=None, max_bytes=100, may_write=writes)
    check_duplicates(entries)
    assert entries[0].error is not None and entries[0].error.issues[0].expression == (
        "Bundle.entry[0].request.method",
    )
    assert entries[1].ok  # entry 0 failed, so entry 1's identifier is the first
    assert entries[2].error is not None and entries[2].error.status == 403  # no Binary.write


def test_provenance_patient_and_capability_are_valid_resources() -> None:
    batch = AnchorBatch(7, b"\x01" * 32, b"\x02" * 32, 99, HOSPITAL, 3, 1_700_000_100)
    receipt = AnchorReceipt(bytes(range(32)), b"\x03" * 32, [b"\x04" * 32, b"\x05" * 32], batch)
    prov = to_provenance(receipt)
    assert prov is not None
    model = Provenance.model_validate(prov)
    assert model.agent[0].who.identifier.value == HOSPITAL
    values = [(e.url, e.valueString) for e in model.extension[0].extension]
    assert ("root", "0x" + "01" * 32) in values and ("transaction", "0x" + "02" * 32) in values
    assert [v for u, v in values if u == "proof"] == ["0x" + "04" * 32, "0x" + "05" * 32]
    assert to_provenance(AnchorReceipt(bytes(32), b"", [], None)) is None
    patient = to_patient(PATIENT, [(WALLET_SYSTEM, PATIENT), ("urn:mrn", "7")])
    assert [i["value"] for i in patient["identifier"]] == [PATIENT, "7"]
    statement = capability_statement("http://x/fhir", "0.1.0", "2024-01-01T00:00:00Z")
    CapabilityStatement.model_validate(statement)


def test_document_meta_is_what_the_index_stores() -> None:
    # DocumentMeta is the shared model: the façade sets only documented fields
    upload = to_upload(parse(document(PATIENT)), max_bytes=100)
    assert isinstance(upload.request.document, DocumentMeta)
    assert set(upload.request.document.attributes) == {SHA1_ATTRIBUTE}
