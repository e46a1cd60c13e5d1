"""``emr-node restore``: check an archive, put it back, then re-sync from the chain.

``restore_backup`` refuses a target that holds data (data directory, MySQL database,
deployment manifests) unless forced, checks every member's sha256 against the manifest
before it writes anything, and restores. ``resync_from_chain`` then brings the restored
state up to the chain's head: open anchor intents and records anchored after the backup
are marked anchored from the chain's ``RecordAnchored`` / ``BatchAnchored`` logs (never
sent twice), the audit mirror catches up on every event since its cursor, cached consent
decisions are dropped, and the mirror is checked against the chain.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tarfile
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from node.audit.mirror import MirrorReport, sync_mirror, verify_mirror
from node.backup.archive import (
    MANIFEST,
    PINNED_CIDS,
    STATE_SQLITE,
    BackupError,
    BackupManifest,
    decode_value,
    deployment_manifests,
    mysql_connect,
    read_manifest,
    sha256_file,
)
from node.chain.abc import ChainClientAPI
from node.chain.merkle import MerkleTree, record_leaf
from node.flows.anchor_records import recover_anchors
from node.settings import Settings
from storage.abc import AuditMirrorAPI, BlobStoreAPI, RecordIndexAPI
from storage.exceptions import RecordNotFound
from storage.models import AnchorBatch, AnchorReceipt, RecordRow

_SQLITE_FILES = (*STATE_SQLITE, "blobs.sqlite", "chain.sqlite")
_INSERT_BATCH = 500


@dataclass
class RestoreReport:
    manifest: BackupManifest
    restored: list[str]  # where each member went
    cids_checked: int = 0
    cids_missing: list[str] = field(default_factory=list)  # pinned at backup, gone now


@dataclass
class ResyncReport:
    head: int
    intents_resolved: int
    batches_marked: list[int]  # anchored after the backup: marked from the chain
    records_marked: int
    # Anchored on-chain after the backup with records the archive does not hold (uploaded
    # after it): their batch cannot be rebuilt, so these are anchored again (both roots
    # prove them).
    unresolved: list[str]
    mirror_blocks: int
    mirror: MirrorReport
    cache_entries_dropped: int


# -- checking and unpacking -----------------------------------------------------------------


def _safe_name(name: str) -> bool:
    path = PurePosixPath(name)
    return not path.is_absolute() and ".." not in path.parts and bool(path.parts)


def unpack_verified(archive: Path, into: Path) -> BackupManifest:
    """Extract ``archive`` into ``into`` and check it: exactly the manifest's members, each
    with its sha256. Raises BackupError."""
    manifest = read_manifest(archive)
    try:
        with tarfile.open(archive, "r:gz") as tar:
            names = []
            for member in tar.getmembers():
                if not member.isfile() or not _safe_name(member.name):
                    raise BackupError(f"unexpected archive member {member.name!r}")
                names.append(member.name)
            tar.extractall(into, filter="data")
    except (OSError, tarfile.TarError) as err:
        raise BackupError(f"cannot read {archive}: {err}") from None
    found = set(names) - {MANIFEST}
    expected = set(manifest.members)
    if found != expected:
        raise BackupError(
            f"archive members differ from its manifest: missing {sorted(expected - found)}, "
            f"unexpected {sorted(found - expected)}"
        )
    for name, meta in manifest.members.items():
        if sha256_file(into / name) != meta["sha256"]:
            raise BackupError(f"{name}: sha256 does not match the manifest (damaged archive)")
    return manifest


def _check_compatible(manifest: BackupManifest, settings: Settings) -> None:
    wanted = {
        "index_backend": settings.storage.index_backend,
        "blob_backend": settings.storage.blob_backend,
        "chain_backend": settings.chain.backend,
        "hsm_backend": settings.hsm.backend,
    }
    for key, value in wanted.items():
        if getattr(manifest, key) != value:
            raise BackupError(
                f"the archive was taken with {key}={getattr(manifest, key)}, this node is "
                f"configured with {value}: restore with the same configuration"
            )


def _mysql_database(settings: Settings) -> str:
    name = settings.storage.mysql_database
    if not re.fullmatch(r"[A-Za-z0-9_$]{1,64}", name):
        raise BackupError(f"unsupported MySQL database name {name!r}")
    return name


def _mysql_tables(settings: Settings) -> list[str]:
    conn = mysql_connect(settings, database=False)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
                (_mysql_database(settings),),
            )
            return [str(r[0]) for r in cur.fetchall()]
    finally:
        conn.close()


def _data_dir_in_use(data_dir: Path) -> list[str]:
    if not data_dir.exists():
        return []
    return sorted(p.name for p in data_dir.iterdir())


def _mysql_load(settings: Settings, dump: Path, existing: Sequence[str]) -> list[str]:
    from storage.backends.mysql import _SQL_MODE

    database = _mysql_database(settings)
    conn = mysql_connect(settings, database=False)
    restored: list[str] = []
    try:
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE IF NOT EXISTS `{database}` CHARACTER SET utf8mb4")
            cur.execute(f"USE `{database}`")
            cur.execute("SET SESSION sql_mode = %s", (_SQL_MODE,))
            cur.execute("SET SESSION foreign_key_checks = 0")
            for table in existing:  # --force: the database becomes exactly the archive's
                cur.execute(f"DROP TABLE IF EXISTS `{table}`")
            for ddl in sorted(dump.glob("*.sql")):
                table = ddl.stem
                cur.execute(ddl.read_text())
                with (dump / f"{table}.jsonl").open() as rows:
                    columns = json.loads(rows.readline())
                    cols = ", ".join(f"`{c}`" for c in columns)
                    marks = ", ".join(["%s"] * len(columns))
                    sql = f"INSERT INTO `{table}` ({cols}) VALUES ({marks})"
                    batch: list[list[object]] = []
                    for line in rows:
                        batch.append([decode_value(v) for v in json.loads(line)])
                        if len(batch) >= _INSERT_BATCH:
                            cur.executemany(sql, batch)
                            batch.clear()
                    if batch:
                        cur.executemany(sql, batch)
                restored.append(f"mysql:{database}.{table}")
            cur.execute("SET SESSION foreign_key_checks = 1")
        conn.commit()
    finally:
        conn.close()
    return restored


def _place(source: Path, target: Path, *, mode: int = 0o600) -> None:
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    partial = target.with_name(target.name + ".restoring")
    shutil.copyfile(source, partial)
    os.chmod(partial, mode)
    with partial.open("rb") as fh:
        os.fsync(fh.fileno())
    os.replace(partial, target)


def restore_backup(
    settings: Settings,
    archive: Path,
    *,
    force: bool = False,
    blobs: BlobStoreAPI | None = None,
) -> RestoreReport:
    """Restore ``archive`` into the node configured by ``settings`` (which must be stopped).

    Refuses (BackupError) a target that holds data unless ``force``: a non-empty data
    directory, a MySQL database with tables, an existing deployment manifest. With
    ``blobs`` (the node's IPFS store) checks that every pinned CID is still there."""
    data_dir = settings.resolved_data_dir
    manifest = read_manifest(archive)
    _check_compatible(manifest, settings)
    manifests = deployment_manifests(settings)
    with tempfile.TemporaryDirectory(prefix=".emr-restore-") as tmp:
        unpacked = Path(tmp)
        manifest = unpack_verified(archive, unpacked)
        in_use = _data_dir_in_use(data_dir)
        tables = _mysql_tables(settings) if manifest.index_backend == "mysql" else []
        present = [str(p) for r, p in manifests.items() if r in manifest.deployments and p.exists()]
        if (in_use or tables or present) and not force:
            what = []
            if in_use:
                what.append(f"{data_dir} holds {', '.join(in_use[:5])}")
            if tables:
                what.append(f"database {settings.storage.mysql_database} has {len(tables)} tables")
            if present:
                what.append(f"deployment manifests exist: {', '.join(present)}")
            raise BackupError(
                "the restore target is not empty (" + "; ".join(what) + "): stop the node "
                "and restore into an empty one, or pass --force to overwrite"
            )
        data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        restored: list[str] = []
        if force:
            for name in (*_SQLITE_FILES, "keystore.json"):
                for stale in (name, f"{name}-wal", f"{name}-shm", f"{name}-journal"):
                    (data_dir / stale).unlink(missing_ok=True)
            if (unpacked / "data" / "blobs").is_dir():
                shutil.rmtree(data_dir / "blobs", ignore_errors=True)
        if manifest.index_backend == "mysql":
            restored += _mysql_load(settings, unpacked / "mysql", tables)
        data = unpacked / "data"
        if data.is_dir():
            for item in sorted(data.iterdir()):
                if item.is_dir():
                    shutil.copytree(item, data_dir / item.name, dirs_exist_ok=True)
                else:
                    _place(item, data_dir / item.name)
                restored.append(str(data_dir / item.name))
        if manifest.hsm.get("file"):
            _place(unpacked / manifest.hsm["file"], data_dir / "keystore.json")
            restored.append(str(data_dir / "keystore.json"))
        for role, member in manifest.deployments.items():
            _place(unpacked / member, manifests[role], mode=0o644)
            restored.append(str(manifests[role]))
        report = RestoreReport(manifest, restored)
        if blobs is not None:
            cids = (unpacked / PINNED_CIDS).read_text().split()
            report.cids_checked = len(cids)
            report.cids_missing = [cid for cid in cids if not blobs.has(cid)]
    return report


# -- re-sync from the chain -----------------------------------------------------------------


def _bytes(value: object) -> bytes:
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    return bytes.fromhex(str(value).removeprefix("0x"))


def _mark_batches_anchored(
    *,
    index: RecordIndexAPI,
    chain: ChainClientAPI,
    since_block: int,
    fence: int | None,
) -> tuple[list[int], int, list[str]]:
    """Records the restored index holds as queued while the chain shows them anchored
    (mined after the backup): rebuild each batch's tree from the ``RecordAnchored`` logs
    (leaf order = log order), check it against the on-chain root, mark it anchored."""
    start = max(since_block, chain.deployment.block_number)
    by_batch: dict[int, list[tuple[bytes, int, bytes, int]]] = {}
    for event in chain.audit_events(actor=chain.hospital, from_block=start):
        if event.event != "RecordAnchored":
            continue
        by_batch.setdefault(int(event.args["batchId"]), []).append(
            (_bytes(event.args["recordId"]), event.block_number, event.tx_hash, event.timestamp)
        )
    marked: list[int] = []
    count = 0
    unresolved: list[str] = []
    for batch_id, entries in sorted(by_batch.items()):
        rows: list[RecordRow] = []
        missing = False
        for record_id, *_ in entries:
            try:
                rows.append(index.get_record(record_id))
            except RecordNotFound:
                missing = True
        waiting = [r for r in rows if index.get_receipt(r.record_id) is None]
        if not waiting:
            continue  # the archive already knew this batch
        info = chain.batch(batch_id)
        leaves = [record_leaf(r.record_id, r.patient, r.content_hash, r.previous_id) for r in rows]
        tree = MerkleTree(leaves) if rows and not missing else None
        if tree is None or info is None or info.root != tree.root:
            unresolved += ["0x" + r.record_id.hex() for r in waiting]
            continue
        _record_id, block, tx_hash, timestamp = entries[0]
        batch = AnchorBatch(
            batch_id=batch_id,
            root=tree.root,
            tx_hash=tx_hash,
            block_number=block,
            hospital=chain.hospital,
            count=len(rows),
            anchored_at=timestamp,
        )
        receipts = {
            row.record_id: AnchorReceipt(row.record_id, leaf, tree.proof(i), batch)
            for i, (row, leaf) in enumerate(zip(rows, leaves, strict=True))
        }
        index.mark_anchored(batch, receipts, fence)
        marked.append(batch_id)
        count += len(waiting)
    return marked, count, unresolved


def resync_from_chain(
    *,
    chain: ChainClientAPI,
    index: RecordIndexAPI,
    mirror: AuditMirrorAPI,
    since_block: int,
    fence: int | None,
    drop_cached_decisions: Callable[[], int] | None = None,
) -> ResyncReport:
    """Bring a restored node up to the chain's head (run before its workers start).

    ``since_block``: the chain height recorded in the archive (anchorings the archived
    index misses were mined above it). ``fence``: the worker lease this process holds.
    ``drop_cached_decisions`` empties a shared cache's consent decisions (Redis)."""
    head = chain.head_block()
    intents = recover_anchors(index=index, chain=chain, fence=fence)
    marked, count, unresolved = _mark_batches_anchored(
        index=index, chain=chain, since_block=since_block, fence=fence
    )
    blocks = 0
    while (advanced := sync_mirror(chain=chain, mirror=mirror)) > 0:
        blocks += advanced
    dropped = drop_cached_decisions() if drop_cached_decisions is not None else 0
    return ResyncReport(
        head=head,
        intents_resolved=intents,
        batches_marked=marked,
        records_marked=count,
        unresolved=unresolved,
        mirror_blocks=blocks,
        mirror=verify_mirror(chain=chain, mirror=mirror),
        cache_entries_dropped=dropped,
    )
