"""Uploads with document metadata (the hospital standards' model, issue 12): what an
identifier's uniqueness means for single uploads that share a group commit and for batches
that are all or nothing."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from eth_account import Account

from node.exceptions import Conflict, InvalidRequest
from node.flows.upload_record import UploadRequest, check_upload
from node.wiring import Node
from storage.models import DocumentMeta, RecordQuery
from tests.node.conftest import RunningNode


@pytest.fixture
def node(running_node: RunningNode) -> Iterator[Node]:
    yield running_node.node


PATIENT = Account.create().address


def _request(n: int, identifier: str | None = None, **doc: object) -> UploadRequest:
    meta = DocumentMeta(source="fhir", identifier=identifier, **doc)  # type: ignore[arg-type]
    return UploadRequest(PATIENT, "lab", "text/plain", b"doc %d" % n, document=meta)


def test_metadata_is_stored_with_the_record(node: Node) -> None:
    req = _request(
        1,
        "urn:oid:1.2|A",
        type_system="http://loinc.org",
        type_code="11502-2",
        clinical_time=1_600_000_000,
        attributes={"hl7.control_id": "M1"},
    )
    row = node.uploads.submit(req)
    assert node.index.get_record(row.record_id).document == req.document
    found = node.index.find_records(RecordQuery(attributes={"hl7.control_id": "M1"}))
    assert [r.record_id for r in found] == [row.record_id]


def test_concurrent_uploads_with_one_identifier_store_one_record(node: Node) -> None:
    # Eight callers race with the same identifier and eight with their own: every caller
    # with its own identifier succeeds even when it shares a commit with the racers.
    results: dict[int, object] = {}

    def upload(n: int, identifier: str) -> None:
        try:
            results[n] = node.uploads.submit(_request(n, identifier))
        except Conflict as err:
            results[n] = err

    threads = [
        threading.Thread(target=upload, args=(n, "same|1" if n % 2 else f"own|{n}"))
        for n in range(16)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    racers = [results[n] for n in range(1, 16, 2)]
    assert sum(not isinstance(r, Conflict) for r in racers) == 1
    assert all(not isinstance(results[n], Conflict) for n in range(0, 16, 2))
    assert node.index.count_records(RecordQuery(identifier="same|1")) == 1
    assert node.index.count_records(RecordQuery(source="fhir")) == 9


def test_a_batch_with_a_taken_identifier_stores_nothing(node: Node) -> None:
    node.uploads.submit(_request(1, "taken|1"))
    with pytest.raises(Conflict):
        node.uploads.commit_now([_request(2, "free|2"), _request(3, "taken|1")])
    with pytest.raises(InvalidRequest):
        node.uploads.commit_now([_request(4, "twice|1"), _request(5, "twice|1")])
    assert node.index.count_records(RecordQuery(source="fhir")) == 1


def test_check_upload_refuses_bad_metadata_and_taken_identifiers(node: Node) -> None:
    node.uploads.submit(_request(1, "taken|1"))
    with pytest.raises(Conflict):
        check_upload(_request(2, "taken|1"), node.index)
    with pytest.raises(InvalidRequest):
        check_upload(_request(3, attributes={"Bad Name": "x"}), node.index)
    with pytest.raises(InvalidRequest):
        check_upload(_request(4, type_system="http://loinc.org"), node.index)
    check_upload(_request(5, "free|5"), node.index)
