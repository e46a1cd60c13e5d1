"""Crypto-shredding erasure (GDPR art. 17) end to end, embedded and on production backends."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from eth_account import Account
from web3.logs import DISCARD

from node.chain.artifacts import load_artifact
from node.chain.client import Web3ChainClient
from node.chain.record_ids import record_member_id
from node.client import ApiError, EmrClient, Scope
from storage.backends.ipfs_rpc import KuboRPC, KuboRPCError
from tests.node.conftest import RunningNode, start_node


def _blob_gone_everywhere(rn: RunningNode, cid: str) -> None:
    """Gone from the blob store and, on IPFS, from every daemon (unpinned and dropped)."""
    node = rn.node
    assert not node.blobs.has(cid)
    assert node.cache.get(f"blob:{cid}") is None
    storage = node.settings.storage
    if storage.blob_backend != "ipfs":
        return
    for url in storage.ipfs_nodes:
        daemon = KuboRPC(url, timeout=2.0)
        try:
            assert not daemon.is_pinned(cid), url
            with pytest.raises(KuboRPCError):  # not local, and no peer has it either
                daemon.block_get(cid)
        finally:
            daemon.close()


def _tombstones(rn: RunningNode, tx_hash: str) -> list[dict[str, object]]:
    chain = rn.node.chain
    assert isinstance(chain, Web3ChainClient)
    w3 = chain.web3
    registry = w3.eth.contract(
        address=chain.deployment.record_registry, abi=load_artifact("RecordRegistry").abi
    )
    receipt = w3.eth.get_transaction_receipt(tx_hash)  # type: ignore[arg-type]
    events = registry.events.RecordErased().process_receipt(receipt, errors=DISCARD)
    return [dict(e["args"]) for e in events]


def test_erase_record_shreds_key_purges_blob_and_anchors_tombstone(
    running_node: RunningNode, hospital: EmrClient, auditor: EmrClient, public: EmrClient
) -> None:
    patient, ada = Account.create(), Account.create()
    content = b"HIV test: positive"
    rec = hospital.upload(patient.address, content, category="lab", content_type="text/plain")
    rid, cid = rec["record_id"], rec["cid"]
    keep = hospital.upload(patient.address, b"other", category="lab")["record_id"]
    hospital.wait_anchored(rid, timeout=30)
    public.grant(patient, ada.address, Scope.all())
    pat_s, ada_s = public.login(patient), public.login(ada)
    assert public.read(rid, ada_s).content == content  # the blob is now in the hot cache

    out = hospital.erase(rid, "patient request under GDPR art. 17")
    assert out["already_erased"] == []
    [erased] = out["erased"]
    assert erased["record_id"] == rid and erased["erased"] is True
    assert erased["erase_tx"] is not None  # the chain was up: anchored at once

    # Nobody can read it any more: 410 Gone, for the patient and for a grantee.
    for session in (pat_s, ada_s):
        with pytest.raises(ApiError) as gone:
            public.read(rid, session)
        assert gone.value.status == 410 and gone.value.code == "erased"
        assert "erased" in gone.value.detail
    assert public.read(keep, pat_s).content == b"other"  # other records are untouched

    # The wrapped data key is gone from the index: nothing can decrypt a surviving copy.
    row = running_node.node.index.get_record(bytes.fromhex(rid[2:]))
    assert row.erased and row.wrapped_key == b""
    _blob_gone_everywhere(running_node, cid)

    # Metadata says so, with the tombstone; the tombstone is on-chain.
    meta = hospital.record(rid)
    assert meta["erased"] is True and meta["erase_tx"] == erased["erase_tx"]
    assert meta["erased_at"] == erased["erased_at"]
    reason_hash = out["reason_hash"]
    assert _tombstones(running_node, meta["erase_tx"]) == [
        {
            "recordId": bytes.fromhex(rid[2:]),
            "hospital": running_node.node.hospital,
            "reasonHash": bytes.fromhex(reason_hash[2:]),
        }
    ]
    assert running_node.node.chain.is_erased(bytes.fromhex(rid[2:]))
    assert not running_node.node.chain.is_erased(bytes.fromhex(keep[2:]))

    # The anchored hash still proves the record existed unaltered.
    v = auditor.verify(rid, "0x" + hashlib.sha256(content).hexdigest())
    assert v["verified"] and v["proof_valid_on_chain"] and v["root_on_chain"]
    assert v["stored_content_intact"] is None  # nothing left to check
    assert running_node.node.index.pending_erasures(10) == []
    [destroyed] = running_node.node.key_audit.entries(action="dek.destroy")
    assert (
        destroyed.actor == "ehr" and rid in destroyed.subject and reason_hash in destroyed.subject
    )

    # Erasing twice is a clear conflict.
    with pytest.raises(ApiError) as twice:
        hospital.erase(rid, "again")
    assert twice.value.status == 409 and "already erased" in twice.value.detail


def test_erase_patient_erases_every_record(
    running_node: RunningNode, hospital: EmrClient, public: EmrClient
) -> None:
    patient, other = Account.create(), Account.create()
    ids = [
        hospital.upload(patient.address, f"note {i}".encode(), category="note")["record_id"]
        for i in range(3)
    ]
    cids = [hospital.record(rid)["cid"] for rid in ids]
    theirs = hospital.upload(other.address, b"not theirs", category="note")["record_id"]
    hospital.erase(ids[0], "duplicate entry")

    out = hospital.erase_patient(patient.address, "patient left the programme")
    assert sorted(r["record_id"] for r in out["erased"]) == sorted(ids[1:])
    assert out["already_erased"] == [ids[0]]
    assert all(r["erase_tx"] for r in out["erased"])
    assert len({r["erase_tx"] for r in out["erased"]}) == 1  # one transaction for the batch
    assert len(_tombstones(running_node, out["erased"][0]["erase_tx"])) == 2
    pat_s = public.login(patient)
    for rid in ids:
        with pytest.raises(ApiError) as gone:
            public.read(rid, pat_s)
        assert gone.value.status == 410
    for cid in cids:
        _blob_gone_everywhere(running_node, cid)
    assert public.read(theirs, public.login(other)).content == b"not theirs"
    listed = hospital.records(patient=patient.address)
    assert all(r["erased"] for r in listed)

    again = hospital.erase_patient(patient.address, "again")
    assert again["erased"] == [] and sorted(again["already_erased"]) == sorted(ids)
    with pytest.raises(ApiError) as nobody:
        hospital.erase_patient(Account.create().address, "no records")
    assert nobody.value.status == 404


def test_erase_needs_a_hospital_token_a_reason_and_a_known_record(
    running_node: RunningNode, hospital: EmrClient, auditor: EmrClient, public: EmrClient
) -> None:
    patient = Account.create()
    rid = hospital.upload(patient.address, b"x", category="note")["record_id"]
    with pytest.raises(ApiError) as wrong_role:
        auditor.erase(rid, "not mine to erase")
    assert wrong_role.value.status == 403
    with pytest.raises(ApiError) as as_patient:
        EmrClient(running_node.url, public.login(patient)).erase(rid, "wallets cannot erase")
    assert as_patient.value.status in (401, 403)
    with pytest.raises(ApiError) as wrong_role_patient:
        auditor.erase_patient(patient.address, "no")
    assert wrong_role_patient.value.status == 403
    with pytest.raises(ApiError) as unknown:
        hospital.erase("0x" + "ab" * 32, "no such record")
    assert unknown.value.status == 404
    for blank in ("", " \t", "\x1c", "\ufeff"):  # what str.strip or JSON Schema call blank
        with pytest.raises(ApiError) as no_reason:
            hospital.erase(rid, blank)
        assert no_reason.value.status == 422, blank
    assert hospital.record(rid)["erased"] is False
    assert public.read(rid, public.login(patient)).content == b"x"


def test_cli_erase_goes_through_the_api(embedded_node: RunningNode) -> None:
    import json

    from typer.testing import CliRunner

    from node.cli.main import app

    with embedded_node.client(embedded_node.admin_token) as admin:
        token = admin.create_token("ehr", "hospital")
    patient = Account.create()
    with embedded_node.client(token) as hospital:
        rid = hospital.upload(patient.address, b"one", category="note")["record_id"]
        hospital.upload(patient.address, b"two", category="note")
    runner = CliRunner()
    args = ["--url", embedded_node.url, "--token", token]
    one = runner.invoke(app, ["erase", rid, "--reason", "patient request", *args])
    assert one.exit_code == 0, one.output
    assert [r["record_id"] for r in json.loads(one.output)["erased"]] == [rid]
    twice = runner.invoke(app, ["erase", rid, "--reason", "again", *args])
    assert twice.exit_code == 2 and "409" in twice.output
    rest = runner.invoke(app, ["erase", "--patient", patient.address, "--reason", "all", *args])
    assert rest.exit_code == 0, rest.output
    out = json.loads(rest.output)
    assert len(out["erased"]) == 1 and out["already_erased"] == [rid]
    for bad in (["erase", "--reason", "x"], ["erase", rid], ["erase", rid, "--patient", "0x1"]):
        result = runner.invoke(app, [*bad, *args])
        assert result.exit_code == 2, bad


def test_record_ids_are_the_hospitals_and_erasable_after_a_signer_rotation(
    tmp_path: Path,
) -> None:
    """Record ids start with the hospital's Consortium member id (RecordRegistry lets only that
    member anchor and erase them): a record erased before its batch is anchored gets its
    tombstone at once, and after a signing-key rotation the node erases, as its new address,
    a record it anchored under the old one."""
    rn = start_node(tmp_path / "node", anchor_interval=3600)  # anchor only when asked
    try:
        node = rn.node
        old = node.hospital
        member = node.chain.member_id(old)
        assert member >= 1
        patient = Account.create()
        with rn.client(rn.admin_token) as admin:
            token = admin.create_token("ehr", "hospital")
            with rn.client(token) as hospital:
                early = hospital.upload(patient.address, b"early", category="lab")["record_id"]
                kept = hospital.upload(patient.address, b"kept", category="lab")["record_id"]
                ids = [bytes.fromhex(r[2:]) for r in (early, kept)]
                assert [record_member_id(rid) for rid in ids] == [member, member]
                assert node.index.get_receipt(ids[0]) is None  # not anchored yet
                [erased] = hospital.erase(early, "entered in error")["erased"]
                assert erased["erase_tx"] is not None  # no need to wait for the anchor
                assert node.chain.is_erased(ids[0])
                node.anchorer.flush_now()
                assert node.index.get_receipt(ids[0]) is not None  # anchored, erased or not
                hospital.wait_anchored(kept, timeout=30)
            rotation = admin.rotate_signer()
            assert rotation["completed"] and node.hospital != old
            assert node.chain.member_id(node.hospital) == member
            with rn.client(token) as hospital:
                out = hospital.erase(kept, "patient request")
        [tombstoned] = out["erased"]
        assert _tombstones(rn, tombstoned["erase_tx"]) == [
            {
                "recordId": ids[1],
                "hospital": node.hospital,
                "reasonHash": bytes.fromhex(out["reason_hash"][2:]),
            }
        ]
        assert node.chain.is_erased(ids[1])
        assert node.index.pending_erasures(10) == []
    finally:
        rn.stop()
