"""The node's own storage as an attacker's foothold: someone who can write the record index
(MySQL in production, index.sqlite embedded) but holds no key.

- Swapping a record's wrapped data key or ciphertext location for another record's gives an
  error, never the other record's content (the data key is bound to the record id).
- Rewriting what a read relies on (the patient, the category, the content type) gives an
  error, never the content: since blob version 2 they are part of the ciphertext's
  associated data (``node.flows.record_binding``), so a rewritten row no longer opens.
  The node answers 500 ``integrity_check_failed``, as for ciphertext altered at rest.

Each test runs on the embedded node and again in production mode (MySQL, IPFS, Hardhat).
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account

from node.client import ApiError, EmrClient, Scope
from tests.node.conftest import RunningNode
from tests.node.zkaccess.helpers import allow, issue, prover
from zk.exceptions import InputError

Sql = Callable[..., list[tuple[Any, ...]]]


@contextlib.contextmanager
def index_sql(rn: RunningNode) -> Iterator[Sql]:
    """Run SQL on the node's record index behind its back (``?`` placeholders)."""
    s = rn.node.settings.storage
    if s.index_backend == "mysql":
        import pymysql

        conn = pymysql.connect(
            host=s.mysql_host,
            port=s.mysql_port,
            user=s.mysql_user,
            password=s.mysql_password.get_secret_value(),
            database=s.mysql_database,
            autocommit=True,
        )

        def run_mysql(sql: str, *params: object) -> list[tuple[Any, ...]]:
            with conn.cursor() as cur:
                cur.execute(sql.replace("?", "%s"), params)
                return list(cur.fetchall())

        try:
            yield run_mysql
        finally:
            conn.close()
        return
    db = sqlite3.connect(Path(rn.node.settings.resolved_data_dir) / "index.sqlite")

    def run_sqlite(sql: str, *params: object) -> list[tuple[Any, ...]]:
        with db:
            return db.execute(sql, params).fetchall()

    try:
        yield run_sqlite
    finally:
        db.close()


def _rid(record: dict[str, Any]) -> bytes:
    return bytes.fromhex(record["record_id"][2:])


def _refused(call: Callable[[], object]) -> ApiError:
    """The read is refused as an integrity failure, and no content comes back."""
    with pytest.raises(ApiError) as err:
        call()
    assert (err.value.status, err.value.code) == (500, "integrity_check_failed")
    return err.value


def test_swapped_keys_or_blobs_never_yield_another_record(
    running_node: RunningNode, hospital: EmrClient, public: EmrClient
) -> None:
    alice, mallory = Account.create(), Account.create()
    secret = hospital.upload(alice.address, b"alice's diagnosis", category="lab")
    decoy = hospital.upload(mallory.address, b"mallory's own record", category="lab")
    mallory_s = public.login(mallory)
    with index_sql(running_node) as sql:
        [(wrapped, kek, cid, digest)] = sql(
            "SELECT wrapped_key, kek_version, cid, content_hash FROM records WHERE record_id = ?",
            _rid(secret),
        )
        sql(
            "UPDATE records SET wrapped_key = ?, kek_version = ?, cid = ?, content_hash = ?"
            " WHERE record_id = ?",
            wrapped,
            kek,
            cid,
            digest,
            _rid(decoy),
        )
    err = _refused(lambda: public.read(decoy["record_id"], mallory_s))
    assert "diagnosis" not in err.detail


