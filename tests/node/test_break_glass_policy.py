"""Break-glass under attack (issue 10, items 5 and 6), over real HTTP on both modes.

Before the policy any hospital token opened 24 h access to every record of any patient for
any wallet, again and again, and the reason went on-chain as keccak256(reason): a list of
templated reasons recovered it. Now the clinician and an approver must be in the directory,
duration and frequency are capped, the patient sees every opening in their own feed, and
reasons are committed with a salt that only auditors and the patient are shown.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from eth_abi import encode
from eth_account import Account
from eth_utils import keccak

from node.audit.reasons import BREAK_GLASS, ERASURE, LEGACY, ReasonCommitment
from node.client import ApiError, EmrClient
from node.directory import _MIGRATIONS, HospitalDirectory
from node.settings import BreakGlassSettings
from node.sqlite_db import SQLiteDatabase
from tests.node.conftest import RunningNode

POLICY = BreakGlassSettings()  # the defaults are what is tested

# What an attacker would hash: the reasons hospitals actually type, with variations.
TEMPLATES = [
    f"{what}{where}"
    for what in (
        "unconscious patient",
        "unconscious patient in ER",
        "cardiac arrest",
        "cardiac arrest, ER bay 3",
        "trauma",
        "stroke",
        "patient request under GDPR art. 17",
        "court order",
        "emergency",
    )
    for where in ("", " in ER", ", ER bay 1", ", ER bay 2", ", ER bay 3")
]


def _status(call) -> tuple[int, str]:  # type: ignore[no-untyped-def]
    with pytest.raises(ApiError) as err:
        call()
    return err.value.status, err.value.detail


def _staff(hospital: EmrClient, role: str = "physician", **kw: int) -> str:
    address = Account.create().address
    hospital.add_clinician(address, role, **kw)
    return str(address)


def _opened(auditor: EmrClient, patient: str) -> list[dict]:  # type: ignore[type-arg]
    return [e for e in auditor.audit_events(patient=patient) if e["event"] == "BreakGlassOpened"]


def _post(rn: RunningNode, token: str | None, body: dict) -> httpx.Response:  # type: ignore[type-arg]
    """POST /break-glass with any JSON, even what httpx would not encode (lone surrogates)."""
    return httpx.post(
        f"{rn.url}/break-glass",
        content=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )


def _salted(salt: str, kind: str, reason: str, approver: str | None, opened_by: str) -> str:
    """The documented formula, computed independently of the node's code."""
    raw = encode(
        ["bytes32", "string", "string", "address", "string"],
        [bytes.fromhex(salt[2:]), kind, reason, approver or "0x" + "00" * 20, opened_by],
    )
    return "0x" + keccak(raw).hex()


def test_only_directory_clinicians_with_an_approver_may_break_glass(
    running_node: RunningNode, hospital: EmrClient, auditor: EmrClient
) -> None:
    patient = Account.create().address
    doc, chief = _staff(hospital), _staff(hospital, "emergency")
    stranger = Account.create().address
    pharmacist, nurse = _staff(hospital, "pharmacist"), _staff(hospital, "nurse")
    lapsed = _staff(hospital, licence_expiry=1_000_000)

    def bg(clinician: str, approver: str | None, **kw: int) -> tuple[int, str]:
        return _status(
            lambda: hospital.break_glass(patient, clinician, "ER", approved_by=approver, **kw)
        )

    # The old API: any wallet, no approver, 24 h.
    assert bg(stranger, None, duration=24 * 3600)[0] == 422
    status, detail = bg(stranger, chief)
    assert status == 403 and "not in this hospital's clinician directory" in detail
    status, detail = bg(pharmacist, chief)
    assert status == 403 and "'pharmacist'" in detail
    status, detail = bg(lapsed, chief)
    assert status == 403 and "licence expired" in detail
    status, detail = bg(doc, doc)
    assert status == 403 and "own break-glass" in detail
    status, detail = bg(doc, stranger)
    assert status == 403 and f"approver {stranger}" in detail
    status, detail = bg(doc, nurse)  # nurses may break glass, not approve it
    assert status == 403 and f"approver {nurse}" in detail
    status, detail = bg(doc, chief, duration=POLICY.max_duration + 1)
    assert status == 400 and str(POLICY.max_duration) in detail
    body = {"patient": patient, "clinician": doc, "approved_by": chief, "duration_seconds": 60}
    r = _post(running_node, hospital.token, {**body, "reason": "ER \ud800"})
    assert r.status_code in (400, 422)  # refused as bad text, never a 500
    r = _post(running_node, hospital.token, {**body, "reason": "ER", "opened_by": "someone"})
    assert r.status_code == 422  # the token's name is the node's to record, not the caller's
    assert _opened(auditor, patient) == []  # nothing reached the chain

    out = hospital.break_glass(
        patient, nurse, "ER", approved_by=chief, duration=POLICY.max_duration
    )
    assert out["approved_by"] == chief and out["opened_by"] == "ehr"
    [event] = _opened(auditor, patient)
    assert event["args"]["clinician"] == nurse and event["args"]["expiresAt"] == out["expires_at"]


