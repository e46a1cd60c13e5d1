"""Signing-key rotation on a running node: the new key takes over the hospital's Consortium
membership through a Rotate proposal, then anchors and relays as the new address; the key
audit log records it; a restart keeps the new key."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from eth_account import Account
from typer.testing import CliRunner

from node.cli.main import app
from node.client import Scope
from tests.node.conftest import RunningNode, start_node


def _sender(rn: RunningNode, tx_hash: str) -> str:
    return str(rn.node.chain.web3.eth.get_transaction(tx_hash)["from"])  # type: ignore[attr-defined]


def _wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.2)


def test_rotate_signer_in_a_one_member_consortium(tmp_path: Path) -> None:
    rn = start_node(tmp_path / "node")
    try:
        node = rn.node
        old = node.hospital
        with rn.client(rn.admin_token) as admin:
            hospital_token = admin.create_token("ehr", "hospital")
            auditor_token = admin.create_token("audit", "auditor")
            patient = Account.create()
            with rn.client(hospital_token) as hospital:
                before = hospital.upload(patient.address, b"before", category="lab")
                hospital.wait_anchored(before["record_id"])
            rotation = admin.rotate_signer()
        new = rotation["new_address"]
        assert rotation["old_address"] == old and new != old
        assert rotation["completed"] and rotation["proposal_id"] >= 1
        assert node.hospital == new and node.keys.signer().address == new
        assert node.keys.pending_signer() is None
        assert node.chain.is_member(new) and not node.chain.is_member(old)
        assert node.chain.members() == [(new, "Test General")]

        # The node now anchors and relays consent as the new address.
        with rn.client(hospital_token) as hospital:
            after = hospital.upload(patient.address, b"after", category="lab")
            receipt = hospital.wait_anchored(after["record_id"])
            assert _sender(rn, receipt["tx_hash"]) == new
            assert hospital.record(before["record_id"])["record_id"] == before["record_id"]
        with rn.client() as public:
            relayed = public.grant(patient, Account.create().address, Scope.all())
            assert _sender(rn, relayed["tx_hash"]) == new

        with rn.client(auditor_token) as auditor:
            rotations = auditor.key_audit(action="signer.rotate")["entries"]
            assert [e["actor"] for e in rotations] == ["token:bootstrap-admin"] * 2
            assert rotations[0]["subject"] == f"pending new={new} current={old}"
            assert rotations[1]["subject"] == f"committed new={new} old={old}"
            destroyed = auditor.key_audit(action="signer.destroy")["entries"]
            assert [e["subject"] for e in destroyed] == [old]
            signers = {
                e["actor"] for e in auditor.key_audit(action="sign", limit=10_000)["entries"]
            }
            assert {old, new} <= signers
            # Anchors under both addresses count for the verification.
            node.key_audit_anchorer.flush_now()
            assert node.chain.key_audit_anchors([new])
            verification = auditor.key_audit(verify=True)["verification"]
            assert verification["valid"] and verification["anchors_checked"] >= 1
    finally:
        rn.stop()
    # A restart opens the rotated key store and still signs as the new address.
    rn = start_node(tmp_path / "node")
    try:
        assert rn.node.hospital == new
        with rn.client(hospital_token) as hospital:
            again = hospital.upload(patient.address, b"again", category="lab")
            assert _sender(rn, hospital.wait_anchored(again["record_id"])["tx_hash"]) == new
    finally:
        rn.stop()


def test_rotate_signer_cli(embedded_node: RunningNode) -> None:
    rn = embedded_node
    result = CliRunner().invoke(
        app, ["keys", "rotate-signer", "--url", rn.url, "--token", rn.admin_token]
    )
    assert result.exit_code == 0, result.output
    assert '"completed": true' in result.output
    assert rn.node.chain.is_member(rn.node.hospital)


def _fund(rn: RunningNode, to: str, wei: int) -> None:
    """Send ``wei`` from the node's account (through the client's lock and nonce)."""
    chain = rn.node.chain
    w3 = chain.web3  # type: ignore[attr-defined]
    with chain._lock:  # type: ignore[attr-defined]
        account = chain._account  # type: ignore[attr-defined]
        tx = {
            "to": to,
            "value": wei,
            "gas": 21_000,
            "gasPrice": w3.eth.gas_price,
            "nonce": w3.eth.get_transaction_count(account.address, "pending"),
            "chainId": chain.chain_id,
        }
        w3.eth.wait_for_transaction_receipt(
            w3.eth.send_raw_transaction(account.sign_transaction(tx).raw_transaction)
        )
        chain._nonce = None  # type: ignore[attr-defined]


def test_rotation_waits_for_the_other_members_votes(embedded_node: RunningNode) -> None:
    rn, node = embedded_node, embedded_node.node
    chain = node.chain
    consortium = chain.web3.eth.contract(  # type: ignore[attr-defined]
        address=chain.deployment.consortium,
        abi=chain._c["Consortium"].abi,  # type: ignore[attr-defined]
    )
    other = Account.create()
    _fund(rn, other.address, 10**18)
    chain.transact(consortium.functions.propose(0, other.address, "Other"))  # type: ignore[attr-defined]
    assert chain.is_member(other.address)
    old = node.hospital
    with rn.client(rn.admin_token) as admin:
        rotation = admin.rotate_signer()
    new = rotation["new_address"]
    # 1 vote of 2: pending; the node keeps signing as the old address, still the member.
    assert not rotation["completed"] and node.hospital == old
    assert node.keys.pending_signer() is not None and not chain.is_member(new)
    w3 = chain.web3  # type: ignore[attr-defined]
    vote = consortium.functions.vote(rotation["proposal_id"]).build_transaction(
        {
            "from": other.address,
            "nonce": w3.eth.get_transaction_count(other.address),
            "gas": 300_000,
            "gasPrice": w3.eth.gas_price,
        }
    )
    w3.eth.wait_for_transaction_receipt(
        w3.eth.send_raw_transaction(other.sign_transaction(vote).raw_transaction)
    )
    # The worker notices the executed proposal and switches to the new key.
    node.key_audit_anchorer.wake()  # its round finishes rotations voted since
    _wait_for(lambda: node.hospital == new, 30, "the node finished the rotation")
    assert node.keys.pending_signer() is None and not chain.is_member(old)
    with rn.client(rn.admin_token) as admin:
        token = admin.create_token("ehr", "hospital")
    with rn.client(token) as hospital:
        rec = hospital.upload(Account.create().address, b"x", category="lab")
        assert _sender(rn, hospital.wait_anchored(rec["record_id"])["tx_hash"]) == new
