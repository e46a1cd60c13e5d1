"""POST /auth/login tells the wallet when it last signed in on this node (previous_login),
kept in the shared state database: SQLite, and MySQL/MariaDB for API processes on several
hosts (issue 13)."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct

from node.auth.store import _MIGRATIONS, AuthStore
from tests.node.conftest import RunningNode
from tests.storage.sql_fixtures import SQL_BACKENDS, SqlDatabases, sql_databases


@pytest.fixture(params=SQL_BACKENDS)
def dbs(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlDatabases]:
    yield from sql_databases(request.param, tmp_path)


def test_each_sign_in_returns_the_one_before(dbs: SqlDatabases) -> None:
    one, two = AuthStore(dbs.connect()), AuthStore(dbs.connect())  # two API processes
    assert one.record_sign_in("0xAlice", at=1000) is None
    assert two.record_sign_in("0xAlice", at=2000) == 1000  # seen through the other process
    assert one.record_sign_in("0xAlice", at=3000) == 2000
    assert one.record_sign_in("0xBob", at=3500) is None  # per address
    assert two.record_sign_in("0xAlice") == 3000
    assert abs(one.record_sign_in("0xAlice") - time.time()) < 5  # type: ignore[operator]


def test_concurrent_sign_ins_each_see_a_previous_one(dbs: SqlDatabases) -> None:
    stores = [AuthStore(dbs.connect()) for _ in range(4)]
    stores[0].record_sign_in("0xCarol", at=1)
    seen: list[int | None] = []
    lock = threading.Lock()

    def sign_in(store: AuthStore, at: int) -> None:
        previous = store.record_sign_in("0xCarol", at=at)
        with lock:
            seen.append(previous)

    threads = [threading.Thread(target=sign_in, args=(s, 10 + i)) for i, s in enumerate(stores * 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(seen) == 8 and None not in seen  # none of them is taken for a first sign-in
    assert stores[1].record_sign_in("0xCarol", at=100) in range(10, 18)


def test_an_old_store_gains_the_table(tmp_path: Path) -> None:
    path = tmp_path / "node.sqlite"
    with sqlite3.connect(path) as conn:  # the schema before sign-ins were kept
        for script in _MIGRATIONS[:2]:
            conn.executescript(script)
        conn.execute("CREATE TABLE schema_versions (component TEXT PRIMARY KEY, version INT)")
        conn.execute("INSERT INTO schema_versions VALUES ('auth', 2)")
    store = AuthStore(path)
    assert store.record_sign_in("0xDan", at=5) is None
    assert store.record_sign_in("0xDan", at=6) == 5
    store.close()


def _login(rn: RunningNode, account: object) -> dict[str, object]:
    with rn.client() as public:
        challenge = public._json("POST", "/auth/challenge", json={"address": account.address})  # type: ignore[attr-defined]
        signed = account.sign_message(encode_defunct(text=challenge["message"]))  # type: ignore[attr-defined]
        body = {"message": challenge["message"], "signature": "0x" + signed.signature.hex()}
        return dict(public._json("POST", "/auth/login", json=body))


def test_login_reports_the_previous_sign_in(running_node: RunningNode) -> None:
    patient, other = Account.create(), Account.create()
    before = int(time.time())
    first = _login(running_node, patient)
    assert first["previous_login"] is None and first["address"] == patient.address
    second = _login(running_node, patient)
    previous = second["previous_login"]
    assert isinstance(previous, int) and before <= previous <= int(time.time())
    assert _login(running_node, other)["previous_login"] is None
    # a refused sign-in is not a sign-in
    with running_node.client() as public:
        challenge = public._json("POST", "/auth/challenge", json={"address": patient.address})
        forged = other.sign_message(encode_defunct(text=challenge["message"]))
        r = public._http.post(
            "/auth/login",
            json={"message": challenge["message"], "signature": "0x" + forged.signature.hex()},
        )
        assert r.status_code == 401
    third = _login(running_node, patient)
    assert isinstance(third["previous_login"], int) and third["previous_login"] >= previous