def test_live_break_glass_cannot_be_renewed(hospital: EmrClient, public: EmrClient) -> None:
    patient = Account.create()
    one, two = (
        hospital.upload(patient.address, body, category="lab")["record_id"]
        for body in (b"one", b"two")
    )
    doc, other, chief = _staff(hospital), _staff(hospital, "nurse"), _staff(hospital)

    def renew(record_id: str | None) -> tuple[int, str]:
        return _status(
            lambda: hospital.break_glass(
                patient.address, doc, "still ER", approved_by=chief, record_id=record_id
            )
        )

    hospital.break_glass(patient.address, doc, "ER", approved_by=chief, record_id=one)
    status, detail = renew(one)
    assert status == 409 and "cannot be renewed" in detail
    # Wider than what is live is a new opening (and counts against the caps) ...
    hospital.break_glass(patient.address, doc, "ER", approved_by=chief)
    # ... after which nothing of this patient can be renewed for this clinician.
    assert renew(two)[0] == 409 and renew(None)[0] == 409
    # Another clinician may still be let in.
    hospital.break_glass(patient.address, other, "ER", approved_by=chief)
    session = public.login(patient)
    assert len(public.my_break_glass(session)["break_glass"]) == 3


def test_caps_per_clinician_and_per_patient(running_node: RunningNode, hospital: EmrClient) -> None:
    chief = _staff(hospital, "emergency")
    doc = _staff(hospital)
    for _ in range(POLICY.max_per_clinician):
        hospital.break_glass(Account.create().address, doc, "ER", approved_by=chief)
    body = {
        "patient": Account.create().address,
        "clinician": doc,
        "approved_by": chief,
        "duration_seconds": 600,
        "reason": "ER",
    }
    r = _post(running_node, hospital.token, body)
    assert r.status_code == 429 and r.json()["error"] == "limit_exceeded"
    assert "this clinician" in r.json()["detail"]
    assert 0 < int(r.headers["Retry-After"]) <= POLICY.window + 1

    patient = Account.create().address
    for _ in range(POLICY.max_per_patient):
        hospital.break_glass(patient, _staff(hospital, "nurse"), "ER", approved_by=chief)
    status, detail = _status(
        lambda: hospital.break_glass(patient, _staff(hospital), "ER", approved_by=chief)
    )
    assert status == 429 and "this patient" in detail


def test_patient_sees_every_break_glass_with_its_reason(
    hospital: EmrClient, auditor: EmrClient, public: EmrClient
) -> None:
    patient, other = Account.create(), Account.create()
    doc, chief = _staff(hospital), _staff(hospital, "emergency")
    rid = hospital.upload(patient.address, b"ecg", category="ecg")["record_id"]
    out = hospital.break_glass(
        patient.address, doc, "cardiac arrest, ER bay 3", approved_by=chief, record_id=rid
    )
    pat_s, other_s = public.login(patient), public.login(other)

    feed = public.my_break_glass(pat_s)
    assert feed["patient"] == patient.address and feed["as_of"] > 0
    [notice] = feed["break_glass"]
    assert notice["clinician"] == doc and notice["record_id"] == rid and notice["live"]
    assert notice["tx_hash"] == out["tx_hash"] and notice["expires_at"] == out["expires_at"]
    assert notice["hospital"] == hospital.info()["hospital"]
    disclosed = notice["disclosure"]
    assert disclosed["reason"] == "cardiac arrest, ER bay 3" and disclosed["verified"] is True
    assert disclosed["approved_by"] == chief and disclosed["opened_by"] == "ehr"
    assert disclosed["salt"] == out["reason_salt"]
    # the patient can check it without trusting the node
    assert notice["reason_hash"] == _salted(
        disclosed["salt"], disclosed["kind"], disclosed["reason"], chief, "ehr"
    )
    # "since my last visit"
    assert public.my_break_glass(pat_s, since=notice["opened_at"])["break_glass"] == [notice]
    assert public.my_break_glass(pat_s, since=feed["as_of"] + 3600)["break_glass"] == []

    # another patient sees nothing; API tokens use the audit API instead
    assert public.my_break_glass(other_s)["break_glass"] == []
    assert _status(lambda: auditor._json("GET", "/me/break-glass"))[0] == 403
    assert _status(lambda: public._json("GET", "/me/break-glass"))[0] == 401
    assert _status(lambda: public.my_break_glass(pat_s, since=-1))[0] == 422

    # the auditor sees who opened and who approved it
    [event] = _opened(auditor, patient.address)
    assert event["reason"] == "cardiac arrest, ER bay 3"
    assert event["disclosure"]["approved_by"] == chief
    assert event["disclosure"]["opened_by"] == "ehr" and event["disclosure"]["verified"]
    assert event["args"]["hospital"] == notice["hospital"]


