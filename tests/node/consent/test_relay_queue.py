"""The consent relay queue on SQLite and MySQL: every signed kind round-trips, relayed and
failed rows leave the queue, claims by lease fence, two connections."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from node.chain.class_consents import ClassConsentGrant, ClassConsentRevoke
from node.chain.models import ConsentGrant, ConsentRevoke
from node.consent.relay_queue import ConsentRelayQueue, SignedConsent
from node.consent.typed_data import ScopeKind
from tests.storage.sql_fixtures import SQL_BACKENDS, SqlDatabases, sql_databases

PATIENT = "0x" + "aa" * 20
GRANTEE = "0x" + "bb" * 20
SCOPE = b"\x07" * 32


@pytest.fixture(params=SQL_BACKENDS)
def dbs(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlDatabases]:
    yield from sql_databases(request.param, tmp_path)


def _consents() -> list[SignedConsent]:
    now = int(time.time())
    return [
        ConsentGrant(PATIENT, GRANTEE, ScopeKind.RECORD, SCOPE, now + 3600, 1, now + 600),
        ConsentRevoke(PATIENT, GRANTEE, ScopeKind.RECORD, SCOPE, 2, now + 600),
        ClassConsentGrant(PATIENT, 1, 0b101, ScopeKind.CATEGORY, SCOPE, now + 3600, 3, now + 600),
        ClassConsentRevoke(PATIENT, 1, 0b101, ScopeKind.CATEGORY, SCOPE, 4, now + 600),
    ]


def test_each_kind_round_trips_and_leaves_once_done(dbs: SqlDatabases) -> None:
    queue = ConsentRelayQueue(dbs.connect())
    consents = _consents()
    ids = [queue.enqueue(c, bytes([n]) * 65) for n, c in enumerate(consents)]
    assert queue.count() == 4
    pending = queue.pending(10)
    assert [p.consent for p in pending] == consents
    assert [p.kind for p in pending] == ["grant", "revoke", "class-grant", "class-revoke"]
    assert pending[1].signature == b"\x01" * 65
    queue.mark_relayed(ids[0], b"\x0a" * 32, 12)
    queue.mark_failed(ids[1], "expired deadline")
    queue.mark_failed(ids[0], "nonce used")  # a repeat refused: the row stays relayed
    done, failed = queue.get(ids[0]), queue.get(ids[1])
    assert done is not None and (done.status, done.tx_hash, done.block_number) == (
        "relayed",
        b"\x0a" * 32,
        12,
    )
    assert failed is not None and (failed.status, failed.error) == ("failed", "expired deadline")
    assert [p.relay_id for p in queue.pending(10)] == ids[2:]
    assert queue.count() == 2
    assert queue.get(10_000) is None
    queue.close()


def test_two_workers_never_hold_the_same_rows(dbs: SqlDatabases) -> None:
    a, b = ConsentRelayQueue(dbs.connect()), ConsentRelayQueue(dbs.connect())
    ids = [a.enqueue(c, b"\x01" * 65) for c in _consents()]
    assert [p.relay_id for p in a.pending(2, fence=1)] == ids[:2]
    assert [p.relay_id for p in b.pending(10, fence=2)] == ids[2:]
    assert [p.relay_id for p in a.pending(10, fence=1)] == ids[:2]  # its own, again
    lapsed = ConsentRelayQueue(dbs.connect(), claim_ttl=0.0)
    assert [p.relay_id for p in lapsed.pending(10, fence=3)] == ids  # older claims lapsed
    assert a.pending(10, fence=1) == []


def test_a_write_through_one_connection_is_seen_by_another(dbs: SqlDatabases) -> None:
    api, worker = ConsentRelayQueue(dbs.connect()), ConsentRelayQueue(dbs.connect())
    relay_id = api.enqueue(_consents()[0], b"\x01" * 65)
    [item] = worker.pending(10, fence=1)
    assert item.relay_id == relay_id
    worker.mark_relayed(relay_id, b"\x0b" * 32, 3)
    got = api.get(relay_id)
    assert got is not None and got.status == "relayed" and api.count() == 0


def test_a_queue_from_before_claims_is_upgraded(tmp_path: Path) -> None:
    from node.consent.relay_queue import _MIGRATIONS, _encode
    from storage.sql import SQLiteDatabase

    old = SQLiteDatabase(tmp_path / "node.sqlite", "consent_relays", _MIGRATIONS[:1])
    with old.transaction() as cur:
        cur.execute(
            "INSERT INTO consent_relays (kind, message, signature, status, queued_at)"
            " VALUES ('grant', ?, ?, 'queued', 1)",
            (_encode(_consents()[0]), b"\x01" * 65),
        )
        relay_id = cur.lastrowid
    old.close()
    queue = ConsentRelayQueue(tmp_path / "node.sqlite")
    assert [p.relay_id for p in queue.pending(10, fence=1)] == [relay_id]
    queue.close()
