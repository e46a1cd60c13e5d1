"""Fenced anchoring on a real embedded chain: a crash anywhere never anchors a record twice,
and a worker whose lease was taken cannot store anything."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account

from node.chain.client import Web3ChainClient
from node.chain.embedded import EmbeddedChain
from node.chain.exceptions import ChainUnavailable, ContractReverted
from node.chain.external import ensure_deployment
from node.chain.record_ids import new_record_id
from node.flows.anchor_records import anchor_pending, recover_anchors
from storage.backends.sqlite import SQLiteRecordIndex
from storage.exceptions import LeaseLost
from storage.models import Lease, RecordRow


class Killed(Exception):
    """Stands for SIGKILL at a given point (the process state after it is discarded)."""


@pytest.fixture
def chain(tmp_path: Path) -> Iterator[Web3ChainClient]:
    account = Account.create()
    embedded = EmbeddedChain(tmp_path / "chain.sqlite", funded_accounts={account.address: 10**24})
    deployment = ensure_deployment(
        embedded.web3, tmp_path / "deployment.json", account, [(account.address, "Test General")]
    )
    client = Web3ChainClient(embedded.web3, deployment, account)
    yield client
    client.close()
    embedded.close()


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "index.sqlite"


@pytest.fixture
def index(path: Path) -> Iterator[SQLiteRecordIndex]:
    index = SQLiteRecordIndex(path)
    yield index
    index.close()


def _queue(index: SQLiteRecordIndex, chain: Web3ChainClient, n: int) -> list[RecordRow]:
    member = chain.member_id(chain.hospital)
    rows = [
        RecordRow(
            record_id=new_record_id(member),
            patient=Account.create().address,
            category="lab",
            content_type="text/plain",
            cid=f"bafk{i}",
            content_hash=secrets.token_bytes(32),
            size=10,
            wrapped_key=b"k" * 40,
            kek_version=1,
            creator=chain.hospital,
            created_at=1_700_000_000 + i,
        )
        for i in range(n)
    ]
    index.add_records(rows)
    return rows


def _batches_on_chain(chain: Web3ChainClient) -> int:
    return sum(e.event == "BatchAnchored" for e in chain.audit_events())


def _take_over(index: SQLiteRecordIndex, old: Lease | None = None, ttl: float = 30.0) -> Lease:
    """A new worker takes the lease once the old (killed) holder's lease expired."""
    if old is not None:
        time.sleep(max(0.0, old.expires_at - time.time()) + 0.05)
    lease = index.acquire("worker", secrets.token_hex(4), "", ttl)
    assert lease is not None
    return lease


def _assert_anchored_once(
    index: SQLiteRecordIndex, chain: Web3ChainClient, rows: list[RecordRow], batches: int = 1
) -> None:
    assert _batches_on_chain(chain) == batches
    assert index.count_pending_anchors() == 0
    assert index.open_anchor_intents() == []
    for row in rows:
        receipt = index.get_receipt(row.record_id)
        assert receipt is not None and receipt.batch is not None
        assert chain.verify_record(
            receipt.batch.batch_id,
            row.record_id,
            row.patient,
            row.content_hash,
            row.previous_id,
            receipt.proof,
        )


