"""Anonymous reads (v2) end to end over HTTP, on the embedded default and the production
backends: the patient's reader-class consent governs them, the consortium's category policy
bounds them, the gate verifies and records them on-chain, and the record comes back sealed
to the clinician's one-time key."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest
from eth_account import Account

from node.client import ApiError, EmrClient, Scope
from node.consent.typed_data import category_hash
from node.zkaccess.sealed_box import SealedBox, open_box
from tests.node.conftest import RunningNode
from tests.node.zkaccess.helpers import allow, forged_request, issue, prover
from zk.credentials import roles_mask
from zk.exceptions import InputError, WitnessError

LAB = b"potassium 4.1 mmol/L"
NURSE, PHYSICIAN = roles_mask(["nurse"]), roles_mask(["physician"])
SCOPE_CATEGORY = 1


@pytest.fixture
def setup(hospital: EmrClient, tmp_path: Path) -> dict[str, object]:
    patient = Account.create()
    lab = hospital.upload(patient.address, LAB, category="lab")["record_id"]
    imaging = hospital.upload(patient.address, b"chest x-ray: clear", category="imaging")[
        "record_id"
    ]
    allow(hospital, "lab", ["physician", "nurse"])
    nurse, _ = issue(hospital, "nurse")
    physician, _ = issue(hospital, "physician")
    keys = tmp_path / "keys"
    return {
        "patient": patient,
        "lab": lab,
        "imaging": imaging,
        "nurse": prover(nurse, keys),
        "physician": prover(physician, keys),
        "keys": keys,
    }


def _status(call: object) -> tuple[int, str]:
    with pytest.raises(ApiError) as err:
        call()  # type: ignore[operator]
    return err.value.status, err.value.code


def test_class_consent_governs_anonymous_reads(
    running_node: RunningNode,
    hospital: EmrClient,
    public: EmrClient,
    auditor: EmrClient,
    setup: dict,
) -> None:
    patient, lab, nurse = setup["patient"], setup["lab"], setup["nurse"]
    # No consent, no anonymous read: the client finds no class it belongs to, and a
    # request naming a class the patient never granted is refused before any gas is spent.
    assert public.zk.record_access(lab)["classes"] == []
    with pytest.raises(InputError, match="no live consent"):
        nurse.read(public, lab)
    body, _ = forged_request(
        public,
        nurse,
        lab,
        scope_kind=SCOPE_CATEGORY,
        class_hospital=0,
        class_roles=NURSE,
        mask=NURSE,
    )
    head = running_node.node.chain.head_block()
    assert _status(lambda: public.zk.read(lab, body)) == (403, "consent_denied")
    assert running_node.node.chain.head_block() == head

    # A consent for nurses of any member hospital admits the nurse.
    public.grant_class(patient, ["nurse"], Scope.category("lab"))
    [cls] = public.zk.record_access(lab)["classes"]
    assert (cls["hospital"], cls["roles"], cls["mask"]) == (0, ["nurse"], NURSE)
    # The record's patient and category hash: the proof's scope binds both.
    access = public.zk.record_access(lab)
    assert access["patient"] == patient.address
    assert access["category_hash"] == "0x" + category_hash("lab").hex()
    read = nurse.read(public, lab)
    assert read.content == LAB and read.category == "lab"
    [event] = auditor.zk.accesses(lab)
    assert event["tx_hash"] == read.tx_hash
    assert event["relayer"] == running_node.node.hospital
    assert event["category"] == "0x" + category_hash("lab").hex()
    assert event["patient"] == patient.address
    assert auditor.zk.accesses(setup["imaging"]) == []
    assert _status(lambda: public.zk.accesses())[0] == 401

    # The gate's events never carry the identity commitment, the secret or the leaf.
    gate = running_node.node.zk.gate
    logs = running_node.node.chain.web3.eth.get_logs(
        {"fromBlock": 0, "toBlock": "latest", "address": gate.deployment.zk_access_gate}
    )
    issued = nurse.credential
    for value in (issued.identity.commitment, issued.identity.secret, issued.leaf):
        word = value.to_bytes(32, "big")
        for entry in logs:
            assert word not in bytes(entry["data"])
            assert all(word != bytes(t) for t in entry["topics"])

    # A relayed class revoke stops the next anonymous read, even one proved before it.
    prepared = nurse.prepare(public, lab)
    public.revoke_class(patient, ["nurse"], Scope.category("lab"))
    assert public.zk.record_access(lab)["classes"] == []
    head = running_node.node.chain.head_block()
    assert _status(lambda: public.zk.read(lab, prepared.body)) == (403, "consent_denied")
    assert running_node.node.chain.head_block() == head
    with pytest.raises(InputError, match="no live consent"):
        nurse.read(public, lab)


def test_a_consent_for_physicians_does_not_admit_a_nurse(
    running_node: RunningNode, public: EmrClient, setup: dict
) -> None:
    patient, lab, nurse = setup["patient"], setup["lab"], setup["nurse"]
    public.grant_class(patient, ["physician"], Scope.category("lab"))
    with pytest.raises(InputError, match="no live consent"):
        nurse.read(public, lab)
    head = running_node.node.chain.head_block()
    # The nurse names the physicians' class: her role is not in its mask, so no proof
    # of that statement verifies (the witness is refused, or the proof is invalid).
    try:
        body, _ = forged_request(
            public,
            nurse,
            lab,
            scope_kind=SCOPE_CATEGORY,
            class_hospital=0,
            class_roles=PHYSICIAN,
            mask=PHYSICIAN,
            check=False,
        )
    except WitnessError:
        pass
    else:
        assert _status(lambda: public.zk.read(lab, body)) == (422, "proof_invalid")
    # She proves honestly for her role but claims the physicians' class: the node rebuilds
    # the mask from the class (physician AND policy), so her proof does not verify.
    body, _ = forged_request(
        public,
        nurse,
        lab,
        scope_kind=SCOPE_CATEGORY,
        class_hospital=0,
        class_roles=PHYSICIAN,
        mask=NURSE,
    )
    assert _status(lambda: public.zk.read(lab, body)) == (422, "proof_invalid")
    # A class "physicians and nurses" the patient never granted.
    body, _ = forged_request(
        public,
        nurse,
        lab,
        scope_kind=SCOPE_CATEGORY,
        class_hospital=0,
        class_roles=PHYSICIAN | NURSE,
        mask=NURSE,
    )
    assert _status(lambda: public.zk.read(lab, body)) == (403, "consent_denied")
    assert running_node.node.chain.head_block() == head
    # The physician of the class reads.
    assert setup["physician"].read(public, lab).content == LAB


def test_replayed_and_tampered_requests_are_refused(
    running_node: RunningNode, public: EmrClient, setup: dict
) -> None:
    patient, lab, imaging, nurse = setup["patient"], setup["lab"], setup["imaging"], setup["nurse"]
    public.grant_class(patient, ["nurse"], Scope.all())
    prepared = nurse.prepare(public, lab)
    answer = public.zk.read(lab, prepared.body)
    box = SealedBox.from_json(answer["sealed"])
    assert open_box(prepared.key, box, bytes.fromhex(lab[2:])) == LAB
    assert _status(lambda: public.zk.read(lab, prepared.body))[0] == 409

    body = nurse.prepare(public, lab).body
    head = running_node.node.chain.head_block()
    # Any public value changed, or the proof for another record: it does not verify.
    proof = body["proof"]
    for changed in (
        {"proof": [str(int(proof[0]) ^ 1), *proof[1:]]},
        {"signal": "0x" + "11" * 32},
        {"current_time": body["current_time"] - 1},
        {"epoch_nullifier": "5"},
        {"root": "7"},
        {"class_hospital": 1},  # the class of hospital 1 has no consent: 403 first
        {"proof": ["1"] * 8},  # (1, 1) is not on the curve
    ):
        status, code = _status(lambda c=changed: public.zk.read(lab, {**body, **c}))
        if "class_hospital" in changed:
            assert (status, code) == (403, "consent_denied")
        else:
            assert (status, code) == (422, "proof_invalid"), changed
    assert _status(lambda: public.zk.read(imaging, body)) == (403, "forbidden")  # no policy
    # A valid proof bound to a low-order X25519 point: the record could never be sealed to
    # it, so the node refuses before the gate records anything.
    low_order, _ = forged_request(
        public,
        nurse,
        lab,
        scope_kind=2,
        class_hospital=0,
        class_roles=NURSE,
        mask=NURSE,
        signal=bytes(32),
    )
    status, code = _status(lambda: public.zk.read(lab, low_order))
    assert (status, code) == (400, "invalid_request")
    # Malformed bodies: 422 naming the field.
    for changed in (
        {"proof": ["x"] * 8},
        {"proof": ["1"] * 7},
        {"root": str(2**254)},
        {"signal": "0x12"},
        {"scope_kind": 3},
        {"class_roles": 0},
        {"class_hospital": 2**32},
        {"role": "physician"},
    ):
        status, code = _status(lambda c=changed: public.zk.read(lab, {**body, **c}))
        assert (status, code) == (422, "validation_failed"), changed
    assert running_node.node.chain.head_block() == head
    # Nothing above consumed the request: the untouched one still works.
    assert public.zk.read(lab, body)["record_id"] == lab


def test_revocation_stops_proofs_made_before_it(
    running_node: RunningNode, hospital: EmrClient, public: EmrClient, setup: dict
) -> None:
    patient, lab, nurse = setup["patient"], setup["lab"], setup["nurse"]
    public.grant_class(patient, ["nurse", "physician"], Scope.record(lab))
    prepared = nurse.prepare(public, lab)
    revoked = hospital.zk.revoke_credential(nurse.credential.leaf)
    assert revoked["leaf"] == str(nurse.credential.leaf)
    assert _status(lambda: public.zk.read(lab, prepared.body)) == (403, "forbidden")
    assert str(nurse.credential.leaf) not in public.zk.tree()["leaves"]
    with pytest.raises(InputError, match="not in the consortium tree"):
        nurse.read(public, lab)
    assert _status(lambda: hospital.zk.revoke_credential(nurse.credential.leaf))[0] == 404
    # Other clinicians prove against the new root.
    assert setup["physician"].read(public, lab).content == LAB


def test_auditors_count_distinct_readers_per_epoch(
    running_node: RunningNode, public: EmrClient, auditor: EmrClient, setup: dict
) -> None:
    patient, lab, nurse = setup["patient"], setup["lab"], setup["nurse"]
    public.grant_class(patient, ["nurse", "physician"], Scope.category("lab"))
    # One epoch for all three reads: the nurse proves twice with one current_time.
    now = int(time.time())
    first = nurse.prepare(public, lab, now=now)
    second = nurse.prepare(public, lab, now=now)
    third = setup["physician"].prepare(public, lab, now=now)
    assert first.body["epoch_nullifier"] == second.body["epoch_nullifier"]
    assert first.body["epoch_nullifier"] != third.body["epoch_nullifier"]
    for prepared in (first, second, third):
        public.zk.read(lab, prepared.body)
    info = public.zk.info()
    epoch = now // info["epoch_length"]
    readers = auditor.zk.readers(lab)
    assert readers["epochs"] == [
        {
            "epoch": epoch,
            "start": epoch * info["epoch_length"],
            "accesses": 3,
            "distinct_readers": 2,
        }
    ]
    assert auditor.zk.readers(lab, now + 2 * info["epoch_length"])["epochs"] == []
    assert auditor.zk.readers(setup["imaging"])["epochs"] == []
    assert _status(lambda: public.zk.readers(lab))[0] == 401
    assert _status(lambda: auditor.zk.readers(lab, 10, 5))[0] == 400


def test_the_anonymous_read_flow_never_sends_the_credential(
    running_node: RunningNode, hospital: EmrClient, setup: dict, tmp_path: Path
) -> None:
    """Issue item 4: every request of the read flow, recorded at the HTTP layer, carries no
    identity commitment, leaf, leaf index or secret; only the proof's public inputs."""
    patient, lab = setup["patient"], setup["lab"]
    # A few more credentials, so that the reader's leaf index is a distinctive number.
    for _ in range(3):
        issue(hospital, "physician")
    nurse_credential, entry = issue(hospital, "nurse")
    assert entry["index"] == 5
    with running_node.client() as granting:
        granting.grant_class(patient, ["nurse"], Scope.category("lab"))

    sent: list[httpx.Request] = []
    with running_node.client() as public:
        public._http.event_hooks["request"].append(sent.append)  # type: ignore[attr-defined]
        nurse = prover(nurse_credential, tmp_path / "fresh-keys")  # downloads keys too
        assert nurse.read(public, lab).content == LAB

    identity = nurse_credential.identity
    secrets = {
        "identity commitment": identity.commitment,
        "leaf": nurse_credential.leaf,
        "secret": identity.secret,
    }
    forms = {
        name: {str(v), hex(v), f"{v:064x}", v.to_bytes(32, "big").hex()}
        for name, v in secrets.items()
    }
    allowed_body = {
        "root",
        "current_time",
        "signal",
        "epoch_nullifier",
        "scope_kind",
        "class_hospital",
        "class_roles",
        "proof",
    }
    paths = []
    for request in sent:
        paths.append(f"{request.method} {request.url.path}")
        assert "authorization" not in request.headers  # anonymous: no token, no session
        raw = str(request.url) + str(dict(request.headers)) + request.content.decode()
        for name, values in forms.items():
            assert not any(v in raw for v in values), f"{name} sent in {request.url}"
        # The leaf index appears nowhere: no path segment, query value or body field.
        assert "5" not in request.url.path.split("/")
        assert all(v != "5" for _k, v in request.url.params.multi_items())
        if request.content:
            body = json.loads(request.content)
            assert set(body) == allowed_body
            assert "index" not in request.content.decode()
    read_path = f"/zk/records/{lab}/read"
    assert paths == [
        "GET /zk",
        "GET /zk/proving-key",
        "GET /zk/tree",
        f"GET /zk/records/{lab}/access",
        f"POST {read_path}",
    ]
    # The tree a reader fetches is the one everybody gets.
    with running_node.client() as other:
        assert other.zk.tree() == hospital.zk.tree()
