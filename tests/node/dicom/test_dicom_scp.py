"""The Storage SCP over real TCP: pynetdicom's own SCU (the modality) C-ECHOs and C-STOREs
pydicom's bundled test files to a node built in-process; the records are indexed with the
instance's attributes and read back through WADO-RS by the patient's wallet."""

from __future__ import annotations

import httpx
from eth_account import Account
from eth_account.signers.local import LocalAccount
from pydicom.uid import generate_uid

from node.dicom.ingest import StoreStatus
from node.dicom.instance import CATEGORY, CONTENT_TYPE, SOURCE, parse_instance
from node.flows.read_record import open_record
from storage.models import RecordQuery
from tests.node.conftest import RunningNode
from tests.node.dicom.conftest import (
    MODALITY_AE,
    Modality,
    bundled_files,
    fresh_copy,
    link,
    read,
    wado,
)


def _records(rn: RunningNode, **attributes: str) -> list:
    return rn.node.index.find_records(
        RecordQuery(source=SOURCE, category=CATEGORY, attributes=attributes, limit=1000)
    )


def test_c_echo(modality: Modality) -> None:
    assert modality.echo() == 0x0000


def test_bundled_files_are_stored_indexed_and_read_back_by_the_patient(
    dicom_node: RunningNode, modality: Modality
) -> None:
    files = bundled_files()
    assert len(files) >= 40
    instances = [parse_instance(p.read_bytes()) for p in files]
    # One wallet per (issuer, PatientID), linked where the node looks it up.
    wallets: dict[tuple[str | None, str], LocalAccount] = {}
    for inst in instances:
        key = (inst.issuer_of_patient_id, inst.patient_id)
        if key not in wallets:
            wallets[key] = link(dicom_node, inst.patient_id, key[0], MODALITY_AE)
    # The same SOP Instance UID recurs (one instance in several transfer syntaxes): stored
    # once; sent again for another patient, refused.
    expected: list[int] = []
    owner: dict[str, str] = {}
    for inst in instances:
        wallet = wallets[(inst.issuer_of_patient_id, inst.patient_id)].address
        first = owner.setdefault(inst.sop_instance_uid, wallet)
        expected.append(0x0000 if first == wallet else StoreStatus.OTHER_PATIENT)

    statuses = modality.store([read(p) for p in files])

    assert statuses is not None
    assert [int(s.Status) for s in statuses] == expected
    for inst, status in zip(instances, statuses, strict=True):
        if int(status.Status) != 0:
            continue
        (row,) = _records(dicom_node, **{"dicom.sop_uid": inst.sop_instance_uid})
        assert row.patient == owner[inst.sop_instance_uid]
        assert row.content_type == CONTENT_TYPE
        doc = row.document
        assert doc is not None
        assert doc.identifier == f"urn:dicom:uid|{inst.sop_instance_uid}"
        assert (doc.type_system, doc.type_code) == (
            "http://dicom.nema.org/resources/ontology/DCM",
            inst.modality,
        )
        assert doc.attributes["dicom.study_uid"] == inst.study_uid
        assert doc.attributes["dicom.series_uid"] == inst.series_uid
        assert doc.attributes["dicom.sop_class_uid"] == inst.sop_class_uid
        assert doc.attributes["dicom.patient_id"] == inst.patient_id
        assert doc.attributes.get("dicom.study_date") == inst.study_date
        assert doc.clinical_time == inst.clinical_time
    assert len(_records(dicom_node)) >= len(owner)

    # The patient reads two of them back through WADO-RS (consent-checked read flow).
    with httpx.Client(base_url=dicom_node.url, timeout=60) as http:
        for name in ("CT_small.dcm", "MR_small.dcm"):
            path = next(p for p in files if p.name == name)
            inst = parse_instance(path.read_bytes())
            wallet = wallets[(inst.issuer_of_patient_id, inst.patient_id)]
            with dicom_node.client() as public:
                session = public.login(wallet)
            (content,) = wado(http, session, inst.study_uid, inst.series_uid, inst.sop_instance_uid)
            back, original = read(content), read(path)
            assert back.SOPInstanceUID == original.SOPInstanceUID
            assert back.PatientID == original.PatientID
            assert back.PixelData == original.PixelData


