"""Stored cross-site scripting through the pages: text that people and hospitals type (a
break-glass reason, a clinician's name) reaches the patient's portal and the auditor's
explorer, and must stay text there."""

from __future__ import annotations

import time

import httpx
from eth_account import Account

from tests.node.conftest import RunningNode
from tests.node.web.conftest import RunScript

REASON = '<img src=x onerror="window.__xss=1"> unconscious <script>window.__xss=2</script>'
NAME = "Dr <svg onload=window.__xss=3> Evil"


def test_markup_in_reasons_and_names_stays_text(
    embedded_node: RunningNode, run_script: RunScript
) -> None:
    rn = embedded_node
    with rn.client(rn.admin_token) as admin:
        hospital_token = admin.create_token("ehr", "hospital")
        auditor_token = admin.create_token("audit", "auditor")
    patient, clinician, approver = (Account.create() for _ in range(3))
    with rn.client(hospital_token) as hospital:
        staff = ((clinician, "emergency", NAME), (approver, "physician", "Dr A"))
        for account, role, name in staff:
            added = httpx.post(
                f"{rn.url}/clinicians",
                json={"address": account.address, "role": role, "name": name},
                headers={"Authorization": f"Bearer {hospital_token}"},
            )
            assert added.status_code == 201, added.text
        hospital.upload(patient.address, b"x", category="lab", content_type="text/plain")
        opened = hospital.break_glass(
            patient.address, clinician.address, REASON, approved_by=approver.address
        )
    # The notice lists break-glass after the previous sign-in; this is the first, so it shows
    # every one, once the chain's clock (ahead after a burst of blocks) is passed.
    while time.time() < opened["expires_at"] - 3600 + 1.5:
        time.sleep(0.2)
    out = run_script(
        "xss.e2e.mjs",
        {
            "url": rn.url,
            "patientKey": patient.key.hex(),
            "auditorToken": auditor_token,
            "reason": REASON,
            "name": NAME,
        },
    )
    assert "markup shown as text" in out.stdout
