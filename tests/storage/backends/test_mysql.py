"""MySQLRecordIndex against the real MariaDB on 127.0.0.1:3306 (scripts/services.sh start).

Each test gets its own database (emr_test_<random>), dropped afterwards. Outages are
simulated with ``CutProxy``, a TCP proxy between the index and the server that a test can
cut (optionally the moment a given statement is sent); the machine's MariaDB is never
stopped.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pymysql
import pytest

from storage.abc import RecordIndexAPI
from storage.backends.mysql import MIGRATIONS, MySQLRecordIndex
from storage.exceptions import BackendUnavailable, IntegrityError, RecordNotFound, StorageError
from storage.models import AnchorReceipt, RecordQuery
from tests.storage.conformance import (
    HOSPITAL_1,
    HOSPITAL_2,
    PATIENT_A,
    PATIENT_B,
    RecordIndexConformance,
    make_batch,
    make_receipts,
    make_row,
)
from tests.tcp_proxy import CutProxy

pytestmark = pytest.mark.integration

MYSQL_HOST, MYSQL_PORT = "127.0.0.1", 3306
SERVER: dict[str, Any] = {"host": MYSQL_HOST, "port": MYSQL_PORT, "user": "root", "password": ""}


# -- fixtures -----------------------------------------------------------------------------


def _admin(database: str | None = None) -> pymysql.connections.Connection[Any]:
    try:
        return pymysql.connect(**SERVER, database=database, autocommit=True)
    except pymysql.err.OperationalError as err:
        pytest.fail(
            f"MariaDB is not reachable as root at {MYSQL_HOST}:{MYSQL_PORT} ({err}); "
            "run scripts/services.sh start"
        )


def query(database: str, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
    """Run ``sql`` on a direct connection (bypassing the index and any proxy)."""
    conn = _admin(database)
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params)
            return list(cur.fetchall())
    finally:
        conn.close()


@pytest.fixture
def db_name() -> Iterator[str]:
    name = f"emr_test_{secrets.token_hex(6)}"
    yield name
    conn = _admin()
    try:
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
    finally:
        conn.close()


def open_index(database: str, **kwargs: Any) -> MySQLRecordIndex:
    options: dict[str, Any] = {**SERVER, "create_database_if_missing": True, **kwargs}
    return MySQLRecordIndex(database=database, **options)


@pytest.fixture
def index(db_name: str) -> Iterator[MySQLRecordIndex]:
    index = open_index(db_name)
    yield index
    index.close()


@pytest.fixture
def proxy() -> Iterator[CutProxy]:
    proxy = CutProxy(MYSQL_PORT)
    yield proxy
    proxy.close()


class TestMySQLRecordIndex(RecordIndexConformance):
    @pytest.fixture
    def location(self, tmp_path: Path, db_name: str) -> Path:
        # The conformance suite reopens "the same location": here, the same database.
        return tmp_path / db_name

    def make_record_index(self, location: Path) -> RecordIndexAPI:
        return open_index(location.name)


# -- schema and migrations ----------------------------------------------------------------


def test_schema_tables_and_indexes(index: MySQLRecordIndex, db_name: str) -> None:
    tables = {
        r[0]
        for r in query(
            db_name,
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
            (db_name,),
        )
    }
    assert tables == {
        "schema_migrations",
        "records",
        "anchor_outbox",
        "anchor_batches",
        "anchor_receipts",
        "consent_events",
        "audit_events",
        "chain_cursor",
        "worker_leases",
        "anchor_intents",
        "record_documents",
        "record_attributes",
    }
    indexes = {
        (r[0], r[1])
        for r in query(
            db_name,
            "SELECT table_name, index_name FROM information_schema.statistics "
            "WHERE table_schema = %s",
            (db_name,),
        )
    }
    assert {
        ("records", "PRIMARY"),
        ("records", "records_patient_created"),
        ("records", "records_creator_category"),
        ("records", "records_previous"),
        ("records", "records_kek_version"),
        ("consent_events", "consent_events_record_grantee"),
        ("consent_events", "consent_events_patient_time"),
        ("audit_events", "audit_events_patient_time"),
        ("anchor_outbox", "anchor_outbox_intent"),
        ("anchor_outbox", "anchor_outbox_claim"),
        ("record_documents", "record_documents_identifier"),
        ("record_attributes", "record_attributes_record"),
    } <= indexes
    engines = query(
        db_name,
        "SELECT DISTINCT engine FROM information_schema.tables WHERE table_schema = %s",
        (db_name,),
    )
    assert engines == [("InnoDB",)]


def test_migrations_are_versioned_and_idempotent(db_name: str) -> None:
    index = open_index(db_name, auto_migrate=False)
    try:
        assert index.schema_version == 0
        assert index.migrate(1) == 1
        assert index.schema_version == 1
        assert query(db_name, "SHOW TABLES LIKE 'consent_events'") == []
        index.add_records([make_row(1)])  # v1 is usable on its own
        latest = len(MIGRATIONS)
        assert index.migrate() == latest == 6
        assert index.migrate() == latest
        assert index.migrate(1) == latest  # never downgrades
        versions = query(db_name, "SELECT version FROM schema_migrations ORDER BY version")
        assert versions == [(v,) for v in range(1, latest + 1)]
    finally:
        index.close()
    reopened = open_index(db_name)  # auto_migrate: nothing left to apply
    try:
        assert reopened.schema_version == len(MIGRATIONS)
        assert reopened.get_record(make_row(1).record_id) == make_row(1)
        assert reopened.mirror_cursor() == -1
    finally:
        reopened.close()
    assert len(query(db_name, "SELECT * FROM schema_migrations")) == len(MIGRATIONS)


def test_interrupted_migration_is_completed(db_name: str) -> None:
    # DDL commits statement by statement: v1 half-applied, not yet recorded.
    index = open_index(db_name, auto_migrate=False)
    index.close()
    conn = _admin(db_name)
    try:
        with conn.cursor() as cur:
            for statement in MIGRATIONS[0].statements[:2]:
                cur.execute(statement)
    finally:
        conn.close()
    index = open_index(db_name)
    try:
        assert index.schema_version == len(MIGRATIONS)
        index.add_records([make_row(1)])
        assert index.count_pending_anchors() == 1
    finally:
        index.close()


def test_interrupted_index_migration_is_completed(db_name: str) -> None:
    # v3 adds an index; one added by a run that died before recording it is not an error.
    index = open_index(db_name, auto_migrate=False)
    try:
        index.migrate(2)
        for statement in MIGRATIONS[2].statements:
            query(db_name, statement)
        assert index.migrate() == len(MIGRATIONS)
        assert index.wrapped_keys_with(1, 10) == []
    finally:
        index.close()


def test_interrupted_erasure_migration_is_completed(db_name: str) -> None:
    # v4 adds columns in one ALTER; applied by a run that died before recording it.
    index = open_index(db_name, auto_migrate=False)
    try:
        index.migrate(3)
        for statement in MIGRATIONS[3].statements:
            query(db_name, statement)
        assert index.migrate(4) == 4
        assert index.pending_erasures(10) == []
    finally:
        index.close()


def test_interrupted_lease_migration_is_completed(db_name: str) -> None:
    # v5 (leases, claims, intents): applied by a run that died before recording it.
    index = open_index(db_name, auto_migrate=False)
    try:
        index.migrate(4)
        for statement in MIGRATIONS[4].statements:
            query(db_name, statement)
        assert index.migrate() == len(MIGRATIONS)
        assert index.open_anchor_intents() == []
        assert index.current("worker") is None
    finally:
        index.close()


def test_interrupted_document_migration_is_completed(db_name: str) -> None:
    # v6 (document metadata): applied by a run that died before recording it.
    index = open_index(db_name, auto_migrate=False)
    try:
        index.migrate(5)
        for statement in MIGRATIONS[5].statements:
            query(db_name, statement)
        assert index.migrate() == 6
        assert index.count_records(RecordQuery(source="fhir")) == 0
    finally:
        index.close()


def test_concurrent_nodes_migrate_once(db_name: str) -> None:
    open_index(db_name, auto_migrate=False).close()  # creates the database only
    errors: list[BaseException] = []
    opened: list[MySQLRecordIndex] = []

    def start() -> None:
        try:
            opened.append(open_index(db_name))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for index in opened:
        index.close()
    assert errors == []
    assert query(db_name, "SELECT version FROM schema_migrations ORDER BY version") == [
        (v,) for v in range(1, len(MIGRATIONS) + 1)
    ]


def test_refuses_a_newer_schema(index: MySQLRecordIndex, db_name: str) -> None:
    index.close()
    query(db_name, "INSERT INTO schema_migrations (version, description) VALUES (99, 'future')")
    with pytest.raises(StorageError, match="newer"):
        open_index(db_name)


def test_rejects_unsafe_database_names() -> None:
    for name in ("", "a-b", "x`; DROP DATABASE mysql; --", "a" * 65):
        with pytest.raises(ValueError):
            MySQLRecordIndex(**SERVER, database=name)


# -- pool ---------------------------------------------------------------------------------


def _connections_to(db_name: str) -> int:
    rows = query(
        db_name, "SELECT COUNT(*) FROM information_schema.processlist WHERE db = %s", (db_name,)
    )
    return int(rows[0][0]) - 1  # minus the connection asking


def test_pool_shares_few_connections_among_many_threads(db_name: str) -> None:
    index = open_index(db_name, pool_size=3)
    errors: list[BaseException] = []
    peak = [0]
    stop = threading.Event()

    def work(w: int) -> None:
        try:
            for b in range(10):
                rows = [make_row(1000 * w + 10 * b + i) for i in range(5)]
                index.add_records(rows)
                for row in rows:
                    assert index.get_record(row.record_id) == row
                index.list_records(patient=PATIENT_A, limit=10)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def watch() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], _connections_to(db_name))
            time.sleep(0.01)

    watcher = threading.Thread(target=watch)
    watcher.start()
    threads = [threading.Thread(target=work, args=(w,)) for w in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    watcher.join()
    try:
        assert errors == []
        assert index.count_pending_anchors() == 12 * 10 * 5
        assert 1 <= peak[0] <= 3
    finally:
        index.close()
    time.sleep(0.1)
    assert _connections_to(db_name) == 0  # close() hangs up every pooled connection


def test_pool_timeout_when_every_connection_is_busy(db_name: str) -> None:
    index = open_index(db_name, pool_size=1, pool_timeout=0.2)
    held, _ = index._pool.acquire()
    try:
        started = time.monotonic()
        with pytest.raises(BackendUnavailable, match="no record index connection"):
            index.count_pending_anchors()
        assert time.monotonic() - started < 2
    finally:
        index._pool.release(held, reusable=True)
    assert index.count_pending_anchors() == 0
    index.close()


def _kill_connections_to(db_name: str) -> None:
    # What a server restart, wait_timeout or an administrator's KILL does to pooled ones.
    conn = _admin()
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT id FROM information_schema.processlist WHERE db = %s", (db_name,))
            for (thread_id,) in cur.fetchall():
                cur.execute("KILL CONNECTION %s", (thread_id,))
    finally:
        conn.close()


def test_idle_killed_connection_is_replaced_unnoticed(db_name: str) -> None:
    index = open_index(db_name, ping_after=0.05)
    try:
        index.add_records([make_row(1)])
        _kill_connections_to(db_name)
        time.sleep(0.1)  # idle long enough to be pinged at checkout
        assert index.get_record(make_row(1).record_id) == make_row(1)
        index.add_records([make_row(2)])
        assert index.count_pending_anchors() == 2
    finally:
        index.close()


def test_ping_at_every_checkout(db_name: str) -> None:
    index = open_index(db_name, ping_after=0)
    try:
        index.add_records([make_row(1)])
        _kill_connections_to(db_name)
        assert index.get_record(make_row(1).record_id) == make_row(1)
    finally:
        index.close()


def test_recently_used_killed_connection_is_retried(
    db_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="storage.backends.mysql")
    index = open_index(db_name, ping_after=60, pool_size=3)
    try:
        # Three pooled connections, all used just now (not pinged at checkout).
        barrier = threading.Barrier(3)

        def hold_one() -> None:
            def work(cur: Any) -> None:
                barrier.wait()
                cur.execute("SELECT 1")

            index._run(work)

        threads = [threading.Thread(target=hold_one) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        index.add_records([make_row(1)])
        _kill_connections_to(db_name)
        # The first call meets a dead connection on its first round trip: it is replaced
        # and the call retried, and the other dead ones are pinged before reuse.
        assert index.get_record(make_row(1).record_id) == make_row(1)
        assert [r.getMessage() for r in caplog.records].count(
            "record index connection was dropped by the server; retrying"
        ) == 1
        index.add_records([make_row(2)])
        assert index.count_pending_anchors() == 2
        assert index.list_records() == [make_row(2), make_row(1)]
    finally:
        index.close()


def test_closed_index_refuses(index: MySQLRecordIndex) -> None:
    index.close()
    with pytest.raises(BackendUnavailable, match="closed"):
        index.count_pending_anchors()


# -- semantics beyond the conformance suite -----------------------------------------------


def test_text_compares_case_sensitively(index: MySQLRecordIndex) -> None:
    index.add_records([make_row(1)])
    assert index.list_records(patient=PATIENT_A.lower()) == []
    assert index.list_records(patient=PATIENT_A) == [make_row(1)]


def test_value_too_long_for_its_column(index: MySQLRecordIndex) -> None:
    with pytest.raises(ValueError):
        index.add_records([make_row(1, category="x" * 500)])
    assert index.count_pending_anchors() == 0


def test_replaying_a_batch_is_harmless_but_a_different_one_is_not(
    index: MySQLRecordIndex, db_name: str
) -> None:
    rows = [make_row(n) for n in range(3)]
    index.add_records(rows)
    batch = make_batch(1, 2)
    index.mark_anchored(batch, make_receipts(rows[:2]))
    index.mark_anchored(batch, make_receipts(rows[:2]))
    other = make_batch(1, 3)
    with pytest.raises(IntegrityError):
        index.mark_anchored(other, make_receipts(rows))
    assert index.pending_anchors(10) == rows[2:]
    # The record rows carry their anchoring batch.
    anchored = query(db_name, "SELECT COUNT(*) FROM records WHERE batch_id = 1")
    assert anchored == [(2,)]


def test_large_batch_in_one_transaction(index: MySQLRecordIndex) -> None:
    rows = [make_row(n) for n in range(2500)]  # spans several multi-row INSERTs
    index.add_records(rows)
    assert index.count_pending_anchors() == 2500
    receipts = {
        row.record_id: AnchorReceipt(record_id=row.record_id, leaf=row.content_hash, proof=[])
        for row in rows
    }
    index.mark_anchored(make_batch(1, 2500), receipts)  # spans several IN (...) chunks
    assert index.count_pending_anchors() == 0


# -- chain event mirror -------------------------------------------------------------------

GRANTEE = "0x" + "33" * 20
CLINICIAN = "0x" + "44" * 20


def event(name: str, block: int, log: int, timestamp: int, **args: Any) -> dict[str, Any]:
    contract = "AccessLog" if name == "AccessRecorded" else "ConsentRegistry"
    if name in ("RecordAnchored", "BatchAnchored"):
        contract = "RecordRegistry"
    return {
        "event": name,
        "contract": contract,
        "block_number": block,
        "log_index": log,
        "tx_hash": bytes([block]) * 32,
        "timestamp": timestamp,
        "args": args,
    }


RID_1 = make_row(1).record_id
RID_2 = make_row(2).record_id
EVENTS = [
    event(
        "ConsentGranted", 10, 0, 1000,
        patient=PATIENT_A, scope=RID_1, grantee=GRANTEE, scopeKind=0, expiresAt=2**64 - 1,
    ),
    event(
        "AccessRecorded", 11, 0, 1010,
        patient=PATIENT_A, recordId=RID_1, actor=GRANTEE, hospital=HOSPITAL_1,
        granted=True, basis=1,
    ),
    event(
        "AccessRecorded", 11, 1, 1010,
        patient=PATIENT_B, recordId=RID_2, actor=GRANTEE, hospital=HOSPITAL_1,
        granted=False, basis=0,
    ),
    event(
        "BreakGlassOpened", 12, 3, 1020,
        patient=PATIENT_B, recordId=RID_2, clinician=CLINICIAN, hospital=HOSPITAL_2,
        expiresAt=5000, reasonHash=b"\x07" * 32,
    ),
    event("ConsentRevoked", 13, 0, 1030, patient=PATIENT_A, scope=RID_1, grantee=GRANTEE,
          scopeKind=0),
    event("BatchAnchored", 14, 0, 1040, batchId=1, root=b"\x01" * 32, hospital=HOSPITAL_1,
          count=2),
]  # fmt: skip


def test_mirror_round_trip_and_cursor(index: MySQLRecordIndex, db_name: str) -> None:
    assert index.mirror_cursor() == -1
    index.mirror_events(EVENTS[:3], up_to_block=11)
    assert index.mirror_cursor() == 11
    index.mirror_events(EVENTS[3:], up_to_block=20)
    assert index.mirror_cursor() == 20
    assert index.mirrored_events() == EVENTS  # chain order, args lossless (bytes, big ints)
    assert query(db_name, "SELECT COUNT(*) FROM consent_events") == [(3,)]
    assert query(db_name, "SELECT COUNT(*) FROM audit_events") == [(3,)]


def test_mirror_is_idempotent_and_the_cursor_never_moves_back(index: MySQLRecordIndex) -> None:
    index.mirror_events(EVENTS, up_to_block=20)
    index.mirror_events(EVENTS, up_to_block=20)
    index.mirror_events(EVENTS[:2], up_to_block=11)  # an old range again
    assert index.mirror_cursor() == 20
    assert index.mirrored_events() == EVENTS
    index.mirror_events([], up_to_block=25)  # empty blocks still advance the cursor
    assert index.mirror_cursor() == 25


def test_mirror_filters(index: MySQLRecordIndex) -> None:
    index.mirror_events(EVENTS, up_to_block=20)

    def found(**filters: Any) -> list[tuple[int, int]]:
        return [(e["block_number"], e["log_index"]) for e in index.mirrored_events(**filters)]

    assert found(patient=PATIENT_A) == [(10, 0), (11, 0), (13, 0)]
    assert found(record_id=RID_2) == [(11, 1), (12, 3)]
    assert found(record_id=RID_1, actor=GRANTEE) == [(10, 0), (11, 0), (13, 0)]
    assert found(actor=CLINICIAN) == [(12, 3)]
    assert found(actor=HOSPITAL_1) == [(14, 0)]
    assert found(since=1010, until=1020) == [(11, 0), (11, 1), (12, 3)]
    assert found(patient=PATIENT_B, since=1015) == [(12, 3)]
    assert found(limit=2) == [(10, 0), (11, 0)]
    assert found(limit=0) == []
    assert found(patient="x' OR '1'='1") == []


def test_mirror_is_one_transaction(index: MySQLRecordIndex) -> None:
    index.mirror_events(EVENTS[:1], up_to_block=10)
    bad = event("AccessRecorded", 15, 0, 1050, patient=PATIENT_A, recordId=RID_1,
                actor="x" * 100)  # fmt: skip
    with pytest.raises(ValueError):
        index.mirror_events([*EVENTS[1:], bad], up_to_block=20)
    assert index.mirror_cursor() == 10
    assert index.mirrored_events() == EVENTS[:1]


def test_mirror_rejects_malformed_events(index: MySQLRecordIndex) -> None:
    with pytest.raises(ValueError, match="beyond"):
        index.mirror_events(EVENTS, up_to_block=12)
    with pytest.raises(ValueError, match="lacks"):
        index.mirror_events([{"event": "ConsentGranted"}], up_to_block=12)
    with pytest.raises(ValueError):
        index.mirror_events([event("X", 1, 0, 1, blob=object())], up_to_block=12)
    assert index.mirror_cursor() == -1


# -- outages ------------------------------------------------------------------------------


def test_unreachable_server_is_backend_unavailable(proxy: CutProxy, db_name: str) -> None:
    proxy.cut()
    started = time.monotonic()
    with pytest.raises(BackendUnavailable) as caught:
        MySQLRecordIndex(
            host=MYSQL_HOST,
            port=proxy.port,
            user="root",
            password="hunter2-do-not-leak",
            database=db_name,
        )
    assert time.monotonic() - started < 3
    assert f"127.0.0.1:{proxy.port}/{db_name}" in str(caught.value)
    assert "hunter2" not in str(caught.value)
    assert "hunter2" not in repr(caught.value.__cause__)


def test_wrong_credentials_do_not_leak(db_name: str) -> None:
    with pytest.raises(BackendUnavailable, match="credentials") as caught:
        MySQLRecordIndex(
            host=MYSQL_HOST,
            port=MYSQL_PORT,
            user="emr_no_such_user",
            password="hunter2-do-not-leak",
            database=db_name,
        )
    assert "hunter2" not in str(caught.value)
    assert "hunter2" not in repr(caught.value.__cause__)


def test_missing_database_without_create(db_name: str) -> None:
    with pytest.raises(BackendUnavailable, match="does not exist"):
        MySQLRecordIndex(**SERVER, database=db_name)


def _proxied(proxy: CutProxy, db_name: str, **kwargs: Any) -> MySQLRecordIndex:
    return open_index(db_name, port=proxy.port, **kwargs)


@pytest.mark.parametrize(
    "cut_at",
    [
        b"INSERT INTO records",  # before anything reached the server
        b"INSERT INTO anchor_outbox",  # records inserted, outbox not
        b"COMMIT",  # everything inserted, never committed
    ],
)
def test_cut_mid_add_records_writes_nothing(proxy: CutProxy, db_name: str, cut_at: bytes) -> None:
    index = _proxied(proxy, db_name)
    try:
        index.add_records([make_row(0)])
        rows = [make_row(n) for n in range(1, 51)]
        proxy.cut_when_sent(cut_at)
        with pytest.raises(BackendUnavailable):
            index.add_records(rows)
        assert proxy.fired.is_set()
        assert query(db_name, "SELECT COUNT(*) FROM records") == [(1,)]
        assert query(db_name, "SELECT COUNT(*) FROM anchor_outbox") == [(1,)]

        # While down: a clear error, quickly, for reads too.
        with pytest.raises(BackendUnavailable, match="unavailable"):
            index.get_record(make_row(0).record_id)

        proxy.restore()
        index.add_records(rows)  # nothing was half-written: no DuplicateRecord
        assert index.count_pending_anchors() == 51
    finally:
        index.close()


def test_cut_mid_mark_anchored_writes_nothing(proxy: CutProxy, db_name: str) -> None:
    index = _proxied(proxy, db_name)
    try:
        rows = [make_row(n) for n in range(5)]
        index.add_records(rows)
        proxy.cut_when_sent(b"DELETE FROM anchor_outbox")
        with pytest.raises(BackendUnavailable):
            index.mark_anchored(make_batch(1, 3), make_receipts(rows[:3]))
        assert query(db_name, "SELECT COUNT(*) FROM anchor_batches") == [(0,)]
        assert query(db_name, "SELECT COUNT(*) FROM anchor_receipts") == [(0,)]
        assert query(db_name, "SELECT COUNT(*) FROM records WHERE batch_id IS NOT NULL") == [(0,)]
        proxy.restore()
        assert index.count_pending_anchors() == 5
        index.mark_anchored(make_batch(1, 3), make_receipts(rows[:3]))
        assert index.pending_anchors(10) == rows[3:]
    finally:
        index.close()


def test_cut_mid_mirror_writes_nothing(proxy: CutProxy, db_name: str) -> None:
    index = _proxied(proxy, db_name)
    try:
        proxy.cut_when_sent(b"INSERT INTO chain_cursor")
        with pytest.raises(BackendUnavailable):
            index.mirror_events(EVENTS, up_to_block=20)
        assert query(db_name, "SELECT COUNT(*) FROM consent_events") == [(0,)]
        proxy.restore()
        assert index.mirror_cursor() == -1
    finally:
        index.close()


def test_recovers_when_the_server_returns(proxy: CutProxy, db_name: str) -> None:
    index = _proxied(proxy, db_name, pool_size=2)
    try:
        index.add_records([make_row(1)])
        proxy.cut()
        for _ in range(3):  # every pooled connection is dead; each call fails fast
            with pytest.raises(BackendUnavailable):
                index.get_record(make_row(1).record_id)
        proxy.restore()
        with pytest.raises(RecordNotFound):  # an answer: the server is back
            index.get_record(make_row(2).record_id)
        assert index.get_record(make_row(1).record_id) == make_row(1)
    finally:
        index.close()


def test_hung_server_is_bounded_by_read_timeout(proxy: CutProxy, db_name: str) -> None:
    index = _proxied(proxy, db_name, read_timeout=0.5, connect_timeout=0.5)
    try:
        index.add_records([make_row(1)])
        proxy.stall()
        started = time.monotonic()
        with pytest.raises(BackendUnavailable):
            index.get_record(make_row(1).record_id)
        assert time.monotonic() - started < 3
        proxy.cut()
        proxy.restore()
        assert index.get_record(make_row(1).record_id) == make_row(1)
    finally:
        index.close()
