"""The only place that builds concrete backends and hands each package its settings."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import secrets
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from web3 import Web3

from hsm.abc import KeyStoreAPI
from hsm.account import SignerAccount
from hsm.exceptions import HSMError
from hsm.software import SoftwareKeyStore
from node.audit.abc import AccessLogQueueAPI, KeyAuditLogAPI
from node.audit.key_log import GroupCommitKeyAuditLog, SqlKeyAuditLog
from node.audit.keystore import AuditedKeyStore
from node.audit.mirror import sync_mirror
from node.audit.outbox import GroupCommitAccessLogQueue, SqlAccessLogQueue
from node.auth.principal import Role
from node.auth.store import AuthStore
from node.chain.abc import ChainClientAPI, ContractSignaturesAPI, RecoverableWalletsAPI
from node.chain.client import Web3ChainClient
from node.chain.deploy import Deployment
from node.chain.embedded import EmbeddedChain
from node.chain.external import ensure_deployment
from node.chain.sender import RemoteTransactionSender
from node.chain.wallets import Web3ContractSignatures
from node.chain.worker_endpoint import WorkerEndpoint, embedded_rpc
from node.chain.worker_rpc import connect_worker_rpc
from node.coalescer import Coalescer
from node.consent.abc import AccessDeciderAPI
from node.consent.decisions import CachedAccessDecider
from node.consent.relay_queue import ConsentRelayQueue
from node.directory import HospitalDirectory
from node.exceptions import Conflict, NodeError
from node.flows.anchor_key_audit import KeyAuditAnchoring
from node.flows.anchor_records import anchor_pending, recover_anchors
from node.flows.commit_uploads import ANCHORER, UploadCommitter
from node.flows.erase_record import ERASER, MAX_TOMBSTONE_BATCH, finish_erasures
from node.flows.log_accesses import ACCESS_LOG_WORKER, flush_access_log
from node.flows.relay_consent import RELAY_WORKER, drain_relays
from node.flows.rotate_keys import REWRAP_WORKER, KekRewrapJob
from node.flows.rotate_signer import finish_signer_rotation
from node.flows.upload_record import HospitalNamespace, UploadRequest
from node.hl7.mllp import MllpListener
from node.hl7.service import Hl7Service
from node.listeners import ListenerAPI
from node.observability.metrics import (
    NULL_METRICS,
    MeteredAccessLog,
    MeteredCache,
    MeteredKeyStore,
    MetricsAPI,
    PrometheusMetrics,
)
from node.patients import PatientDirectory
from node.roles.abc import BackgroundWorkersAPI
from node.roles.control import InProcessWorkers, RemoteWorkers
from node.roles.lease import LeaseKeeper
from node.roles.locator import WorkerLocator
from node.settings import Settings
from node.throttle import CallerThrottles
from node.workers import BatchWorker
from node.zkaccess.service import ZkAccessService
from storage.abc import (
    AuditMirrorAPI,
    BlobStoreAPI,
    CacheAPI,
    HealthCheckAPI,
    RecordIndexAPI,
    WorkerLeaseAPI,
)
from storage.backends.authenticated_cache import AuthenticatedCache
from storage.backends.local import LocalBlobStore
from storage.backends.memory import InMemoryLRUCache
from storage.backends.sqlite import SQLiteRecordIndex
from storage.backends.sqlite_blobs import SQLiteBlobStore
from storage.backends.sqlite_mirror import SQLiteAuditMirror
from storage.models import AnchorBatch, RecordRow
from storage.sql import SqlDatabaseAPI

log = logging.getLogger(__name__)

# KEK re-wrap worker: records per round, seconds between rounds, and how long an old KEK
# must have had no record before it is destroyed (longer than any upload in flight).
REWRAP_BATCH_SIZE = 500
REWRAP_INTERVAL = 1.0
KEK_RETIRE_GRACE = 300.0


WORKER_LEASE = "worker"  # the lease row naming this hospital's worker role
# Label of the worker endpoint's shared secret in the key store's derive_secret.
WORKER_SECRET_LABEL = "worker-endpoint v1"

NodeRole = Literal["all", "api", "worker"]


@dataclass
class Node:
    """Every running component of one hospital's node, in one of three roles:

    - ``all``: one process with everything (tests, small sites): routes and workers;
    - ``api``: an API process: routes only; the chain is read over JSON-RPC and written
      through the worker role, and the background workers run there;
    - ``worker``: the worker role: every background worker and the hospital's transaction
      sender, no routes.
    """

    settings: Settings
    role: NodeRole
    keys: KeyStoreAPI
    blobs: BlobStoreAPI
    index: RecordIndexAPI
    mirror: AuditMirrorAPI
    cache: CacheAPI
    access: AccessDeciderAPI
    chain: ChainClientAPI
    auth: AuthStore
    directory: HospitalDirectory
    patients: PatientDirectory
    access_log: AccessLogQueueAPI
    relays: ConsentRelayQueue
    # Token buckets by caller (API token, wallet, anonymous; hospital-wide); None when off.
    throttles: CallerThrottles | None
    uploads: Coalescer[UploadRequest, RecordRow]
    # Re-wraps data keys after a KEK rotation and destroys KEKs nothing refers to any more.
    kek_rewrap: KekRewrapJob
    # Hash-chained log of key operations (its head is anchored by the key-audit worker).
    key_audit: KeyAuditLogAPI
    # What routes may ask of the background workers, in this process or the worker role.
    background: BackgroundWorkersAPI
    # The background workers running in this process (none in an API process), built from
    # one list (``_background_workers``): started, stopped and shown in /health from it.
    workers: tuple[BatchWorker, ...] = ()
    zk: ZkAccessService | None = None  # anonymous reads with proofs; None when disabled
    # Patients' RecoverableWallets (guardian recovery); None when wallets.enabled is off.
    wallets: RecoverableWalletsAPI | None = None
    # ERC-1271 checks (contract wallets signing in); None only for hand-built nodes.
    signatures: ContractSignaturesAPI | None = None
    # Components that depend on a service that can be down, probed by /health.
    health_checks: dict[str, HealthCheckAPI] = field(default_factory=dict)
    # issue 14: what flows, workers and routes record (Prometheus when metrics are on).
    metrics: MetricsAPI = NULL_METRICS
    notes: list[str] = field(default_factory=list)  # things to tell the operator at start
    # The lease making this process the hospital's only worker (roles all and worker).
    lease: LeaseKeeper | None = None
    # The worker role's internal endpoint (chain reads, sends, wakes, status); it serves
    # from construction, so API processes can reach the chain as soon as the node is built.
    endpoint: WorkerEndpoint | None = None
    # HL7 v2 and DICOM listeners (roles all and worker; only those enabled in settings).
    listeners: tuple[ListenerAPI, ...] = ()
    _closers: list[object] = field(default_factory=list)
    _started: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def hospital(self) -> str:
        return self.chain.hospital

    def worker(self, name: str) -> BatchWorker:
        """The background worker ``name`` running in this process."""
        for w in self.workers:
            if w.name == name:
                return w
        raise LookupError(f"no background worker {name!r} runs in this {self.role} process")

    # Shorthands for tests and maintenance commands in a role-"all" process.
    @property
    def anchorer(self) -> BatchWorker:
        return self.worker(ANCHORER)

    @property
    def access_flusher(self) -> BatchWorker:
        return self.worker(ACCESS_LOG_WORKER)

    @property
    def relay_worker(self) -> BatchWorker:
        return self.worker(RELAY_WORKER)

    @property
    def mirror_worker(self) -> BatchWorker:
        return self.worker("audit-mirror")

    @property
    def rewrap_worker(self) -> BatchWorker:
        return self.worker(REWRAP_WORKER)

    @property
    def eraser(self) -> BatchWorker:
        return self.worker(ERASER)

    @property
    def key_audit_anchorer(self) -> BatchWorker:
        return self.worker("key-audit-anchor")

    def start(self) -> None:
        with self._lock:
            if not self._started:
                for worker in self.workers:
                    worker.start()
                for listener in self.listeners:
                    listener.start()
                self._started = True

    def fenced_out(self) -> None:
        """The lease was lost (another worker holds it now): stop sending at once."""
        log.error("this process lost the worker lease: its background workers stop")
        for worker in self.workers:
            worker.stop()

    def stop(self) -> None:
        """Stop workers, flush what is queued (best effort), close everything."""
        with self._lock:
            for listener in self.listeners:
                listener.stop()  # no new messages while the uploads drain
            self.uploads.close()  # commit in-flight uploads before the anchorer's last round
            if self.zk is not None:
                self.zk.close()
            for worker in self.workers:
                worker.stop()
            holds_lease = self.lease is None or self.lease.held
            for worker in self.workers:
                if worker.name == REWRAP_WORKER or not holds_lease:
                    continue  # resumable backlog / fenced out: the holder goes on
                try:
                    worker.flush_now()
                except Exception:  # queues are durable: the next start drains them
                    log.exception("final %s flush failed", worker.name)
            if self.lease is not None:
                self.lease.stop()  # released: a standby worker takes over at once
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


def _pkcs11_pin(settings: Settings) -> str:
    hsm = settings.hsm
    if hsm.pin is not None and hsm.pin_file is not None:
        raise NodeError("set either EMR_HSM__PIN or EMR_HSM__PIN_FILE, not both")
    if hsm.pin is not None:
        return hsm.pin.get_secret_value()
    if hsm.pin_file is None:
        raise NodeError("the pkcs11 key store needs a PIN: set EMR_HSM__PIN or EMR_HSM__PIN_FILE")
    pin_file = hsm.pin_file.expanduser()
    try:
        if pin_file.stat().st_mode & 0o077:
            log.warning("HSM PIN file %s is accessible to other users; chmod 600 it", pin_file)
        return pin_file.read_text().rstrip("\r\n")
    except OSError as exc:
        raise NodeError(f"cannot read the HSM PIN file {pin_file}: {exc.strerror}") from None


def _open_keystore(settings: Settings, data_dir: Path, notes: list[str]) -> KeyStoreAPI:
    if settings.hsm.backend == "pkcs11":
        from hsm.pkcs11 import Pkcs11KeyStore  # python-pkcs11 only when configured

        store = Pkcs11KeyStore.open(
            settings.hsm.pkcs11_module, settings.hsm.token_label, _pkcs11_pin(settings)
        )
        notes.append(
            f"key store: PKCS#11 token {settings.hsm.token_label!r} "
            f"(KEK versions {store.kek_versions()})"
        )
        return store
    path = data_dir / "keystore.json"
    passphrase = _passphrase(settings, data_dir, notes)
    if path.exists():
        return SoftwareKeyStore.open(path, passphrase)
    notes.append(f"created a software key store in {path} (master key encrypted at rest)")
    return SoftwareKeyStore.create(path, passphrase, scrypt_n=settings.hsm.scrypt_n)


def _bootstrap_admin_token(auth: AuthStore, data_dir: Path, notes: list[str]) -> None:
    """First start, or no live admin token left (all revoked or expired): one admin token
    that never expires, written 0600 for the operator (it is stored hashed)."""
    if auth.has_live_admin():
        return
    token = auth.create_token("bootstrap-admin", Role.ADMIN)
    path = data_dir / "admin-token"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(token + "\n")
    notes.append(f"created an admin API token in {path}")


def _blob_store(
    settings: Settings, data_dir: Path, health: dict[str, HealthCheckAPI] | None = None
) -> BlobStoreAPI:
    s = settings.storage
    if s.blob_backend == "ipfs":
        from storage.backends.ipfs import IpfsClusterBlobStore

        ipfs = IpfsClusterBlobStore(
            s.ipfs_nodes, replication_min=s.replication_min, replication_max=s.replication_max
        )
        if health is not None:
            health["blobs"] = ipfs
        return ipfs
    if s.blob_backend == "files":
        return LocalBlobStore(data_dir / "blobs")
    return SQLiteBlobStore(data_dir / "blobs.sqlite")


def _record_index(settings: Settings, data_dir: Path) -> RecordIndexAPI:
    s = settings.storage
    if s.index_backend == "mysql":
        from storage.backends.mysql import MySQLRecordIndex

        return MySQLRecordIndex(
            host=s.mysql_host,
            port=s.mysql_port,
            user=s.mysql_user,
            password=s.mysql_password.get_secret_value(),
            database=s.mysql_database,
            pool_size=s.mysql_pool_size,
            create_database_if_missing=True,
        )
    return SQLiteRecordIndex(data_dir / "index.sqlite")


def _state_database(
    settings: Settings, data_dir: Path, closers: list[object]
) -> Path | SqlDatabaseAPI:
    """Where the node's shared state lives: one MySQL pool for every store in production;
    on SQLite a path, so each store keeps its own connection (one shared connection would
    serialise the stores of a process)."""
    s = settings.storage
    if s.index_backend != "mysql":
        return data_dir / "node.sqlite"
    from storage.sql import MySQLDatabase

    state = MySQLDatabase(
        host=s.mysql_host,
        port=s.mysql_port,
        user=s.mysql_user,
        password=s.mysql_password.get_secret_value(),
        database=s.mysql_database,
        pool_size=s.mysql_pool_size,
        create_database_if_missing=True,
    )
    closers.append(state)  # closed after the stores built on it (closers run in reverse)
    return state


def _redis_credentials(settings: Settings) -> dict[str, str | None]:
    s = settings.storage
    password = s.redis_password.get_secret_value() if s.redis_password is not None else None
    return {"username": s.redis_username, "password": password}


# Label of the cache entries' HMAC key in the key store's derive_secret.
CACHE_KEY_LABEL = "cache-integrity v1"


def _cache_key(settings: Settings, keys: KeyStoreAPI) -> bytes:
    """The key authenticating cache entries: storage.cache_key, or derived from the key
    store (the same in every process of the node, never stored in the cache)."""
    if settings.storage.cache_key is not None:
        return bytes.fromhex(settings.storage.cache_key.get_secret_value())
    try:
        return keys.derive_secret(CACHE_KEY_LABEL)
    except HSMError as err:
        raise NodeError(
            f"the key store cannot derive the cache integrity key ({err}); set "
            "EMR_STORAGE__CACHE_KEY to 64 hex digits, the same on every process of the node"
        ) from None


def _cache(
    settings: Settings,
    keys: KeyStoreAPI,
    health: dict[str, HealthCheckAPI],
    metrics: MetricsAPI = NULL_METRICS,
) -> CacheAPI:
    """The hot cache; every entry is authenticated, so whoever can write to Redis cannot
    plant a consent decision or a blob (a forged entry is a miss)."""
    inner: CacheAPI
    if settings.storage.cache_backend == "redis":
        from storage.backends.redis import RedisCache

        redis_cache = RedisCache(settings.storage.redis_url, **_redis_credentials(settings))
        try:
            redis_cache.check_access()  # wrong credentials stop the start, clearly
        except BaseException:
            redis_cache.close()
            raise
        health["cache"] = redis_cache
        inner = redis_cache
    else:
        inner = InMemoryLRUCache(settings.storage.cache_max_bytes)
    try:
        # Hits and misses counted at the backend (emr_cache_requests_total).
        return AuthenticatedCache(MeteredCache(inner, metrics), _cache_key(settings, keys))
    except BaseException:
        inner.close()
        raise


def _web3(
    settings: Settings, account: SignerAccount, data_dir: Path, closers: list[object]
) -> tuple[Web3, EmbeddedChain | None]:
    """The chain as the worker role (or a role-"all" process) sees it: the external node's
    JSON-RPC, or the embedded chain hosted in this process."""
    if settings.chain.backend == "rpc":
        from node.chain.external import connect_rpc, fund_account

        w3 = connect_rpc(settings.chain.rpc_url)
        if settings.chain.fund_dev_account:
            fund_account(w3, account.address, settings.chain.funded_balance_wei)
        return w3, None
    embedded = EmbeddedChain(
        data_dir / "chain.sqlite",
        funded_accounts={account.address: settings.chain.funded_balance_wei},
    )
    closers.append(embedded)
    # No signing middleware: Web3ChainClient signs every transaction itself.
    return embedded.web3, embedded


def _api_web3(settings: Settings, locator: WorkerLocator, secret: bytes) -> Web3:
    """The chain as an API process sees it: the external node's JSON-RPC, or the embedded
    chain through the worker role that hosts it (no API process executes EVM code)."""
    if settings.chain.backend == "rpc":
        from node.chain.external import connect_rpc

        return connect_rpc(settings.chain.rpc_url)
    return connect_worker_rpc(locator, secret)  # follows the lease holder


def _manifest_path(settings: Settings, data_dir: Path) -> Path:
    cs = settings.chain
    if cs.backend == "embedded":
        return data_dir / "deployment.json"
    return cs.deployment_manifest or data_dir / "deployments" / f"{cs.network}.json"


def _existing_deployment(settings: Settings, w3: Web3, data_dir: Path) -> Deployment:
    """An API process never deploys: the worker role did, and wrote the manifest."""
    manifest = _manifest_path(settings, data_dir)
    if not manifest.exists():
        raise NodeError(
            f"no deployment manifest at {manifest}: start the worker role first "
            "(`emr-node worker`, or `emr-node run`, which starts it)"
        )
    deployment = Deployment.from_json(manifest.read_text())
    chain_id = int(w3.eth.chain_id)
    if deployment.chain_id != chain_id:
        raise NodeError(
            f"{manifest} is for chain {deployment.chain_id}, the node is on chain {chain_id}"
        )
    return deployment


def _worker_endpoint(
    settings: Settings,
    *,
    embedded: EmbeddedChain | None,
    chain: Web3ChainClient,
    background: BackgroundWorkersAPI,
    lease: LeaseKeeper | None,
    secret: bytes,
) -> WorkerEndpoint:
    """The worker role's internal endpoint: chain reads (embedded chain only), the
    hospital's transaction sends, wakes and status for the API processes."""

    def status() -> dict[str, object]:
        return {
            "holder": lease.holder if lease is not None else None,
            "fence": lease.fence if lease is not None else None,
            "address": chain.hospital,
            "workers": {
                name: {"running": s.running, "last_error": s.last_error}
                for name, s in background.status().items()
            },
        }

    def wake(name: str) -> bool:
        try:
            background.wake(name)
        except ValueError:
            return False
        return True

    ws = settings.worker
    return WorkerEndpoint(
        rpc=embedded_rpc(embedded.web3) if embedded is not None else None,
        sender=chain.sender,
        wake=wake,
        status=status,
        secret=secret,
        host=ws.host,
        port=ws.port,
    )