def test_a_resent_instance_is_not_stored_twice(dicom_node: RunningNode, modality: Modality) -> None:
    ds = fresh_copy("CT_small.dcm", PatientID="RESEND-1")
    link(dicom_node, "RESEND-1", None, MODALITY_AE)
    first = modality.store([ds])
    again = modality.store([ds, ds])
    assert first is not None and again is not None
    assert [int(s.Status) for s in first + again] == [0, 0, 0]
    assert len(_records(dicom_node, **{"dicom.sop_uid": ds.SOPInstanceUID})) == 1


def test_an_unknown_patient_is_a_failure_status(
    dicom_node: RunningNode, modality: Modality
) -> None:
    ds = fresh_copy("CT_small.dcm", PatientID="NOBODY-KNOWS")
    (status,) = modality.store([ds]) or []
    assert int(status.Status) == StoreStatus.UNKNOWN_PATIENT == 0xC001
    assert "not linked" in str(status.ErrorComment)
    assert _records(dicom_node, **{"dicom.sop_uid": ds.SOPInstanceUID}) == []


def test_an_instance_without_patient_id_cannot_be_understood(
    dicom_node: RunningNode, modality: Modality
) -> None:
    ds = fresh_copy("MR_small.dcm")
    del ds.PatientID
    (status,) = modality.store([ds]) or []
    assert int(status.Status) == StoreStatus.CANNOT_UNDERSTAND == 0xC000
    assert _records(dicom_node, **{"dicom.sop_uid": ds.SOPInstanceUID}) == []


def test_the_patient_id_of_an_issuer_resolves_through_the_hl7_namespace(
    dicom_node: RunningNode, modality: Modality
) -> None:
    """IssuerOfPatientID names the assigning authority HL7 ADT links the MRN under."""
    ds = fresh_copy("MR_small.dcm", PatientID="MRN-77", IssuerOfPatientID="GENHOSP")
    account = link(dicom_node, "MRN-77", "GENHOSP", MODALITY_AE)
    (status,) = modality.store([ds]) or []
    assert int(status.Status) == 0
    (row,) = _records(dicom_node, **{"dicom.sop_uid": ds.SOPInstanceUID})
    assert row.patient == account.address


def test_a_wallet_address_as_patient_id_needs_no_link(
    dicom_node: RunningNode, modality: Modality
) -> None:
    account = Account.create()
    ds = fresh_copy("CT_small.dcm", PatientID=account.address.lower())
    (status,) = modality.store([ds]) or []
    assert int(status.Status) == 0
    (row,) = _records(dicom_node, **{"dicom.sop_uid": ds.SOPInstanceUID})
    assert row.patient == account.address


def test_a_calling_ae_title_not_allowed_is_rejected(
    dicom_node: RunningNode, modality: Modality
) -> None:
    intruder = Modality(modality.host, modality.port, ae_title="INTRUDER")
    assert intruder.echo() is None
    ds = fresh_copy("CT_small.dcm", PatientID=generate_uid())
    assert intruder.store([ds]) is None
    # Our own AE title must be the called one.
    assert Modality(modality.host, modality.port, called="SOMEONEELSE").echo() is None


def test_a_success_means_the_record_is_committed(
    dicom_node: RunningNode, modality: Modality
) -> None:
    """The row is in the index when the SCU has its Success, and it opens."""
    ds = fresh_copy("MR_small.dcm", PatientID="COMMIT-1")
    link(dicom_node, "COMMIT-1", None, MODALITY_AE)
    (status,) = modality.store([ds]) or []
    assert int(status.Status) == 0
    (row,) = _records(dicom_node, **{"dicom.sop_uid": ds.SOPInstanceUID})
    content = open_record(row, blobs=dicom_node.node.blobs, keys=dicom_node.node.keys)
    assert read(content).SOPInstanceUID == ds.SOPInstanceUID
    assert read(content).PixelData == ds.PixelData
