"""The only place that builds concrete backends and hands each package its settings."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import secrets
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path

from web3 import Web3

from hsm.abc import KeyStoreAPI
from hsm.account import SignerAccount
from hsm.exceptions import HSMError
from hsm.software import SoftwareKeyStore
from node.audit.abc import AccessLogQueueAPI, KeyAuditLogAPI
from node.audit.key_log import KeyAction, SQLiteKeyAuditLog
from node.audit.keystore import AuditedKeyStore
from node.audit.mirror import sync_mirror
from node.audit.outbox import SQLiteAccessLogQueue
from node.auth.principal import Role
from node.auth.store import AuthStore
from node.chain.abc import ChainClientAPI
from node.chain.client import MAX_ACCESS_BATCH, Web3ChainClient
from node.chain.deploy import Deployment
from node.chain.embedded import EmbeddedChain
from node.chain.external import ensure_deployment
from node.coalescer import Coalescer
from node.consent.abc import AccessDeciderAPI
from node.consent.decisions import CachedAccessDecider
from node.consent.relay_queue import ConsentRelayQueue
from node.directory import HospitalDirectory
from node.exceptions import Conflict, NodeError
from node.flows.anchor_records import anchor_pending
from node.flows.erase_record import MAX_TOMBSTONE_BATCH, finish_erasures
from node.flows.relay_consent import drain_relays
from node.flows.rotate_keys import KekRewrapJob
from node.flows.rotate_signer import finish_signer_rotation
from node.flows.upload_record import HospitalNamespace, UploadRequest, upload_records
from node.settings import Settings
from node.throttle import CallerThrottles
from node.workers import BatchWorker
from node.zkaccess.service import ZkAccessService
from storage.abc import AuditMirrorAPI, BlobStoreAPI, CacheAPI, HealthCheckAPI, RecordIndexAPI
from storage.backends.authenticated_cache import AuthenticatedCache
from storage.backends.local import LocalBlobStore
from storage.backends.memory import InMemoryLRUCache
from storage.backends.sqlite import SQLiteRecordIndex
from storage.backends.sqlite_blobs import SQLiteBlobStore
from storage.backends.sqlite_mirror import SQLiteAuditMirror
from storage.models import RecordRow

log = logging.getLogger(__name__)

# KEK re-wrap worker: records per round, seconds between rounds, and how long an old KEK
# must have had no record before it is destroyed (longer than any upload in flight).
REWRAP_BATCH_SIZE = 500
REWRAP_INTERVAL = 1.0
KEK_RETIRE_GRACE = 300.0


_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")


def key_audit_addresses(log: KeyAuditLogAPI, current: str) -> list[str]:
    """Every address this node signed as: the current one and those it rotated away from
    (their anchors count too)."""
    seen = [current]
    after = 0
    while batch := log.entries(after=after, action=KeyAction.SIGNER_ROTATE):
        for e in batch:
            seen += _ADDRESS.findall(e.subject)
        after = batch[-1].seq
    return list(dict.fromkeys(seen))


@dataclass
class Node:
    """Every running component of one hospital's node."""

    settings: Settings
    keys: KeyStoreAPI
    blobs: BlobStoreAPI
    index: RecordIndexAPI
    mirror: AuditMirrorAPI
    cache: CacheAPI
    access: AccessDeciderAPI
    chain: ChainClientAPI
    auth: AuthStore
    directory: HospitalDirectory
    access_log: AccessLogQueueAPI
    relays: ConsentRelayQueue
    # Token buckets by caller (API token, wallet, anonymous; hospital-wide); None when off.
    throttles: CallerThrottles | None
    anchorer: BatchWorker
    access_flusher: BatchWorker
    relay_worker: BatchWorker
    mirror_worker: BatchWorker
    uploads: Coalescer[UploadRequest, RecordRow]
    # Re-wraps data keys after a KEK rotation and destroys KEKs nothing refers to any more.
    kek_rewrap: KekRewrapJob
    rewrap_worker: BatchWorker
    # Purges erased records' blobs and anchors their tombstones (a durable to-do list).
    eraser: BatchWorker
    # Hash-chained log of key operations, and the worker anchoring its head on-chain.
    key_audit: KeyAuditLogAPI
    key_audit_anchorer: BatchWorker
    zk: ZkAccessService | None = None  # anonymous reads with proofs; None when disabled
    # Components that depend on a service that can be down, probed by /health.
    health_checks: dict[str, HealthCheckAPI] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # things to tell the operator at start
    _closers: list[object] = field(default_factory=list)
    _started: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def hospital(self) -> str:
        return self.chain.hospital

    @property
    def workers(self) -> tuple[BatchWorker, ...]:
        """Every background worker: each BatchWorker field, in declaration order. Derived
        from the fields, so a worker added to the node is started, stopped and shown in
        /health without a second list to forget it in."""
        found = (getattr(self, f.name) for f in fields(self))
        return tuple(w for w in found if isinstance(w, BatchWorker))

    def start(self) -> None:
        with self._lock:
            if not self._started:
                for worker in self.workers:
                    worker.start()
                self._started = True

    def stop(self) -> None:
        """Stop workers, flush what is queued (best effort), close everything."""
        with self._lock:
            self.uploads.close()  # commit in-flight uploads before the anchorer's last round
            if self.zk is not None:
                self.zk.close()
            for worker in self.workers:
                worker.stop()
            for worker in self.workers:
                if worker is self.rewrap_worker:
                    continue  # resumable backlog: the next start goes on, no drain at exit
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


