"""The key audit log: hash chain, tamper detection, the audited key store's entries, and the
auditors' endpoint on a running node with its head anchored on-chain. The log's own tests
run on SQLite and MySQL, and with several connections appending at once."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pymysql
import pytest
from eth_account import Account

from hsm.abc import WrappedKey
from hsm.exceptions import UnwrapError
from hsm.software import SoftwareKeyStore
from node.audit.key_log import (
    GENESIS,
    KeyAction,
    SQLiteKeyAuditLog,
    SqlKeyAuditLog,
    acting_as,
    entry_hash,
    verify_key_audit,
)
from node.audit.keystore import AuditedKeyStore
from node.client import ApiError
from tests.node.conftest import RunningNode
from tests.storage.sql_fixtures import SQL_BACKENDS, SqlDatabases, sql_databases

PASSPHRASE = "key audit passphrase"


@pytest.fixture(params=SQL_BACKENDS)
def dbs(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlDatabases]:
    yield from sql_databases(request.param, tmp_path)


@pytest.fixture
def log(dbs: SqlDatabases) -> Iterator[SqlKeyAuditLog]:
    log = SqlKeyAuditLog(dbs.connect())
    yield log
    log.close()


@pytest.fixture
def sqlite_log(tmp_path: Path) -> SQLiteKeyAuditLog:
    return SQLiteKeyAuditLog(tmp_path / "node.sqlite")


@pytest.fixture
def audited(tmp_path: Path, log: SqlKeyAuditLog) -> AuditedKeyStore:
    inner = SoftwareKeyStore.create(tmp_path / "keystore.json", PASSPHRASE, scrypt_n=2**4)
    store = AuditedKeyStore(inner, log)
    store.record_created()
    return store


def _tamper(path: Path, sql: str) -> None:
    """Edit the table behind the log's back (the append-only triggers dropped first)."""
    conn = sqlite3.connect(path)
    conn.execute("DROP TRIGGER key_audit_no_update")
    conn.execute("DROP TRIGGER key_audit_no_delete")
    conn.execute(sql)
    conn.commit()
    conn.close()


def _tamper_db(dbs: SqlDatabases, sql: str) -> None:
    """Edit the table behind the log's back, on either backend."""
    if dbs.dialect == "sqlite":
        _tamper(dbs.path, sql)
        return
    dbs.raw("DROP TRIGGER key_audit_no_update")
    dbs.raw("DROP TRIGGER key_audit_no_delete")
    dbs.raw(sql)


def test_entries_chain_from_genesis(log: SqlKeyAuditLog) -> None:
    first = log.append(KeyAction.KEK_ROTATE, "v1 -> v2")
    second = log.append(KeyAction.SIGN, "0xab", actor="0xNode")
    assert (first.seq, first.prev_hash, first.actor) == (1, GENESIS, "system")
    assert second.prev_hash == first.hash
    assert second.hash == entry_hash(first.hash, 2, second.at, "0xNode", "sign", "0xab")
    assert log.head() == second
    assert [e.seq for e in log.entries(action="sign")] == [2]
    assert verify_key_audit(log, [(2, second.hash)]).valid


def test_actor_comes_from_the_context(log: SqlKeyAuditLog) -> None:
    with acting_as("token:ops"):
        assert log.append(KeyAction.KEK_ROTATE, "v1 -> v2").actor == "token:ops"
    assert log.append(KeyAction.KEK_ROTATE, "v2 -> v3").actor == "system"


def test_the_table_refuses_update_and_delete(dbs: SqlDatabases, log: SqlKeyAuditLog) -> None:
    log.append(KeyAction.KEK_DESTROY, "v1")
    refused = (sqlite3.IntegrityError, pymysql.err.OperationalError)
    with pytest.raises(refused, match="append-only"):
        dbs.raw("DELETE FROM key_audit")
    with pytest.raises(refused, match="append-only"):
        dbs.raw("UPDATE key_audit SET subject = 'v9'")
    SqlKeyAuditLog(dbs.connect()).close()  # reopening keeps the triggers (no error)
    assert [e.subject for e in log.entries()] == ["v1"]


def test_an_edited_entry_breaks_the_chain(dbs: SqlDatabases, log: SqlKeyAuditLog) -> None:
    for v in range(1, 5):
        log.append(KeyAction.KEK_ROTATE, f"v{v} -> v{v + 1}")
    _tamper_db(dbs, "UPDATE key_audit SET actor = 'someone' WHERE seq = 2")
    result = verify_key_audit(log, [])
    assert not result.valid and not result.chain_intact and result.first_broken == 2


def test_a_deleted_entry_breaks_the_chain(dbs: SqlDatabases, log: SqlKeyAuditLog) -> None:
    for v in range(1, 5):
        log.append(KeyAction.KEK_ROTATE, f"v{v} -> v{v + 1}")
    _tamper_db(dbs, "DELETE FROM key_audit WHERE seq = 3")
    assert verify_key_audit(log, []).first_broken == 4


def test_a_rewritten_tail_is_caught_by_the_anchor(dbs: SqlDatabases, log: SqlKeyAuditLog) -> None:
    for v in range(1, 4):
        log.append(KeyAction.KEK_ROTATE, f"v{v} -> v{v + 1}")
    head = log.head()
    assert head is not None
    # Drop the last entry and append another: the chain is consistent, the anchor is not.
    _tamper_db(dbs, "DELETE FROM key_audit WHERE seq = 3")
    log.append(KeyAction.KEK_ROTATE, "v3 -> v4 (rewritten)")
    result = verify_key_audit(log, [(3, head.hash)])
    assert result.chain_intact and not result.valid and result.anchors_mismatched == [3]
    # An anchor beyond the end of the log (the tail was truncated) is a mismatch too.
    assert verify_key_audit(log, [(7, head.hash)]).anchors_mismatched == [7]