def test_rewriting_the_patient_in_the_index_gives_no_access(
    running_node: RunningNode,
    hospital: EmrClient,
    public: EmrClient,
    auditor: EmrClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    alice, mallory = Account.create(), Account.create()
    rec = hospital.upload(alice.address, b"alice's diagnosis", category="lab")
    hospital.wait_anchored(rec["record_id"])  # the chain holds the true patient in the leaf
    mallory_s = public.login(mallory)
    with index_sql(running_node) as sql:
        sql("UPDATE records SET patient = ? WHERE record_id = ?", mallory.address, _rid(rec))
    with caplog.at_level(logging.WARNING, logger="node.flows.read_record"):
        err = _refused(lambda: public.read(rec["record_id"], mallory_s))
    assert "diagnosis" not in err.detail
    # The node's log names the record, nothing of its content.
    warned = [r.getMessage() for r in caplog.records if r.name == "node.flows.read_record"]
    assert warned and all(rec["record_id"][2:] in m for m in warned)
    assert not any("diagnosis" in r.getMessage() for r in caplog.records)
    # The attempt is on the chain as refused: nothing was disclosed.
    running_node.node.access_flusher.flush_now()
    accesses = [
        e["args"]
        for e in auditor.audit_events(record_id=rec["record_id"])
        if e["event"] == "AccessRecorded"
    ]
    assert [(a["actor"], a["granted"]) for a in accesses] == [(mallory.address, False)]
    # Restored, the row opens again for the true patient only.
    with index_sql(running_node) as sql:
        sql("UPDATE records SET patient = ? WHERE record_id = ?", alice.address, _rid(rec))
    assert public.read(rec["record_id"], public.login(alice)).content == b"alice's diagnosis"
    with pytest.raises(ApiError) as denied:
        public.read(rec["record_id"], mallory_s)
    assert denied.value.status == 403


def test_rewriting_the_category_does_not_widen_a_category_consent(
    running_node: RunningNode, hospital: EmrClient, public: EmrClient
) -> None:
    alice, bob = Account.create(), Account.create()
    img = hospital.upload(alice.address, b"chest x-ray: nodule", category="imaging")
    bob_s = public.login(bob)
    public.grant(alice, bob.address, Scope.category("lab"))
    with pytest.raises(ApiError) as denied:
        public.read(img["record_id"], bob_s)
    assert denied.value.status == 403
    with index_sql(running_node) as sql:
        sql("UPDATE records SET category = 'lab' WHERE record_id = ?", _rid(img))
    err = _refused(lambda: public.read(img["record_id"], bob_s))
    assert "nodule" not in err.detail


def test_rewriting_the_content_type_does_not_serve_the_record_as_html(
    running_node: RunningNode, hospital: EmrClient, public: EmrClient
) -> None:
    alice = Account.create()
    body = b"<script>fetch('/records')</script>"
    rec = hospital.upload(alice.address, body, category="note", content_type="text/plain")
    alice_s = public.login(alice)
    assert public.read(rec["record_id"], alice_s).headers["content-type"].startswith("text/plain")
    with index_sql(running_node) as sql:
        sql("UPDATE records SET content_type = 'text/html' WHERE record_id = ?", _rid(rec))
    err = _refused(lambda: public.read(rec["record_id"], alice_s))
    assert "script" not in err.detail


def test_rewriting_the_category_does_not_widen_a_class_consent(
    running_node: RunningNode, hospital: EmrClient, public: EmrClient, tmp_path: Path
) -> None:
    """Anonymous reads: the proof and the gate take the patient and category from the
    index. A rewritten category is refused before the gate spends the request on-chain."""
    alice = Account.create()
    img = hospital.upload(alice.address, b"chest x-ray: nodule", category="imaging")
    allow(hospital, "lab", ["nurse"])
    nurse = prover(issue(hospital, "nurse")[0], tmp_path / "keys")
    public.grant_class(alice, ["nurse"], Scope.category("lab"))
    with pytest.raises(InputError, match="no live consent"):
        nurse.read(public, img["record_id"])  # the class consent covers lab, not imaging
    with index_sql(running_node) as sql:
        sql("UPDATE records SET category = 'lab' WHERE record_id = ?", _rid(img))
    head = running_node.node.chain.head_block()
    err = _refused(lambda: nurse.read(public, img["record_id"]))
    assert "nodule" not in err.detail
    assert running_node.node.chain.head_block() == head  # no gate transaction
