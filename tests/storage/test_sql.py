"""SqlDatabaseAPI on SQLite and MySQL: per-component migrations, transactions, constraint
errors, portable placeholders and dialect helpers, named locks across connections."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from storage.exceptions import BackendUnavailable, ConstraintViolation
from storage.sql import SqlDatabaseAPI, _mysql_sql
from tests.storage.sql_fixtures import SQL_BACKENDS, SqlDatabases, sql_databases

_V1 = {
    "sqlite": "CREATE TABLE things (k TEXT PRIMARY KEY, v INTEGER NOT NULL)",
    "mysql": "CREATE TABLE IF NOT EXISTS things (k VARCHAR(32) NOT NULL PRIMARY KEY,"
    " v BIGINT NOT NULL)",
}
_V2 = {
    "sqlite": "ALTER TABLE things ADD COLUMN note TEXT; CREATE INDEX things_v ON things (v)",
    "mysql": "ALTER TABLE things ADD COLUMN note TEXT NULL; CREATE INDEX things_v ON things (v)",
}


@pytest.fixture(params=SQL_BACKENDS)
def dbs(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlDatabases]:
    yield from sql_databases(request.param, tmp_path)


@pytest.fixture
def db(dbs: SqlDatabases) -> SqlDatabaseAPI:
    db = dbs.open()
    db.migrate("things", [_V1[db.dialect]])
    return db


def test_placeholders_are_translated_outside_literals() -> None:
    assert _mysql_sql("SELECT a FROM t WHERE b = ? AND c = '?' AND d LIKE '5%'") == (
        "SELECT a FROM t WHERE b = %s AND c = '?' AND d LIKE '5%%'"
    )


def test_migrations_are_kept_per_component(dbs: SqlDatabases) -> None:
    db = dbs.open()
    assert db.migrate("things", [_V1[db.dialect]]) == 1
    assert db.migrate("things", [_V1[db.dialect]]) == 1  # nothing left to do
    assert db.migrate("other", []) == 0  # another component, its own version
    other = dbs.open()  # another process starting later: upgraded in place
    assert other.migrate("things", [_V1[db.dialect], _V2[db.dialect]]) == 2
    with other.transaction() as cur:
        cur.execute("INSERT INTO things (k, v, note) VALUES (?, ?, ?)", ("a", 1, "n"))
    assert db.query("SELECT k, v, note FROM things") == [("a", 1, "n")]


def test_a_failed_block_rolls_back(db: SqlDatabaseAPI) -> None:
    with pytest.raises(RuntimeError), db.transaction() as cur:
        cur.execute("INSERT INTO things (k, v) VALUES (?, ?)", ("a", 1))
        raise RuntimeError("boom")
    assert db.query("SELECT COUNT(*) FROM things") == [(0,)]


def test_a_duplicate_key_is_a_constraint_violation(db: SqlDatabaseAPI) -> None:
    with db.transaction() as cur:
        cur.execute("INSERT INTO things (k, v) VALUES (?, ?)", ("a", 1))
    with pytest.raises(ConstraintViolation), db.transaction() as cur:
        cur.execute("INSERT INTO things (k, v) VALUES (?, ?)", ("b", 2))
        cur.execute("INSERT INTO things (k, v) VALUES (?, ?)", ("a", 3))
    assert db.query("SELECT k, v FROM things") == [("a", 1)]  # "b" rolled back too
    with db.transaction() as cur:  # the connection is usable afterwards
        assert cur.execute("SELECT v FROM things WHERE k = ?", ("a",)).fetchone() == (1,)


def test_dialect_helpers(db: SqlDatabaseAPI) -> None:
    with db.transaction() as cur:
        cur.execute(db.upsert("things", ("k", "v"), "k", ("v",)), ("a", 1))
        cur.execute(db.upsert("things", ("k", "v"), "k", ("v",)), ("a", 2))
        cur.execute(db.insert_or_ignore("things", ("k", "v"), "k"), ("a", 3))
        cur.execute(db.insert_or_ignore("things", ("k", "v"), "k"), ("b", 4))
        rows = cur.execute("SELECT k, v FROM things ORDER BY k" + db.for_update()).fetchall()
        assert rows == [("a", 2), ("b", 4)]
        assert cur.execute("DELETE FROM things WHERE v > ?", (3,)).rowcount == 1


def test_a_write_through_one_handle_is_seen_by_another(dbs: SqlDatabases) -> None:
    one, two = dbs.open(), dbs.open()
    one.migrate("things", [_V1[one.dialect]])
    two.migrate("things", [_V1[two.dialect]])
    with one.transaction() as cur:
        cur.execute("INSERT INTO things (k, v) VALUES (?, ?)", ("a", 1))
    assert two.query("SELECT v FROM things WHERE k = ?", ("a",)) == [(1,)]


def test_a_named_lock_serialises_read_then_write(dbs: SqlDatabases) -> None:
    """Two handles increment one counter 50 times each with read-then-write under a lock:
    no update is lost."""
    handles = [dbs.open(), dbs.open()]
    for h in handles:
        h.migrate("things", [_V1[h.dialect]])
    with handles[0].transaction() as cur:
        cur.execute("INSERT INTO things (k, v) VALUES ('n', 0)")
    errors: list[BaseException] = []

    def bump(db: SqlDatabaseAPI) -> None:
        try:
            for _ in range(50):
                with db.transaction(lock="counter") as cur:
                    row = cur.execute("SELECT v FROM things WHERE k = 'n'").fetchone()
                    assert row is not None
                    time.sleep(0.0005)
                    cur.execute("UPDATE things SET v = ? WHERE k = 'n'", (row[0] + 1,))
        except BaseException as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [threading.Thread(target=bump, args=(h,)) for h in handles]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert handles[0].query("SELECT v FROM things WHERE k = 'n'") == [(100,)]


@pytest.mark.integration
def test_an_unreachable_server_is_backend_unavailable(tmp_path: Path) -> None:
    """A new connection that cannot be made (MySQL down, the pool empty) surfaces as
    BackendUnavailable, which the API answers 503, never as a driver error (a 500)."""
    for dbs in sql_databases("mysql", tmp_path):
        _check_unreachable(dbs.open())


def _check_unreachable(db: SqlDatabaseAPI) -> None:
    import pymysql

    pool = db._pool  # type: ignore[attr-defined]
    while not pool._idle.empty():  # the pool must make a new connection
        conn, _at = pool._idle.get_nowait()
        conn.close()

    def refused(*_args: object, **_kwargs: object) -> None:
        raise pymysql.err.OperationalError(2003, "Can't connect to MySQL server")

    pool._connect = refused
    with pytest.raises(BackendUnavailable):
        db.query("SELECT 1")
    with pytest.raises(BackendUnavailable), db.transaction() as cur:
        cur.execute("SELECT 1")
