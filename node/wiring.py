"""The only place that builds concrete backends and hands each package its settings."""

from __future__ import annotations

import logging
import os
import secrets
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from web3 import Web3
from web3.middleware import SignAndSendRawMiddlewareBuilder

from hsm.abc import KeyStoreAPI
from hsm.account import SignerAccount
from hsm.software import SoftwareKeyStore
from node.audit.abc import AccessLogQueueAPI
from node.audit.outbox import SQLiteAccessLogQueue
from node.auth.principal import Role
from node.auth.store import AuthStore
from node.chain.abc import ChainClientAPI
from node.chain.client import MAX_ACCESS_BATCH, Web3ChainClient
from node.chain.deploy import Deployment, deploy_contracts
from node.chain.embedded import EmbeddedChain
from node.coalescer import Coalescer
from node.directory import HospitalDirectory
from node.flows.anchor_records import anchor_pending
from node.flows.upload_record import UploadRequest, upload_records
from node.settings import Settings
from node.workers import BatchWorker
from storage.abc import BlobStoreAPI, CacheAPI, RecordIndexAPI
from storage.backends.local import LocalBlobStore
from storage.backends.memory import InMemoryLRUCache
from storage.backends.sqlite import SQLiteRecordIndex
from storage.backends.sqlite_blobs import SQLiteBlobStore
from storage.models import RecordRow

log = logging.getLogger(__name__)


@dataclass
class Node:
    """Every running component of one hospital's node."""

    settings: Settings
    keys: KeyStoreAPI
    blobs: BlobStoreAPI
    index: RecordIndexAPI
    cache: CacheAPI
    chain: ChainClientAPI
    auth: AuthStore
    directory: HospitalDirectory
    access_log: AccessLogQueueAPI
    anchorer: BatchWorker
    access_flusher: BatchWorker
    uploads: Coalescer[UploadRequest, RecordRow]
    notes: list[str] = field(default_factory=list)  # things to tell the operator at start
    _closers: list[object] = field(default_factory=list)
    _started: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def hospital(self) -> str:
        return self.chain.hospital

    def start(self) -> None:
        with self._lock:
            if not self._started:
                self.anchorer.start()
                self.access_flusher.start()
                self._started = True

    def stop(self) -> None:
        """Stop workers, flush what is queued (best effort), close everything."""
        with self._lock:
            self.uploads.close()  # commit in-flight uploads before the anchorer's last round
            self.anchorer.stop()
            self.access_flusher.stop()
            for worker in (self.anchorer, self.access_flusher):
                try:
                    worker.flush_now()
                except Exception:  # queues are durable: the next start drains them
                    log.exception("final %s flush failed", worker.name)
            for closable in reversed(self._closers):
                closable.close()  # type: ignore[attr-defined]
            self._closers.clear()


def _passphrase(settings: Settings, data_dir: Path, notes: list[str]) -> str:
    if settings.hsm.passphrase is not None:
        return settings.hsm.passphrase.get_secret_value()
    pass_file = data_dir / "keystore.pass"
    if not pass_file.exists():
        fd = os.open(pass_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(32))
        notes.append(
            f"generated a key-store passphrase in {pass_file}; for a real deployment set "
            "EMR_HSM__PASSPHRASE and delete that file"
        )
    return pass_file.read_text().strip()


def _open_keystore(settings: Settings, data_dir: Path, notes: list[str]) -> SoftwareKeyStore:
    path = data_dir / "keystore.json"
    passphrase = _passphrase(settings, data_dir, notes)
    if path.exists():
        return SoftwareKeyStore.open(path, passphrase)
    notes.append(f"created a software key store in {path} (master key encrypted at rest)")
    return SoftwareKeyStore.create(path, passphrase, scrypt_n=settings.hsm.scrypt_n)


def _bootstrap_admin_token(auth: AuthStore, data_dir: Path, notes: list[str]) -> None:
    """First start: one admin token, written 0600 for the operator (it is stored hashed)."""
    if auth.has_tokens():
        return
    token = auth.create_token("bootstrap-admin", Role.ADMIN)
    path = data_dir / "admin-token"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(token + "\n")
    notes.append(f"created an admin API token in {path}")


def build_embedded_node(settings: Settings) -> Node:
    """A node with no external services: py-evm chain, local blobs, SQLite, in-process cache,
    software key store — all persisted under ``settings.data_dir``."""
    data_dir = settings.resolved_data_dir
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    notes: list[str] = []
    closers: list[object] = []

    keys = _open_keystore(settings, data_dir, notes)
    closers.append(keys)
    account = SignerAccount(keys.signer())

    embedded = EmbeddedChain(
        data_dir / "chain.sqlite",
        funded_accounts={account.address: settings.chain.funded_balance_wei},
    )
    closers.append(embedded)
    w3: Web3 = embedded.web3
    w3.middleware_onion.inject(SignAndSendRawMiddlewareBuilder.build(account), layer=0)
    w3.eth.default_account = account.address

    manifest = data_dir / "deployment.json"
    if manifest.exists():
        deployment = Deployment.load(manifest)
    else:
        deployment = deploy_contracts(w3, [(account.address, settings.hospital_name)])
        deployment.save(manifest)
        notes.append(f"deployed the contracts on the embedded chain ({manifest})")
    chain = Web3ChainClient(w3, deployment, account)

    blobs: BlobStoreAPI = (
        SQLiteBlobStore(data_dir / "blobs.sqlite")
        if settings.storage.blob_backend == "sqlite"
        else LocalBlobStore(data_dir / "blobs")
    )
    index = SQLiteRecordIndex(data_dir / "index.sqlite")
    cache = InMemoryLRUCache(settings.storage.cache_max_bytes)
    auth = AuthStore(data_dir / "node.sqlite")
    access_log = SQLiteAccessLogQueue(data_dir / "node.sqlite")
    directory = HospitalDirectory(data_dir / "node.sqlite")
    closers += [blobs, index, cache, auth, access_log, directory]
    _bootstrap_admin_token(auth, data_dir, notes)

    cs = settings.chain

    def flush_anchors() -> int:
        batch = anchor_pending(index=index, chain=chain, limit=cs.anchor_batch_size)
        return 0 if batch is None else batch.count

    def flush_accesses() -> int:
        pending = access_log.pending(min(cs.anchor_batch_size, MAX_ACCESS_BATCH))
        if not pending:
            return 0
        chain.record_accesses([entry for _id, entry in pending])
        access_log.remove([i for i, _entry in pending])
        return len(pending)

    anchorer = BatchWorker(
        "anchorer", flush_anchors, interval=cs.anchor_interval, batch_size=cs.anchor_batch_size
    )

    def commit_uploads(requests: Sequence[UploadRequest]) -> list[RecordRow]:
        rows = upload_records(
            requests, hospital=chain.hospital, blobs=blobs, index=index, keys=keys
        )
        anchorer.queued(len(rows))
        return rows

    uploads: Coalescer[UploadRequest, RecordRow] = Coalescer(
        commit_uploads,
        window=settings.api.upload_batch_window,
        max_batch=settings.api.upload_max_batch,
        name="upload-commit",
    )

    return Node(
        settings=settings,
        keys=keys,
        blobs=blobs,
        index=index,
        cache=cache,
        chain=chain,
        auth=auth,
        directory=directory,
        access_log=access_log,
        anchorer=anchorer,
        uploads=uploads,
        access_flusher=BatchWorker(
            "access-log",
            flush_accesses,
            interval=cs.access_log_interval,
            batch_size=cs.anchor_batch_size,
        ),
        notes=notes,
        _closers=closers,
    )
