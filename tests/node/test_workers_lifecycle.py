"""Every background worker the node builds is started with it and stopped with it, shows in
/health for operators, and the eraser works off a failed follow-up by itself."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account

from node.chain.exceptions import ChainUnavailable
from node.wiring import Node, build_node
from node.workers import BatchWorker
from storage.exceptions import BackendUnavailable
from tests.node.conftest import RunningNode, make_settings


def _reachable_workers(node: Node) -> list[BatchWorker]:
    """BatchWorkers held by the node's fields or by the ZK service's attributes."""
    found: list[BatchWorker] = []
    holders: list[Any] = [node, node.zk] if node.zk is not None else [node]
    for holder in holders:
        for value in vars(holder).values():
            for item in value if isinstance(value, tuple) else (value,):
                if isinstance(item, BatchWorker) and all(item is not w for w in found):
                    found.append(item)
    return found


def _until(predicate: Callable[[], bool], timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_every_worker_the_node_builds_is_started_and_stopped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    built: list[BatchWorker] = []
    original = BatchWorker.__init__

    def recording_init(self: BatchWorker, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        built.append(self)

    monkeypatch.setattr(BatchWorker, "__init__", recording_init)
    before = set(threading.enumerate())
    node = build_node(make_settings(tmp_path / "node"))
    monkeypatch.undo()
    try:
        names = {w.name for w in node.workers}
        assert "eraser" in names
        # Nothing built is left out of Node.workers, and nothing reachable either.
        assert {id(w) for w in built} == {id(w) for w in node.workers}
        assert {id(w) for w in _reachable_workers(node)} == {id(w) for w in node.workers}
        assert all(not w.running for w in node.workers)
        node.start()
        assert all(w.running for w in node.workers), [w.name for w in node.workers]
    finally:
        node.stop()
    assert all(not w.running for w in node.workers)
    # No thread the node started (workers, batchers, the ZK submitter) outlives stop().
    assert _until(
        lambda: not [t for t in threading.enumerate() if t not in before and t.is_alive()]
    ), [t.name for t in threading.enumerate() if t not in before]


def test_health_shows_every_worker_to_operators(embedded_node: RunningNode) -> None:
    with embedded_node.client(embedded_node.admin_token) as admin:
        workers = admin.health()["workers"]
    assert set(workers) == {w.name for w in embedded_node.node.workers}
    assert workers["eraser"] == {"running": True, "last_error": None}


def test_the_eraser_retries_a_failed_purge_and_tombstone_without_a_new_erase(
    embedded_node: RunningNode, monkeypatch: pytest.MonkeyPatch
) -> None:
    rn = embedded_node
    node = rn.node
    with rn.client(rn.admin_token) as admin:
        token = admin.create_token("ehr", "hospital")
    hospital = rn.client(token)
    patient = Account.create()
    rec = hospital.upload(patient.address, b"to be erased", category="lab")
    rid, cid = rec["record_id"], rec["cid"]
    hospital.wait_anchored(rid, timeout=30)

    # The chain and the blob store fail during the erase: keys are destroyed at once, the
    # follow-ups stay on the eraser's durable to-do list.
    def chain_down(*_a: object, **_k: object) -> object:
        raise ChainUnavailable("chain unreachable (test)")

    def blobs_down(_cid: str) -> None:
        raise BackendUnavailable("replica unreachable (test)")

    monkeypatch.setattr(node.chain, "erase_records", chain_down)
    monkeypatch.setattr(node.blobs, "delete", blobs_down)
    erased = hospital.erase(rid, "patient request")
    assert [r["record_id"] for r in erased["erased"]] == [rid]
    [pending] = node.index.pending_erasures(10)
    assert not pending.blob_purged and pending.erase_tx is None
    assert node.blobs.has(cid)

    # Both come back; nobody erases anything again. The eraser worker finishes the job.
    monkeypatch.undo()
    assert _until(lambda: not node.index.pending_erasures(10), timeout=30)
    assert not node.blobs.has(cid)
    row = node.index.get_record(bytes.fromhex(rid.removeprefix("0x")))
    assert row.erased
    hospital.close()
