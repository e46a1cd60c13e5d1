"""Anonymous reads end to end over HTTP, on the embedded default and the production backends:
a clinician proves a ClinicianAccess statement, the gate verifies and records it on-chain,
and the record comes back sealed to the clinician's one-time key."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from node.client import ApiError, EmrClient
from node.consent.typed_data import category_hash
from node.zkaccess.clinician import ClinicianProver
from node.zkaccess.sealed_box import SealedBox, open_box, public_key_bytes
from tests.node.conftest import RunningNode
from zk.credentials import Credential, clinician_access_inputs
from zk.exceptions import InputError
from zk.merkle import MerklePath

PATIENT = "0x" + "ab" * 20
YEAR = 365 * 24 * 3600


def _credential(node: RunningNode, role: str, expiry: int | None = None) -> Credential:
    return Credential.generate(node.node.hospital, role, expiry or int(time.time()) + YEAR)


def _request(
    client: EmrClient, prover: ClinicianProver, record_id: str
) -> tuple[dict[str, object], X25519PrivateKey]:
    """A read request body built by hand (to replay or tamper with it)."""
    p = prover.prover(client)
    path = client.zk.path(prover.credential.commitment)
    policy = client.zk.record_policy(record_id)
    key = X25519PrivateKey.generate()
    signal = public_key_bytes(key)
    now = int(time.time())
    inputs = clinician_access_inputs(
        prover.credential,
        MerklePath(tuple(int(s) for s in path["siblings"]), tuple(path["path_indices"])),
        int(path["root"]),
        int(policy["allowed_roles"]),
        now,
        bytes.fromhex(record_id[2:]),
        signal,
    )
    proof = p.prove(inputs)
    body = {
        "root": str(inputs["root"]),
        "current_time": now,
        "signal": "0x" + signal.hex(),
        "nullifier_hash": str(inputs["nullifierHash"]),
        "proof": [str(w) for w in proof.words],
    }
    return body, key


@pytest.fixture
def setup(
    running_node: RunningNode, hospital: EmrClient, public: EmrClient, tmp_path: Path
) -> dict[str, object]:
    lab = hospital.upload(PATIENT, b"potassium 4.1 mmol/L", category="lab")["record_id"]
    imaging = hospital.upload(PATIENT, b"chest x-ray: clear", category="imaging")["record_id"]
    hospital.zk.set_policy("lab", ["physician", "nurse"])
    physician = _credential(running_node, "physician")
    out = hospital.zk.add_credentials([physician.commitment])
    assert out["indices"] == [0]
    return {
        "lab": lab,
        "imaging": imaging,
        "physician": ClinicianProver(physician, tmp_path / "keys"),
        "keys": tmp_path / "keys",
    }


def test_clinician_reads_a_record_anonymously(
    running_node: RunningNode,
    hospital: EmrClient,
    public: EmrClient,
    auditor: EmrClient,
    setup: dict,
) -> None:
    read = setup["physician"].read(public, setup["lab"])
    assert read.content == b"potassium 4.1 mmol/L"
    assert read.category == "lab"
    # Auditors see the access on-chain: record, nullifier, policy, relayer; the clinician's
    # credential (commitment or secret) appears in no event of the gate.
    [event] = auditor.zk.accesses(setup["lab"])
    assert event["tx_hash"] == read.tx_hash
    assert event["relayer"] == running_node.node.hospital
    assert event["category"] == "0x" + category_hash("lab").hex()
    assert auditor.zk.accesses(setup["imaging"]) == []
    with pytest.raises(ApiError) as err:
        public.zk.accesses()
    assert err.value.status == 401
    gate = running_node.node.zk.gate
    logs = running_node.node.chain.web3.eth.get_logs(
        {"fromBlock": 0, "toBlock": "latest", "address": gate.deployment.zk_access_gate}
    )
    credential = setup["physician"].credential
    commitment = credential.commitment.to_bytes(32, "big")
    secret_bytes = credential.secret.to_bytes(32, "big")
    for entry in logs:
        for secret in (commitment, secret_bytes):
            assert secret not in bytes(entry["data"])
            assert all(secret != bytes(t) for t in entry["topics"])


def test_replayed_and_tampered_requests_are_refused(
    running_node: RunningNode, public: EmrClient, setup: dict
) -> None:
    body, key = _request(public, setup["physician"], setup["lab"])
    answer = public.zk.read(setup["lab"], body)
    box = SealedBox.from_json(answer["sealed"])
    assert open_box(key, box, bytes.fromhex(setup["lab"][2:])) == b"potassium 4.1 mmol/L"
    with pytest.raises(ApiError) as replay:
        public.zk.read(setup["lab"], body)
    assert replay.value.status == 409

    body, _key = _request(public, setup["physician"], setup["lab"])
    # The same proof for another record, or with any public value changed, does not verify.
    # Request validation answers 422 with the offending field (FastAPI's shape).
    for changed, code in (
        ({"proof": [str(int(body["proof"][0]) ^ 1), *body["proof"][1:]]}, "proof_invalid"),
        ({"signal": "0x" + "11" * 32}, "proof_invalid"),
        ({"current_time": body["current_time"] - 1}, "proof_invalid"),
        ({"nullifier_hash": "5"}, "proof_invalid"),
        ({"root": "7"}, "proof_invalid"),
        ({"proof": ["1"] * 8}, "proof_invalid"),  # (1, 1) is not on the curve
        ({"proof": ["x"] * 8}, "error"),
        ({"proof": ["1"] * 7}, "error"),
        ({"root": str(2**254)}, "error"),
        ({"signal": "0x12"}, "error"),
    ):
        with pytest.raises(ApiError) as err:
            public.zk.read(setup["lab"], {**body, **changed})
        assert (err.value.status, err.value.code) == (422, code), changed
    with pytest.raises(ApiError) as other:
        public.zk.read(setup["imaging"], body)
    assert other.value.status == 403  # imaging has no ZK policy
    # Nothing above consumed the nullifier: the untouched request still works.
    assert public.zk.read(setup["lab"], body)["record_id"] == setup["lab"]


def test_roles_licences_and_revocation(
    running_node: RunningNode, hospital: EmrClient, public: EmrClient, setup: dict, tmp_path: Path
) -> None:
    pharmacist = _credential(running_node, "pharmacist")
    expired = _credential(running_node, "nurse", expiry=int(time.time()) - 10)
    nurse = _credential(running_node, "nurse")
    hospital.zk.add_credentials([pharmacist.commitment, expired.commitment, nurse.commitment])
    with pytest.raises(InputError, match="role"):
        ClinicianProver(pharmacist, setup["keys"]).read(public, setup["lab"])
    with pytest.raises(InputError, match="expired"):
        ClinicianProver(expired, setup["keys"]).read(public, setup["lab"])
    nurse_prover = ClinicianProver(nurse, setup["keys"])
    assert nurse_prover.read(public, setup["lab"]).content == b"potassium 4.1 mmol/L"

    # A proof made before the revocation is refused after it: its root is no longer valid.
    body, _key = _request(public, nurse_prover, setup["lab"])
    hospital.zk.revoke_credential(nurse.commitment)
    with pytest.raises(ApiError) as stale:
        public.zk.read(setup["lab"], body)
    assert stale.value.status == 403
    with pytest.raises(ApiError) as gone:
        public.zk.path(nurse.commitment)
    assert gone.value.status == 404
    # Other clinicians prove against the new root.
    assert setup["physician"].read(public, setup["lab"]).content == b"potassium 4.1 mmol/L"


def test_credential_and_policy_endpoints_need_a_hospital_token(
    public: EmrClient, hospital: EmrClient, setup: dict
) -> None:
    for call in (
        lambda: public.zk.add_credentials([12345]),
        lambda: public.zk.set_policy("lab", ["nurse"]),
        lambda: public.zk.revoke_credential(setup["physician"].credential.commitment),
    ):
        with pytest.raises(ApiError) as err:
            call()
        assert err.value.status == 401
    for body_roles in (["surgeon-general"], []):
        with pytest.raises(ApiError) as err:
            hospital.zk.set_policy("lab", body_roles)
        assert err.value.status in (400, 422)
    with pytest.raises(ApiError) as dup:
        hospital.zk.add_credentials([setup["physician"].credential.commitment])
    assert dup.value.status == 400
    assert hospital.zk.policy("lab")["roles"] == ["physician", "nurse"]