def test_concurrent_appends_keep_one_chain(dbs: SqlDatabases) -> None:
    """Two connections (two processes' logs) append 200 entries each at once: every entry
    lands once, in one unbroken chain."""
    logs = [SqlKeyAuditLog(dbs.connect()), SqlKeyAuditLog(dbs.connect())]
    errors: list[BaseException] = []

    def append(n: int, log: SqlKeyAuditLog) -> None:
        try:
            for i in range(200):
                log.append(KeyAction.SIGN, f"p{n}-{i}", actor=f"process-{n}")
        except BaseException as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [threading.Thread(target=append, args=(n, log)) for n, log in enumerate(logs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    result = verify_key_audit(logs[0], [])
    assert result.valid and result.chain_intact and result.entries == 400
    entries = logs[1].entries(limit=1000)
    assert [e.seq for e in entries] == list(range(1, 401))
    for n in range(2):  # each process's entries in its own order
        mine = [e.subject for e in entries if e.actor == f"process-{n}"]
        assert mine == [f"p{n}-{i}" for i in range(200)]
    for log in logs:
        log.close()


def test_audited_store_logs_each_operation(audited: AuditedKeyStore, log: SqlKeyAuditLog) -> None:
    wrapped = audited.wrap_many([b"\x01" * 32, b"\x02" * 32, b"\x03" * 32])
    audited.unwrap(wrapped[0])
    with acting_as("token:admin"):
        assert audited.rotate_kek() == 2
    bad = WrappedKey(1, b"\x00" * 40)
    keys = audited.unwrap_many([*wrapped, bad])
    assert keys[:3] == [b"\x01" * 32, b"\x02" * 32, b"\x03" * 32] and keys[3] is None
    with pytest.raises(UnwrapError):
        audited.unwrap(bad)  # a failed unwrap is not logged as done
    audited.wrap_many(keys[:3])  # type: ignore[arg-type]
    audited.destroy_kek(1)
    digest = b"\x11" * 32
    audited.signer().sign_digest(digest)
    got = [(e.actor, e.action, e.subject) for e in log.entries()]
    address = audited.signer().address
    assert got == [
        ("system", "kek.generate", "v1"),
        ("system", "kek.generate", f"signer {address}"),
        ("system", "wrap.batch", "count=3 kek=v1"),
        ("system", "unwrap.batch", "count=1 kek=v1"),
        ("token:admin", "kek.rotate", "v1 -> v2"),
        ("system", "unwrap.batch", "count=3 kek=v1"),
        ("system", "wrap.batch", "count=3 kek=v2"),
        ("system", "kek.destroy", "v1"),
        (address, "sign", "0x" + digest.hex()),
    ]
    assert verify_key_audit(log, []).valid


def test_no_key_material_or_passphrase_in_the_log(
    tmp_path: Path, sqlite_log: SQLiteKeyAuditLog
) -> None:
    inner = SoftwareKeyStore.create(tmp_path / "keystore.json", PASSPHRASE, scrypt_n=2**4)
    audited = AuditedKeyStore(inner, sqlite_log)
    audited.record_created()
    data_key = b"\x5a" * 32
    audited.unwrap(audited.wrap(data_key))
    audited.rotate_kek()
    raw = (tmp_path / "node.sqlite").read_bytes()
    for wal in tmp_path.glob("node.sqlite-wal"):
        raw += wal.read_bytes()
    secrets = [data_key, PASSPHRASE.encode(), *audited.inner._keks.values()]  # type: ignore[attr-defined]
    secrets.append(audited.inner._signing_key)  # type: ignore[attr-defined]
    for secret in secrets:
        assert secret not in raw and secret.hex().encode() not in raw


def test_auditor_reads_and_verifies_the_anchored_key_log(embedded_node: RunningNode) -> None:
    rn = embedded_node
    with rn.client(rn.admin_token) as admin:
        auditor_token = admin.create_token("audit", "auditor")
        hospital_token = admin.create_token("ehr", "hospital")
        version = admin.rotate_keys()
    with rn.client(hospital_token) as hospital:
        record = hospital.upload(Account.create().address, b"note", category="notes")
        hospital.wait_anchored(record["record_id"])
        with pytest.raises(ApiError) as refused:
            hospital.key_audit()
        assert refused.value.status == 403
    node = rn.node
    with rn.client(auditor_token) as auditor:
        log = auditor.key_audit()
        actions = {(e["action"], e["actor"]) for e in log["entries"]}
        assert ("kek.generate", "system") in actions
        assert ("kek.rotate", "token:bootstrap-admin") in actions
        assert any(a == "wrap.batch" for a, _ in actions)
        assert ("sign", node.hospital) in actions  # deployment, anchors
        rotations = auditor.key_audit(action="kek.rotate")["entries"]
        assert [e["subject"] for e in rotations] == [f"v1 -> v{version}"]
        # The anchorer puts the head on-chain; the verification then covers it.
        node.key_audit_anchorer.flush_now()
        checked = auditor.key_audit(verify=True)["verification"]
        assert checked["valid"] and checked["chain_intact"]
        assert checked["anchored_seq"] is not None and checked["anchored_seq"] > 1
        events = node.chain.key_audit_anchors([node.hospital])
        assert events and all(seq >= 1 for seq, _ in events)
        # Rewrite an anchored entry: the auditor sees it.
        node.key_audit_anchorer.stop()
        _tamper(
            node.settings.resolved_data_dir / "node.sqlite",
            "UPDATE key_audit SET subject = 'v1 -> v9' WHERE action = 'kek.rotate'",
        )
        broken = auditor.key_audit(verify=True)["verification"]
        assert not broken["valid"] and not broken["chain_intact"]