def _deployment(
    settings: Settings, w3: Web3, account: SignerAccount, data_dir: Path, notes: list[str]
) -> Deployment:
    manifest = _manifest_path(settings, data_dir)
    existed = manifest.exists()
    deployment = ensure_deployment(
        w3,
        manifest,
        account,
        [(account.address, settings.hospital_name)],
        network=settings.chain.network,
    )
    if not existed:
        notes.append(f"deployed the contracts on chain {deployment.chain_id} ({manifest})")
    return deployment


def _zk_service(
    settings: Settings,
    *,
    data_dir: Path,
    w3: Web3,
    account: SignerAccount,
    chain: Web3ChainClient,
    index: RecordIndexAPI,
    blobs: BlobStoreAPI,
    keys: KeyStoreAPI,
    cache: CacheAPI,
    notes: list[str],
    deploy: bool = True,
) -> ZkAccessService | None:
    """ClinicianAccess keys (a dev setup or the consortium's ceremony), the ZK contracts and
    the credential tree mirror. Without ``deploy`` (an API process) the contracts must have
    been deployed by the worker role."""
    zs = settings.zk
    if not zs.enabled:
        return None
    from node.chain.zk_gate import Web3ZkGate
    from node.zkaccess.credential_mirror import CredentialMirror
    from node.zkaccess.deployment import ensure_zk_deployment
    from node.zkaccess.service import ZkKeys
    from zk.artifacts import MANIFEST, PROVING_KEY, VERIFICATION_KEY, key_dir, read_manifest
    from zk.registry import get_circuit
    from zk.setup import dev_setup, import_ceremony
    from zk.verifier import Groth16Verifier

    spec = get_circuit("clinician_access")
    if zs.keys == "dev":
        if settings.mode == "production" and not zs.allow_dev_keys_in_production:
            raise NodeError(
                "production mode needs the consortium's ceremony keys for zero-knowledge "
                "access (EMR_ZK__KEYS=ceremony with EMR_ZK__CEREMONY_ZKEY and "
                "EMR_ZK__CEREMONY_VK); EMR_ZK__ALLOW_DEV_KEYS_IN_PRODUCTION=true overrides"
            )
        artifacts = zs.keys_dir.expanduser()
        if not (key_dir(spec, artifacts) / MANIFEST).exists():
            dev_setup(spec, artifacts)
    else:
        assert zs.ceremony_zkey is not None and zs.ceremony_vk is not None  # validated
        artifacts = data_dir / "zk"
        directory = key_dir(spec, artifacts)
        if (
            not (directory / MANIFEST).exists()
            or read_manifest(directory).zkey_sha256
            != hashlib.sha256(zs.ceremony_zkey.read_bytes()).hexdigest()
        ):
            import_ceremony(spec, zs.ceremony_zkey, zs.ceremony_vk, artifacts)
    # The node itself only verifies: it reads the verification key and leaves the proving
    # key on disk for clinicians to download.
    directory = key_dir(spec, artifacts)
    key_manifest = read_manifest(directory)
    if key_manifest.circuit_hash != spec.circuit_hash:
        raise NodeError(f"the ZK keys in {directory} are for another version of the circuit")
    vk_json = (directory / VERIFICATION_KEY).read_text(encoding="utf-8")
    cs = settings.chain
    if zs.deployment_manifest is not None:
        manifest = zs.deployment_manifest
    elif cs.backend == "embedded":
        manifest = data_dir / "zk-deployment.json"
    else:
        base = cs.deployment_manifest or data_dir / "deployments" / f"{cs.network}.json"
        manifest = base.with_name(base.stem + ".zk.json")
    if not deploy and not manifest.exists():
        raise NodeError(
            f"no zero-knowledge deployment manifest at {manifest}: start the worker role first"
        )
    deployment, deployed = ensure_zk_deployment(
        w3,
        manifest,
        account,
        chain.deployment.consortium,
        chain.deployment.consent_registry,
        vk_json,
        max_proof_age=zs.max_proof_age,
        max_clock_skew=zs.max_clock_skew,
        epoch_length=zs.epoch_length,
    )
    if deployed:
        notes.append(f"deployed the zero-knowledge access contracts ({manifest})")
    if key_manifest.kind == "dev":
        notes.append(
            "zero-knowledge access uses single-party dev keys: fine for trials, not for a "
            "consortium (run `emr-node zk ceremony`)"
        )
    gate = Web3ZkGate(chain, deployment)
    return ZkAccessService(
        keys_info=ZkKeys(
            circuit=spec.name,
            circuit_hash=spec.circuit_hash,
            kind=key_manifest.kind,
            public_inputs=spec.public_inputs,
            verification_key=json.loads(vk_json),
            proving_key_path=directory / PROVING_KEY,
        ),
        verifier=Groth16Verifier.from_json(vk_json),
        gate=gate,
        chain=chain,
        mirror=CredentialMirror(chain.head_block, gate, deployment.block_number),
        index=index,
        blobs=blobs,
        keys=keys,
        cache=cache,
        max_proof_age=zs.max_proof_age,
        max_clock_skew=zs.max_clock_skew,
        batch_window=zs.batch_window,
        max_batch=zs.max_batch,
    )


