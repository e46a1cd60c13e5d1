"""The node's one configuration object. Environment variables use the ``EMR_`` prefix and
``__`` between nesting levels (``EMR_CHAIN__ANCHOR_INTERVAL=5``). ``wiring.py`` hands each
package only its own sub-model; packages never read the environment."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class StorageSettings(BaseModel):
    # Blobs: sqlite (one file, one fsync per batch; embedded default), files (one CID-named
    # file per blob) or ipfs (pinned on several IPFS nodes).
    blob_backend: Literal["sqlite", "files", "ipfs"] = "sqlite"
    index_backend: Literal["sqlite", "mysql"] = "sqlite"
    cache_backend: Literal["memory", "redis"] = "memory"
    cache_max_bytes: int = Field(64 * 1024 * 1024, ge=0)
    # IPFS: Kubo RPC API URLs of the hospital's IPFS nodes, and how many must pin each blob
    # before an upload is acknowledged (min) and how many are asked to (max).
    ipfs_nodes: list[str] = ["http://127.0.0.1:5001", "http://127.0.0.1:5002"]
    replication_min: int = Field(2, ge=1)
    replication_max: int = Field(2, ge=1)
    mysql_host: str = "127.0.0.1"
    mysql_port: int = 3306
    mysql_user: str = "root"
    mysql_password: SecretStr = SecretStr("")
    mysql_database: str = "emr"
    mysql_pool_size: int = Field(8, ge=1)
    redis_url: str = "redis://127.0.0.1:6379/0"

    @model_validator(mode="after")
    def _replication_bounds(self) -> StorageSettings:
        if self.replication_max < self.replication_min:
            raise ValueError("replication_max must be >= replication_min")
        if self.blob_backend == "ipfs" and len(self.ipfs_nodes) < self.replication_max:
            raise ValueError("replication_max is larger than the number of IPFS nodes")
        return self


class HSMSettings(BaseModel):
    # software: passphrase-encrypted key file in data_dir (embedded default); pkcs11: KEKs
    # and the node's signing key in an HSM token (scripts/softhsm.sh makes a test token).
    backend: Literal["software", "pkcs11"] = "software"
    pkcs11_module: Path = Path("/usr/lib/softhsm/libsofthsm2.so")
    token_label: str = "emr-node"
    # The token's user PIN: EMR_HSM__PIN, or a file holding it (0600; a trailing newline is
    # ignored). Never put it on a command line.
    pin: SecretStr | None = None
    pin_file: Path | None = None
    # Passphrase of the software key store. Unset on the embedded default: the node then
    # generates one into <data_dir>/keystore.pass (0600) and says so at start.
    passphrase: SecretStr | None = None
    scrypt_n: int = Field(2**15, ge=2**10)
    # Production mode refuses the software key store unless this says otherwise.
    allow_software_in_production: bool = False


class ChainSettings(BaseModel):
    # embedded: in-process py-evm chain in the data directory; rpc: an external JSON-RPC node
    # (Hardhat here; Besu/GoQuorum QBFT in a consortium).
    backend: Literal["embedded", "rpc"] = "embedded"
    rpc_url: str = "http://127.0.0.1:8545"
    network: str = "localhost"  # names the deployment manifest
    deployment_manifest: Path | None = None  # default <data_dir>/deployments/<network>.json
    # Dev chains only: top up the node's account with hardhat_setBalance at start.
    fund_dev_account: bool = False
    # Anchor when this many records wait, or when the oldest has waited this long.
    anchor_batch_size: int = Field(1000, ge=1, le=5000)
    anchor_interval: float = Field(2.0, gt=0)
    # Access-log entries are batched the same way (one transaction per flush).
    access_log_interval: float = Field(2.0, gt=0)
    # The key audit log's head is anchored on-chain this often, when it moved.
    key_audit_anchor_interval: float = Field(60.0, gt=0)
    funded_balance_wei: int = 10**30


class ZkSettings(BaseModel):
    """Anonymous clinician access with ClinicianAccess proofs (Groth16, BN254)."""

    enabled: bool = True
    # dev: single-party keys, generated once into keys_dir (tests, trials; the one who ran
    # the setup could forge proofs). ceremony: the consortium's final zkey and verification
    # key from `emr-node zk ceremony finalize`.
    keys: Literal["dev", "ceremony"] = "dev"
    keys_dir: Path = Path("~/.cache/emr-node/zk")  # dev keys, shared by the nodes of a machine
    ceremony_zkey: Path | None = None
    ceremony_vk: Path | None = None
    allow_dev_keys_in_production: bool = False
    deployment_manifest: Path | None = None  # default beside the chain's manifest
    # The gate accepts a proof whose current_time is at most this old / this far ahead.
    max_proof_age: int = Field(3600, ge=60)
    max_clock_skew: int = Field(900, ge=0)
    # Epoch of the epoch nullifier (auditors count distinct readers per record and epoch);
    # fixed in the gate at deployment.
    epoch_length: int = Field(86400, ge=60, lt=2**40)
    # Anonymous reads wait up to batch_window to share one gate transaction.
    batch_window: float = Field(0.2, ge=0, le=5)
    max_batch: int = Field(16, ge=1, le=32)

    @model_validator(mode="after")
    def _ceremony_files(self) -> ZkSettings:
        if self.keys == "ceremony" and (self.ceremony_zkey is None or self.ceremony_vk is None):
            raise ValueError("keys=ceremony needs ceremony_zkey and ceremony_vk")
        return self


class ThrottleSettings(BaseModel):
    """Token buckets per requester and per hospital (429 with Retry-After when empty)."""

    enabled: bool = False
    requester_rate: float = Field(50.0, gt=0)  # requests per second, refilled continuously
    requester_burst: int = Field(100, ge=1)
    hospital_rate: float = Field(2000.0, gt=0)
    hospital_burst: int = Field(4000, ge=1)


class ApiSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = Field(8700, ge=0, le=65535)
    max_upload_bytes: int = Field(10 * 1024 * 1024, ge=1)
    # Group commit: concurrent uploads wait up to this long to share one storage commit.
    upload_batch_window: float = Field(0.005, ge=0, le=1)
    upload_max_batch: int = Field(500, ge=1, le=5000)
    # Sign-In with Ethereum (EIP-4361) parameters.
    siwe_domain: str | None = None  # default: host:port
    challenge_ttl: int = Field(300, ge=10)
    session_ttl: int = Field(3600, ge=60)
    max_break_glass_seconds: int = Field(24 * 3600, ge=60, le=24 * 3600)


class Settings(BaseSettings):
    """``mode=production`` switches every backend default to its production service
    (IPFS, MySQL, Redis, external chain) and requires an explicit choice for keys."""

    model_config = SettingsConfigDict(env_prefix="EMR_", env_nested_delimiter="__", extra="ignore")

    mode: Literal["embedded", "production"] = "embedded"
    data_dir: Path = Path("~/.emr-node")
    hospital_name: str = "Embedded Hospital"
    storage: StorageSettings = StorageSettings()
    hsm: HSMSettings = HSMSettings()
    chain: ChainSettings = ChainSettings()
    api: ApiSettings = ApiSettings()
    throttle: ThrottleSettings = ThrottleSettings()
    zk: ZkSettings = ZkSettings()

    @model_validator(mode="before")
    @classmethod
    def _production_defaults(cls, data: Any) -> Any:
        if not isinstance(data, dict) or data.get("mode") != "production":
            return data
        data = dict(data)
        storage = dict(_as_dict(data.get("storage")))
        for key, value in (
            ("blob_backend", "ipfs"),
            ("index_backend", "mysql"),
            ("cache_backend", "redis"),
        ):
            storage.setdefault(key, value)
        data["storage"] = storage
        chain = dict(_as_dict(data.get("chain")))
        chain.setdefault("backend", "rpc")
        data["chain"] = chain
        throttle = dict(_as_dict(data.get("throttle")))
        throttle.setdefault("enabled", True)
        data["throttle"] = throttle
        return data

    @property
    def resolved_data_dir(self) -> Path:
        return self.data_dir.expanduser().resolve()


def _as_dict(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if isinstance(value, BaseModel):
        return value.model_dump(exclude_unset=True)
    return dict(value)
