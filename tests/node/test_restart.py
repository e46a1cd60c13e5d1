"""Stop the node, start it again: records, consents and the audit trail are still there."""

from __future__ import annotations

import hashlib
from pathlib import Path

from eth_account import Account

from node.client import Scope
from tests.node.conftest import start_node


def test_state_survives_restart(tmp_path: Path) -> None:
    data_dir = tmp_path / "node"
    patient, doc = Account.create(), Account.create()
    content = b"discharge summary"

    rn = start_node(data_dir)
    admin = rn.client(rn.admin_token)
    hospital = rn.client(admin.create_token("ehr", "hospital"))
    auditor_token = admin.create_token("audit", "auditor")
    hospital_address = rn.node.hospital
    rid = hospital.upload(patient.address, content, category="note")["record_id"]
    first_receipt = hospital.wait_anchored(rid)
    pub = rn.client()
    pub.grant(patient, doc.address, Scope.category("note"))
    assert pub.read(rid, pub.login(doc)).content == content
    pending = hospital.upload(patient.address, b"queued before stop", category="note")["record_id"]
    rn.stop()  # flushes queues; the chain, index and blobs are on disk
    for c in (admin, hospital, pub):
        c.close()

    rn = start_node(data_dir)
    try:
        assert rn.node.hospital == hospital_address  # same key store, same identity
        auditor = rn.client(auditor_token)  # tokens persist
        pub = rn.client()
        assert auditor.receipt(rid) == first_receipt
        assert auditor.verify(rid, "0x" + hashlib.sha256(content).hexdigest())["verified"]
        assert auditor.wait_anchored(pending)["status"] == "anchored"
        # consent is still on-chain: the grantee reads again after the restart
        assert pub.read(rid, pub.login(doc)).content == content
        rn.node.access_flusher.flush_now()
        events = auditor.audit_events(patient=patient.address)
        kinds = [e["event"] for e in events]
        assert kinds.count("AccessRecorded") == 2 and "ConsentGranted" in kinds
        assert kinds.count("RecordAnchored") == 2
    finally:
        rn.stop()
