"""The auditor explorer in a real browser, against a real node: sign in with an auditor
token, filter and page the trail (rows as the API returns them), verify a record (green),
tamper its stored ciphertext on disk and verify again (red), charts against /audit/stats,
CSV export against the API's CSV and JSON, FHIR export as a Bundle of AuditEvents, axe on
every state, screenshots at 1280 and 390 px, keyboard use of filters and paging."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from typing import Any

import pytest
from eth_account import Account

from node.client import ApiError, EmrClient, Scope
from tests.node.conftest import RunningNode, start_node
from tests.node.web.conftest import RunScript


@pytest.fixture
def seeded(tmp_path: Any) -> Iterator[tuple[RunningNode, dict[str, Any]]]:
    """Two patients' records, a consent, granted and denied reads, a break-glass, all
    anchored and logged on-chain; tokens for an auditor and a hospital."""
    rn = start_node(tmp_path / "node")
    try:
        with rn.client(rn.admin_token) as admin:
            hospital_token = admin.create_token("ehr", "hospital")
            auditor = admin.issue_token("audit", "auditor")
        with rn.client(hospital_token) as hospital, rn.client() as public:
            yield (
                rn,
                _seed(rn, hospital, public)
                | {
                    "hospitalToken": hospital_token,
                    "auditorToken": auditor["token"],
                    "auditorTokenId": auditor["id"],
                    "adminToken": rn.admin_token,
                },
            )
    finally:
        rn.stop()


def _seed(rn: RunningNode, hospital: EmrClient, public: EmrClient) -> dict[str, Any]:
    alice, bob_patient = Account.create(), Account.create()
    ada, bob, chief = Account.create(), Account.create(), Account.create()
    uploads = [
        hospital.upload(alice.address, b"potassium 4.1", category="lab"),
        hospital.upload(alice.address, b"chest x-ray: clear", category="imaging"),
        hospital.upload(alice.address, b"discharge letter", category="note"),
        hospital.upload(bob_patient.address, b"HbA1c 6.1%", category="lab"),
        hospital.upload(bob_patient.address, b"ECG: sinus rhythm", category="cardio"),
    ]
    ids = [u["record_id"] for u in uploads]
    for rid in ids:
        hospital.wait_anchored(rid, timeout=60)
    time.sleep(1.1)  # the reads below land in a later second than the anchors
    public.grant(alice, ada.address, Scope.record(ids[0]))
    ada_s, bob_s, alice_s = public.login(ada), public.login(bob), public.login(alice)
    assert public.read(ids[0], ada_s).content == b"potassium 4.1"  # granted by consent
    for rid in (ids[0], ids[3]):  # denied: no consent
        with pytest.raises(ApiError):
            public.read(rid, bob_s)
    assert public.read(ids[1], alice_s).content == b"chest x-ray: clear"  # the patient
    hospital.add_clinician(bob.address, "physician")
    hospital.add_clinician(chief.address, "emergency")
    hospital.break_glass(
        alice.address, bob.address, "unconscious in ER, bay 2", approved_by=chief.address
    )
    assert public.read(ids[1], bob_s).headers["x-access-basis"] == "break_glass"
    rn.node.access_flusher.flush_now()
    return {
        "url": rn.url,
        "patients": [alice.address, bob_patient.address],
        "records": ids,
        # verified, then tampered: a record nobody read (no cached copy anywhere)
        "tamperRecord": ids[2],
        "tamperCid": uploads[2]["cid"],
        "actors": {"ada": ada.address, "bob": bob.address},
        "hospital": rn.node.hospital,
    }


def _tamper_ciphertext(rn: RunningNode, cid: str) -> None:
    """Flip one bit of a record's ciphertext where the embedded node keeps it: the SQLite
    content-addressed blob store (table blobs: cid → data) in the data directory."""
    path = rn.node.settings.resolved_data_dir / "blobs.sqlite"
    with sqlite3.connect(path) as conn:
        (raw,) = conn.execute("SELECT data FROM blobs WHERE cid = ?", (cid,)).fetchone()
        altered = bytes(raw[:-1]) + bytes([raw[-1] ^ 0x01])
        conn.execute("UPDATE blobs SET data = ? WHERE cid = ?", (altered, cid))


def test_explorer_filters_pages_verifies_charts_and_exports(
    seeded: tuple[RunningNode, dict[str, Any]], run_script: RunScript
) -> None:
    rn, params = seeded
    with rn.client(params["auditorToken"]) as auditor:
        # What the pages must show is what the API says; check the seed is rich enough.
        everything = auditor.audit_events()
        kinds = {e["event"] for e in everything}
        assert {"AccessRecorded", "BreakGlassOpened", "ConsentGranted", "RecordAnchored"} <= kinds
        assert len(everything) > 10  # paging at 5 a page spans three pages or more
        stats = auditor._json("GET", "/audit/stats")
        assert sum(d["denied"] for d in stats["days"]) == 2
        assert sum(d["break_glass"] for d in stats["days"]) == 1
        assert auditor.verify(params["tamperRecord"])["verified"] is True

    run_script("explorer.e2e.mjs", params)

    _tamper_ciphertext(rn, params["tamperCid"])
    with rn.client(params["auditorToken"]) as auditor:
        after = auditor.verify(params["tamperRecord"])
        assert after["verified"] is False and after["stored_content_intact"] is False

    run_script("explorer-tamper.e2e.mjs", params)
    with rn.client(params["auditorToken"]) as auditor, pytest.raises(ApiError) as revoked:
        auditor.audit_events()  # the script revoked it and saw the page send it to sign in
    assert revoked.value.status == 401