def _wallets(
    settings: Settings,
    *,
    data_dir: Path,
    w3: Web3,
    account: SignerAccount,
    chain: Web3ChainClient,
    notes: list[str],
    deploy: bool = True,
) -> RecoverableWalletsAPI | None:
    """The RecoverableWalletFactory (deployed on first start unless ``deploy`` is off: an
    API process) and the client of its wallets; None when disabled."""
    ws = settings.wallets
    if not ws.enabled:
        return None
    from node.chain.wallet_deploy import ensure_wallet_deployment
    from node.chain.wallets import Web3RecoverableWallets

    cs = settings.chain
    if ws.deployment_manifest is not None:
        manifest = ws.deployment_manifest
    elif cs.backend == "embedded":
        manifest = data_dir / "wallets-deployment.json"
    else:
        base = cs.deployment_manifest or data_dir / "deployments" / f"{cs.network}.json"
        manifest = base.with_name(base.stem + ".wallets.json")
    deployment, deployed = ensure_wallet_deployment(w3, manifest, account, deploy=deploy)
    if deployed:
        notes.append(f"deployed the recoverable wallet factory ({manifest})")
    return Web3RecoverableWallets(chain, deployment)


def _throttles(settings: Settings) -> CallerThrottles | None:
    t = settings.throttle
    if not t.enabled:
        return None
    from ipaddress import ip_network

    from node.throttle import (
        FallbackThrottle,
        LocalTokenBucket,
        OutageSwitch,
        RedisTokenBucket,
        ThrottleAPI,
    )
    from storage.backends.redis import redis_client

    shared = settings.storage.cache_backend == "redis"
    # One Redis client and one outage switch for every bucket: shared across node
    # processes through Redis; in-process while Redis is down.
    client = (
        redis_client(settings.storage.redis_url, socket_timeout=0.5, **_redis_credentials(settings))
        if shared
        else None
    )
    switch = OutageSwitch()

    def bucket(rate: float, burst: int, name: str) -> ThrottleAPI:
        local = LocalTokenBucket(rate, burst)
        if client is None:
            return local
        redis_bucket = RedisTokenBucket(
            client, rate=rate, burst=burst, prefix=f"emr:throttle:{name}:"
        )
        return FallbackThrottle(redis_bucket, local, switch=switch)

    return CallerThrottles(
        tokens={
            Role.HOSPITAL: bucket(t.hospital_token_rate, t.hospital_token_burst, "token"),
            Role.ADMIN: bucket(t.admin_token_rate, t.admin_token_burst, "admin-token"),
            Role.AUDITOR: bucket(t.auditor_token_rate, t.auditor_token_burst, "auditor-token"),
        },
        wallet=bucket(t.wallet_rate, t.wallet_burst, "wallet"),
        anonymous=bucket(t.anonymous_rate, t.anonymous_burst, "anonymous"),
        hospital=bucket(t.hospital_rate, t.hospital_burst, "hospital"),
        trusted_proxies=tuple(ip_network(p, strict=False) for p in t.trusted_proxies),
        resources=(client,) if client is not None else (),
    )