def _cache(settings: Settings, keys: KeyStoreAPI, health: dict[str, HealthCheckAPI]) -> CacheAPI:
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
        return AuthenticatedCache(inner, _cache_key(settings, keys))
    except BaseException:
        inner.close()
        raise


def _web3(
    settings: Settings, account: SignerAccount, data_dir: Path, closers: list[object]
) -> Web3:
    if settings.chain.backend == "rpc":
        from node.chain.external import connect_rpc, fund_account

        w3 = connect_rpc(settings.chain.rpc_url)
        if settings.chain.fund_dev_account:
            fund_account(w3, account.address, settings.chain.funded_balance_wei)
    else:
        embedded = EmbeddedChain(
            data_dir / "chain.sqlite",
            funded_accounts={account.address: settings.chain.funded_balance_wei},
        )
        closers.append(embedded)
        w3 = embedded.web3
    # No signing middleware: Web3ChainClient signs every transaction itself.
    return w3


def _deployment(
    settings: Settings, w3: Web3, account: SignerAccount, data_dir: Path, notes: list[str]
) -> Deployment:
    cs = settings.chain
    if cs.backend == "embedded":
        manifest = data_dir / "deployment.json"
    else:
        manifest = cs.deployment_manifest or data_dir / "deployments" / f"{cs.network}.json"
    existed = manifest.exists()
    deployment = ensure_deployment(
        w3, manifest, account, [(account.address, settings.hospital_name)], network=cs.network
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
) -> ZkAccessService | None:
    """ClinicianAccess keys (a dev setup or the consortium's ceremony), the ZK contracts and
    the credential tree mirror."""
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