def test_crash_between_send_and_mark_is_recovered_from_the_chain(
    index: SQLiteRecordIndex, chain: Web3ChainClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = _queue(index, chain, 5)
    first = _take_over(index, ttl=0.5)

    def killed(*_args: Any, **_kwargs: Any) -> None:
        raise Killed

    with monkeypatch.context() as m:
        m.setattr(index, "mark_anchored", killed)
        with pytest.raises(Killed):
            anchor_pending(index=index, chain=chain, limit=10, fence=first.fence)
    assert _batches_on_chain(chain) == 1
    assert index.count_pending_anchors() == 5
    # The next worker: recovery marks the batch from the chain, nothing is sent again.
    second = _take_over(index, first)
    assert recover_anchors(index=index, chain=chain, fence=second.fence) == 1
    assert anchor_pending(index=index, chain=chain, limit=10, fence=second.fence) is None
    _assert_anchored_once(index, chain, rows)
    [event] = [e for e in chain.audit_events() if e.event == "BatchAnchored"]
    receipt = index.get_receipt(rows[0].record_id)
    assert receipt is not None and receipt.batch is not None
    assert receipt.batch.batch_id == event.args["batchId"]
    assert receipt.batch.tx_hash == event.tx_hash


def test_crash_before_send_anchors_once_later(
    index: SQLiteRecordIndex, chain: Web3ChainClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = _queue(index, chain, 4)
    first = _take_over(index, ttl=1.0)

    def killed(*_args: Any, **_kwargs: Any) -> None:
        raise Killed

    with monkeypatch.context() as m:
        m.setattr(chain, "anchor_batch", killed)  # the intent is committed, nothing sent
        with pytest.raises(Killed):
            anchor_pending(index=index, chain=chain, limit=10, fence=first.fence)
    assert len(index.open_anchor_intents()) == 1
    assert _batches_on_chain(chain) == 0
    # The next holder releases it (never on-chain, nothing in flight) and anchors the
    # records, once.
    second = _take_over(index, first)
    batch = anchor_pending(index=index, chain=chain, limit=10, fence=second.fence)
    assert batch is not None and batch.count == 4
    _assert_anchored_once(index, chain, rows)


def test_an_intent_is_not_released_while_a_send_is_in_flight(
    index: SQLiteRecordIndex, chain: Web3ChainClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The old holder's anchor may still be in the mempool (a QBFT block not yet sealed):
    the new holder leaves the intent open until the account has nothing in flight."""
    rows = _queue(index, chain, 3)
    first = _take_over(index, ttl=0.5)

    def killed(*_args: Any, **_kwargs: Any) -> None:
        raise Killed

    with monkeypatch.context() as m:
        m.setattr(chain, "anchor_batch", killed)
        with pytest.raises(Killed):
            anchor_pending(index=index, chain=chain, limit=10, fence=first.fence)
    second = _take_over(index, first)
    with monkeypatch.context() as m:
        m.setattr(chain, "sends_in_flight", lambda: 1)
        assert recover_anchors(index=index, chain=chain, fence=second.fence) == 0
        assert anchor_pending(index=index, chain=chain, limit=10, fence=second.fence) is None
    assert len(index.open_anchor_intents()) == 1 and _batches_on_chain(chain) == 0
    # Nothing in flight any more (dropped): released, and anchored once.
    assert chain.sends_in_flight() == 0
    batch = anchor_pending(index=index, chain=chain, limit=10, fence=second.fence)
    assert batch is not None and batch.count == 3
    _assert_anchored_once(index, chain, rows)


def test_own_intent_is_released_once_the_chain_is_back_with_nothing_in_flight(
    index: SQLiteRecordIndex, chain: Web3ChainClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A send that failed with the chain away leaves the worker's own intent open; once the
    chain answers again and shows neither the batch nor a transaction in flight, the same
    worker anchors the records (once), without waiting for a timeout."""
    rows = _queue(index, chain, 2)
    lease = _take_over(index)

    def down(*_args: Any, **_kwargs: Any) -> None:
        raise ChainUnavailable("the chain node cannot be reached")

    with monkeypatch.context() as m:
        m.setattr(chain, "anchor_batch", down)
        with pytest.raises(ChainUnavailable):
            anchor_pending(index=index, chain=chain, limit=10, fence=lease.fence)
    assert len(index.open_anchor_intents()) == 1
    with monkeypatch.context() as m:  # its transaction might still be in a mempool
        m.setattr(chain, "sends_in_flight", lambda: 1)
        assert anchor_pending(index=index, chain=chain, limit=10, fence=lease.fence) is None
    batch = anchor_pending(index=index, chain=chain, limit=10, fence=lease.fence)
    assert batch is not None and batch.count == 2
    _assert_anchored_once(index, chain, rows)


def test_crash_between_claim_and_intent_loses_nothing(
    index: SQLiteRecordIndex, chain: Web3ChainClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = _queue(index, chain, 3)
    lease = _take_over(index)

    def killed(*_args: Any, **_kwargs: Any) -> None:
        raise Killed

    with monkeypatch.context() as m:
        m.setattr(index, "record_anchor_intent", killed)
        with pytest.raises(Killed):
            anchor_pending(index=index, chain=chain, limit=10, fence=lease.fence)
    # Same holder, next round: its leftover claims go back to the queue first.
    batch = anchor_pending(index=index, chain=chain, limit=10, fence=lease.fence)
    assert batch is not None and batch.count == 3
    _assert_anchored_once(index, chain, rows)


def test_stale_fence_cannot_mark_and_the_new_holder_does(
    path: Path, index: SQLiteRecordIndex, chain: Web3ChainClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = _queue(index, chain, 3)
    old = index.acquire("worker", "old", "", 0.5)
    assert old is not None
    other = SQLiteRecordIndex(path)  # the new worker's process
    try:
        real_anchor = chain.anchor_batch
        taken: list[Lease] = []

        def slow_anchor(*args: Any, **kwargs: Any) -> Any:
            result = real_anchor(*args, **kwargs)  # mined ...
            taken.append(_take_over(other, old))  # ... but the old worker paused past its ttl
            return result

        with monkeypatch.context() as m:
            m.setattr(chain, "anchor_batch", slow_anchor)
            with pytest.raises(LeaseLost):
                anchor_pending(index=index, chain=chain, limit=10, fence=old.fence)
        assert index.get_receipt(rows[0].record_id) is None  # the stale mark wrote nothing
        # The old worker cannot go on either.
        with pytest.raises(LeaseLost):
            anchor_pending(index=index, chain=chain, limit=10, fence=old.fence)
        [new] = taken
        assert recover_anchors(index=other, chain=chain, fence=new.fence) == 1
        _assert_anchored_once(other, chain, rows)
    finally:
        other.close()


def test_expired_lease_sends_nothing(index: SQLiteRecordIndex, chain: Web3ChainClient) -> None:
    _queue(index, chain, 2)
    lease = index.acquire("worker", "a", "", 0.2)
    assert lease is not None
    time.sleep(0.3)  # expired, not yet taken: the pre-send check refuses
    with pytest.raises(LeaseLost):
        anchor_pending(index=index, chain=chain, limit=10, fence=lease.fence)
    assert _batches_on_chain(chain) == 0


def test_two_workers_never_anchor_the_same_records(
    path: Path, index: SQLiteRecordIndex, chain: Web3ChainClient
) -> None:
    rows = _queue(index, chain, 6)
    old = index.acquire("worker", "old", "", 0.3)
    assert old is not None
    other = SQLiteRecordIndex(path)
    try:
        first = anchor_pending(index=index, chain=chain, limit=3, fence=old.fence)
        assert first is not None and first.count == 3
        new = _take_over(other, old)
        with pytest.raises(LeaseLost):
            anchor_pending(index=index, chain=chain, limit=3, fence=old.fence)
        second = anchor_pending(index=other, chain=chain, limit=10, fence=new.fence)
        assert second is not None and second.count == 3
        _assert_anchored_once(other, chain, rows, batches=2)
    finally:
        other.close()


def test_reverted_batch_releases_its_intent(
    index: SQLiteRecordIndex, chain: Web3ChainClient
) -> None:
    foreign = RecordRow(
        record_id=new_record_id(999),  # another member's namespace: the contract refuses
        patient=Account.create().address,
        category="lab",
        content_type="text/plain",
        cid="bafkforeign",
        content_hash=secrets.token_bytes(32),
        size=1,
        wrapped_key=b"k" * 40,
        kek_version=1,
        creator=chain.hospital,
        created_at=1_700_000_000,
    )
    index.add_records([foreign])
    lease = _take_over(index)
    with pytest.raises(ContractReverted):
        anchor_pending(index=index, chain=chain, limit=10, fence=lease.fence)
    assert index.open_anchor_intents() == []
    assert index.count_pending_anchors() == 1


def test_without_a_fence_anchoring_works_as_before(
    index: SQLiteRecordIndex, chain: Web3ChainClient
) -> None:
    rows = _queue(index, chain, 3)
    batch = anchor_pending(index=index, chain=chain, limit=10)
    assert batch is not None and batch.count == 3
    _assert_anchored_once(index, chain, rows)