def test_reasons_resist_a_dictionary_and_still_verify(
    hospital: EmrClient, auditor: EmrClient
) -> None:
    patient = Account.create().address
    doc, chief = _staff(hospital), _staff(hospital, "emergency")
    reason = "cardiac arrest, ER bay 3"
    assert reason in TEMPLATES
    hospital.break_glass(patient, doc, reason, approved_by=chief)
    [event] = _opened(auditor, patient)
    on_chain = event["args"]["reasonHash"]
    dictionary = {"0x" + keccak(text=t).hex(): t for t in TEMPLATES}
    assert on_chain not in dictionary  # unsalted keccak256 would have matched

    d = event["disclosure"]
    assert d["kind"] == BREAK_GLASS and len(bytes.fromhex(d["salt"][2:])) == 32
    assert _salted(d["salt"], d["kind"], reason, chief, "ehr") == on_chain
    for forged in (
        _salted(d["salt"], d["kind"], "cardiac arrest, ER bay 2", chief, "ehr"),
        _salted(d["salt"], d["kind"], reason, doc, "ehr"),  # another approver
        _salted(d["salt"], d["kind"], reason, chief, "other-ehr"),
    ):
        assert forged != on_chain
    assert auditor.reason(on_chain)["verified"] is True

    # Erasure reasons: the tombstone's hash is salted too, and the auditor can check it.
    rid = hospital.upload(patient, b"to forget", category="lab")["record_id"]
    erased = hospital.erase(rid, "patient request under GDPR art. 17")
    assert erased["reason_hash"] not in dictionary
    shown = auditor.reason(erased["reason_hash"])
    assert shown["kind"] == ERASURE and shown["approved_by"] is None and shown["verified"]
    assert shown["reason"] == "patient request under GDPR art. 17"
    assert _salted(shown["salt"], ERASURE, shown["reason"], None, "ehr") == erased["reason_hash"]
    assert _status(lambda: auditor.reason("0x" + "ab" * 32))[0] == 404
    assert _status(lambda: hospital.reason(erased["reason_hash"]))[0] == 403


def test_tampered_reason_is_flagged(
    running_node: RunningNode, hospital: EmrClient, auditor: EmrClient
) -> None:
    patient = Account.create().address
    doc, chief = _staff(hospital), _staff(hospital, "emergency")
    out = hospital.break_glass(patient, doc, "stroke", approved_by=chief)
    # Someone edits the node's database afterwards (node.sqlite, or MySQL in production).
    db = running_node.node.directory._db  # type: ignore[attr-defined]
    with db.transaction() as cur:
        cur.execute(
            "UPDATE break_glass_reasons SET reason = 'routine check' WHERE reason_hash = ?",
            (bytes.fromhex(out["reason_hash"][2:]),),
        )
    [event] = _opened(auditor, patient)
    assert event["disclosure"]["reason"] == "routine check"
    assert event["disclosure"]["verified"] is False


def test_reasons_stored_before_salting_still_verify(tmp_path: Path) -> None:
    path = tmp_path / "node.sqlite"
    old = SQLiteDatabase(path, "directory", _MIGRATIONS[:2])  # a node from before
    legacy_hash = keccak(text="unconscious patient")
    with old.transaction() as cur:
        cur.execute(
            "INSERT INTO break_glass_reasons VALUES (?, ?, ?, ?, ?)",
            (legacy_hash, "unconscious patient", "ehr", b"\x01" * 32, 1),
        )
    old.close()
    directory = HospitalDirectory(path)  # upgraded in place
    try:
        stored = directory.stored_reason(legacy_hash)
        assert stored is not None and stored.tx_hash == b"\x01" * 32
        assert stored.commitment == ReasonCommitment(LEGACY, "unconscious patient", None, "ehr")
        assert stored.commitment.reason_hash == legacy_hash
        assert directory.reason(legacy_hash) == "unconscious patient"
    finally:
        directory.close()
