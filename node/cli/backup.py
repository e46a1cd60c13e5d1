"""``emr-node backup`` and ``emr-node restore`` (thin: node/backup does the work)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from node.settings import Settings

DataDir = Annotated[
    Path | None, typer.Option("--data-dir", help="default: $EMR_DATA_DIR or ~/.emr-node")
]


def _settings(data_dir: Path | None) -> Settings:
    from node.cli.main import _settings as settings_of

    return settings_of(data_dir)


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def backup(
    out: Annotated[Path, typer.Argument(help="the archive to write (.tar.gz)")],
    data_dir: DataDir = None,
) -> None:
    """Write a consistent archive of the node (index and state, embedded chain and blobs,
    deployment manifests, pinned CIDs, the key store only encrypted); safe while it runs."""
    from node.backup.archive import NEVER_ARCHIVED, BackupError, create_backup
    from storage.exceptions import StorageError

    settings = _settings(data_dir)
    try:
        manifest = create_backup(settings, out)
    except (BackupError, StorageError, OSError) as err:
        _fail(f"backup failed: {err}")
        return
    except Exception as err:  # pymysql / web3 errors: name them, no traceback
        _fail(f"backup failed: {type(err).__name__}: {err}")
        return
    typer.echo(
        f"wrote {out}: {len(manifest.members)} members, chain {manifest.chain_id} at block "
        f"{manifest.block_height}, {manifest.pinned_cids} pinned CIDs"
    )
    left = [n for n in NEVER_ARCHIVED if (settings.resolved_data_dir / n).exists()]
    if left:
        typer.echo(
            f"not archived (secrets in clear): {', '.join(left)}; keep the key-store "
            "passphrase and an admin token apart from the archive"
        )


def restore(
    archive: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    data_dir: DataDir = None,
    force: Annotated[
        bool, typer.Option(help="overwrite a data directory / database that holds data")
    ] = False,
    resync: Annotated[
        bool, typer.Option(help="re-sync from the chain after restoring (the default)")
    ] = True,
) -> None:
    """Restore an archive into a stopped node (checks every sha256 first), then re-sync
    from the chain: anchors, audit mirror, cached consent decisions."""
    from node.backup.archive import BackupError
    from node.backup.restore import restore_backup
    from node.wiring import open_blob_store
    from storage.exceptions import StorageError

    settings = _settings(data_dir)
    blobs = open_blob_store(settings) if settings.storage.blob_backend == "ipfs" else None
    try:
        report = restore_backup(settings, archive, force=force, blobs=blobs)
    except (BackupError, StorageError, OSError) as err:
        _fail(f"restore failed: {err}")
        return
    finally:
        if blobs is not None:
            blobs.close()
    m = report.manifest
    typer.echo(f"restored {len(report.restored)} items from a backup at block {m.block_height}")
    failed = False
    if report.cids_checked:
        typer.echo(
            f"pinned CIDs: {report.cids_checked - len(report.cids_missing)} of "
            f"{report.cids_checked} present"
        )
        failed |= bool(report.cids_missing)
    if resync:
        failed |= not _resync(settings, m.block_height)
    if failed:
        raise typer.Exit(1)


def _drop_cached_decisions(settings: Settings) -> int:
    from storage.backends.redis import RedisCache

    s = settings.storage
    password = s.redis_password.get_secret_value() if s.redis_password is not None else None
    cache = RedisCache(s.redis_url, username=s.redis_username, password=password)
    try:
        return cache.delete_prefix("access:")
    finally:
        cache.close()


def _resync(settings: Settings, since_block: int) -> bool:
    from node.backup.restore import resync_from_chain
    from node.cli.main import _build

    node = _build(settings)
    try:
        redis = settings.storage.cache_backend == "redis"
        report = resync_from_chain(
            chain=node.chain,
            index=node.index,
            mirror=node.mirror,
            since_block=since_block,
            fence=node.lease.fence if node.lease is not None else None,
            drop_cached_decisions=(lambda: _drop_cached_decisions(settings)) if redis else None,
        )
    finally:
        node.stop()
    mirror = report.mirror
    typer.echo(
        f"re-synced to block {report.head}: {report.intents_resolved} anchor intents resolved, "
        f"{report.records_marked} records in {len(report.batches_marked)} batches marked "
        f"anchored from the chain, audit mirror +{report.mirror_blocks} blocks "
        f"({mirror.checked} events checked), {report.cache_entries_dropped} cached consent "
        "decisions dropped"
    )
    if report.unresolved:
        typer.echo(
            f"{len(report.unresolved)} records anchored after the backup in batches with "
            "records the archive lacks: they are anchored again"
        )
    if not mirror.consistent:
        typer.echo(
            f"error: the audit mirror differs from the chain: {len(mirror.missing)} missing, "
            f"{len(mirror.extra)} extra, {len(mirror.different)} different",
            err=True,
        )
    return mirror.consistent


def register(app: typer.Typer) -> None:
    app.command("backup")(backup)
    app.command("restore")(restore)
