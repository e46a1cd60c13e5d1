"""API tokens and wallet sessions end (issue 10, item 7): expiry, revocation (store, admin
API, CLI), logout; and a revocation reaches every API process within ``auth_cache_ttl``.

The store's tests run on SQLite and on MySQL (issue 11: API processes on several hosts
share the credentials through the index database)."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from eth_account import Account
from typer.testing import CliRunner

from node.auth.principal import Role, TokenPrincipal
from node.auth.store import _MIGRATIONS, AuthStore
from node.client import ApiError, EmrClient
from node.exceptions import Conflict, NotFound
from node.wiring import _bootstrap_admin_token
from tests.node.conftest import RunningNode
from tests.storage.sql_fixtures import SQL_BACKENDS, SqlDatabases, sql_databases


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _eventually(check: Callable[[], bool], within: float) -> bool:
    """Poll ``check`` until it holds or ``within`` seconds have passed."""
    deadline = time.monotonic() + within
    while True:
        if check():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


# -- the store ----------------------------------------------------------------------------


@pytest.fixture(params=SQL_BACKENDS)
def dbs(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlDatabases]:
    yield from sql_databases(request.param, tmp_path)


def test_tokens_get_ids_expire_and_are_revoked(dbs: SqlDatabases) -> None:
    store = AuthStore(dbs.connect())
    forever = store.issue_token("ehr", Role.HOSPITAL)
    brief = store.issue_token("lab", Role.HOSPITAL, ttl=2)
    assert forever.expires_at is None and brief.expires_at is not None
    assert store.resolve_token(forever.token) == TokenPrincipal("ehr", Role.HOSPITAL, forever.id)
    assert store.resolve_token(brief.token) is not None
    assert _eventually(lambda: store.resolve_token(brief.token) is None, within=10)

    listed = {t.id: t for t in store.list_tokens()}
    assert set(listed) == {forever.id, brief.id}
    assert listed[forever.id].live(time.time()) and not listed[brief.id].live(time.time())

    revoked = store.revoke_token(forever.id)
    assert revoked.revoked_at is not None
    assert store.resolve_token(forever.token) is None  # at once in the revoking process
    with pytest.raises(Conflict):
        store.revoke_token(forever.id)
    with pytest.raises(NotFound):
        store.revoke_token("0123456789ab")
    with pytest.raises(ValueError):
        store.issue_token("x", Role.HOSPITAL, ttl=0)


def test_the_last_live_admin_token_is_revoked_only_with_force(
    tmp_path: Path, dbs: SqlDatabases
) -> None:
    store = AuthStore(dbs.connect())
    notes: list[str] = []
    _bootstrap_admin_token(store, tmp_path, notes)
    bootstrap = store.list_tokens()[0]
    assert bootstrap.role is Role.ADMIN and bootstrap.expires_at is None
    with pytest.raises(Conflict, match="last live admin"):
        store.revoke_token(bootstrap.id)
    second = store.issue_token("ops", Role.ADMIN)
    store.revoke_token(bootstrap.id)  # another admin is live: fine
    expired = store.issue_token("brief", Role.ADMIN, ttl=1)
    assert _eventually(lambda: store.resolve_token(expired.token) is None, within=10)
    with pytest.raises(Conflict):  # an expired admin token does not count as live
        store.revoke_token(second.id)
    store.revoke_token(second.id, force=True)
    assert not store.has_live_admin()

    # Locked out: the next start writes a new bootstrap admin token for the operator.
    (tmp_path / "admin-token").unlink()
    _bootstrap_admin_token(store, tmp_path, notes)
    fresh = (tmp_path / "admin-token").read_text().strip()
    principal = store.resolve_token(fresh)
    assert principal is not None and principal.role is Role.ADMIN
    _bootstrap_admin_token(store, tmp_path, notes)  # a live admin: nothing new
    assert (tmp_path / "admin-token").read_text().strip() == fresh


def test_tokens_of_an_old_store_keep_working_without_expiry(tmp_path: Path) -> None:
    path = tmp_path / "node.sqlite"
    with sqlite3.connect(path) as conn:  # the schema before tokens could end
        conn.executescript(_MIGRATIONS[0])
        conn.execute("CREATE TABLE schema_versions (component TEXT PRIMARY KEY, version INT)")
        conn.execute("INSERT INTO schema_versions VALUES ('auth', 1)")
        for name in ("old-a", "old-b"):
            token = f"emr_{name}"
            digest = hashlib.sha256(token.encode()).hexdigest()
            conn.execute("INSERT INTO api_tokens VALUES (?, ?, 'hospital', 1)", (digest, name))
    store = AuthStore(path)
    a, b = store.list_tokens()
    assert a.id != b.id and len(a.id) == 12 and a.expires_at is None and a.revoked_at is None
    principal = store.resolve_token("emr_old-a")
    assert principal is not None and principal.token_id == a.id
    store.revoke_token(a.id)
    assert store.resolve_token("emr_old-a") is None
    assert store.resolve_token("emr_old-b") is not None


def test_sessions_end_at_logout(dbs: SqlDatabases) -> None:
    store = AuthStore(dbs.connect())
    one, _ = store.create_session("0xAlice", 3600)
    two, _ = store.create_session("0xAlice", 3600)
    other, _ = store.create_session("0xBob", 3600)
    assert store.resolve_session(one) == "0xAlice"
    assert store.end_session(one) and not store.end_session(one)
    assert store.resolve_session(one) is None
    assert store.resolve_session(two) == "0xAlice"
    assert store.revoke_sessions("0xAlice") == 1
    assert store.resolve_session(two) is None
    assert store.resolve_session(other) == "0xBob"


def test_a_revocation_reaches_another_process_after_the_cache_ttl(dbs: SqlDatabases) -> None:
    """Two stores on one database stand for two API processes; the fake clock shows the
    bound is exactly the cache TTL (no sooner needed, no later allowed)."""
    clock = FakeClock()
    admin_side = AuthStore(dbs.connect())
    serving = AuthStore(dbs.connect(), cache_ttl=2.0, clock=clock)
    issued = admin_side.issue_token("ehr", Role.HOSPITAL)
    session, _ = admin_side.create_session("0xAlice", 3600)
    assert serving.resolve_token(issued.token) is not None  # looked up: cached for 2 s
    assert serving.resolve_session(session) == "0xAlice"

    admin_side.revoke_token(issued.id)
    admin_side.end_session(session)
    clock.now += 1.9
    assert serving.resolve_token(issued.token) is not None  # within the bound: stale
    clock.now += 0.1
    assert serving.resolve_token(issued.token) is None  # the bound: refused
    assert serving.resolve_session(session) is None


def test_a_revocation_reaches_another_process_within_the_bound(dbs: SqlDatabases) -> None:
    """The same with real time: revoke through one store, the other refuses within
    cache_ttl (polled with a deadline)."""
    ttl = 0.5
    a = AuthStore(dbs.connect(), cache_ttl=ttl)
    b = AuthStore(dbs.connect(), cache_ttl=ttl)
    issued = a.issue_token("ehr", Role.HOSPITAL)
    session, _ = a.create_session("0xAlice", 3600)
    assert b.resolve_token(issued.token) is not None and b.resolve_session(session)
    a.revoke_token(issued.id)
    a.end_session(session)
    assert _eventually(lambda: b.resolve_token(issued.token) is None, within=ttl + 5)
    assert _eventually(lambda: b.resolve_session(session) is None, within=ttl + 5)


def test_the_cache_is_bounded(dbs: SqlDatabases) -> None:
    store = AuthStore(dbs.connect(), cache_size=10)
    tokens = [store.create_token(f"t{n}", Role.HOSPITAL) for n in range(50)]
    for token in tokens:
        assert store.resolve_token(token) is not None
    assert len(store._tokens) == 10


def test_writes_through_one_connection_are_seen_through_another(dbs: SqlDatabases) -> None:
    """Tokens, SIWE challenges and sessions written by one process are there for another
    at once (only found credentials are cached); a nonce signs in once across both."""
    a, b = AuthStore(dbs.connect()), AuthStore(dbs.connect())
    issued = a.issue_token("ehr", Role.HOSPITAL, ttl=3600)
    assert b.resolve_token(issued.token) == TokenPrincipal("ehr", Role.HOSPITAL, issued.id)
    assert [t.id for t in b.list_tokens()] == [issued.id]
    session, _ = a.create_session("0xAlice", 3600)
    assert b.resolve_session(session) == "0xAlice"
    expires = int(time.time()) + 60
    a.add_challenge("nonce-1", "0xAlice", "message", expires)
    assert b.take_challenge("nonce-1") == ("0xAlice", "message", expires)
    assert a.take_challenge("nonce-1") is None  # taken through the other connection
    assert b.revoke_sessions("0xAlice") == 1
    assert _eventually(lambda: a.resolve_session(session) is None, within=a.cache_ttl + 5)


def test_a_nonce_is_taken_once_under_contention(dbs: SqlDatabases) -> None:
    stores = [AuthStore(dbs.connect()) for _ in range(2)]
    nonces = [f"nonce-{n}" for n in range(20)]
    for nonce in nonces:
        stores[0].add_challenge(nonce, "0xAlice", "m", int(time.time()) + 60)
    taken: list[str] = []

    def take(store: AuthStore) -> None:
        for nonce in nonces:
            if store.take_challenge(nonce) is not None:
                taken.append(nonce)

    threads = [threading.Thread(target=take, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(taken) == sorted(nonces)  # each exactly once


# -- over HTTP ----------------------------------------------------------------------------


@pytest.fixture
def running_node(embedded_node: RunningNode) -> RunningNode:
    """Credentials do not depend on the storage backends: the embedded node is enough."""
    return embedded_node


def _status(call: Callable[[], object]) -> int:
    try:
        call()
    except ApiError as err:
        return err.status
    return 200


def test_admin_lists_and_revokes_tokens(running_node: RunningNode) -> None:
    rn = running_node
    with rn.client(rn.admin_token) as admin:
        issued = admin.issue_token("ehr", "hospital")
        assert issued["expires_at"] > time.time() + 364 * 86400  # api.token_ttl_days
        with rn.client(issued["token"]) as ehr:
            assert _status(ehr.records) == 200
            assert _status(admin.tokens) == 200
            assert _status(ehr.tokens) == 403  # admin only
            assert _status(lambda: ehr.revoke_token(issued["id"])) == 403

            listed = admin.tokens()
            raw = json.dumps(listed)
            digest = hashlib.sha256(issued["token"].encode()).hexdigest()
            assert issued["token"] not in raw and digest not in raw
            mine = next(t for t in listed if t["id"] == issued["id"])
            assert mine["name"] == "ehr" and mine["role"] == "hospital" and mine["live"]
            assert set(mine) == {
                "id",
                "name",
                "role",
                "created_at",
                "expires_at",
                "revoked_at",
                "live",
            }

            revoked = admin.revoke_token(issued["id"])
            assert revoked["revoked_at"] is not None and not revoked["live"]
            assert _status(ehr.records) == 401
            assert _status(lambda: admin.revoke_token(issued["id"])) == 409
            assert _status(lambda: admin.revoke_token("0123456789ab")) == 404
            assert _status(lambda: admin.revoke_token("not-an-id")) == 422

        # The bootstrap token is the only admin: refused unless forced.
        bootstrap = next(t for t in admin.tokens() if t["role"] == "admin")
        assert bootstrap["expires_at"] is None
        with pytest.raises(ApiError) as refused:
            admin.revoke_token(bootstrap["id"])
        assert refused.value.status == 409 and "last live admin" in refused.value.detail
        assert admin.tokens()  # still an admin
        ops = admin.issue_token("ops", "admin", expires_in=3600)
        assert ops["expires_at"] <= time.time() + 3600 + 5
        admin.revoke_token(bootstrap["id"])
        assert _status(admin.tokens) == 401
    with rn.client(ops["token"]) as ops_client:
        assert _status(ops_client.tokens) == 200


def test_revoked_elsewhere_refused_after_the_bound(running_node: RunningNode) -> None:
    """Another API process sharing the node's database revokes the token; this node
    refuses it within api.auth_cache_ttl seconds."""
    rn = running_node
    bound = rn.node.settings.api.auth_cache_ttl
    assert bound == 2.0
    with rn.client(rn.admin_token) as admin:
        issued = admin.issue_token("ehr", "hospital")
    other_process = AuthStore(rn.node.settings.resolved_data_dir / "node.sqlite")
    try:
        with rn.client(issued["token"]) as ehr:
            assert _status(ehr.records) == 200  # cached by the serving process now
            other_process.revoke_token(issued["id"])
            assert _eventually(lambda: _status(ehr.records) == 401, within=bound + 5)
    finally:
        other_process.close()


def test_expired_token_is_refused(running_node: RunningNode) -> None:
    rn = running_node
    with rn.client(rn.admin_token) as admin:
        issued = admin.issue_token("brief", "hospital", expires_in=2)
        assert _status(lambda: admin.issue_token("x", "hospital", expires_in=0)) == 422
    with rn.client(issued["token"]) as brief:
        assert _status(brief.records) == 200
        assert _eventually(lambda: _status(brief.records) == 401, within=10)
        with pytest.raises(ApiError) as refused:
            brief.records()
        assert "expired or revoked" in refused.value.detail


def test_logout_ends_the_session(running_node: RunningNode) -> None:
    rn = running_node
    wallet = Account.create()
    with rn.client() as public:
        session = public.login(wallet)
        other_device = public.login(wallet)
        assert _status(lambda: public.audit_events(token=session)) != 401
        public.logout(session)
        assert _status(lambda: public.audit_events(token=session)) == 401
        assert _status(lambda: public.logout(session)) == 401
        assert _status(lambda: public.audit_events(token=other_device)) != 401

        third = public.login(wallet)
        public.logout(third, everywhere=True)
        assert _status(lambda: public.audit_events(token=other_device)) == 401
        assert _status(lambda: public.logout("emrs_" + "x" * 43)) == 401
    with rn.client(rn.admin_token) as admin:
        assert _status(lambda: admin.logout(rn.admin_token)) == 403  # tokens are revoked
    with httpx.Client(base_url=rn.url) as raw:
        assert raw.post("/auth/logout").status_code == 401


def test_cli_token_commands(running_node: RunningNode) -> None:
    from node.cli.main import app

    rn = running_node
    runner = CliRunner()
    args = ["--url", rn.url, "--admin-token", rn.admin_token]
    # The original form still creates a token (README: `emr-node token hospital --name ehr`).
    created = runner.invoke(app, ["token", "hospital", "--name", "ehr", *args])
    assert created.exit_code == 0, created.output
    token = created.output.strip()
    assert token.startswith("emr_")
    explicit = runner.invoke(app, ["token", "create", "auditor", "--expires-in", "60", *args])
    assert explicit.exit_code == 0, explicit.output

    listed = runner.invoke(app, ["token", "list", *args])
    assert listed.exit_code == 0, listed.output
    assert token not in listed.output
    tokens = json.loads(listed.output)
    ehr = next(t for t in tokens if t["name"] == "ehr")
    assert [t["role"] for t in tokens].count("auditor") == 1

    revoked = runner.invoke(app, ["token", "revoke", ehr["id"], *args])
    assert revoked.exit_code == 0, revoked.output
    assert json.loads(revoked.output)["revoked_at"] is not None
    with EmrClient(rn.url, token) as c:
        assert _status(c.records) == 401
    again = runner.invoke(app, ["token", "revoke", ehr["id"], *args])
    assert again.exit_code == 2 and "409" in again.output
