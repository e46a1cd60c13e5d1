"""POST /records/batch: many records in one request and one commit, all or nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount

from node.client import ApiError, BatchRecord, EmrClient
from storage.exceptions import BackendUnavailable
from tests.node.conftest import RunningNode, make_settings, start_node

MAX_RECORDS = 60
MAX_BYTES = 256 * 1024  # per request; each record at most 64 KiB (make_settings)


@pytest.fixture(scope="module")
def rn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningNode]:
    data_dir: Path = tmp_path_factory.mktemp("batch") / "node"
    # Anchoring only when a test flushes: the anchoring queue's length shows what a request
    # queued.
    settings = make_settings(data_dir, anchor_interval=3600.0, anchor_batch_size=5000)
    api = settings.api.model_copy(
        update={"batch_max_records": MAX_RECORDS, "batch_max_bytes": MAX_BYTES}
    )
    node = start_node(data_dir, settings.model_copy(update={"api": api}))
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture(scope="module")
def tokens(rn: RunningNode) -> dict[str, str]:
    with rn.client(rn.admin_token) as admin:
        return {role: admin.create_token(f"batch-{role}", role) for role in ("hospital", "auditor")}


@pytest.fixture
def hospital(rn: RunningNode, tokens: dict[str, str]) -> Iterator[EmrClient]:
    with rn.client(tokens["hospital"]) as client:
        yield client


def _indexed(rn: RunningNode) -> tuple[int, int]:
    """Records in the index, and in its anchoring queue (the anchorer only runs when a test
    flushes it)."""
    index = rn.node.index
    return len(index.list_records(limit=100_000)), index.count_pending_anchors()


def _post(
    rn: RunningNode,
    manifest: Any,
    files: list[tuple[str, tuple[str, bytes, str]]],
    token: str | None,
) -> httpx.Response:
    text = manifest if isinstance(manifest, str) else json.dumps(manifest)
    parts: list[tuple[str, Any]] = [("manifest", (None, text, "application/json")), *files]
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.post(f"{rn.url}/records/batch", files=parts, headers=headers, timeout=60)


def _entry(part: str, patient: str, **extra: str) -> dict[str, str]:
    return {"part": part, "patient": patient, "category": "lab", **extra}


def _file(part: str, content: bytes = b"x") -> tuple[str, tuple[str, bytes, str]]:
    return (part, (part, content, "text/plain"))


def test_fifty_records_are_stored_readable_and_anchored(
    rn: RunningNode, hospital: EmrClient
) -> None:
    patients: list[LocalAccount] = [Account.create() for _ in range(5)]
    records = [
        BatchRecord(
            patients[i % 5].address,
            f"record {i}: ".encode() + bytes([i]) * 4096,
            category=("lab", "imaging", "note")[i % 3],
            content_type="text/plain",
        )
        for i in range(50)
    ]
    before = _indexed(rn)
    results = hospital.upload_batch(records)

    assert len(results) == 50
    assert len({r["record_id"] for r in results}) == 50
    assert _indexed(rn) == (before[0] + 50, before[1] + 50)
    for rec, out in zip(records, results, strict=True):  # manifest order
        assert out["patient"] == rec.patient and out["category"] == rec.category
        assert out["size"] == len(rec.content) and out["anchored"] is False
        assert out["content_type"] == "text/plain" and out["previous_id"] is None

    rn.node.anchorer.flush_now()
    sessions = {}
    with rn.client() as anyone:
        for patient in patients:
            sessions[patient.address] = anyone.login(patient)
        for rec, out in zip(records, results, strict=True):
            assert hospital.receipt(out["record_id"])["status"] == "anchored"
            read = anyone.read(out["record_id"], sessions[rec.patient])
            assert read.content == rec.content
            # Another patient may not read it.
            other = sessions[
                patients[0].address if rec.patient != patients[0].address else patients[1].address
            ]
            with pytest.raises(ApiError) as refused:
                anyone.read(out["record_id"], other)
            assert refused.value.status == 403


def test_previous_id_chains_across_batches(rn: RunningNode, hospital: EmrClient) -> None:
    patient = Account.create().address
    first = hospital.upload_batch([BatchRecord(patient, b"v1", category="note")])[0]
    second = hospital.upload_batch(
        [
            BatchRecord(patient, b"v2", category="note", previous_id=first["record_id"]),
            BatchRecord(patient, b"other", category="lab"),
        ]
    )
    third = hospital.upload_batch(
        [BatchRecord(patient, b"v3", category="note", previous_id=second[0]["record_id"])]
    )[0]
    assert second[0]["previous_id"] == first["record_id"]
    assert second[1]["previous_id"] is None
    assert third["previous_id"] == second[0]["record_id"]
    assert hospital.record(third["record_id"])["previous_id"] == second[0]["record_id"]


@pytest.mark.parametrize(
    ("case", "field"),
    [
        ("bad patient", "manifest[1].patient"),
        ("bad category", "manifest[1].category"),
        ("bad content type", "manifest[1].content_type"),
        ("unknown field", "manifest[1].colour"),
        ("missing part", "manifest[1].part"),
        ("empty file", "manifest[1].part"),
        ("duplicate entry part", "manifest[1].part"),
        ("duplicate file part", "manifest[1].part"),
        ("unknown previous_id", "manifest[1].previous_id"),
        ("previous_id of another patient", "manifest[1].previous_id"),
        ("part not in manifest", "manifest"),
        ("part named manifest", "manifest[1].part"),
        ("not a list", "manifest"),
        ("empty manifest", "manifest"),
        ("not JSON", "manifest"),
    ],
)
def test_a_bad_entry_is_refused_and_nothing_is_stored(
    rn: RunningNode, hospital: EmrClient, tokens: dict[str, str], case: str, field: str
) -> None:
    patient = Account.create().address
    stranger = hospital.upload(Account.create().address, b"theirs", category="lab")
    good = _entry("a", patient)
    second = _entry("b", patient)
    manifest: Any = [good, second]
    files = [_file("a"), _file("b")]
    if case == "bad patient":
        second["patient"] = "0x1234"
    elif case == "bad category":
        second["category"] = "Not A Category"
    elif case == "bad content type":
        second["content_type"] = "text"
    elif case == "unknown field":
        second["colour"] = "red"
    elif case == "missing part":
        files = files[:1]
    elif case == "empty file":
        files[1] = _file("b", b"")
    elif case == "duplicate entry part":
        second["part"] = "a"
        files = files[:1]
    elif case == "duplicate file part":
        files.append(_file("b", b"again"))
    elif case == "unknown previous_id":
        second["previous_id"] = "0x" + "ab" * 32
    elif case == "previous_id of another patient":
        second["previous_id"] = stranger["record_id"]
    elif case == "part not in manifest":
        files.append(_file("c"))
    elif case == "part named manifest":
        second["part"] = "manifest"
    elif case == "not a list":
        manifest = {"part": "a"}
    elif case == "empty manifest":
        manifest, files = [], []
    elif case == "not JSON":
        manifest = "[{"
    before = _indexed(rn)
    r = _post(rn, manifest, files, tokens["hospital"])
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["error"] == "validation_failed"
    assert body["detail"].startswith(field), body["detail"]
    assert _indexed(rn) == before


def test_too_many_records(rn: RunningNode, tokens: dict[str, str]) -> None:
    patient = Account.create().address
    n = MAX_RECORDS + 1
    before = _indexed(rn)
    r = _post(
        rn,
        [_entry(f"p{i}", patient) for i in range(n)],
        [_file(f"p{i}") for i in range(n)],
        tokens["hospital"],
    )
    assert r.status_code == 413, r.text
    assert str(MAX_RECORDS) in r.json()["detail"]
    # A manifest longer than the limit is refused by its length too.
    r = _post(rn, [_entry(f"p{i}", patient) for i in range(n)], [], tokens["hospital"])
    assert r.status_code == 413, r.text
    assert _indexed(rn) == before


def test_too_big(rn: RunningNode, tokens: dict[str, str]) -> None:
    patient = Account.create().address
    before = _indexed(rn)
    # The whole body past batch_max_bytes (each record within its own limit).
    blob = b"z" * (60 * 1024)
    r = _post(
        rn,
        [_entry(f"p{i}", patient) for i in range(5)],
        [_file(f"p{i}", blob) for i in range(5)],
        tokens["hospital"],
    )
    assert r.status_code == 413, r.text
    assert r.json()["error"] == "payload_too_large"
    # One record past max_upload_bytes, in a body within the batch limit.
    r = _post(
        rn,
        [_entry("a", patient), _entry("b", patient)],
        [_file("a"), _file("b", b"z" * (64 * 1024 + 1))],
        tokens["hospital"],
    )
    assert r.status_code == 413, r.text
    assert r.json()["detail"].startswith("manifest[1]")
    assert _indexed(rn) == before


def test_only_hospital_tokens(rn: RunningNode, tokens: dict[str, str]) -> None:
    patient = Account.create()
    manifest, files = [_entry("a", patient.address)], [_file("a")]
    before = _indexed(rn)
    r = _post(rn, manifest, files, None)
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    r = _post(rn, manifest, files, "emr_" + "A" * 43)
    assert r.status_code == 401
    r = _post(rn, manifest, files, tokens["auditor"])
    assert r.status_code == 403 and r.json()["error"] == "forbidden"
    with rn.client() as anyone:
        session = anyone.login(patient)
    r = _post(rn, manifest, files, session)
    assert r.status_code == 403
    assert _indexed(rn) == before
    r = _post(rn, manifest, files, rn.admin_token)  # the admin token passes every role check
    assert r.status_code == 201, r.text


def test_a_failed_index_write_stores_nothing(
    rn: RunningNode, tokens: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The index transaction fails after the blobs were written: no row, no queued anchor,
    and the ciphertexts written for the request are deleted again."""
    index, blobs = rn.node.index, rn.node.blobs
    written: list[str] = []
    put_many = blobs.put_many

    def recording_put_many(data: Any) -> list[str]:
        cids = put_many(data)
        written.extend(cids)
        return cids

    def failing_add_records(_rows: Any) -> None:
        raise BackendUnavailable("index down")

    monkeypatch.setattr(blobs, "put_many", recording_put_many)
    monkeypatch.setattr(index, "add_records", failing_add_records)
    patient = Account.create().address
    before = _indexed(rn)
    r = _post(
        rn,
        [_entry("a", patient), _entry("b", patient)],
        [_file("a", b"first"), _file("b", b"second")],
        tokens["hospital"],
    )
    assert r.status_code == 503, r.text
    monkeypatch.undo()
    assert _indexed(rn) == before
    assert len(written) == 2 and not any(blobs.has(cid) for cid in written)