def build_node(settings: Settings) -> Node:
    """Assemble a node from ``settings``: the embedded default (py-evm chain, SQLite blobs and
    index, in-process cache, software key store, all under ``data_dir``) or any mix of
    production backends (IPFS, MySQL, Redis, external chain)."""
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
    try:
        # Opened before the key store: deploying the contracts already signs.
        key_audit = SQLiteKeyAuditLog(data_dir / "node.sqlite")
        closers.append(key_audit)
        # Key generation is logged for a new software store, and for a PKCS#11 token on the
        # node's first start (the token creates its keys on first open).
        if settings.hsm.backend == "pkcs11":
            created = key_audit.head() is None
        else:
            created = not (data_dir / "keystore.json").exists()
        inner_keys = _open_keystore(settings, data_dir, notes)
        closers.append(inner_keys)
        keys = AuditedKeyStore(inner_keys, key_audit)
        if created:
            keys.record_created()
        account = SignerAccount(keys.signer())
        w3 = _web3(settings, account, data_dir, closers)
        deployment = _deployment(settings, w3, account, data_dir, notes)
        chain = Web3ChainClient(w3, deployment, account)
        if keys.pending_signer() is not None:
            # A signer rotation voted while the node was down. The old account's balance
            # moves to the new one (on a zero-gas-price QBFT network that costs nothing).
            finish_signer_rotation(keys, chain)
        health_checks: dict[str, HealthCheckAPI] = {}
        blobs = _blob_store(settings, data_dir, health_checks)
        closers.append(blobs)
        index = _record_index(settings, data_dir)
        closers.append(index)
        # MySQL mirrors in its own tables; the SQLite index gets a mirror beside it.
        mirror = (
            index
            if isinstance(index, AuditMirrorAPI)
            else SQLiteAuditMirror(data_dir / "index.sqlite")
        )
        if mirror is not index:
            closers.append(mirror)
        cache = _cache(settings, keys, health_checks)
        closers.append(cache)
        throttles = _throttles(settings)
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
        )
    except BaseException:
        for closable in reversed(closers):
            closable.close()  # type: ignore[attr-defined]
        raise
    auth = AuthStore(data_dir / "node.sqlite", cache_ttl=settings.api.auth_cache_ttl)
    access_log = SQLiteAccessLogQueue(data_dir / "node.sqlite")
    directory = HospitalDirectory(data_dir / "node.sqlite")
    relays = ConsentRelayQueue(data_dir / "node.sqlite")
    closers += [auth, access_log, directory, relays]
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

    namespace = HospitalNamespace(chain)  # record ids start with the member id
    # Read it now, while the chain is known to be up, so uploads go on through an outage
    # (a hospital not admitted yet reads it again on its first upload).
    with contextlib.suppress(Conflict):
        namespace.member_id()

    def commit_uploads(requests: Sequence[UploadRequest]) -> list[RecordRow]:
        rows = upload_records(
            requests,
            hospital=chain.hospital,
            member_id=namespace.member_id(),
            blobs=blobs,
            index=index,
            keys=keys,
        )
        anchorer.queued(len(rows))
        return rows

    uploads: Coalescer[UploadRequest, RecordRow] = Coalescer(
        commit_uploads,
        window=settings.api.upload_batch_window,
        max_batch=settings.api.upload_max_batch,
        name="upload-commit",
    )

    # Small batches at a gentle pace so that re-wrapping never competes with uploads for
    # long; the backlog is resumable, so a restart just goes on.
    kek_rewrap = KekRewrapJob(keys, index, batch_size=REWRAP_BATCH_SIZE, grace=KEK_RETIRE_GRACE)

    anchored: list[int] = []  # the last seq anchored on-chain, read from the chain once

    def anchor_key_audit() -> int:
        # A signer rotation voted by the other members since: finish it (cheap otherwise).
        finish_signer_rotation(keys, chain)
        head = key_audit.head()
        if head is None:
            return 0
        if not anchored:
            found = chain.key_audit_anchors(key_audit_addresses(key_audit, chain.hospital))
            anchored.append(max((seq for seq, _h in found), default=0))
        # Signing the anchor adds one entry: with nothing else new, the head is anchored.
        if head.seq <= anchored[0] + 1:
            return 0
        chain.anchor_key_audit(head.hash, head.seq)
        anchored[0] = head.seq
        return 0  # one anchor per round: the next round sees the anchor's own signature

    return Node(
        settings=settings,
        keys=keys,
        blobs=blobs,
        index=index,
        mirror=mirror,
        cache=cache,
        access=CachedAccessDecider(chain, cache),
        chain=chain,
        auth=auth,
        directory=directory,
        access_log=access_log,
        anchorer=anchorer,
        uploads=uploads,
        relays=relays,
        throttles=throttles,
        zk=zk,
        kek_rewrap=kek_rewrap,
        key_audit=key_audit,
        key_audit_anchorer=BatchWorker(
            "key-audit-anchor",
            anchor_key_audit,
            interval=cs.key_audit_anchor_interval,
            batch_size=1,
        ),
        rewrap_worker=BatchWorker(
            "kek-rewrap", kek_rewrap, interval=REWRAP_INTERVAL, batch_size=REWRAP_BATCH_SIZE
        ),
        eraser=BatchWorker(
            "eraser",
            lambda: finish_erasures(index=index, blobs=blobs, cache=cache, chain=chain),
            interval=max(cs.anchor_interval, 1.0),
            batch_size=MAX_TOMBSTONE_BATCH,
        ),
        mirror_worker=BatchWorker(
            "audit-mirror",
            lambda: sync_mirror(chain=chain, mirror=mirror),
            interval=cs.access_log_interval,
            batch_size=1,  # any progress: go on until caught up
        ),
        relay_worker=BatchWorker(
            "consent-relay",
            lambda: drain_relays(chain=chain, queue=relays),
            interval=cs.access_log_interval,
            batch_size=100,
        ),
        access_flusher=BatchWorker(
            "access-log",
            flush_accesses,
            interval=cs.access_log_interval,
            batch_size=cs.anchor_batch_size,
        ),
        health_checks=health_checks,
        notes=notes,
        _closers=closers,
    )


def open_record_index(settings: Settings) -> RecordIndexAPI:
    """The configured index alone (migrated on open), for maintenance commands."""
    data_dir = settings.resolved_data_dir
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    return _record_index(settings, data_dir)


def repair_blobs(settings: Settings, progress: Callable[[int, int], None] | None = None) -> object:
    """Re-pin every indexed blob whose replication fell below the minimum."""
    data_dir = settings.resolved_data_dir
    blobs = _blob_store(settings, data_dir)
    repair = getattr(blobs, "repair", None)
    if repair is None:
        blobs.close()
        raise ValueError(
            f"the {settings.storage.blob_backend} blob store keeps no replicas to repair"
        )
    index = _record_index(settings, data_dir)

    def cids() -> Iterator[str]:
        offset = 0
        while page := index.list_records(limit=1000, offset=offset):
            # An erased record's blob must stay gone: re-pinning it would undo the purge.
            yield from (row.cid for row in page if not row.erased)
            offset += len(page)

    try:
        return repair(list(cids()), progress)  # a list: progress can show the total
    finally:
        index.close()
        blobs.close()