def _background_workers(
    settings: Settings,
    *,
    index: RecordIndexAPI,
    blobs: BlobStoreAPI,
    cache: CacheAPI,
    chain: ChainClientAPI,
    mirror: AuditMirrorAPI,
    keys: KeyStoreAPI,
    key_audit: KeyAuditLogAPI,
    kek_rewrap: KekRewrapJob,
    access_log: AccessLogQueueAPI,
    relays: ConsentRelayQueue,
    fence: Callable[[], int | None],
    metrics: MetricsAPI = NULL_METRICS,
) -> list[BatchWorker]:
    """Every background worker of a hospital, in one list: the worker role runs them all."""
    cs = settings.chain
    workers = [
        BatchWorker(
            ANCHORER,
            lambda: anchor_count(
                anchor_pending(index=index, chain=chain, limit=cs.anchor_batch_size, fence=fence())
            ),
            interval=cs.anchor_interval,
            batch_size=cs.anchor_batch_size,
        ),
        BatchWorker(
            ACCESS_LOG_WORKER,
            lambda: flush_access_log(
                queue=access_log, chain=chain, limit=cs.anchor_batch_size, fence=fence()
            ),
            interval=cs.access_log_interval,
            batch_size=cs.anchor_batch_size,
        ),
        BatchWorker(
            RELAY_WORKER,
            lambda: drain_relays(chain=chain, queue=relays, fence=fence()),
            interval=cs.access_log_interval,
            batch_size=100,
        ),
        BatchWorker(
            "audit-mirror",
            lambda: sync_mirror(chain=chain, mirror=mirror),
            interval=cs.access_log_interval,
            batch_size=1,  # any progress: go on until caught up
        ),
        # Small batches at a gentle pace so that re-wrapping never competes with uploads for
        # long; the backlog is resumable, so a restart just goes on.
        BatchWorker(
            REWRAP_WORKER, kek_rewrap, interval=REWRAP_INTERVAL, batch_size=REWRAP_BATCH_SIZE
        ),
        # Purges erased records' blobs and anchors their tombstones (a durable to-do list).
        BatchWorker(
            ERASER,
            lambda: finish_erasures(index=index, blobs=blobs, cache=cache, chain=chain),
            interval=max(cs.anchor_interval, 1.0),
            batch_size=MAX_TOMBSTONE_BATCH,
        ),
        BatchWorker(
            "key-audit-anchor",
            KeyAuditAnchoring(keys, key_audit, chain),
            interval=cs.key_audit_anchor_interval,
            batch_size=1,
        ),
    ]
    for worker in workers:
        worker.metrics = metrics
    return workers


