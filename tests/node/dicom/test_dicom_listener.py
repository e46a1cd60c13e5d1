"""The Storage SCP on its own, over real TCP, with a real patient directory and ingest step
around stand-ins for the node's upload coalescer and index: who may connect, and what a
storage outage answers."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account

from node.dicom.ingest import DICOM_SYSTEM_PREFIX, DicomIngest, StoreStatus
from node.dicom.scp import DicomListener
from node.flows.upload_record import UploadRequest
from node.patients import PatientDirectory
from storage.exceptions import BackendUnavailable
from storage.models import RecordQuery, RecordRow
from tests.node.dicom.conftest import MODALITY_AE, Modality, dicom_settings, fresh_copy


class _Uploads:
    """The coalescer's blocking submit: refuses while ``down``, else keeps the row."""

    def __init__(self) -> None:
        self.down = False
        self.stored: list[UploadRequest] = []

    def submit(self, request: UploadRequest) -> RecordRow:
        if self.down:
            raise BackendUnavailable("blob store unreachable")
        self.stored.append(request)
        return RecordRow(
            record_id=bytes(32),
            patient=request.patient,
            category=request.category,
            content_type=request.content_type,
            cid="cid",
            content_hash=bytes(32),
            size=len(request.content),
            wrapped_key=b"k",
            kek_version=1,
            creator=request.patient,
            created_at=0,
            document=request.document,
        )


class _Index:
    def __init__(self, uploads: _Uploads) -> None:
        self.uploads = uploads

    def find_records(self, query: RecordQuery) -> list[RecordRow]:
        return []


@pytest.fixture
def patients(tmp_path: Path) -> Iterator[PatientDirectory]:
    directory = PatientDirectory(tmp_path / "patients.sqlite")
    yield directory
    directory.close()


@contextmanager
def _listener(
    patients: PatientDirectory, uploads: _Uploads, **settings: Any
) -> Iterator[tuple[DicomListener, Modality]]:
    s = dicom_settings(**settings)
    ingest = DicomIngest(
        uploads=uploads,  # type: ignore[arg-type]
        index=_Index(uploads),  # type: ignore[arg-type]
        patients=patients,
        max_instance_bytes=s.max_instance_bytes,
    )
    listener = DicomListener(s, ingest)
    listener.start()
    try:
        host, port = listener.address
        yield listener, Modality(host, port)
    finally:
        listener.stop()


def test_a_peer_outside_the_allowed_networks_is_refused(patients: PatientDirectory) -> None:
    uploads = _Uploads()
    with _listener(patients, uploads, allowed_peers=["10.0.0.0/8"]) as (_, modality):
        assert modality.echo() is None
        ds = fresh_copy("CT_small.dcm", PatientID=Account.create().address)
        assert modality.store([ds]) is None
    assert uploads.stored == []
    # the positive control: the same SCP admits loopback when it is allowed
    with _listener(patients, uploads, allowed_peers=["127.0.0.0/8"]) as (_, modality):
        assert modality.echo() == 0


def test_no_allowed_calling_ae_title_admits_nobody(patients: PatientDirectory) -> None:
    uploads = _Uploads()
    with _listener(patients, uploads, allowed_calling_aes=[]) as (_, modality):
        assert modality.echo() is None


def test_a_storage_outage_answers_out_of_resources_then_stores(
    patients: PatientDirectory,
) -> None:
    uploads = _Uploads()
    account = Account.create()
    patients.link(DICOM_SYSTEM_PREFIX + MODALITY_AE, "OUTAGE-1", account.address, source="t")
    ds = fresh_copy("CT_small.dcm", PatientID="OUTAGE-1")
    with _listener(patients, uploads) as (_, modality):
        uploads.down = True
        (status,) = modality.store([ds]) or []
        assert int(status.Status) == StoreStatus.OUT_OF_RESOURCES == 0xA700
        assert uploads.stored == []
        uploads.down = False  # the SCU retries once storage is back
        (status,) = modality.store([ds]) or []
        assert int(status.Status) == 0
    (request,) = uploads.stored
    assert request.patient == account.address
    assert request.document is not None
    assert request.document.identifier == f"urn:dicom:uid|{ds.SOPInstanceUID}"


def test_an_instance_larger_than_the_limit_is_refused(patients: PatientDirectory) -> None:
    uploads = _Uploads()
    ds = fresh_copy("CT_small.dcm", PatientID=Account.create().address)
    with _listener(patients, uploads, max_instance_bytes=4096) as (_, modality):
        (status,) = modality.store([ds]) or []
        assert int(status.Status) == StoreStatus.TOO_LARGE
    assert uploads.stored == []


def test_stop_releases_the_port(patients: PatientDirectory) -> None:
    with _listener(patients, _Uploads()) as (listener, modality):
        assert modality.echo() == 0
    with socket.socket() as s, pytest.raises(OSError):
        s.connect((modality.host, modality.port))
    with pytest.raises(RuntimeError):
        _ = listener.address
