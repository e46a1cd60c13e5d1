"""A FHIR client library (SMART's ``fhirclient`` 4.4.0, R4 models) drives a session over real
HTTP against a running node: capability, create, search with paging, read, Binary,
transaction, provenance. The node is the embedded default, and again the production
backends (MySQL, IPFS cluster, a Hardhat chain) under ``-m integration``."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest
from eth_account import Account
from fhirclient import client as fhir_client
from fhirclient.models.attachment import Attachment
from fhirclient.models.auditevent import AuditEvent  # issue 12: H-FHIR-CONSENT
from fhirclient.models.bundle import Bundle, BundleEntry, BundleEntryRequest
from fhirclient.models.capabilitystatement import CapabilityStatement
from fhirclient.models.codeableconcept import CodeableConcept
from fhirclient.models.coding import Coding
from fhirclient.models.consent import Consent  # issue 12: H-FHIR-CONSENT
from fhirclient.models.documentreference import DocumentReference, DocumentReferenceContent
from fhirclient.models.fhirdatetime import FHIRDateTime
from fhirclient.models.fhirinstant import FHIRInstant
from fhirclient.models.fhirreference import FHIRReference
from fhirclient.models.identifier import Identifier
from fhirclient.models.provenance import Provenance
from fhirclient.server import FHIRPermissionDeniedException, FHIRServer

from node.client import ApiError, Scope  # issue 12: H-FHIR-CONSENT
from node.fhir.common import CATEGORY_SYSTEM
from tests.node.conftest import RunningNode
from tests.node.fhir.test_consent import consent_resource  # issue 12: H-FHIR-CONSENT


def connect(url: str, token: str) -> FHIRServer:
    """fhirclient's server layer with the node's bearer credential on every request."""
    smart = fhir_client.FHIRClient(settings={"app_id": "emr-node-tests", "api_base": url})
    server: FHIRServer = smart.server
    server.session.headers["Authorization"] = f"Bearer {token}"
    return server


def make_document(patient: str, text: str, day: int, identifier: str) -> DocumentReference:
    doc = DocumentReference()
    doc.status = "current"
    doc.subject = FHIRReference({"reference": f"Patient/{patient}"})
    doc.category = [CodeableConcept({"coding": [{"system": CATEGORY_SYSTEM, "code": "lab"}]})]
    doc.type = CodeableConcept()
    doc.type.coding = [Coding({"system": "http://loinc.org", "code": "11502-2"})]
    doc.date = FHIRInstant(f"2024-05-{day:02d}T09:30:00Z")
    doc.description = f"report {day}"
    doc.identifier = [Identifier({"system": "urn:oid:1.2.3.4", "value": identifier})]
    attachment = Attachment()
    attachment.contentType = "text/plain"
    attachment.data = base64.b64encode(text.encode()).decode()
    doc.content = [DocumentReferenceContent({"attachment": attachment.as_json()})]
    return doc


@pytest.fixture
def session(running_node: RunningNode) -> Iterator[tuple[RunningNode, FHIRServer, str]]:
    with running_node.client(running_node.admin_token) as admin:
        token = admin.create_token("ehr-fhir", "hospital")
    yield running_node, connect(running_node.url + "/fhir", token), token


def test_fhirclient_session(session: tuple[RunningNode, FHIRServer, str]) -> None:
    rn, server, _token = session
    capability = server.capabilityStatement  # parsed by fhirclient's strict R4 models
    assert isinstance(capability, CapabilityStatement)
    assert capability.fhirVersion == "4.0.1"
    assert "DocumentReference" in {r.type for r in capability.rest[0].resource}

    patient = Account.create().address
    created = []
    for day in range(1, 6):
        answer = make_document(patient, f"result {day}", day, f"lab-{day}").create(server)
        assert answer is not None and answer["status"] == "current"
        created.append(answer["id"])

    # search with paging: fhirclient follows the next links
    search = DocumentReference.where(struct={"patient": patient, "_count": "2"})
    pages = list(search.perform_iter(server))
    assert len(pages) == 3 and all(p.total == 5 for p in pages)
    found = [e.resource.id for page in pages for e in page.entry or []]
    assert found == list(reversed(created))  # newest date first

    read = DocumentReference.read(created[0], server)
    assert read.subject.reference == f"Patient/{patient}"
    assert read.content[0].attachment.url == f"Binary/{created[0]}"
    assert read.identifier[0].value == "lab-1"
    assert read.date.datetime.day == 1

    # a transaction Bundle of three documents
    bundle = Bundle()
    bundle.type = "transaction"
    bundle.entry = []
    for i in range(3):
        entry = BundleEntry()
        entry.fullUrl = f"urn:uuid:00000000-0000-4000-8000-00000000000{i}"
        entry.resource = make_document(patient, f"bulk {i}", 10 + i, f"bulk-{i}")
        entry.request = BundleEntryRequest({"method": "POST", "url": "DocumentReference"})
        bundle.entry.append(entry)
    response = Bundle(bundle.create(server))
    assert response.type == "transaction-response"
    assert [e.response.status for e in response.entry] == ["201 Created"] * 3

    # provenance once the anchorer has run
    with rn.client(rn.admin_token) as admin:
        receipt = admin.wait_anchored("0x" + created[0])
    provenances = Provenance.where(struct={"target": f"DocumentReference/{created[0]}"})
    result = next(provenances.perform_iter(server))
    assert result.total == 1
    prov = result.entry[0].resource
    assert prov.target[0].reference == f"DocumentReference/{created[0]}"
    values = {e.url: e.valueString for e in prov.extension[0].extension}
    assert values["root"] == receipt["root"] and values["transaction"] == receipt["tx_hash"]
    assert isinstance(prov.recorded, FHIRInstant | FHIRDateTime)

    # the patient's own wallet reads the content; an auditor token may not
    with rn.client() as c:
        wallet_session = c.login(Account.from_key(b"\x01" * 32))
    other = connect(rn.url + "/fhir", wallet_session)
    with pytest.raises(FHIRPermissionDeniedException):
        other.request_json(f"DocumentReference?patient={patient}")

    # issue 12 (H-FHIR-CONSENT): a patient's signed consent granted and revoked through
    # fhirclient's Consent model; the audit trail searched as AuditEvents
    owner, reader = Account.create(), Account.create()
    with rn.client(_token) as hospital, rn.client() as public:
        rid = hospital.upload(owner.address, b"consented", category="lab")["record_id"]
        signed = public.sign_consent(owner, "Grant", reader.address, Scope.record(rid))
        reader_session = public.login(reader)
        granted = Consent(
            consent_resource(signed, record=rid.removeprefix("0x")), strict=True
        ).create(server)
        assert granted is not None and granted["status"] == "active"
        assert public.read(rid, reader_session).content == b"consented"
        consent = Consent.read(granted["id"], server)
        assert consent.provision.actor[0].reference.reference == f"Practitioner/{reader.address}"
        revoke = public.sign_consent(owner, "Revoke", reader.address, Scope.record(rid))
        revoked = Consent(
            consent_resource(
                revoke, primary="Revoke", status="inactive", record=rid.removeprefix("0x")
            ),
            strict=True,
        )
        revoked.id = consent.id
        assert revoked.update(server)["status"] == "inactive"
        found = Consent.where(struct={"patient": owner.address, "status": "inactive"})
        assert [c.id for c in found.perform_resources_iter(server)] == [consent.id]
        with pytest.raises(ApiError):
            public.read(rid, reader_session)
        rn.node.access_flusher.flush_now()
        auditor = connect(rn.url + "/fhir", rn.admin_token)
        trail = AuditEvent.where(struct={"patient": owner.address, "subtype": "read"})
        reads = list(trail.perform_resources_iter(auditor))
        assert [r.outcome for r in reads] == ["4", "0"]  # newest first: refused, then granted
        assert {r.source.observer.identifier.system for r in reads} == {"urn:emr-node:chain-tx"}
