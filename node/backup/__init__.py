"""Backups of a hospital's node (``emr-node backup``) and their restore (``emr-node restore``).

An archive is one tar.gz holding a ``manifest.json`` (format, chain height, the sha256 of
every other member) and: the index and node state (SQLite files copied with SQLite's backup
API, or a MySQL dump taken inside one consistent-snapshot transaction), the embedded chain
and blobs where they live in the data directory, the deployment manifests (chain, zk,
wallets), the list of pinned CIDs and the software key store's *encrypted* file. Never a
passphrase, PIN, API token or key in clear; PKCS#11 keys stay in the token (the manifest
names the token only).
"""

from node.backup.archive import BackupError, BackupManifest, create_backup, read_manifest
from node.backup.restore import RestoreReport, ResyncReport, restore_backup, resync_from_chain

__all__ = [
    "BackupError",
    "BackupManifest",
    "RestoreReport",
    "ResyncReport",
    "create_backup",
    "read_manifest",
    "restore_backup",
    "resync_from_chain",
]
