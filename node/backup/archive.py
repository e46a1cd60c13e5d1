"""``emr-node backup``: one consistent archive of a node's index and state.

Order matters while the node runs: the index and state first, then the blobs, then (on the
embedded default) the chain. A blob is written before its index row, so every row in the
archive has its blob; a batch anchored between the index copy and the chain copy is on the
archived chain and ``resync_from_chain`` marks it anchored after a restore. The chain
height is read *before* the index is copied: every anchoring the archived index misses was
mined above it.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import hashlib
import json
import os
import shutil
import sqlite3
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from node.exceptions import NodeError
from node.settings import Settings

FORMAT = "emr-node-backup/1"
MANIFEST = "manifest.json"
PINNED_CIDS = "pinned-cids.txt"
# Never archived: the generated key-store passphrase and the bootstrap admin token are
# secrets in clear (tokens are stored hashed in the database, which is archived).
NEVER_ARCHIVED = ("keystore.pass", "admin-token")
STATE_SQLITE = ("index.sqlite", "node.sqlite")  # the index (+ audit mirror) and node state
_CHUNK = 1 << 20


class BackupError(NodeError):
    """A backup could not be written, or an archive is damaged or not one of ours."""


@dataclass
class BackupManifest:
    format: str
    created_at: int
    mode: str
    index_backend: str
    blob_backend: str
    chain_backend: str
    hsm_backend: str
    chain_id: int
    block_height: int  # the chain head read before the index was copied
    members: dict[str, dict[str, Any]]  # name -> {"sha256": hex, "size": bytes}
    deployments: dict[str, str]  # chain / zk / wallets -> member name
    pinned_cids: int
    hsm: dict[str, Any] = field(default_factory=dict)  # token label / KEK versions, no secrets
    excluded: list[str] = field(default_factory=lambda: list(NEVER_ARCHIVED))

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> BackupManifest:
        data = json.loads(text)
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise BackupError(f"not an {FORMAT} archive")
        return cls(**data)


def deployment_manifests(settings: Settings) -> dict[str, Path]:
    """Where the node keeps its deployment manifests (the paths ``wiring`` uses)."""
    data_dir = settings.resolved_data_dir
    cs = settings.chain
    if cs.backend == "embedded":
        paths = {
            "chain": data_dir / "deployment.json",
            "zk": data_dir / "zk-deployment.json",
            "wallets": data_dir / "wallets-deployment.json",
        }
    else:
        base = cs.deployment_manifest or data_dir / "deployments" / f"{cs.network}.json"
        paths = {
            "chain": base,
            "zk": base.with_name(base.stem + ".zk.json"),
            "wallets": base.with_name(base.stem + ".wallets.json"),
        }
    if settings.zk.deployment_manifest is not None:
        paths["zk"] = settings.zk.deployment_manifest
    if settings.wallets.deployment_manifest is not None:
        paths["wallets"] = settings.wallets.deployment_manifest
    return {k: v.expanduser() for k, v in paths.items()}


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def sqlite_copy(source: Path, target: Path) -> None:
    """A consistent copy of a live SQLite database (SQLite's online backup API), as one
    self-contained file (rollback journal, not WAL)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    src = sqlite3.connect(source, timeout=10)
    try:
        try:  # a file another process keeps locked (the embedded chain) would block forever
            src.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.OperationalError as err:
            raise BackupError(
                f"{source} is locked ({err}): the embedded chain is locked by the running "
                "node; stop it (`emr-node run` / `emr-node worker`) and back up again"
            ) from None
        dst = sqlite3.connect(target)
        try:
            src.backup(dst)  # one step: a single read transaction over the whole file
            dst.execute("PRAGMA journal_mode=DELETE")
            dst.commit()
        finally:
            dst.close()
    finally:
        src.close()


# -- MySQL ------------------------------------------------------------------------------


def encode_value(value: Any) -> Any:
    """A MySQL column value as JSON (bytes, decimals and dates tagged)."""
    if isinstance(value, bytes | bytearray):
        return {"$b64": base64.b64encode(bytes(value)).decode()}
    if isinstance(value, decimal.Decimal):
        return {"$dec": str(value)}
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return {"$dt": value.isoformat()}
    if isinstance(value, dt.timedelta):
        return {"$td": value.total_seconds()}
    return value


def decode_value(value: Any) -> Any:
    if isinstance(value, dict):
        if "$b64" in value:
            return base64.b64decode(value["$b64"])
        if "$dec" in value:
            return decimal.Decimal(value["$dec"])
        if "$dt" in value:
            return value["$dt"]  # MySQL parses ISO dates and times
        if "$td" in value:
            return dt.timedelta(seconds=value["$td"])
    return value


def mysql_connect(settings: Settings, *, database: bool = True) -> Any:
    import pymysql

    s = settings.storage
    return pymysql.connect(
        host=s.mysql_host,
        port=s.mysql_port,
        user=s.mysql_user,
        password=s.mysql_password.get_secret_value(),
        database=s.mysql_database if database else None,
        autocommit=False,
        charset="utf8mb4",
    )


def mysql_dump(settings: Settings, target: Path) -> tuple[list[str], list[int]]:
    """Dump every table of the node's database inside ONE consistent-snapshot transaction
    (REPEATABLE READ): ``<table>.sql`` (its CREATE TABLE) and ``<table>.jsonl`` (its rows,
    one JSON array per line, the first line the column names). Returns the pinned CIDs and
    the KEK versions in use, read in the same snapshot."""
    import pymysql.cursors

    target.mkdir(parents=True, exist_ok=True)
    conn = mysql_connect(settings)
    try:
        with conn.cursor() as cur:
            cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
            cur.execute("SHOW FULL TABLES WHERE Table_type = 'BASE TABLE'")
            tables = sorted(str(row[0]) for row in cur.fetchall())
            for table in tables:
                cur.execute(f"SHOW CREATE TABLE `{table}`")
                (target / f"{table}.sql").write_text(str(cur.fetchone()[1]) + "\n")
            cids: list[str] = []
            keks: list[int] = []
            if "records" in tables:
                cur.execute("SELECT cid FROM records WHERE erased_at IS NULL ORDER BY seq")
                cids = [str(row[0]) for row in cur.fetchall()]
                cur.execute("SELECT DISTINCT kek_version FROM records ORDER BY kek_version")
                keks = [int(row[0]) for row in cur.fetchall()]
        for table in tables:
            with (
                conn.cursor(pymysql.cursors.SSCursor) as stream,
                (target / f"{table}.jsonl").open("w") as out,
            ):
                stream.execute(f"SELECT * FROM `{table}`")
                out.write(json.dumps([d[0] for d in stream.description]) + "\n")
                for row in stream:
                    out.write(json.dumps([encode_value(v) for v in row]) + "\n")
        conn.rollback()  # read only: ends the snapshot
    finally:
        conn.close()
    return cids, keks


# -- the archive -----------------------------------------------------------------------------


def _chain_head_rpc(settings: Settings) -> tuple[int, int]:
    from node.chain.external import connect_rpc

    w3 = connect_rpc(settings.chain.rpc_url)
    return int(w3.eth.chain_id), int(w3.eth.block_number)


def _chain_head_embedded(chain_copy: Path) -> tuple[int, int]:
    from node.chain.embedded import EmbeddedChain

    chain = EmbeddedChain(chain_copy, funded_accounts={})
    try:
        return int(chain.web3.eth.chain_id), int(chain.web3.eth.block_number)
    finally:
        chain.close()


def _sqlite_index_facts(index_copy: Path) -> tuple[list[str], list[int]]:
    conn = sqlite3.connect(index_copy)
    try:
        cids = [
            str(r[0])
            for r in conn.execute("SELECT cid FROM records WHERE erased_at IS NULL ORDER BY seq")
        ]
        keks = [
            int(r[0])
            for r in conn.execute("SELECT DISTINCT kek_version FROM records ORDER BY kek_version")
        ]
        return cids, keks
    finally:
        conn.close()


def _members(stage: Path) -> Iterator[Path]:
    for path in sorted(stage.rglob("*")):
        if path.is_file() and path.name != MANIFEST:
            yield path


def create_backup(settings: Settings, out: Path) -> BackupManifest:
    """Write an archive of the node configured by ``settings`` to ``out`` (a .tar.gz),
    while the node runs or not. Raises BackupError."""
    data_dir = settings.resolved_data_dir
    s = settings.storage
    if not data_dir.is_dir():
        raise BackupError(f"no data directory at {data_dir}")
    out = out.expanduser().resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    embedded = settings.chain.backend == "embedded"
    with tempfile.TemporaryDirectory(prefix=".emr-backup-", dir=out.parent) as tmp:
        stage = Path(tmp) / "archive"
        stage.mkdir()
        chain_id, height = (0, -1) if embedded else _chain_head_rpc(settings)
        # 1. index and node state (one snapshot per SQLite file; one for all of MySQL)
        if s.index_backend == "mysql":
            cids, keks = mysql_dump(settings, stage / "mysql")
        else:
            for name in STATE_SQLITE:
                if not (data_dir / name).exists():
                    raise BackupError(f"{data_dir / name} is missing: is this a node's data dir?")
                sqlite_copy(data_dir / name, stage / "data" / name)
            cids, keks = _sqlite_index_facts(stage / "data" / "index.sqlite")
        # 2. blobs kept in the data directory (IPFS blobs stay pinned on the IPFS nodes)
        if s.blob_backend == "sqlite" and (data_dir / "blobs.sqlite").exists():
            sqlite_copy(data_dir / "blobs.sqlite", stage / "data" / "blobs.sqlite")
        elif s.blob_backend == "files" and (data_dir / "blobs").is_dir():
            shutil.copytree(data_dir / "blobs", stage / "data" / "blobs")
        # 3. the embedded chain, last
        if embedded:
            sqlite_copy(data_dir / "chain.sqlite", stage / "data" / "chain.sqlite")
            chain_id, height = _chain_head_embedded(stage / "data" / "chain.sqlite")
            for leftover in (stage / "data").glob("chain.sqlite-*"):
                leftover.unlink()  # the head read may leave a WAL beside the copy
        # 4. deployment manifests, pinned CIDs, the key store (encrypted) or its token's name
        deployments: dict[str, str] = {}
        for role, path in deployment_manifests(settings).items():
            if path.exists():
                name = f"deployments/{role}.json"
                (stage / "deployments").mkdir(exist_ok=True)
                shutil.copyfile(path, stage / name)
                deployments[role] = name
        if "chain" not in deployments:
            raise BackupError("no deployment manifest: start the node once before a backup")
        (stage / PINNED_CIDS).write_text("".join(f"{cid}\n" for cid in cids))
        hsm: dict[str, Any] = {"backend": settings.hsm.backend, "kek_versions_in_use": keks}
        if settings.hsm.backend == "pkcs11":
            # The keys stay in the HSM: only which token holds them.
            hsm.update(token_label=settings.hsm.token_label, module=str(settings.hsm.pkcs11_module))
        else:
            store = data_dir / "keystore.json"
            if not store.exists():
                raise BackupError(f"no software key store at {store}")
            (stage / "keystore").mkdir()
            shutil.copyfile(store, stage / "keystore" / "keystore.json")  # encrypted at rest
            hsm["file"] = "keystore/keystore.json"
            hsm["passphrase"] = "not archived: keep EMR_HSM__PASSPHRASE / keystore.pass apart"
        manifest = BackupManifest(
            format=FORMAT,
            created_at=int(time.time()),
            mode=settings.mode,
            index_backend=s.index_backend,
            blob_backend=s.blob_backend,
            chain_backend=settings.chain.backend,
            hsm_backend=settings.hsm.backend,
            chain_id=chain_id,
            block_height=height,
            members={
                str(p.relative_to(stage)): {"sha256": sha256_file(p), "size": p.stat().st_size}
                for p in _members(stage)
            },
            deployments=deployments,
            pinned_cids=len(cids),
            hsm=hsm,
        )
        (stage / MANIFEST).write_text(manifest.to_json())
        partial = Path(tmp) / "archive.tar.gz"
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as raw:
            with tarfile.open(fileobj=raw, mode="w:gz") as tar:
                tar.add(stage / MANIFEST, arcname=MANIFEST)
                for path in _members(stage):
                    tar.add(path, arcname=str(path.relative_to(stage)))
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(partial, out)
    return manifest


def read_manifest(archive: Path) -> BackupManifest:
    """The manifest of ``archive`` (not yet checked against its members)."""
    try:
        with tarfile.open(archive, "r:gz") as tar:
            member = tar.extractfile(MANIFEST)
            if member is None:
                raise BackupError(f"{archive} has no {MANIFEST}")
            return BackupManifest.from_json(member.read().decode())
    except (OSError, tarfile.TarError, KeyError, ValueError, TypeError) as err:
        raise BackupError(f"cannot read {archive}: {err}") from None
