"""OWASP API1:2023 Broken Object Level Authorization.

Every object a caller names by id (a record, its receipt and content, a patient's list of
records and audit trail, anonymous-access logs) is checked against the caller, not only
the caller's kind: a signed-in clinician or patient gets 403 for another patient's objects,
and a consent covers only the objects of the patient who signed it.
"""

from __future__ import annotations

import pytest
from eth_account import Account

from node.client import ApiError, EmrClient, Scope
from tests.node.conftest import RunningNode


def _refused(call, status: int = 403) -> str:  # type: ignore[no-untyped-def]
    with pytest.raises(ApiError) as err:
        call()
    assert err.value.status == status, err.value
    assert err.value.detail  # a reason, in the node's error shape
    return err.value.code


@pytest.fixture
def two_patients(hospital: EmrClient):  # type: ignore[no-untyped-def]
    alice, bob = Account.create(), Account.create()
    a_lab = hospital.upload(alice.address, b"alice potassium 4.1", category="lab")["record_id"]
    a_note = hospital.upload(alice.address, b"alice note", category="note")["record_id"]
    b_lab = hospital.upload(bob.address, b"bob potassium 5.9", category="lab")["record_id"]
    return alice, bob, a_lab, a_note, b_lab


def test_a_clinician_reads_only_what_a_consent_covers(
    running_node: RunningNode, hospital: EmrClient, public: EmrClient, two_patients
) -> None:
    alice, _bob, a_lab, a_note, b_lab = two_patients
    doctor = Account.create()
    doctor_s = public.login(doctor)

    # a session alone opens nothing: another patient's record without consent is 403
    for rid in (a_lab, a_note, b_lab):
        assert _refused(lambda r=rid: public.read(r, doctor_s)) == "consent_denied"

    # Alice consents to her lab category: her lab record opens, nothing else does
    public.grant(alice, doctor.address, Scope.category("lab"))
    assert public.read(a_lab, doctor_s).content == b"alice potassium 4.1"
    assert _refused(lambda: public.read(a_note, doctor_s)) == "consent_denied"
    # same category, other patient: Alice's consent does not reach Bob's records
    assert _refused(lambda: public.read(b_lab, doctor_s)) == "consent_denied"

    # a patient cannot consent for someone else's record: Alice names Bob's record id
    public.grant(alice, doctor.address, Scope.record(b_lab))
    assert _refused(lambda: public.read(b_lab, doctor_s)) == "consent_denied"

    # record metadata and receipts are the patient's and the hospital's, not a reader's
    for call in (
        lambda: public.record(a_lab, token=doctor_s),
        lambda: public.receipt(a_lab, token=doctor_s),
        lambda: public.record(b_lab, token=doctor_s),
    ):
        _refused(call)


def test_a_patient_sees_only_their_own_records_and_trail(
    running_node: RunningNode,
    hospital: EmrClient,
    auditor: EmrClient,
    public: EmrClient,
    two_patients,
) -> None:
    alice, bob, a_lab, _a_note, b_lab = two_patients
    alice_s, bob_s = public.login(alice), public.login(bob)
    public.grant(alice, Account.create().address, Scope.all())  # an event in Alice's trail
    hospital.wait_anchored(a_lab)

    # another patient's list, record, receipt, content and audit trail: 403
    refusals = [
        lambda: public._json("GET", "/records", params={"patient": alice.address}, token=bob_s),
        lambda: public.record(a_lab, token=bob_s),
        lambda: public.receipt(a_lab, token=bob_s),
        lambda: public.read(a_lab, bob_s),
        lambda: public.audit_events(token=bob_s, patient=alice.address),
        lambda: public.audit_events(token=bob_s, patient=alice.address, source="mirror"),
    ]
    for call in refusals:
        _refused(call)
    # the lower-case spelling of the address is the same patient, not a way around
    _refused(lambda: public.audit_events(token=bob_s, patient=alice.address.lower()))

    # unfiltered, a patient's list and trail hold their own objects only
    own = public._json("GET", "/records", token=bob_s)
    assert [r["record_id"] for r in own] == [b_lab]
    mine = public.audit_events(token=bob_s)
    text = str(mine).lower()
    assert alice.address.lower()[2:] not in text and a_lab[2:] not in text
    assert len(public.audit_events(token=alice_s)) >= 2  # Alice's own trail is there

    # and the patient reads their own record (the positive control of the refusals above)
    assert public.read(b_lab, bob_s).headers["x-access-basis"] == "patient"
    assert public.record(b_lab, token=bob_s)["patient"] == bob.address
    # the auditor sees both (a role, not an object owner)
    assert {e["event"] for e in auditor.audit_events(patient=alice.address)} >= {"ConsentGranted"}


def test_anonymous_access_logs_are_for_auditors_only(
    running_node: RunningNode, hospital: EmrClient, auditor: EmrClient, public: EmrClient
) -> None:
    patient = Account.create()
    rid = hospital.upload(patient.address, b"x", category="lab")["record_id"]
    patient_s = public.login(patient)
    # the record's own patient, a hospital system and nobody: not the zk access logs
    for token in (patient_s, None):
        _refused(
            lambda t=token: public._json("GET", "/zk/accesses", token=t),
            403 if token else 401,
        )
        _refused(
            lambda t=token: public._json(
                "GET", "/zk/accesses/readers", params={"record_id": rid}, token=t
            ),
            403 if token else 401,
        )
    _refused(lambda: hospital._json("GET", "/zk/accesses"))
    assert auditor._json("GET", "/zk/accesses", params={"record_id": rid}) == []


def test_public_consent_routes_name_no_records_content(
    running_node: RunningNode, hospital: EmrClient, public: EmrClient
) -> None:
    """Consent listings are public by design (the chain holds them); they must not carry
    record content or metadata beyond the consent itself."""
    patient = Account.create()
    rid = hospital.upload(patient.address, b"secret diagnosis", category="lab")["record_id"]
    public.grant_class(patient, ["nurse"], Scope.record(rid))
    listed = public.class_consents(patient.address)
    assert len(listed) == 1 and listed[0]["scope"] == rid
    text = str(listed)
    assert "secret diagnosis" not in text and "lab" not in text
    # another patient's listing is empty: nothing of this patient leaks into it
    assert public.class_consents(Account.create().address) == []
