"""``emr-node demo``: drive the five flows and an anonymous read against a running node and
say what happened."""

from __future__ import annotations

import hashlib
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from eth_account import Account

from node.client import ApiError, EmrClient, Scope
from node.zkaccess.clinician import ClinicianProver
from zk.credentials import Identity, IssuedCredential, role_index


def _wait(predicate: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("the node did not catch up in time")
        time.sleep(0.2)


def run_demo(url: str, admin_token: str, say: Callable[[str], None] = print) -> dict[str, object]:
    """Returns what the demo observed (tests assert on it)."""
    seen: dict[str, object] = {}
    admin = EmrClient(url, admin_token)
    info = admin.info()
    say(f"node {info['hospital_name']} ({info['hospital']}) on chain {info['chain_id']}")
    hospital = EmrClient(url, admin.create_token("demo-ehr", "hospital"))
    auditor = EmrClient(url, admin.create_token("demo-auditor", "auditor"))
    public = EmrClient(url)

    patient, dr_ada, dr_bob = Account.create(), Account.create(), Account.create()
    say(f"patient {patient.address}; clinicians Ada {dr_ada.address}, Bob {dr_bob.address}")

    # 1. Upload
    content = b"HbA1c 6.1 % (demo lab result)"
    rec = hospital.upload(patient.address, content, category="lab", content_type="text/plain")
    rid = rec["record_id"]
    say(f"1. uploaded record {rid} (cid {rec['cid']})")
    receipt = hospital.wait_anchored(rid)
    say(
        f"   anchored in batch {receipt['batch_id']}, tx {receipt['tx_hash']},"
        f" root {receipt['root']}"
    )

    # 2. Consent: the patient signs a Grant for Ada over the lab category
    tx = public.grant(patient, dr_ada.address, Scope.category("lab"), expires_in=7 * 24 * 3600)
    say(f"2. patient granted Ada 'lab' access (relayed by the node, tx {tx['tx_hash']})")

    # 3. Read: Ada (granted), Bob (denied), the patient (always)
    ada, bob, pat = public.login(dr_ada), public.login(dr_bob), public.login(patient)
    body = public.read(rid, ada)
    say(f"3. Ada read the record ({body.headers['x-access-basis']}): {body.content.decode()!r}")
    seen["ada_read"] = body.content == content
    try:
        public.read(rid, bob)
        seen["bob_denied"] = False
    except ApiError as err:
        seen["bob_denied"] = err.status == 403
        say(f"   Bob was refused: HTTP {err.status} ({err.detail})")
    seen["patient_read"] = public.read(rid, pat).content == content
    say("   the patient read their own record")

    tx = public.revoke(patient, dr_ada.address, Scope.category("lab"))
    say(f"   patient revoked Ada (tx {tx['tx_hash']})")
    try:
        public.read(rid, ada)
        seen["ada_denied_after_revoke"] = False
    except ApiError as err:
        seen["ada_denied_after_revoke"] = err.status == 403
        say(f"   Ada is now refused: HTTP {err.status}")

    # Break-glass: Bob must be in the hospital's directory, and another clinician approves.
    dr_cho = Account.create()
    hospital.add_clinician(dr_bob.address, "physician")
    hospital.add_clinician(dr_cho.address, "emergency")
    bg = hospital.break_glass(
        patient.address,
        dr_bob.address,
        "unconscious patient in ER",
        approved_by=dr_cho.address,
        duration=900,
    )
    seen["bob_break_glass_read"] = public.read(rid, bob).content == content
    say(
        f"   break-glass opened for Bob, approved by Dr Cho (tx {bg['tx_hash']}); "
        "Bob read the record"
    )
    feed = public.my_break_glass(pat)["break_glass"]
    seen["patient_saw_break_glass"] = [n["clinician"] for n in feed] == [dr_bob.address]
    say(f"   the patient sees it in their feed: {feed[0]['disclosure']['reason']!r}")

    # 4. Audit
    _wait(lambda: admin.health()["pending_access_log"] == 0)
    events = auditor.audit_events(patient=patient.address)
    counts: dict[str, int] = {}
    for e in events:
        counts[e["event"]] = counts.get(e["event"], 0) + 1
    denied = sum(1 for e in events if e["event"] == "AccessRecorded" and not e["args"]["granted"])
    seen["events"] = counts
    say(f"4. audit trail for the patient: {counts} ({denied} denied reads)")

    # 5. Integrity
    v = auditor.verify(rid, "0x" + hashlib.sha256(content).hexdigest())
    seen["verified"] = v["verified"]
    say(f"5. auditor verified the content hash against root {v['root']}: {v['verified']}")
    forged = auditor.verify(rid, "0x" + hashlib.sha256(b"forged").hexdigest())
    seen["forged_rejected"] = not forged["verified"]
    say(f"   a forged hash verifies: {forged['verified']}")

    # 6. Anonymous read: the patient consents to a class of readers ("nurses of any member
    #    hospital"), the hospital issues a nurse a credential whose role and licence come
    #    from its directory, and the nurse proves membership of that class instead of
    #    signing in.
    try:
        public.zk.info()
    except ApiError:
        say("6. (zero-knowledge access is disabled on this node)")
    else:
        hospital.zk.propose_policy("lab", ["physician", "nurse"])
        say("6. the consortium allowed physicians and nurses to read 'lab' with a proof (a vote)")
        grant = public.grant_class(
            patient, ["nurse"], Scope.category("lab"), expires_in=7 * 24 * 3600
        )
        say(
            f"   the patient consented to 'lab' reads by nurses of any member hospital "
            f"(tx {grant['tx_hash']})"
        )
        nurse_account = Account.create()
        hospital.add_clinician(
            nurse_account.address, "nurse", licence_expiry=int(time.time()) + 365 * 86400
        )
        identity = Identity.generate()  # the nurse's secret stays on her device
        receipt = hospital.zk.issue_credentials([(identity.commitment, nurse_account.address)])
        entry = receipt["credentials"][0]
        nurse = IssuedCredential(
            identity, entry["hospital_id"], role_index(entry["role"]), entry["licence_expiry"]
        )
        say(
            f"   the hospital issued her a credential: leaf {entry['leaf']} ({entry['role']}, "
            f"hospital {entry['hospital_id']}, from its directory)"
        )
        with tempfile.TemporaryDirectory() as keys:
            zk_read = ClinicianProver(nurse, Path(keys)).read(public, rid)
        seen["zk_read"] = zk_read.content == content
        say(
            f"   a nurse read it anonymously with a proof (proved in "
            f"{zk_read.prove_seconds * 1000:.0f} ms; ZkAccessGate tx {zk_read.tx_hash})"
        )
    for c in (admin, hospital, auditor, public):
        c.close()
    return seen