def _metrics(settings: Settings) -> MetricsAPI:
    """Prometheus metrics, in multi-process mode when PROMETHEUS_MULTIPROC_DIR is set
    (``emr-node run`` sets it for the worker role and its API processes)."""
    if not settings.metrics.enabled:
        return NULL_METRICS
    return PrometheusMetrics(multiprocess=bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR")))


def anchor_count(batch: AnchorBatch | None) -> int:
    return 0 if batch is None else batch.count


def _worker_secret(settings: Settings, keys: KeyStoreAPI) -> bytes:
    """The bearer secret of the worker role's endpoint: the same in every process of the
    node (set, or derived from the key store they all open)."""
    if settings.worker.secret is not None:
        return bytes.fromhex(settings.worker.secret.get_secret_value())
    try:
        return keys.derive_secret(WORKER_SECRET_LABEL)
    except HSMError as err:
        raise NodeError(
            f"the key store cannot derive the worker endpoint's secret ({err}); set "
            "EMR_WORKER__SECRET to 64 hex digits, the same on every process of the node"
        ) from None


def _lease_keeper(
    settings: Settings, leases: WorkerLeaseAPI, role: NodeRole, url: str
) -> LeaseKeeper:
    """Take the hospital's worker lease: a worker waits for it (a standby takes over when the
    holder dies); a role-"all" process waits one lease period, then gives up."""
    ws = settings.worker
    holder = f"{socket.gethostname()}:{os.getpid()}:{role}:{secrets.token_hex(4)}"
    keeper = LeaseKeeper(
        leases, WORKER_LEASE, holder=holder, url=url, ttl=ws.lease_ttl, renew=ws.lease_renew
    )
    timeout = None if role == "worker" else ws.lease_ttl + 2 * ws.lease_renew
    if not keeper.wait_acquire(timeout):
        current = leases.current(WORKER_LEASE)
        who = f" ({current.holder})" if current is not None else ""
        raise NodeError(
            f"another process holds this hospital's worker lease{who}: stop it first, or "
            "start this one as an API process"
        )
    return keeper


def build_node(settings: Settings, role: NodeRole = "all") -> Node:
    """Assemble a node from ``settings``: the embedded default (py-evm chain, SQLite blobs and
    index, in-process cache, software key store, all under ``data_dir``) or any mix of
    production backends (IPFS, MySQL, Redis, external chain), in ``role`` (see ``Node``).

    An API process opens what the worker role created (key store, contracts): start the
    worker first (``emr-node run`` does)."""
    data_dir = settings.resolved_data_dir
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    notes: list[str] = []
    closers: list[object] = []
    if (
        settings.mode == "production"
        and settings.hsm.backend == "software"
        and not settings.hsm.allow_software_in_production
    ):
        raise NodeError(
            "production mode needs a hardware key store; to run with the software key store "
            "anyway set EMR_HSM__ALLOW_SOFTWARE_IN_PRODUCTION=true"
        )
    lease: LeaseKeeper | None = None
    metrics = _metrics(settings)
    try:
        index = _record_index(settings, data_dir)
        closers.append(index)
        # The lease comes first: the embedded chain and the account's nonces belong to
        # whoever holds it.
        if role != "api":
            url = settings.worker.resolved_url if role == "worker" else ""
            lease = _lease_keeper(settings, index, role, url)
        # Opened before the key store: deploying the contracts already signs.
        # Shared state (tokens, sessions, directory, outboxes, key audit): the index's MySQL
        # database in production; node.sqlite beside the index on the embedded default.
        state = _state_database(settings, data_dir, closers)
        key_audit = GroupCommitKeyAuditLog(SqlKeyAuditLog(state))  # one commit, many reads
        closers.append(key_audit)
        # Key generation is logged for a new software store, and for a PKCS#11 token on the
        # node's first start (the token creates its keys on first open).
        if settings.hsm.backend == "pkcs11":
            created = key_audit.head() is None
        else:
            created = not (data_dir / "keystore.json").exists()
        if created and role == "api":
            raise NodeError(
                f"no key store in {data_dir} yet: start the worker role first "
                "(`emr-node worker`, or `emr-node run`, which starts it)"
            )
        inner_keys = _open_keystore(settings, data_dir, notes)
        closers.append(inner_keys)
        keys = AuditedKeyStore(MeteredKeyStore(inner_keys, metrics), key_audit)
        if created:
            keys.record_created()
        account = SignerAccount(keys.signer())
        locator: WorkerLocator | None = None
        embedded: EmbeddedChain | None = None
        # The worker endpoint's shared secret: derived once (a token operation on PKCS#11).
        secret = _worker_secret(settings, keys) if role != "all" else b""
        if role == "api":
            locator = WorkerLocator(index, WORKER_LEASE, settings.worker.resolved_url)
            w3 = _api_web3(settings, locator, secret)
            deployment = _existing_deployment(settings, w3, data_dir)
            sender = RemoteTransactionSender(locator, secret, w3)
            chain = Web3ChainClient(w3, deployment, account, sender=sender)
        else:
            w3, embedded = _web3(settings, account, data_dir, closers)
            deployment = _deployment(settings, w3, account, data_dir, notes)
            # The embedded chain runs the EVM in this process: a batch is not simulated
            # before it is sent (a refusal is mined, then named); an external chain's is.
            chain = Web3ChainClient(w3, deployment, account, simulate_batches=embedded is None)
            if keys.pending_signer() is not None:
                # A signer rotation voted while the node was down. The old account's balance
                # moves to the new one (on a zero-gas-price QBFT network that costs nothing).
                finish_signer_rotation(keys, chain)
        health_checks: dict[str, HealthCheckAPI] = {}
        blobs = _blob_store(settings, data_dir, health_checks)
        closers.append(blobs)
        # MySQL mirrors in its own tables; the SQLite index gets a mirror beside it.
        mirror = (
            index
            if isinstance(index, AuditMirrorAPI)
            else SQLiteAuditMirror(data_dir / "index.sqlite")
        )
        if mirror is not index:
            closers.append(mirror)
        cache = _cache(settings, keys, health_checks, metrics)
        closers.append(cache)
        throttles = _throttles(settings) if role != "worker" else None
        if throttles is not None:
            closers.append(throttles)
        zk = _zk_service(
            settings,
            data_dir=data_dir,
            w3=w3,
            account=account,
            chain=chain,
            index=index,
            blobs=blobs,
            keys=keys,
            cache=cache,
            notes=notes,
            deploy=role != "api",
        )
        wallets = _wallets(
            settings,
            data_dir=data_dir,
            w3=w3,
            account=account,
            chain=chain,
            notes=notes,
            deploy=role != "api",
        )
        auth = AuthStore(state, cache_ttl=settings.api.auth_cache_ttl)
        access_log = MeteredAccessLog(GroupCommitAccessLogQueue(SqlAccessLogQueue(state)), metrics)
        directory = HospitalDirectory(state)
        patients = PatientDirectory(state)
        relays = ConsentRelayQueue(state)
        closers += [auth, access_log, directory, relays, patients]
        if role != "api":
            _bootstrap_admin_token(auth, data_dir, notes)

        kek_rewrap = KekRewrapJob(keys, index, batch_size=REWRAP_BATCH_SIZE, grace=KEK_RETIRE_GRACE)
        workers: list[BatchWorker] = []
        background: BackgroundWorkersAPI
        if role == "api":
            assert locator is not None
            background = RemoteWorkers(locator, secret)
        else:
            held = lease
            workers = _background_workers(
                settings,
                index=index,
                blobs=blobs,
                cache=cache,
                chain=chain,
                mirror=mirror,
                keys=keys,
                key_audit=key_audit,
                kek_rewrap=kek_rewrap,
                access_log=access_log,
                relays=relays,
                fence=lambda: held.fence if held is not None else None,
                metrics=metrics,
            )
            background = InProcessWorkers(workers)
            # Records whose anchoring a previous holder left half done: finish them from
            # the chain, never send them twice.
            recover_anchors(index=index, chain=chain, fence=lease.fence if lease else None)
        endpoint: WorkerEndpoint | None = None
        if role == "worker":
            endpoint = _worker_endpoint(
                settings,
                embedded=embedded,
                chain=chain,
                background=background,
                lease=lease,
                secret=secret,
            )
            closers.append(endpoint)

        namespace = HospitalNamespace(chain)  # record ids start with the member id
        # Read it now, while the chain is known to be up, so uploads go on through an outage
        # (a hospital not admitted yet reads it again on its first upload).
        with contextlib.suppress(Conflict):
            namespace.member_id()
        committer = UploadCommitter(
            chain=chain,
            namespace=namespace,
            blobs=blobs,
            index=index,
            keys=keys,
            background=background,
            metrics=metrics,
        )
        uploads: Coalescer[UploadRequest, RecordRow] = Coalescer(
            committer.shared,
            commit_all=committer,
            window=settings.api.upload_batch_window,
            max_batch=settings.api.upload_max_batch,
            name="upload-commit",
        )
        listeners: list[ListenerAPI] = []
        if role != "api":  # one per hospital: the worker role's
            if settings.hl7.enabled:
                hl7 = Hl7Service(
                    settings.hl7,
                    commit=uploads.commit_now,
                    patients=patients,
                    index=index,
                    facility=settings.hospital_name,
                )
                listeners.append(MllpListener(settings.hl7, hl7))
            if settings.dicom.enabled:
                from node.dicom.ingest import DicomIngest  # pynetdicom only when enabled
                from node.dicom.scp import DicomListener

                dicom = DicomIngest.of(
                    settings.dicom, uploads=uploads, index=index, patients=patients
                )
                listeners.append(DicomListener(settings.dicom, dicom))
    except BaseException:
        if lease is not None:
            lease.stop()
        for closable in reversed(closers):
            closable.close()  # type: ignore[attr-defined]
        raise

    node = Node(
        settings=settings,
        role=role,
        keys=keys,
        blobs=blobs,
        index=index,
        mirror=mirror,
        cache=cache,
        access=CachedAccessDecider(chain, cache),
        chain=chain,
        auth=auth,
        directory=directory,
        patients=patients,
        access_log=access_log,
        relays=relays,
        throttles=throttles,
        uploads=uploads,
        kek_rewrap=kek_rewrap,
        key_audit=key_audit,
        background=background,
        workers=tuple(workers),
        zk=zk,
        wallets=wallets,
        signatures=Web3ContractSignatures(chain),
        health_checks=health_checks,
        metrics=metrics,
        notes=notes,
        lease=lease,
        endpoint=endpoint,
        listeners=tuple(listeners),
        _closers=closers,
    )
    if lease is not None:
        lease.on_lost = node.fenced_out
    return node


def open_record_index(settings: Settings) -> RecordIndexAPI:
    """The configured index alone (migrated on open), for maintenance commands."""
    data_dir = settings.resolved_data_dir
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    return _record_index(settings, data_dir)


def open_blob_store(settings: Settings) -> BlobStoreAPI:
    """The configured blob store alone, for maintenance commands."""
    return _blob_store(settings, settings.resolved_data_dir)
