"""The patient portal in a real browser: a patient signs in with an injected EIP-1193
wallet that really signs, reads their records, grants a clinician (the page's plain words
match what the wallet signed), the clinician reads, the patient withdraws, the read is
refused, the timeline shows both, a break-glass between visits shows a notice, an expired
session and a chain that is down are sentences, the grant form works by keyboard alone,
and every state passes axe at 1280 px and 390 px."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
from eth_account import Account

from node.settings import WalletsSettings
from tests.node.conftest import RunningNode, make_settings, start_node
from tests.node.web.conftest import RunScript

RECOVERY_DELAY = 3  # seconds; the node's wallets.min_recovery_delay is 1 here


def test_patient_portal(embedded_node: RunningNode, run_script: RunScript) -> None:
    rn = embedded_node
    with rn.client(rn.admin_token) as admin:
        hospital_token = admin.create_token("ehr", "hospital")
    patient, ada, bob, carol, chief = (Account.create() for _ in range(5))
    clinicians = [
        (ada, "physician", "Dr Ada Lovelace"),
        (bob, "emergency", "Dr Bob Marley"),
        (carol, "emergency", "Dr Carol Shields"),
        (chief, "physician", "Dr Grace Hopper"),
    ]
    with rn.client(hospital_token) as hospital:
        for account, role, name in clinicians:
            added = httpx.post(
                f"{rn.url}/clinicians",
                json={"address": account.address, "role": role, "name": name},
                headers={"Authorization": f"Bearer {hospital_token}"},
            )
            assert added.status_code == 201, added.text
        lab = hospital.upload(
            patient.address, b"potassium 4.1 mmol/L", category="lab", content_type="text/plain"
        )
        hospital.upload(patient.address, b"\x89PNG fake", category="imaging")
        hospital.upload(patient.address, b"discharge letter", category="note")
        hospital.wait_anchored(lab["record_id"], timeout=30)
        # Before the first visit: shown on the first sign-in, not on the second.
        opened = hospital.break_glass(
            patient.address, bob.address, "unconscious on arrival", approved_by=chief.address
        )
        # The embedded chain's clock runs ahead of the wall clock after a burst of blocks;
        # the first visit must come after this opening, as it would for a person.
        block_time = opened["expires_at"] - 3600
        while time.time() < block_time + 1.5:
            time.sleep(0.2)
        chain_id = hospital.info()["chain_id"]
    run_script(
        "portal.e2e.mjs",
        {
            "url": rn.url,
            "chainId": chain_id,
            "patientKey": patient.key.hex(),
            "ada": {"address": ada.address, "key": ada.key.hex()},
            "carol": carol.address,
            "chief": chief.address,
            "hospitalToken": hospital_token,
            "labRecord": lab["record_id"],
            "stranger": Account.create().address,
        },
    )


def test_portal_wallet_recovery(tmp_path: Path, run_script: RunScript) -> None:
    """Key loss in the portal: a patient's RecoverableWallet signs in (ERC-1271) and sees
    its guardians; two guardians approve a rogue key in their own portal and the owner
    cancels it; they approve the real new key, one completes it after the delay, the new
    key signs in as the wallet and the old key is refused."""
    settings = make_settings(tmp_path / "node")
    rn = start_node(
        tmp_path / "node",
        settings.model_copy(update={"wallets": WalletsSettings(min_recovery_delay=1)}),
    )
    try:
        with rn.client(rn.admin_token) as admin:
            hospital_token = admin.create_token("ehr", "hospital")
        old_key, new_key, rogue = Account.create(), Account.create(), Account.create()
        guardians = [Account.create() for _ in range(3)]
        with rn.client(hospital_token) as hospital:
            created = hospital.wallets.create(
                old_key.address, [g.address for g in guardians], 2, RECOVERY_DELAY
            )
            wallet = created["address"]
            hospital.upload(wallet, b"allergy: penicillin", category="allergy")
        run_script(
            "portal-recovery.e2e.mjs",
            {
                "url": rn.url,
                "wallet": wallet,
                "oldKey": old_key.key.hex(),
                "newKey": new_key.key.hex(),
                "newOwner": new_key.address,
                "rogue": rogue.address,
                "guardianKeys": [g.key.hex() for g in guardians[:2]],
                "delay": RECOVERY_DELAY,
            },
        )
    finally:
        rn.stop()
