"""The hospital's HL7 v2 and DICOM listeners run in the worker role (one per hospital), not in
the API processes: a lab system and a modality push to a real `emr-node worker`, and what
they stored is served by a separate `emr-node api` process like any record (issue 12)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pydicom
import pytest
from eth_account import Account
from pydicom.uid import generate_uid
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage

from node.client import EmrClient
from tests.node.hl7.messages import FACILITY, ack_code, adt, connect, mrn, oru, wallet
from tests.node.production import free_port
from tests.node.roles.cluster import Cluster, embedded_env, until

pytestmark = pytest.mark.integration

CT_SMALL = Path(pydicom.data.__file__).parent / "test_files" / "CT_small.dcm"


def test_lab_and_modality_push_to_the_worker_role_and_api_processes_serve_it(
    tmp_path: Path,
) -> None:
    hl7_port, dicom_port = free_port(), free_port()
    env = {
        **embedded_env(tmp_path / "node"),
        "EMR_HL7__ENABLED": "true",
        "EMR_HL7__PORT": str(hl7_port),
        "EMR_HL7__ALLOWED_FACILITIES": json.dumps([FACILITY]),
        "EMR_DICOM__ENABLED": "true",
        "EMR_DICOM__PORT": str(dicom_port),
        "EMR_DICOM__ALLOWED_CALLING_AES": json.dumps(["MODALITY"]),
        "EMR_DICOM__DEFAULT_ISSUER": FACILITY,  # PatientIDs are the lab's MRNs
    }
    cluster = Cluster(tmp_path / "node", env)
    try:
        cluster.worker()
        _proc, api_url = cluster.api()
        patient = Account.create()
        with connect(("127.0.0.1", hl7_port)) as mllp:
            # Registration (ADT^A04) links the MRN to the wallet; the result names the MRN.
            assert (
                ack_code(mllp.send(adt("A04", "W-1", mrn("MRN-7"), wallet(patient.address))))
                == "AA"
            )
            assert ack_code(mllp.send(oru("W-2", mrn("MRN-7")))) == "AA"

        instance = pydicom.dcmread(CT_SMALL)
        instance.PatientID = "MRN-7"
        instance.SOPInstanceUID = generate_uid()
        instance.file_meta.MediaStorageSOPInstanceUID = instance.SOPInstanceUID
        ae = AE(ae_title="MODALITY")
        ae.add_requested_context(CTImageStorage, instance.file_meta.TransferSyntaxUID)
        assoc = ae.associate("127.0.0.1", dicom_port, ae_title="EMRNODE")
        assert assoc.is_established
        try:
            assert assoc.send_c_store(instance).Status == 0x0000
        finally:
            assoc.release()

        hospital = cluster.admin(api_url)
        records = hospital.records(patient=patient.address)
        assert sorted(r["document"]["source"] for r in records) == ["dicom", "hl7v2"]
        public = EmrClient(api_url)
        session = public.login(patient)
        for r in records:
            content = public.read(r["record_id"], session)
            assert content.status_code == 200, content.text
        dicom_rid = next(r["record_id"] for r in records if r["document"]["source"] == "dicom")
        read_back = pydicom.dcmread(io.BytesIO(public.read(dicom_rid, session).content))
        assert read_back.SOPInstanceUID == instance.SOPInstanceUID
        for r in records:
            until(lambda rid=r["record_id"]: hospital.receipt(rid)["status"] == "anchored")
    finally:
        cluster.close()
