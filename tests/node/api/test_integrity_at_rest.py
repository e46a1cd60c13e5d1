"""Ciphertext altered at rest is detected: an error, never altered data (SQLite blobs;
the IPFS store's own tests cover a node serving altered bytes)."""

from __future__ import annotations

import sqlite3

import pytest
from eth_account import Account

from node.client import ApiError, EmrClient
from tests.node.conftest import RunningNode


@pytest.fixture
def running_node(embedded_node: RunningNode) -> RunningNode:
    return embedded_node


def test_blob_altered_at_rest_is_an_error_never_data(
    running_node: RunningNode, hospital: EmrClient, auditor: EmrClient, public: EmrClient
) -> None:
    patient = Account.create()
    rec = hospital.upload(patient.address, b"original content", category="lab")
    hospital.wait_anchored(rec["record_id"])
    path = running_node.node.settings.resolved_data_dir / "blobs.sqlite"
    with sqlite3.connect(path) as conn:  # flip one bit of the ciphertext at rest
        (raw,) = conn.execute("SELECT data FROM blobs WHERE cid = ?", (rec["cid"],)).fetchone()
        altered = bytes(raw[:-1]) + bytes([raw[-1] ^ 0x01])
        conn.execute("UPDATE blobs SET data = ? WHERE cid = ?", (altered, rec["cid"]))
    session = public.login(patient)
    with pytest.raises(ApiError) as err:
        public.read(rec["record_id"], session)
    assert err.value.status == 500 and err.value.code == "integrity_check_failed"
    assert b"original" not in err.value.detail.encode()
    v = auditor.verify(rec["record_id"])
    assert v["stored_content_intact"] is False and not v["verified"]
    assert v["proof_valid_on_chain"]  # the anchor itself is fine: the stored copy is not