def test_documented(rn: RunningNode) -> None:
    doc = httpx.get(f"{rn.url}/openapi.json").json()
    operation = doc["paths"]["/records/batch"]["post"]
    assert {"201", "400", "401", "403", "408", "413", "422", "429", "503"} <= set(
        operation["responses"]
    )
    assert "All or nothing" in operation["description"]
    body = operation["requestBody"]["content"]["multipart/form-data"]
    assert body["schema"]["required"] == ["manifest"]


def test_document_metadata_is_stored_and_identifiers_are_unique(
    rn: RunningNode, tokens: dict[str, str]
) -> None:
    patient = Account.create().address
    doc = {
        "type_system": "http://loinc.org",
        "type_code": "11502-2",
        "title": "Full blood count",
        "clinical_time": 1_600_000_000,
        "identifier": f"urn:lab:orders|{patient}",
    }
    entry = {**_entry("r0", patient), "document": doc}
    r = _post(rn, [entry], [_file("r0")], tokens["hospital"])
    assert r.status_code == 201, r.text
    stored = r.json()[0]["document"]
    assert stored == {**doc, "source": "api", "type_display": None, "attributes": {}}
    rid = r.json()[0]["record_id"]
    with rn.client(tokens["hospital"]) as client:
        assert client.record(rid)["document"]["identifier"] == doc["identifier"]
    before = _indexed(rn)
    # The same identifier again: 409, and the batch-mate is not stored either.
    again = [_entry("a", patient), {**_entry("b", patient), "document": doc}]
    r = _post(rn, again, [_file("a"), _file("b")], tokens["hospital"])
    assert r.status_code == 409, r.text
    assert "manifest[1].document.identifier" in r.json()["detail"]
    # Two entries with one new identifier: 422 naming the second.
    fresh = {**doc, "identifier": "urn:lab:orders|fresh"}
    twice = [
        {**_entry("a", patient), "document": fresh},
        {**_entry("b", patient), "document": fresh},
    ]
    r = _post(rn, twice, [_file("a"), _file("b")], tokens["hospital"])
    assert r.status_code == 422, r.text
    assert "manifest[1]" in r.text
    # Unknown fields and bad values are refused by the manifest's schema.
    bad = [{**_entry("a", patient), "document": {"type_system": "x", "colour": "red"}}]
    assert _post(rn, bad, [_file("a")], tokens["hospital"]).status_code == 422
    assert _indexed(rn) == before
