"""Blob store on a set of IPFS daemons, each blob pinned on several of them (production).

Talks to each daemon's Kubo RPC API (``/api/v0``, see ``ipfs_rpc.py``); the daemons may be
Kubo or js-ipfs (scripts/ipfs.sh runs a js-ipfs cluster for development and tests). No
IPFS Cluster service is needed: this class does the placement, replication and repair.

Addresses
    A blob is one raw block: its CID is ``storage.cid.cid_for(data)`` (CIDv1, raw codec,
    sha2-256, base32), whatever its size, so the address never depends on a daemon's
    chunker. (Blocks above ~2 MiB cannot travel over bitswap; nothing here needs it, every
    daemon receives its copy directly.)

Writes
    ``put_many`` sends ONE request per node per batch: a CARv1 (``ipfs_car.py``) of the
    batch's raw blocks, every block also a root, to ``dag/import?pin-roots=true``. Each
    blob thus gets its own recursive pin (one blob can be deleted without touching its
    batch) and the daemon reports every root it pinned; that list must match the CIDs we
    computed or the batch fails with IntegrityError. Concurrent ``put()`` calls are
    coalesced by a group commit (``ipfs_batch.py``): those arriving within
    ``batch_window`` seconds share one batch, so per-record uploads from many HTTP threads
    still make one request per node per batch.

Placement and replication
    Each blob's nodes are ranked by rendezvous hashing, sha256(node URL || blob digest):
    placement is stable, spreads evenly and moves only the blobs of a node that is added
    or removed. A batch goes to each blob's first ``replication_max`` nodes in parallel;
    where a node fails, the blob moves on to its next-ranked nodes in further rounds.
    ``put``/``put_many`` return only once every blob is pinned on at least
    ``replication_min`` nodes, otherwise they raise BackendUnavailable saying how many
    nodes took the blob: a write is never acknowledged below the minimum. (Copies already
    made are left in place: content addressing makes the retry idempotent.) A node that
    failed is tried last for a few seconds, so a dead daemon costs one timeout, not one per
    batch; it is never skipped, so placement does not drift.

Reads
    ``get`` asks the blob's nodes in rank order whether they pin it (``pin/ls``, a key
    lookup) and fetches it (``block/get``) from the first that does, then checks that the
    bytes hash to the CID. Altered bytes are logged and the next node is tried; only when
    no node has intact bytes does it raise IntegrityError. Absence is conclusive when
    fewer than ``replication_min`` nodes are unreachable (every acknowledged blob sits on
    at least that many), else BackendUnavailable. "Stored" means pinned: an unpinned block
    awaiting garbage collection is not returned.

Deletes
    ``delete`` unpins on every node (not just the ranked ones: fallbacks and repairs may
    have placed copies anywhere) and raises BackendUnavailable if some node could not be
    reached, so an erased blob does not come back with that node. The bytes stay in the
    daemon's block store until its garbage collector runs (storage holds only ciphertext).

Repair
    ``repair(cids)`` reads each node's recursive pins once per window of CIDs, finds the
    blobs pinned on fewer than ``replication_min`` reachable nodes, fetches each from a
    node that has it (verifying the bytes) and imports it, batched, into its best-ranked
    nodes that lack it. Idempotent: a second run finds nothing to do; an interrupted run
    can be resumed from the last count reported to ``progress``. It trusts pins: it does
    not read every replica back (``get`` detects and skips altered replicas).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence, Sized
from concurrent.futures import ThreadPoolExecutor
from itertools import islice
from typing import Any

from storage.abc import BlobStoreAPI, Health, HealthCheckAPI, ReplicaRepairAPI
from storage.backends.ipfs_batch import GroupCommit
from storage.backends.ipfs_car import encode_car
from storage.backends.ipfs_rpc import CommandFailed, KuboRPC, KuboRPCError, NodeUnreachable
from storage.cid import cid_from_digest, parse_cid
from storage.exceptions import BackendUnavailable, BlobNotFound, IntegrityError, StorageError
from storage.models import RepairReport

__all__ = ["IpfsClusterBlobStore", "RepairReport"]

logger = logging.getLogger(__name__)

# Seconds a node that just failed is tried after the healthy ones.
_RETRY_AFTER = 5.0
# Upper bound of one CAR request body: a batch of large blobs is split (a thousand 1 MiB
# scans would otherwise be held in memory as one gigabyte request).
_MAX_CAR_BYTES = 32 << 20
# CIDs held in memory per repair window; each node's pin list is read once a window.
_REPAIR_WINDOW = 100_000


class IpfsClusterBlobStore(BlobStoreAPI, HealthCheckAPI, ReplicaRepairAPI):
    """Blobs pinned on ``replication_min``..``replication_max`` of ``nodes``.

    ``nodes`` are Kubo RPC base URLs (``http://127.0.0.1:5001``); their order does not
    matter. Thread-safe. ``timeout`` bounds each RPC call, so it must cover a daemon's
    import of a whole batch (~1 s for 1,000 4 KB blobs on js-ipfs). ``batch_window`` is how
    long a ``put()`` waits for others to share its batch (0: only calls that arrive while a
    batch is being written are grouped); ``max_batch`` caps the blobs of one request.
    """

    def __init__(
        self,
        nodes: Sequence[str],
        *,
        replication_min: int,
        replication_max: int,
        timeout: float = 10,
        batch_window: float = 0.005,
        max_batch: int = 1000,
    ) -> None:
        if not nodes:
            raise ValueError("at least one IPFS node is needed")
        if not 1 <= replication_min <= replication_max <= len(nodes):
            raise ValueError("need 1 <= replication_min <= replication_max <= len(nodes)")
        if timeout <= 0 or batch_window < 0 or max_batch < 1:
            raise ValueError("timeout and max_batch must be positive, batch_window >= 0")
        self._nodes = [KuboRPC(url, timeout=timeout) for url in nodes]
        names = [node.name for node in self._nodes]
        if len(set(names)) != len(names):
            for node in self._nodes:
                node.close()
            raise ValueError("the same IPFS node is listed twice")
        # Rendezvous keys: the URL without credentials, so rotating an RPC password does
        # not move every blob.
        self._keys = [name.encode() for name in names]
        self._min = replication_min
        self._max = replication_max
        self._max_batch = max_batch
        # monotonic deadline per node; plain float stores are atomic, no lock needed
        self._retry_at = [0.0] * len(self._nodes)
        self._pool = ThreadPoolExecutor(
            max_workers=max(4, 2 * len(self._nodes)), thread_name_prefix="ipfs-rpc"
        )
        self._group: GroupCommit[tuple[bytes, bytes], None] = GroupCommit(
            self._flush_puts,
            window=batch_window,
            max_items=max_batch,
            max_bytes=_MAX_CAR_BYTES,
            size_of=lambda item: len(item[1]),
        )
        self._closed = False

    def __repr__(self) -> str:
        names = [node.name for node in self._nodes]
        return (
            f"{type(self).__name__}(nodes={names!r}, replication_min={self._min}, "
            f"replication_max={self._max})"
        )

    # -- placement ----------------------------------------------------------------------

    def _ranked(self, digest: bytes) -> list[int]:
        """Node indices by rendezvous score for ``digest`` (stable placement)."""
        scores = [hashlib.sha256(key + digest).digest() for key in self._keys]
        return sorted(range(len(self._nodes)), key=scores.__getitem__, reverse=True)

    def _preferred(self, digest: bytes) -> list[int]:
        """Ranked nodes, those that failed in the last few seconds moved to the end."""
        now = time.monotonic()
        ranked = self._ranked(digest)
        return [i for i in ranked if self._retry_at[i] <= now] + [
            i for i in ranked if self._retry_at[i] > now
        ]

    def _node_failed(self, i: int, what: str, exc: Exception) -> None:
        self._retry_at[i] = time.monotonic() + _RETRY_AFTER
        logger.warning("IPFS node %s: %s failed: %s", self._nodes[i].name, what, exc)

    def _node_ok(self, i: int) -> None:
        self._retry_at[i] = 0.0

    # -- writes -------------------------------------------------------------------------

    def _import(self, i: int, blocks: list[tuple[bytes, bytes]]) -> set[bytes] | None:
        """Import ``(digest, data)`` blocks into node ``i``; return the digests it pinned,
        or None if the node failed. Raises IntegrityError if it reports foreign CIDs."""
        node = self._nodes[i]
        try:
            roots = node.dag_import(encode_car(blocks))
        except NodeUnreachable as exc:
            self._node_failed(i, f"import of {len(blocks)} blobs", exc)
            return None
        except CommandFailed as exc:
            logger.warning("IPFS node %s refused an import: %s", node.name, exc)
            return None
        self._node_ok(i)
        expected = {cid_from_digest(digest): digest for digest, _ in blocks}
        foreign = roots.keys() - expected.keys()
        if foreign:
            logger.error(
                "IPFS node %s reported %d CIDs it was not sent, e.g. %s",
                node.name,
                len(foreign),
                next(iter(foreign)),
            )
            raise IntegrityError(f"IPFS node {node.name} reported CIDs that differ from ours")
        pinned = {expected[cid] for cid, error in roots.items() if not error}
        if len(pinned) < len(blocks):
            logger.warning(
                "IPFS node %s pinned %d of %d blobs", node.name, len(pinned), len(blocks)
            )
        return pinned

    def _replicate(
        self,
        blobs: dict[bytes, bytes],
        holders: dict[bytes, set[int]],
        target: int,
        exclude: frozenset[int] = frozenset(),
    ) -> None:
        """Import ``blobs`` until each is pinned on ``target`` nodes or no usable node is
        left; ``holders`` (digest -> nodes that pin it) is updated in place.

        Each round sends one CAR to each node that has blobs to take, all nodes in
        parallel; a node that fails is not used again in this call.
        """
        queues = {
            digest: [i for i in self._preferred(digest) if i not in holders[digest]]
            for digest in blobs
        }
        failed = set(exclude)
        while True:
            plan: dict[int, list[bytes]] = defaultdict(list)
            for digest, queue in queues.items():
                missing = target - len(holders[digest])
                while missing > 0 and queue:
                    i = queue.pop(0)
                    if i not in failed:
                        plan[i].append(digest)
                        missing -= 1
            if not plan:
                return
            try:
                futures = {
                    i: self._pool.submit(self._import, i, [(d, blobs[d]) for d in digests])
                    for i, digests in plan.items()
                }
            except RuntimeError as exc:  # the pool is shut down: close() raced this write
                raise BackendUnavailable("the IPFS blob store is closed") from exc
            errors: list[IntegrityError] = []
            for i, future in futures.items():
                try:
                    pinned = future.result()
                except IntegrityError as exc:
                    errors.append(exc)
                    pinned = None
                if pinned is None:
                    failed.add(i)
                    continue
                for digest in pinned:
                    holders[digest].add(i)
            if errors:
                raise errors[0]

    def _chunks(self, blobs: dict[bytes, bytes]) -> Iterator[dict[bytes, bytes]]:
        """Split into batches of at most max_batch blobs and about _MAX_CAR_BYTES."""
        chunk: dict[bytes, bytes] = {}
        size = 0
        for digest, data in blobs.items():
            if chunk and (len(chunk) >= self._max_batch or size + len(data) > _MAX_CAR_BYTES):
                yield chunk
                chunk, size = {}, 0
            chunk[digest] = data
            size += len(data)
        if chunk:
            yield chunk

    def _write(self, blobs: dict[bytes, bytes]) -> dict[bytes, int]:
        """Store ``blobs``; return {digest: replicas} of those below replication_min."""
        self._check_open()  # a put() group may be flushed after close()
        short: dict[bytes, int] = {}
        for chunk in self._chunks(blobs):
            holders: dict[bytes, set[int]] = {digest: set() for digest in chunk}
            self._replicate(chunk, holders, self._max)
            short.update(
                (digest, len(nodes)) for digest, nodes in holders.items() if len(nodes) < self._min
            )
        return short

    def _under_replicated(self, digest: bytes, replicas: int, of: int = 1) -> BackendUnavailable:
        blobs = "the blob" if of == 1 else f"{of} blobs, the first"
        return BackendUnavailable(
            f"{blobs} {cid_from_digest(digest)} was pinned on {replicas} of the "
            f"{self._min} IPFS nodes required ({len(self._nodes)} configured); "
            "the write is not acknowledged"
        )

    def _check_open(self) -> None:
        if self._closed:
            raise BackendUnavailable("the IPFS blob store is closed")

    def put(self, data: bytes) -> str:
        self._check_open()
        digest = hashlib.sha256(data).digest()
        self._group.submit((digest, data))
        return cid_from_digest(digest)

    def _flush_puts(self, items: list[tuple[bytes, bytes]]) -> list[BaseException | None]:
        """Write one group of put() calls; give each caller its own outcome."""
        try:
            short = self._write(dict(items))
        except StorageError as exc:
            return [exc] * len(items)
        return [
            self._under_replicated(digest, short[digest]) if digest in short else None
            for digest, _ in items
        ]

    def put_many(self, blobs: Sequence[bytes]) -> list[str]:
        self._check_open()
        digests = [hashlib.sha256(data).digest() for data in blobs]
        short = self._write(dict(zip(digests, blobs, strict=True)))
        if short:
            digest, replicas = min(short.items(), key=lambda item: item[1])
            raise self._under_replicated(digest, replicas, of=len(short))
        return [cid_from_digest(digest) for digest in digests]

    # -- reads --------------------------------------------------------------------------

    def _absent(self, cid: str, unreachable: int) -> StorageError:
        """The error for a blob no reachable node pins."""
        if unreachable >= self._min:
            # Every copy of an acknowledged blob may sit on the nodes we could not ask.
            return BackendUnavailable(
                f"{unreachable} of {len(self._nodes)} IPFS nodes are unreachable; "
                f"cannot tell whether {cid} is stored"
            )
        return BlobNotFound(f"no blob stored under {cid}")

    def get(self, cid: str) -> bytes:
        digest = parse_cid(cid)
        self._check_open()
        unreachable = altered = unreadable = 0
        for i in self._preferred(digest):
            node = self._nodes[i]
            try:
                if not node.is_pinned(cid):
                    continue
                data = node.block_get(cid)
            except NodeUnreachable as exc:
                self._node_failed(i, "read", exc)
                unreachable += 1
                continue
            except CommandFailed as exc:
                # Pinned but not readable (block lost locally, daemon-side timeout).
                logger.warning("IPFS node %s cannot read %s: %s", node.name, cid, exc)
                unreadable += 1
                continue
            self._node_ok(i)
            if hashlib.sha256(data).digest() != digest:
                logger.warning("IPFS node %s returned altered bytes for %s", node.name, cid)
                altered += 1
                continue
            return data
        if altered:
            raise IntegrityError(f"no IPFS node returned intact bytes for {cid}")
        if unreadable:
            raise BackendUnavailable(f"{cid} is pinned but no IPFS node could read it")
        raise self._absent(cid, unreachable)

    def has(self, cid: str) -> bool:
        digest = parse_cid(cid)
        self._check_open()
        unreachable = 0
        for i in self._preferred(digest):
            try:
                if self._nodes[i].is_pinned(cid):
                    return True
            except KuboRPCError as exc:
                self._node_failed(i, "pin lookup", exc)
                unreachable += 1
        if unreachable >= self._min:
            raise self._absent(cid, unreachable)
        return False

    # -- delete -------------------------------------------------------------------------

    def _unpin(self, i: int, cid: str) -> bool:
        """Unpin ``cid`` on node ``i`` and drop its block; False if the node could not be
        reached."""
        node = self._nodes[i]
        try:
            # Check first: js-ipfs takes ~1 s to refuse pin/rm of an unpinned CID.
            if node.is_pinned(cid):
                node.pin_rm(cid)
        except CommandFailed as exc:
            if "not pinned" not in exc.message:  # else a concurrent delete won the race
                self._node_failed(i, "unpin", exc)
                return False
        except NodeUnreachable as exc:
            self._node_failed(i, "unpin", exc)
            return False
        try:
            # Unpinned blocks stay readable until the next GC; an erased record's ciphertext
            # should not, so the block goes now (GC would only catch up on failures here).
            node.block_rm(cid)
        except CommandFailed as exc:
            logger.warning("IPFS node %d kept block %s after unpinning: %s", i, cid, exc.message)
        except NodeUnreachable as exc:
            self._node_failed(i, "block removal", exc)
            return False
        return True

    def delete(self, cid: str) -> None:
        parse_cid(cid)
        self._check_open()
        done = list(self._pool.map(lambda i: self._unpin(i, cid), range(len(self._nodes))))
        if not all(done):
            raise BackendUnavailable(
                f"{cid} was unpinned on {sum(done)} of {len(self._nodes)} IPFS nodes; "
                "the others are unreachable, retry the delete"
            )

    # -- repair -------------------------------------------------------------------------

    def _census(self, wanted: dict[str, bytes], unreachable: set[int]) -> dict[bytes, set[int]]:
        """Which reachable nodes pin each wanted CID: every node's pin list, read once.

        Nodes that fail are added to ``unreachable``.
        """
        holders: dict[bytes, set[int]] = {digest: set() for digest in wanted.values()}

        def scan(i: int) -> set[bytes] | None:
            try:
                return {wanted[cid] for cid in wanted.keys() & self._nodes[i].pinned()}
            except KuboRPCError as exc:
                self._node_failed(i, "pin listing", exc)
                return None

        live = [i for i in range(len(self._nodes)) if i not in unreachable]
        for i, pinned in zip(live, self._pool.map(scan, live), strict=True):
            if pinned is None:
                unreachable.add(i)
                continue
            for digest in pinned:
                holders[digest].add(i)
        return holders

    def _fetch(self, digest: bytes, sources: set[int], unreachable: set[int]) -> bytes | None:
        """An intact copy of the blob from one of ``sources``, or None."""
        cid = cid_from_digest(digest)
        for i in self._preferred(digest):
            if i not in sources or i in unreachable:
                continue
            try:
                data = self._nodes[i].block_get(cid)
            except KuboRPCError as exc:
                self._node_failed(i, "repair read", exc)
                continue
            if hashlib.sha256(data).digest() == digest:
                return data
            logger.warning("IPFS node %s holds altered bytes for %s", self._nodes[i].name, cid)
        return None

    def repair(
        self,
        cids: Iterable[str],
        progress: Callable[[int, int], None] | None = None,
    ) -> RepairReport:
        """Re-pin every blob of ``cids`` that is pinned on fewer than replication_min
        reachable nodes, copying it from a node that still has it.

        ``progress(checked, total)`` is called after each batch; ``total`` is -1 when
        ``cids`` has no length. Raises ValueError (InvalidCID) for a malformed CID and
        IntegrityError if a node reports pinning CIDs it was not sent.
        """
        self._check_open()
        total = len(cids) if isinstance(cids, Sized) else -1
        counts = dict.fromkeys(("checked", "healthy", "repaired", "degraded"), 0)
        lost: list[str] = []
        unreachable: set[int] = set()
        source = iter(cids)
        while window := list(islice(source, _REPAIR_WINDOW)):
            wanted = {cid: parse_cid(cid) for cid in window}
            holders = self._census(wanted, unreachable)
            entries = list(wanted.items())
            for start in range(0, len(entries), self._max_batch):
                batch = entries[start : start + self._max_batch]
                self._repair_batch(batch, holders, unreachable, counts, lost)
                counts["checked"] += len(batch)
                if progress is not None:
                    progress(counts["checked"], total)
        report = RepairReport(
            **counts,
            unrecoverable=len(lost),
            unrecoverable_cids=tuple(lost),
            unreachable_nodes=tuple(self._nodes[i].name for i in sorted(unreachable)),
        )
        logger.info(
            "IPFS repair: %d checked, %d healthy, %d repaired, %d degraded, %d unrecoverable",
            report.checked,
            report.healthy,
            report.repaired,
            report.degraded,
            report.unrecoverable,
        )
        return report

    def _repair_batch(
        self,
        batch: list[tuple[str, bytes]],
        holders: dict[bytes, set[int]],
        unreachable: set[int],
        counts: dict[str, int],
        lost: list[str],
    ) -> None:
        needy = [(cid, digest) for cid, digest in batch if len(holders[digest]) < self._min]
        counts["healthy"] += len(batch) - len(needy)
        if not needy:
            return
        copies = self._pool.map(lambda e: self._fetch(e[1], holders[e[1]], unreachable), needy)
        blobs: dict[bytes, bytes] = {}
        for (cid, digest), data in zip(needy, copies, strict=True):
            if data is None:
                lost.append(cid)
            else:
                blobs[digest] = data
        if not blobs:
            return
        for chunk in self._chunks(blobs):
            self._replicate(chunk, holders, self._min, exclude=frozenset(unreachable))
        for digest in blobs:
            key = "repaired" if len(holders[digest]) >= self._min else "degraded"
            counts[key] += 1

    # -- operations ---------------------------------------------------------------------

    def _probe(self, i: int) -> dict[str, Any]:
        node = self._nodes[i]
        try:
            identity = node.id()
            version = node.version()
        except KuboRPCError as exc:
            return {"reachable": False, "peer_id": None, "version": None, "error": str(exc)}
        self._node_ok(i)
        return {
            "reachable": True,
            "peer_id": identity.get("ID"),
            "version": version.get("Version"),
            "agent": identity.get("AgentVersion"),
        }

    def health(self) -> dict[str, dict[str, Any]]:
        """Per node (keyed by its URL without credentials): ``reachable``, ``peer_id``,
        ``version``, ``agent``, and ``error`` when unreachable."""
        self._check_open()
        probes = self._pool.map(self._probe, range(len(self._nodes)))
        return {node.name: probe for node, probe in zip(self._nodes, probes, strict=True)}

    def check_health(self) -> Health:
        """OK while at least ``replication_min`` nodes answer (uploads can be stored)."""
        try:
            nodes = self.health()
        except StorageError as exc:
            return Health(False, {"error": type(exc).__name__})
        reachable = sum(1 for probe in nodes.values() if probe["reachable"])
        return Health(reachable >= self._min, {"nodes": nodes})

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._pool.shutdown(wait=True)
        for node in self._nodes:
            node.close()
