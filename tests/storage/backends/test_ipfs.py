"""IpfsClusterBlobStore against real js-ipfs daemons (scripts/ipfs.sh), plus unit tests of
its CAR encoder and group commit.

One session-scoped cluster of three daemons (so that replication_min=2 survives a loss)
runs in a temporary state dir on free ports; tests that stop or wipe a daemon bring the
cluster back before the next test.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from storage.abc import BlobStoreAPI
from storage.backends.ipfs import IpfsClusterBlobStore
from storage.backends.ipfs_batch import GroupCommit
from storage.backends.ipfs_car import encode_car
from storage.backends.ipfs_rpc import NodeUnreachable, _base32_cid
from storage.cid import cid_for
from storage.exceptions import BackendUnavailable, BlobNotFound, IntegrityError
from tests.storage.backends.ipfs_fixtures import FakeNode, IpfsCluster, count_requests
from tests.storage.conformance import BlobStoreConformance

CLUSTER_SIZE = 3


@pytest.fixture(scope="session")
def ipfs_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IpfsCluster]:
    cluster = IpfsCluster(tmp_path_factory.mktemp("ipfs-state"), CLUSTER_SIZE)
    try:
        cluster.start(timeout=900)  # the first run installs js-ipfs
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def cluster(ipfs_cluster: IpfsCluster) -> Iterator[IpfsCluster]:
    """The session cluster, restored (every daemon running) after a test that breaks it."""
    yield ipfs_cluster
    ipfs_cluster.start()


def make_store(
    urls: list[str],
    lo: int = 2,
    hi: int = 2,
    *,
    timeout: float = 5,
    batch_window: float = 0.005,
    max_batch: int = 1000,
) -> IpfsClusterBlobStore:
    return IpfsClusterBlobStore(
        urls,
        replication_min=lo,
        replication_max=hi,
        timeout=timeout,
        batch_window=batch_window,
        max_batch=max_batch,
    )


def pinned_on(cluster: IpfsCluster, cid: str) -> list[int]:
    """Indices of the running daemons that pin ``cid``, asked directly."""
    holders = []
    for i, rpc in enumerate(cluster.rpcs()):
        try:
            if rpc.is_pinned(cid):
                holders.append(i)
        except NodeUnreachable:
            pass
    return holders


# -- conformance --------------------------------------------------------------------------


@pytest.mark.integration
class TestIpfsClusterBlobStore(BlobStoreConformance):
    @pytest.fixture(autouse=True)
    def _use_cluster(self, ipfs_cluster: IpfsCluster) -> None:
        self.cluster = ipfs_cluster

    def make_blob_store(self, location: Path) -> BlobStoreAPI:
        return make_store(self.cluster.urls)

    def corrupt_blob(self, store: BlobStoreAPI, cid: str, data: bytes) -> None:
        # Rewrite the block file in every daemon's repo: the daemons still pin it.
        files = self.cluster.block_files(cid)
        assert len(files) >= 2
        for path in files:
            path.write_bytes(data)


# -- addresses and batching ---------------------------------------------------------------


@pytest.mark.integration
def test_cids_match_the_daemons_own_hashing(ipfs_cluster: IpfsCluster) -> None:
    store = make_store(ipfs_cluster.urls)
    data = os.urandom(5000)
    try:
        cid = store.put(data)
    finally:
        store.close()
    assert cid == cid_for(data)
    # The daemon hashes the same bytes on its own (add, CIDv1, raw leaves, no pin).
    answer = (
        ipfs_cluster.rpcs()[0]
        .http.post(
            "add",
            params={"cid-version": "1", "raw-leaves": "true", "pin": "false", "cid-base": "base32"},
            files={"file": ("blob", data, "application/octet-stream")},
        )
        .json()
    )
    assert answer["Hash"] == cid


@pytest.mark.integration
def test_put_many_sends_one_request_per_node_per_batch(ipfs_cluster: IpfsCluster) -> None:
    store = make_store(ipfs_cluster.urls, lo=2, hi=3, max_batch=300)
    blobs = [os.urandom(256) for _ in range(600)]
    try:
        with count_requests(store) as counts:
            cids = store.put_many(blobs)
        # Two batches of 300, each one dag/import per node, nothing else.
        assert counts == {(i, "dag/import"): 2 for i in range(CLUSTER_SIZE)}
        assert cids == [cid_for(b) for b in blobs]
        assert all(len(pinned_on(ipfs_cluster, cid)) == 3 for cid in cids[::100])
    finally:
        store.close()


@pytest.mark.integration
def test_placement_is_stable_and_spread(ipfs_cluster: IpfsCluster) -> None:
    store = make_store(ipfs_cluster.urls, lo=1, hi=1)
    blobs = [os.urandom(64) for _ in range(90)]
    try:
        with count_requests(store) as counts:
            cids = store.put_many(blobs)
        assert sorted(counts.values()) == [1, 1, 1]  # every node took a share, in one request
        placed = {cid: pinned_on(ipfs_cluster, cid) for cid in cids[:15]}
        assert all(len(nodes) == 1 for nodes in placed.values())
        # A second store with the same node list ranks every blob the same way.
        again = make_store(list(reversed(ipfs_cluster.urls)), lo=1, hi=1)
        try:
            for cid, data in zip(cids[:15], blobs[:15], strict=True):
                ranked = again._ranked(hashlib.sha256(data).digest())
                assert again._nodes[ranked[0]].name == ipfs_cluster.urls[placed[cid][0]]
        finally:
            again.close()
    finally:
        store.close()


@pytest.mark.integration
def test_concurrent_puts_are_coalesced(ipfs_cluster: IpfsCluster) -> None:
    store = make_store(ipfs_cluster.urls, lo=3, hi=3, batch_window=0.2)
    blobs = [os.urandom(512) for _ in range(48)]
    results: dict[int, str] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(blobs))

    def upload(n: int) -> None:
        try:
            barrier.wait()
            results[n] = store.put(blobs[n])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=upload, args=(n,)) for n in range(len(blobs))]
    try:
        with count_requests(store) as counts:
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        assert errors == []
        assert [results[n] for n in range(len(blobs))] == [cid_for(b) for b in blobs]
        # 48 uploads, not 48 requests per node: one group (two if a thread was late).
        for i in range(CLUSTER_SIZE):
            assert 1 <= counts[i, "dag/import"] <= 2
        assert set(counts) == {(i, "dag/import") for i in range(CLUSTER_SIZE)}
    finally:
        store.close()


# -- replication and failures -------------------------------------------------------------


@pytest.mark.integration
def test_replication_min_with_nodes_down(cluster: IpfsCluster) -> None:
    store = make_store(cluster.urls, lo=2, hi=2, timeout=3)
    before = [os.urandom(300) for _ in range(30)]
    cids = store.put_many(before)
    try:
        cluster.stop_node(0)
        # Reads fall back: a third of the blobs had node 0 first in rank order.
        assert [store.get(cid) for cid in cids] == before
        assert all(store.has(cid) for cid in cids)
        assert not store.has(cid_for(b"never stored"))
        with pytest.raises(BlobNotFound):
            store.get(cid_for(b"never stored"))
        # Writes still reach two nodes: the blobs ranked on node 0 move to node 2.
        during = [os.urandom(300) for _ in range(30)]
        for cid in [*store.put_many(during), store.put(b"single")]:
            assert pinned_on(cluster, cid) == [1, 2]
        # A delete cannot reach node 0: it says so instead of pretending.
        with pytest.raises(BackendUnavailable, match="unpinned on 2 of 3"):
            store.delete(cids[0])

        cluster.stop_node(1)
        lonely = os.urandom(300)
        with pytest.raises(BackendUnavailable, match="pinned on 1 of the 2"):
            store.put(lonely)
        with pytest.raises(BackendUnavailable, match="pinned on 1 of the 2"):
            store.put_many([lonely, os.urandom(10)])
        # Absence cannot be told with two of three nodes unreachable.
        with pytest.raises(BackendUnavailable):
            store.get(cid_for(b"never stored"))
        with pytest.raises(BackendUnavailable):
            store.has(cid_for(b"never stored"))
        health = store.health()
        assert [h["reachable"] for h in health.values()] == [False, False, True]
    finally:
        store.close()


@pytest.mark.integration
def test_altered_bytes_from_one_node_fall_back_to_the_next(ipfs_cluster: IpfsCluster) -> None:
    fake = FakeNode(served=b"tampered")
    real = make_store(ipfs_cluster.urls, lo=3, hi=3)
    # Pick a blob the fake node ranks first for, so it is asked before the real ones.
    probe = make_store([fake.url, *ipfs_cluster.urls], lo=1, hi=1)
    try:
        data = next(
            d
            for d in (os.urandom(100) for _ in range(1000))
            if probe._ranked(hashlib.sha256(d).digest())[0] == 0
        )
        cid = real.put(data)
        assert probe.get(cid) == data
        assert fake.calls["block/get"] == 1
        only_fake = make_store([fake.url], lo=1, hi=1)
        try:
            with pytest.raises(IntegrityError):
                only_fake.get(cid)
        finally:
            only_fake.close()
    finally:
        probe.close()
        real.close()
        fake.close()


def test_a_node_reporting_other_cids_fails_the_write() -> None:
    fake = FakeNode(import_roots=[cid_for(b"something else")])
    store = make_store([fake.url], lo=1, hi=1)
    try:
        with pytest.raises(IntegrityError):
            store.put(b"data")
    finally:
        store.close()
        fake.close()


def test_unreachable_nodes() -> None:
    fake = FakeNode()  # reserve a port, then free it: nothing listens there
    url = fake.url
    fake.close()
    store = make_store([url], lo=1, hi=1, timeout=2)
    try:
        with pytest.raises(BackendUnavailable, match="pinned on 0 of the 1"):
            store.put(b"x")
        with pytest.raises(BackendUnavailable):
            store.get(cid_for(b"x"))
        health = store.health()
        assert list(health) == [url]
        assert health[url]["reachable"] is False
        assert health[url]["peer_id"] is None
    finally:
        store.close()


@pytest.mark.integration
def test_delete_unpins_everywhere(ipfs_cluster: IpfsCluster) -> None:
    store = make_store(ipfs_cluster.urls, lo=3, hi=3)
    try:
        cid = store.put(os.urandom(64))
        assert pinned_on(ipfs_cluster, cid) == [0, 1, 2]
        with count_requests(store) as counts:
            store.delete(cid)
        assert pinned_on(ipfs_cluster, cid) == []
        assert all(counts[i, "pin/rm"] == 1 for i in range(CLUSTER_SIZE))
        store.delete(cid)
    finally:
        store.close()


@pytest.mark.integration
def test_repair_restores_replication_on_a_wiped_node(cluster: IpfsCluster) -> None:
    store = make_store(cluster.urls, lo=2, hi=2)
    blobs = [os.urandom(1000) for _ in range(60)]
    cids = store.put_many(blobs)
    on_zero = [cid for cid in cids if 0 in pinned_on(cluster, cid)]
    assert 20 <= len(on_zero) <= 60
    try:
        cluster.wipe_node(0)
        cluster.start()  # a fresh repo (new identity) on the same address
        assert all(len(pinned_on(cluster, cid)) == 1 for cid in on_zero)

        seen: list[tuple[int, int]] = []
        report = store.repair(cids, progress=lambda done, total: seen.append((done, total)))
        assert (report.checked, report.repaired, report.unrecoverable) == (60, len(on_zero), 0)
        assert report.healthy == 60 - len(on_zero)
        assert seen[-1] == (60, 60)
        # Rank order puts the copies back where they were.
        assert all(0 in pinned_on(cluster, cid) for cid in on_zero)
        assert [store.get(cid) for cid in cids] == blobs

        again = store.repair(iter(cids))  # idempotent; no length known
        assert (again.checked, again.healthy, again.repaired) == (60, 60, 0)

        lost = cid_for(b"never stored anywhere")
        report = store.repair([lost])
        assert report.unrecoverable_cids == (lost,)
    finally:
        store.close()


@pytest.mark.integration
def test_health(ipfs_cluster: IpfsCluster) -> None:
    store = make_store(ipfs_cluster.urls)
    try:
        health = store.health()
    finally:
        store.close()
    assert list(health) == ipfs_cluster.urls
    assert all(h["reachable"] and h["version"] for h in health.values())
    assert len({h["peer_id"] for h in health.values()}) == CLUSTER_SIZE


@pytest.mark.integration
def test_script_start_is_idempotent(ipfs_cluster: IpfsCluster) -> None:
    before = ipfs_cluster.run("status").splitlines()
    ipfs_cluster.start()
    after = ipfs_cluster.run("status").splitlines()
    # Same daemons (same pids) on the same URLs: nothing was started again.
    assert after == before
    assert [line.split()[1] for line in after] == ["running"] * CLUSTER_SIZE
    assert [line.split()[2] for line in after] == ipfs_cluster.urls


# -- units (no daemon) --------------------------------------------------------------------


def test_car_layout() -> None:
    digest = hashlib.sha256(b"hi").digest()
    cid = b"\x01\x55\x12\x20" + digest
    header = b"\xa2\x65roots\x81\xd8\x2a\x58\x25\x00" + cid + b"\x67version\x01"
    assert encode_car([(digest, b"hi")]) == bytes([len(header)]) + header + b"\x26" + cid + b"hi"
    with pytest.raises(ValueError):
        encode_car([])


def test_base58_cids_are_converted() -> None:
    assert (
        _base32_cid("zb2rhXYkhpqNDNWt4jvHSHKyt5BstgcNnKeW5jVXP8tm6ikFD")
        == "bafkreianofhtd7tk7mimoxzgcfhhtyn6c6b24mpkfa44ldvawowwwldlxq"
    )
    assert _base32_cid("QmRaaUwTNfwgFZpeUy8qrZwrp2dY4kCKmmB5xEqvH3vtD1") is None


def test_group_commit_groups_and_isolates_failures() -> None:
    flushed: list[list[int]] = []

    def flush(items: list[int]) -> list[int | BaseException]:
        flushed.append(items)
        return [ValueError(n) if n == 3 else n * 10 for n in items]

    group: GroupCommit[int, int] = GroupCommit(
        flush, window=0.2, max_items=100, max_bytes=1 << 20, size_of=lambda n: 1
    )
    outcomes: dict[int, object] = {}
    barrier = threading.Barrier(8)

    def submit(n: int) -> None:
        barrier.wait()
        try:
            outcomes[n] = group.submit(n)
        except ValueError as exc:
            outcomes[n] = exc

    threads = [threading.Thread(target=submit, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(n for batch in flushed for n in batch) == list(range(8))
    assert len(flushed) <= 2
    assert {n: v for n, v in outcomes.items() if n != 3} == {n: n * 10 for n in range(8) if n != 3}
    assert isinstance(outcomes[3], ValueError)


def test_group_commit_closes_a_full_group_early() -> None:
    group: GroupCommit[int, int] = GroupCommit(
        lambda items: list(items), window=30, max_items=1, max_bytes=1 << 20, size_of=lambda n: 1
    )
    started = time.monotonic()
    assert group.submit(7) == 7
    assert time.monotonic() - started < 5
