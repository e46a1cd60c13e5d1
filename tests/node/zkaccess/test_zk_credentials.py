"""Credential issuance and revocation (issue 9, items 2 and 3): the hospital's directory sets
role and licence expiry, the registry sets the hospital id, the clinician hands over an
identity commitment only; revocation survives a signing-key rotation and reaches the
credentials of a removed member."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3.logs import DISCARD

from node.chain.artifacts import load_artifact
from node.client import ApiError, EmrClient, Scope
from tests.node.conftest import RunningNode, start_node
from tests.node.test_signer_rotation import _fund
from tests.node.zkaccess.helpers import YEAR, allow, forged_request, issue, prover
from zk.credentials import (
    Identity,
    IssuedCredential,
    credential_attributes,
    credential_leaf,
    role_index,
    roles_mask,
)
from zk.exceptions import InputError, WitnessError

NURSE, PHYSICIAN = roles_mask(["nurse"]), roles_mask(["physician"])


def _status(call: Any) -> tuple[int, str]:
    with pytest.raises(ApiError) as err:
        call()
    return err.value.status, err.value.detail


@pytest.fixture
def hospital_client(embedded_node: RunningNode) -> Any:
    with embedded_node.client(embedded_node.admin_token) as admin:
        token = admin.create_token("ehr", "hospital")
    with embedded_node.client(token) as c:
        yield c


def _send(rn: RunningNode, account: LocalAccount, fn: Any, gas: int = 2_000_000) -> Any:
    w3 = rn.node.chain.web3  # type: ignore[attr-defined]
    tx = fn.build_transaction(
        {
            "from": account.address,
            "nonce": w3.eth.get_transaction_count(account.address),
            "gas": gas,
            "gasPrice": w3.eth.gas_price,
        }
    )
    receipt = w3.eth.wait_for_transaction_receipt(
        w3.eth.send_raw_transaction(account.sign_transaction(tx).raw_transaction)
    )
    assert receipt["status"] == 1
    return receipt


def _contract(rn: RunningNode, name: str, address: str) -> Any:
    w3 = rn.node.chain.web3  # type: ignore[attr-defined]
    return w3.eth.contract(address=address, abi=load_artifact(name).abi)


def test_the_directory_not_the_request_sets_the_attributes(
    embedded_node: RunningNode, hospital_client: EmrClient, tmp_path: Path
) -> None:
    rn, hospital = embedded_node, hospital_client
    url = f"{rn.url}/zk/credentials"
    headers = {"Authorization": f"Bearer {hospital.token}"}
    nurse = Account.create().address
    expiry = int(time.time()) + YEAR
    hospital.add_clinician(nurse, "nurse", licence_expiry=expiry)
    identity = Identity.generate()
    entry = {"identity_commitment": str(identity.commitment), "clinician": nurse}
    # Self-asserted attributes in the request are refused with a reason, not ignored.
    for extra in (
        {"role": "physician"},
        {"licence_expiry": 2**40 - 1},
        {"hospital_id": 2},
        {"leaf": "1"},
    ):
        for body in ({"credentials": [{**entry, **extra}]}, {"credentials": [entry], **extra}):
            response = httpx.post(url, json=body, headers=headers, timeout=30)
            assert response.status_code == 422, (extra, response.text)
            assert next(iter(extra)) in response.text and "extra" in response.text.lower()

    [issued] = hospital.zk.issue_credentials([(identity.commitment, nurse)])["credentials"]
    member_id = rn.node.chain.member_id(rn.node.hospital)
    assert (issued["role"], issued["licence_expiry"], issued["hospital_id"]) == (
        "nurse",
        expiry,
        member_id,
    )
    # The on-chain leaf decodes to the directory's values (the registry hashed them).
    zk = rn.node.zk
    registry = _contract(rn, "CredentialRegistry", zk.gate.deployment.credential_registry)
    [event] = registry.events.CredentialIssued().get_logs(from_block=0)
    args = event["args"]
    assert (args["identityCommitment"], args["hospitalId"], args["role"], args["expiry"]) == (
        identity.commitment,
        member_id,
        role_index("nurse"),
        expiry,
    )
    assert (
        args["leaf"]
        == int(issued["leaf"])
        == credential_leaf(identity.commitment, credential_attributes(member_id, "nurse", expiry))
    )

    # The clinician cannot claim another role, expiry or hospital: such a leaf is in no tree,
    # and a proof that pretends otherwise does not verify.
    with rn.client() as public:
        patient = Account.create()
        record = hospital.upload(patient.address, b"lab", category="lab")["record_id"]
        allow(hospital, "lab", ["physician", "nurse"])
        public.grant_class(patient, ["physician"], Scope.category("lab"))
        keys = tmp_path / "keys"
        for claim in (
            IssuedCredential(identity, member_id, role_index("physician"), expiry),
            IssuedCredential(identity, member_id, role_index("nurse"), 2**40 - 1),
            IssuedCredential(identity, member_id + 1, role_index("nurse"), expiry),
        ):
            with pytest.raises(InputError, match="not in the consortium tree"):
                prover(claim, keys).read(public, record)
        honest = IssuedCredential(identity, member_id, role_index("nurse"), expiry)
        liar = prover(honest, keys)
        try:
            body, _ = forged_request(
                public,
                liar,
                record,
                scope_kind=1,
                class_hospital=0,
                class_roles=PHYSICIAN,
                mask=PHYSICIAN,
                check=False,
            )
        except WitnessError:
            pass
        else:
            with pytest.raises(ApiError) as err:
                public.zk.read(record, body)
            assert err.value.status == 422


def test_issuance_refuses_what_the_directory_does_not_vouch_for(
    embedded_node: RunningNode, hospital_client: EmrClient
) -> None:
    hospital = hospital_client
    now = int(time.time())
    unknown = Account.create().address
    expired = Account.create().address
    no_licence = Account.create().address
    odd_role = Account.create().address
    hospital.add_clinician(expired, "nurse", licence_expiry=now - 10)
    hospital.add_clinician(no_licence, "nurse")
    hospital.add_clinician(odd_role, "surgeon-general", licence_expiry=now + YEAR)
    for clinician, reason in (
        (unknown, "not in this hospital's directory"),
        (expired, "expired"),
        (no_licence, "no licence expiry"),
        (odd_role, "no credential can carry"),
    ):
        status, detail = _status(
            lambda c=clinician: hospital.zk.issue_credentials([(Identity.generate().commitment, c)])
        )
        assert status == 400 and reason in detail, (status, detail)
    nurse, entry = issue(hospital, "nurse")
    known = Account.create().address
    hospital.add_clinician(known, "nurse", licence_expiry=now + YEAR)
    twice = Identity.generate().commitment
    status, detail = _status(
        lambda: hospital.zk.issue_credentials([(twice, known), (twice, known)])
    )
    assert status == 400 and "duplicates" in detail
    hospital.zk.issue_credentials([(twice, known)])
    assert _status(lambda: hospital.zk.issue_credentials([(twice, known)]))[0] == 409
    # A zero commitment; the same identity twice in one request; the same credential again.
    assert _status(lambda: hospital.zk.issue_credentials([(0, Account.create().address)]))[0] in (
        400,
        422,
    )
    with embedded_node.client() as public:
        assert _status(lambda: public.zk.issue_credentials([(1, unknown)]))[0] == 401
        assert _status(lambda: public.zk.revoke_credential(nurse.leaf))[0] == 401
        assert _status(lambda: public.zk.revoke_member(unknown))[0] == 401
        with embedded_node.client(embedded_node.admin_token) as admin:
            auditor = admin.create_token("a", "auditor")
        with embedded_node.client(auditor) as a:
            assert _status(lambda: a.zk.issue_credentials([(1, unknown)]))[0] == 403
    head = embedded_node.node.chain.head_block()
    assert _status(lambda: hospital.zk.issue_credentials([(2**300, unknown)]))[0] == 422
    assert embedded_node.node.chain.head_block() == head
    assert entry["index"] == 0


def test_a_member_cannot_issue_under_another_members_id(embedded_node: RunningNode) -> None:
    rn = embedded_node
    chain = rn.node.chain
    consortium = _contract(rn, "Consortium", chain.deployment.consortium)
    other = Account.create()
    _fund(rn, other.address, 10**18)
    chain.transact(consortium.functions.propose(0, other.address, "Other"))  # type: ignore[attr-defined]
    registry = _contract(rn, "CredentialRegistry", rn.node.zk.gate.deployment.credential_registry)
    idc = Identity.generate().commitment
    expiry = int(time.time()) + YEAR
    receipt = _send(rn, other, registry.functions.issueCredential(idc, role_index("nurse"), expiry))
    [event] = registry.events.CredentialIssued().process_receipt(receipt, errors=DISCARD)
    # The registry put the sender's own id in the leaf, whatever the sender wanted.
    assert event["args"]["hospitalId"] == chain.member_id(other.address) == 2
    assert chain.member_id(rn.node.hospital) == 1
    # The node's mirror shows it as hospital 2's credential, which node 1 may not revoke.
    with rn.client(rn.admin_token) as admin:
        token = admin.create_token("ehr", "hospital")
    with rn.client(token) as hospital:
        status, detail = _status(lambda: hospital.zk.revoke_credential(event["args"]["leaf"]))
        assert status == 403 and "issuing hospital" in detail
        assert _status(lambda: hospital.zk.revoke_member(other.address))[0] == 403
        assert _status(lambda: hospital.zk.revoke_member(Account.create().address))[0] == 404


def test_a_removed_members_credentials_revoked_by_another_member_stop_reads(
    embedded_node: RunningNode, tmp_path: Path
) -> None:
    rn = embedded_node
    chain = rn.node.chain
    consortium = _contract(rn, "Consortium", chain.deployment.consortium)
    other = Account.create()
    _fund(rn, other.address, 10**18)
    chain.transact(consortium.functions.propose(0, other.address, "Other"))  # type: ignore[attr-defined]
    registry = _contract(rn, "CredentialRegistry", rn.node.zk.gate.deployment.credential_registry)
    identity = Identity.generate()
    expiry = int(time.time()) + YEAR
    _send(rn, other, registry.functions.issueCredential(identity.commitment, 1, expiry))
    credential = IssuedCredential(identity, 2, 1, expiry)  # a nurse of hospital 2
    with rn.client(rn.admin_token) as admin:
        token = admin.create_token("ehr", "hospital")
    with rn.client(token) as hospital, rn.client() as public:
        patient = Account.create()
        record = hospital.upload(patient.address, b"lab", category="lab")["record_id"]
        # One member of two: the policy needs the other's vote.
        proposal = hospital.zk.propose_policy("lab", ["nurse"])["proposal"]
        _send(rn, other, consortium.functions.vote(proposal["id"]))
        public.grant_class(patient, ["nurse"], Scope.category("lab"))
        nurse = prover(credential, tmp_path / "keys")
        assert nurse.read(public, record).content == b"lab"
        prepared = nurse.prepare(public, record)

        # Hospital 2 is removed (node proposes, hospital 2's vote makes the majority).
        tx = chain.transact(consortium.functions.propose(1, other.address, ""))  # type: ignore[attr-defined]
        removal = consortium.events.ProposalCreated().process_receipt(tx[1], errors=DISCARD)[0][
            "args"
        ]["id"]
        _send(rn, other, consortium.functions.vote(removal))
        assert not chain.is_member(other.address)
        revoked = hospital.zk.revoke_member(other.address)
        assert revoked["hospital_id"] == 2
        assert [r["leaf"] for r in revoked["revoked"]] == [str(credential.leaf)]
        with pytest.raises(ApiError) as err:
            public.zk.read(record, prepared.body)
        assert err.value.status == 403  # the root it proved against is no longer valid
        with pytest.raises(InputError, match="not in the consortium tree"):
            nurse.read(public, record)
        assert hospital.zk.revoke_member(other.address)["revoked"] == []


def test_revocation_after_a_signer_rotation(tmp_path: Path) -> None:
    rn = start_node(tmp_path / "node")
    try:
        with rn.client(rn.admin_token) as admin:
            token = admin.create_token("ehr", "hospital")
            with rn.client(token) as hospital, rn.client() as public:
                patient = Account.create()
                record = hospital.upload(patient.address, b"lab", category="lab")["record_id"]
                allow(hospital, "lab", ["nurse"])
                public.grant_class(patient, ["nurse"], Scope.category("lab"))
                issued, _ = issue(hospital, "nurse")
                nurse = prover(issued, tmp_path / "keys")
                prepared = nurse.prepare(public, record)
                old = rn.node.hospital
                rotation = admin.rotate_signer()
                assert rotation["completed"] and rn.node.hospital != old
                # The issuer's rights moved with the member id: the new key revokes.
                revoked = hospital.zk.revoke_credential(issued.leaf)
                tx = rn.node.chain.web3.eth.get_transaction(revoked["tx_hash"])  # type: ignore[attr-defined]
                assert tx["from"] == rn.node.hospital
                with pytest.raises(ApiError) as err:
                    public.zk.read(record, prepared.body)
                assert err.value.status == 403
                # And the rotated node still issues under the same member id.
                again, entry = issue(hospital, "nurse")
                assert entry["hospital_id"] == 1
                assert nurse.credential.leaf != again.leaf
    finally:
        rn.stop()


def test_credentials_of_a_readmitted_hospitals_old_id_stay_revocable(
    embedded_node: RunningNode,
) -> None:
    """A removed hospital admitted again gets a new member id; nobody holds the old one, so
    its old credentials can still be revoked by another member (leaf by leaf)."""
    rn = embedded_node
    chain = rn.node.chain
    consortium = _contract(rn, "Consortium", chain.deployment.consortium)
    other = Account.create()
    _fund(rn, other.address, 10**18)
    chain.transact(consortium.functions.propose(0, other.address, "Other"))  # type: ignore[attr-defined]
    registry = _contract(rn, "CredentialRegistry", rn.node.zk.gate.deployment.credential_registry)
    receipt = _send(
        rn,
        other,
        registry.functions.issueCredential(Identity.generate().commitment, 1, 2**39),
    )
    [event] = registry.events.CredentialIssued().process_receipt(receipt, errors=DISCARD)
    tx = chain.transact(consortium.functions.propose(1, other.address, ""))  # type: ignore[attr-defined]
    removal = consortium.events.ProposalCreated().process_receipt(tx[1], errors=DISCARD)
    _send(rn, other, consortium.functions.vote(removal[0]["args"]["id"]))
    chain.transact(consortium.functions.propose(0, other.address, "Other again"))  # type: ignore[attr-defined]
    assert chain.is_member(other.address) and chain.member_id(other.address) == 3
    with rn.client(rn.admin_token) as admin:
        token = admin.create_token("ehr", "hospital")
    with rn.client(token) as hospital:
        # revoke-member looks the address up: it is a member again (under id 3).
        assert _status(lambda: hospital.zk.revoke_member(other.address))[0] == 403
        revoked = hospital.zk.revoke_credential(event["args"]["leaf"])
        assert revoked["hospital_id"] == 2
        assert str(event["args"]["leaf"]) not in hospital.zk.tree()["leaves"]
