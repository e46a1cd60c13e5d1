"""Three hospitals on one chain (issue 14): A (keys in SoftHSM2) and B found the consortium,
C is admitted by a vote through the node API and later removed by one. Across hospitals: a
patient of A grants a clinician of B, who reads through A's node (A holds the key) while A
logs the access on-chain; an auditor at C sees the whole trail and checks the anchor. After
C's removal: C's tokens never meant anything at A, C cannot anchor nor open break-glass, and
its ZK credentials stop verifying once a member revokes them (not automatic)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from eth_account import Account
from eth_utils import keccak

from node.chain.merkle import record_leaf, verify_proof
from node.client import ApiError, EmrClient, Scope
from tests.consortium.harness import Consortium, read_status, until
from tests.node.zkaccess.helpers import YEAR, prover
from zk.credentials import Identity, IssuedCredential, role_index
from zk.exceptions import InputError

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def consortium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Consortium]:
    c = Consortium.start(3, tmp_path_factory.mktemp("consortium"), members=2)
    try:
        yield c
    finally:
        c.stop()


def _status(call: object) -> int:
    try:
        call()  # type: ignore[operator]
    except ApiError as err:
        return err.status
    return 200


def _relayed(client: EmrClient, answer: dict[str, object]) -> None:
    """Wait until a consent relay is on-chain (relayed at once, or queued then relayed)."""
    assert answer["status"] in ("relayed", "queued"), answer
    if answer["status"] == "relayed":
        return
    relay_id = int(answer["relay_id"])  # type: ignore[arg-type]

    def done() -> bool:
        status = client.relay_status(relay_id)
        assert status["status"] != "failed", status
        return status["status"] == "relayed"

    until(done, timeout=60, step=0.2)


def test_c_is_admitted_by_a_vote_through_the_api(consortium: Consortium) -> None:
    a, b, c = consortium.hospitals
    assert consortium.members() == [0, 1]
    # C, not a member, can neither propose nor vote.
    assert _status(lambda: c.hospital().governance.propose("admit", c.address, "C")) == 403
    # A non-hospital token may not propose.
    auditor = a.client(a.admin().create_token("auditor-gov", "auditor"))
    assert _status(lambda: auditor.governance.propose("admit", c.address, "C")) == 403
    assert _status(lambda: a.hospital().governance.propose("admit", c.address, None)) == 422
    assert _status(lambda: a.hospital().governance.propose("remove", c.address, "C")) == 422
    assert _status(lambda: a.hospital().governance.propose("remove", c.address, None)) == 409
    proposal = a.hospital().governance.propose("admit", c.address, c.name)
    assert proposal["state"] == "open" and proposal["votes"] == 1
    assert proposal["votes_needed"] == 2 and proposal["kind"] == "admit"
    assert _status(lambda: c.hospital().governance.vote(proposal["id"])) == 403
    assert _status(lambda: a.hospital().governance.vote(proposal["id"])) == 409  # voted
    voted = b.hospital().governance.vote(proposal["id"])
    assert voted["executed"] and voted["state"] == "executed"
    assert consortium.members() == [0, 1, 2]
    # Every node sees the same membership (one chain).
    names = {m["name"] for m in c.info()["members"]}  # type: ignore[union-attr]
    assert names == {"Hospital 0", "Hospital 1", "Hospital 2"}
    assert _status(lambda: a.hospital().governance.propose("admit", c.address, "C")) == 409


def test_b_clinician_reads_through_a_and_c_audits(consortium: Consortium) -> None:
    a, b, c = consortium.hospitals
    patient, clinician = Account.create(), Account.create()
    hospital_a = a.hospital()
    content = b"cross-hospital lab result " + keccak(text=str(time.time()))
    uploaded = hospital_a.upload(patient.address, content, category="lab")
    rid = uploaded["record_id"]
    receipt = hospital_a.wait_anchored(rid, timeout=60)
    # The clinician belongs to B (B's directory), not to A.
    b.admin().add_clinician(clinician.address, "physician")
    public_a = EmrClient(a.url, timeout=30)
    session = public_a.login(clinician)
    assert read_status(public_a, rid, session) == (403, b"")  # no consent yet
    # The patient signs an EIP-712 Grant for B's clinician; A relays it.
    _relayed(public_a, public_a.grant(patient, clinician.address, Scope.record(rid)))
    # The relay answered "relayed": the grant is on-chain, the first read is served.
    assert read_status(public_a, rid, session) == (200, content)

    # An auditor at C sees the trail of A's record: anchored by A, consent, B's read at A.
    auditor_c = c.client(c.admin().create_token("auditor-c", "auditor"))

    def trail() -> list[dict[str, object]] | None:
        found = auditor_c.audit_events(record_id=rid)
        reads = [
            e["args"]
            for e in found
            if e["event"] == "AccessRecorded" and e["args"]["actor"] == clinician.address  # type: ignore[index]
        ]
        return found if any(r["granted"] for r in reads) else None  # type: ignore[index]

    events: list[dict[str, Any]] = until(trail, timeout=60, step=0.5)  # type: ignore[assignment]
    names = [e["event"] for e in events]
    assert {"RecordAnchored", "ConsentGranted", "AccessRecorded"} <= set(names), names
    reads = [e["args"] for e in events if e["event"] == "AccessRecorded"]
    # Logged by A (the hospital that holds the record), the refusal before the grant too.
    assert {r["hospital"] for r in reads} == {a.address}, reads
    assert sorted(r["granted"] for r in reads) == [False, True], reads
    assert [r["basis"] for r in reads if r["granted"]] == [1], reads  # a record consent
    # The anchor, checked from C: the leaf recomputed from A's record metadata is in the
    # root A's receipt names, and that root is the one C's node sees on-chain.
    record = hospital_a.record(rid)
    leaf = record_leaf(
        bytes.fromhex(rid[2:]),
        patient.address,
        bytes.fromhex(record["content_hash"][2:]),
        None,
    )
    assert "0x" + leaf.hex() == receipt["leaf"]
    proof = [bytes.fromhex(p[2:]) for p in receipt["proof"]]
    assert verify_proof(leaf, proof, bytes.fromhex(receipt["root"][2:]))
    roots = {
        str(e["args"].get("root")).lower()  # type: ignore[union-attr]
        for e in auditor_c.audit_events(event="BatchAnchored")
        if "root" in e["args"]  # type: ignore[operator]
    }
    assert receipt["root"].lower() in roots, roots
    # C's node checks A's receipt from the chain alone (C has neither A's index nor its key):
    # the batch's on-chain root is the receipt's, the proof reaches it (RecordRegistry's
    # verifyRecord), the record's RecordAnchored event names the batch and A.
    checked = auditor_c.verify_receipt(receipt)
    assert checked["valid"] and checked["failed"] == [], checked
    assert checked["hospital"] == a.address and checked["patient"] == patient.address
    assert checked["anchor_tx"] == receipt["tx_hash"] and checked["erased"] is False
    assert c.hospital().verify_receipt(receipt)["valid"]  # C's hospital token too
    forged = auditor_c.verify_receipt({**receipt, "content_hash": "0x" + "00" * 32})
    assert forged["failed"] == ["leaf_matches_record", "proof_valid_on_chain"], forged
    # A verifies its own record against the chain (A holds the index and the key).
    auditor_a = a.client(a.admin().create_token("auditor-a", "auditor"))
    assert auditor_a.verify(rid)["verified"]


def test_tokens_of_one_hospital_mean_nothing_at_another(consortium: Consortium) -> None:
    a, _b, c = consortium.hospitals
    for token in (c.hospital_token, c.admin_token):
        r = httpx.get(
            a.url + "/records", params={"limit": 1}, headers={"Authorization": f"Bearer {token}"}
        )
        assert r.status_code == 401, r.text


def test_removal_of_c(consortium: Consortium, tmp_path: Path) -> None:
    a, _b, c = consortium.hospitals
    patient = Account.create()
    public_a = EmrClient(a.url, timeout=30)
    # A consortium policy for "lab" (nurses may read with a proof): A proposes, B votes.
    policy = a.hospital().zk.propose_policy("lab", ["nurse"])["proposal"]
    consortium.vote_until_executed(policy, [1])
    # A nurse of C with a credential C issued (C is a member now).
    nurse = Account.create()
    c.admin().add_clinician(nurse.address, "nurse", licence_expiry=int(time.time()) + YEAR)
    identity = Identity.generate()
    entry = c.hospital().zk.issue_credentials([(identity.commitment, nurse.address)])[
        "credentials"
    ][0]
    assert entry["hospital_id"] == 3
    credential = IssuedCredential(
        identity, entry["hospital_id"], role_index(entry["role"]), entry["licence_expiry"]
    )
    record = a.hospital().upload(patient.address, b"lab of A", category="lab")["record_id"]
    # The patient consents to nurses of C (C's member id) reading the category anonymously.
    _relayed(
        public_a,
        public_a.grant_class(
            patient, ["nurse"], Scope.category("lab"), hospital=entry["hospital_id"]
        ),
    )
    zk_nurse = prover(credential, tmp_path / "keys")
    until(lambda: _zk_reads(zk_nurse, public_a, record), timeout=60, step=0.5)

    # C is removed: A proposes, B votes (2 of 3). B's vote executes the removal, and B's
    # node revokes at once the ZK credentials C issued.
    removal = consortium.remove(2)
    assert removal["kind"] == "remove" and removal["executed"]
    assert removal["revoked_credentials"] == 1, removal
    assert consortium.members() == [0, 1]
    # C's credential no longer verifies at A; the manual route finds nothing left.
    assert not _zk_reads(zk_nurse, public_a, record)
    assert a.hospital().zk.revoke_member(c.address)["revoked"] == []

    # C's node can no longer anchor: its upload is acknowledged (stored at C) and stays
    # pending; nothing half-written reaches the chain.
    before = len(
        c.client(c.admin().create_token("auditor-c2", "auditor")).audit_events(
            event="BatchAnchored"
        )
    )
    late = c.hospital().upload(patient.address, b"after removal", category="lab")["record_id"]
    time.sleep(3)
    assert c.hospital().receipt(late)["status"] == "pending"
    auditor_a = a.client(a.admin().create_token("auditor-a2", "auditor"))
    assert len(auditor_a.audit_events(event="BatchAnchored")) == before
    # Nor open break-glass (members only, on-chain).
    doctor = Account.create().address
    approver = Account.create().address
    c.admin().add_clinician(doctor, "physician")
    c.admin().add_clinician(approver, "physician")
    with pytest.raises(ApiError) as refused:
        c.hospital().break_glass(patient.address, doctor, "emergency", approved_by=approver)
    assert refused.value.status == 400 and "Member" in refused.value.detail, refused.value
    # Nor vote.
    assert _status(lambda: c.hospital().governance.propose("remove", a.address, None)) == 403

    # C can issue no new credential.
    other = Account.create()
    c.admin().add_clinician(other.address, "nurse", licence_expiry=int(time.time()) + YEAR)
    fresh = Identity.generate().commitment
    assert _status(lambda: c.hospital().zk.issue_credentials([(fresh, other.address)])) == 403


def _zk_reads(nurse: object, public: EmrClient, record: str) -> bool:
    try:
        return nurse.read(public, record).content == b"lab of A"  # type: ignore[attr-defined]
    except ApiError as err:
        if err.status in (403, 409):
            return False
        raise
    except InputError:  # the credential is no longer in the consortium tree (revoked)
        return False
