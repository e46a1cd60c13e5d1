"""A record's ciphertext is bound to the metadata a read relies on (blob version 2), and
records sealed before that (version 1: bound to the record id only) still read."""

from __future__ import annotations

import dataclasses
import hashlib
import time

import pytest
from eth_account import Account

from hsm.envelope import seal
from node.chain.record_ids import new_record_id
from node.client import EmrClient
from node.flows.read_record import open_record
from node.flows.record_binding import record_aad, row_aad
from storage.exceptions import IntegrityError
from storage.models import RecordRow
from tests.node.conftest import RunningNode

PATIENT = "0x52908400098527886E0F7030069857D2E4169EE7"
OTHER = "0x8617E340B3D01FA5F11F306F4090FD50E238070D"
FIELDS = {
    "record_id": b"\x01" * 32,
    "patient": PATIENT,
    "category": "lab",
    "content_type": "text/plain",
    "previous_id": None,
}


def test_version_2_binds_every_access_relevant_field() -> None:
    base = record_aad(2, **FIELDS)
    assert len(base) == 32 + 20 + 32 + 32 + 1
    changed = [
        {"record_id": b"\x02" * 32},
        {"patient": OTHER},
        {"category": "imaging"},
        {"category": "lab "},
        {"content_type": "text/html"},
        {"content_type": "text/plain; charset=utf-8"},
        {"previous_id": b"\x03" * 32},
        {"previous_id": bytes(32)},
    ]
    aads = {record_aad(2, **{**FIELDS, **change}) for change in changed}
    assert base not in aads and len(aads) == len(changed)
    # The patient is the address, not its spelling.
    assert record_aad(2, **{**FIELDS, "patient": PATIENT.lower()}) == base


def test_version_1_is_the_record_id() -> None:
    assert record_aad(1, **FIELDS) == FIELDS["record_id"]
    assert record_aad(1, **{**FIELDS, "patient": OTHER, "category": "x"}) == FIELDS["record_id"]
    with pytest.raises(ValueError):
        record_aad(3, **FIELDS)


def test_a_malformed_row_is_an_integrity_error() -> None:
    for change in (
        {"patient": "mallory"},
        {"patient": PATIENT + "\n"},
        {"record_id": b"\x01" * 31},
        {"previous_id": b"x"},
    ):
        with pytest.raises(IntegrityError):
            record_aad(2, **{**FIELDS, **change})


def _v1_row(rn: RunningNode, patient: str, content: bytes) -> RecordRow:
    """Store a record the way the node sealed records before version 2: through the
    envelope API, with the record id alone as associated data."""
    node = rn.node
    rid = new_record_id(node.chain.member_id(node.chain.hospital))
    sealed = seal(content, rid, node.keys, version=1)
    [cid] = node.blobs.put_many([sealed.blob])
    row = RecordRow(
        record_id=rid,
        patient=patient,
        category="lab",
        content_type="text/plain",
        cid=cid,
        content_hash=hashlib.sha256(content).digest(),
        size=len(content),
        wrapped_key=sealed.wrapped_key.blob,
        kek_version=sealed.wrapped_key.kek_version,
        creator=node.hospital,
        created_at=int(time.time()),
    )
    node.index.add_records([row])
    return row


def test_records_sealed_before_the_binding_still_read(
    running_node: RunningNode, hospital: EmrClient, auditor: EmrClient, public: EmrClient
) -> None:
    patient = Account.create()
    row = _v1_row(running_node, patient.address, b"sealed under blob version 1")
    rid = "0x" + row.record_id.hex()
    assert running_node.node.blobs.get(row.cid)[0] == 1
    r = public.read(rid, public.login(patient))
    assert r.content == b"sealed under blob version 1"
    assert r.headers["x-access-basis"] == "patient"
    hospital.wait_anchored(rid)
    assert auditor.verify(rid)["verified"]


def test_new_records_are_bound_and_open_only_with_their_row(
    running_node: RunningNode, hospital: EmrClient
) -> None:
    node = running_node.node
    rec = hospital.upload(Account.create().address, b"bound", category="lab")
    row = node.index.get_record(bytes.fromhex(rec["record_id"][2:]))
    assert node.blobs.get(row.cid)[0] == 2
    assert open_record(row, blobs=node.blobs, keys=node.keys) == b"bound"
    assert row_aad(row, 2) == record_aad(
        2,
        record_id=row.record_id,
        patient=row.patient,
        category=row.category,
        content_type=row.content_type,
        previous_id=row.previous_id,
    )
    for change in (
        {"patient": Account.create().address},
        {"category": "imaging"},
        {"content_type": "text/html"},
        {"previous_id": b"\x09" * 32},
        {"patient": "not an address"},
    ):
        with pytest.raises(IntegrityError, match=rec["record_id"][2:]):
            open_record(dataclasses.replace(row, **change), blobs=node.blobs, keys=node.keys)
