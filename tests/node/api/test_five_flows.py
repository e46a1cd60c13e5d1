"""The five flows end to end over real HTTP against an embedded node."""

from __future__ import annotations

import hashlib

import pytest
from eth_account import Account

from node.client import ApiError, EmrClient, Scope
from tests.node.conftest import RunningNode


def _wait_access_log(rn: RunningNode) -> None:
    rn.node.access_flusher.flush_now()


def test_upload_anchor_consent_read_audit_verify(
    running_node: RunningNode, hospital: EmrClient, auditor: EmrClient, public: EmrClient
) -> None:
    patient, ada, bob = Account.create(), Account.create(), Account.create()
    content = b"potassium 4.1 mmol/L"

    # 1. upload, then the anchorer puts one root on-chain
    rec = hospital.upload(patient.address, content, category="lab", content_type="text/plain")
    rid = rec["record_id"]
    assert rec["content_hash"] == "0x" + hashlib.sha256(content).hexdigest()
    assert rec["cid"].startswith("bafkrei")
    receipt = hospital.wait_anchored(rid, timeout=30)
    assert receipt["status"] == "anchored" and receipt["batch_id"] >= 1
    assert receipt["tx_hash"].startswith("0x") and len(receipt["root"]) == 66

    # 2. consent by EIP-712 signature, relayed by the node
    tx = public.grant(patient, ada.address, Scope.record(rid))
    assert tx["tx_hash"].startswith("0x")

    # 3. reads: grantee yes, stranger no, patient always
    ada_s, bob_s, pat_s = public.login(ada), public.login(bob), public.login(patient)
    r = public.read(rid, ada_s)
    assert r.content == content
    assert r.headers["content-type"].startswith("text/plain")
    assert r.headers["x-access-basis"] == "record_consent"
    with pytest.raises(ApiError) as denied:
        public.read(rid, bob_s)
    assert denied.value.status == 403 and denied.value.code == "consent_denied"
    assert public.read(rid, pat_s).headers["x-access-basis"] == "patient"

    # revocation takes effect at once
    public.revoke(patient, ada.address, Scope.record(rid))
    with pytest.raises(ApiError) as after:
        public.read(rid, ada_s)
    assert after.value.status == 403

    # break-glass opens time-limited access and is evented with its reason
    chief = Account.create().address
    hospital.add_clinician(bob.address, "physician")
    hospital.add_clinician(chief, "emergency")
    hospital.break_glass(
        patient.address, bob.address, "cardiac arrest, ER bay 3", approved_by=chief, duration=600
    )
    assert public.read(rid, bob_s).headers["x-access-basis"] == "break_glass"

    # 4. audit: every kind of event, filterable by patient, record and actor
    _wait_access_log(running_node)
    events = auditor.audit_events(patient=patient.address)
    kinds = [e["event"] for e in events]
    for kind in (
        "RecordAnchored",
        "ConsentGranted",
        "ConsentRevoked",
        "BreakGlassOpened",
        "AccessRecorded",
    ):
        assert kind in kinds, kind
    accesses = [e for e in events if e["event"] == "AccessRecorded"]
    assert [(e["args"]["actor"], e["args"]["granted"]) for e in accesses] == [
        (ada.address, True),
        (bob.address, False),
        (patient.address, True),
        (ada.address, False),
        (bob.address, True),
    ]
    bg = next(e for e in events if e["event"] == "BreakGlassOpened")
    assert bg["reason"] == "cardiac arrest, ER bay 3"
    assert bg["disclosure"]["approved_by"] == chief and bg["disclosure"]["verified"] is True
    assert bg["args"]["reasonHash"] != "0x" + "00" * 32
    by_bob = auditor.audit_events(actor=bob.address)
    assert {e["event"] for e in by_bob} == {"BreakGlassOpened", "AccessRecorded"}
    assert all(e["args"].get("actor", e["args"].get("clinician")) == bob.address for e in by_bob)
    by_record = auditor.audit_events(record_id=rid)
    assert {e["event"] for e in by_record} >= {"RecordAnchored", "ConsentGranted", "AccessRecorded"}
    assert auditor.audit_events(patient=Account.create().address) == []
    last = events[-1]["timestamp"]
    assert auditor.audit_events(patient=patient.address, since=last + 1) == []
    assert len(auditor.audit_events(patient=patient.address, until=last)) == len(events)

    # a patient sees their own trail; not someone else's
    with pytest.raises(ApiError) as other:
        public.audit_events(token=ada_s, patient=patient.address)
    assert other.value.status == 403
    assert len(public.audit_events(token=pat_s)) == len(events)

    # 5. integrity: the anchored root proves the content hash; a forged hash does not
    v = auditor.verify(rid, "0x" + hashlib.sha256(content).hexdigest())
    assert v["verified"] and v["proof_valid_on_chain"] and v["root_on_chain"]
    assert v["stored_content_intact"] is True
    forged = auditor.verify(rid, "0x" + hashlib.sha256(b"potassium 9.9").hexdigest())
    assert not forged["verified"] and not forged["proof_valid_on_chain"]


def test_category_and_hospital_wide_consent(
    running_node: RunningNode, hospital: EmrClient, public: EmrClient
) -> None:
    patient, nurse = Account.create(), Account.create()
    lab = hospital.upload(patient.address, b"lab", category="lab")["record_id"]
    img = hospital.upload(patient.address, b"img", category="imaging")["record_id"]
    nurse_s = public.login(nurse)
    public.grant(patient, nurse.address, Scope.category("lab"))
    assert public.read(lab, nurse_s).content == b"lab"
    with pytest.raises(ApiError):
        public.read(img, nurse_s)
    # a grant to the hospital covers its registered clinicians
    public.grant(patient, running_node.node.hospital, Scope.all())
    with pytest.raises(ApiError):
        public.read(img, nurse_s)  # not yet registered with the hospital
    hospital.add_clinician(nurse.address, "nurse")
    r = public.read(img, nurse_s)
    assert r.content == b"img" and r.headers["x-access-basis"] == "all_consent"


def test_new_version_references_its_predecessor(
    running_node: RunningNode, hospital: EmrClient, auditor: EmrClient
) -> None:
    patient = Account.create()
    v1 = hospital.upload(patient.address, b"draft", category="note")["record_id"]
    v2 = hospital.upload(patient.address, b"final", category="note", previous_id=v1)
    assert v2["previous_id"] == v1
    hospital.wait_anchored(v2["record_id"])
    assert auditor.verify(v2["record_id"])["verified"]
    with pytest.raises(ApiError) as other_patient:
        hospital.upload(Account.create().address, b"x", category="note", previous_id=v1)
    assert other_patient.value.status == 400


def test_a_full_batch_anchors_before_the_interval(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from tests.node.conftest import start_node

    rn = start_node(tmp_path / "n", anchor_interval=3600, anchor_batch_size=3)
    try:
        with (
            rn.client(rn.admin_token) as admin,
            rn.client(admin.create_token("h", "hospital")) as h,
        ):
            patient = Account.create().address
            ids = [h.upload(patient, b"r%d" % i, category="lab")["record_id"] for i in range(3)]
            receipts = [h.wait_anchored(i, timeout=20) for i in ids]  # far less than 3600 s
            assert {r["batch_id"] for r in receipts} == {1}
            assert all(len(r["proof"]) >= 1 for r in receipts)
            extra = h.upload(patient, b"fourth", category="lab")["record_id"]
            import time

            time.sleep(1.0)
            assert h.receipt(extra)["status"] == "pending"  # one record: waits for the interval
    finally:
        rn.stop()
