"""The node's one configuration object. Environment variables use the ``EMR_`` prefix and
``__`` between nesting levels (``EMR_CHAIN__ANCHOR_INTERVAL=5``). ``wiring.py`` hands each
package only its own sub-model; packages never read the environment."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
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
    # Redis AUTH / ACL for the cache and the throttle buckets: here, or in the URL
    # (redis://user:password@host:6379/0; rediss:// for TLS), not both.
    redis_username: str | None = None
    redis_password: SecretStr | None = None
    # Key of the cache entries' HMAC (64 hex digits). Unset: derived from the key store, so
    # every process of the node agrees on it without a file to share; set it only where the
    # key store cannot derive one.
    cache_key: SecretStr | None = None

    @model_validator(mode="after")
    def _replication_bounds(self) -> StorageSettings:
        if self.replication_max < self.replication_min:
            raise ValueError("replication_max must be >= replication_min")
        if self.blob_backend == "ipfs" and len(self.ipfs_nodes) < self.replication_max:
            raise ValueError("replication_max is larger than the number of IPFS nodes")
        url = urlsplit(self.redis_url)
        if (self.redis_username or self.redis_password) and (url.username or url.password):
            raise ValueError("give the Redis credentials in redis_url or redis_password, not both")
        if self.cache_key is not None and not re.fullmatch(
            "[0-9a-fA-F]{64}", self.cache_key.get_secret_value()
        ):
            raise ValueError("cache_key must be 64 hex digits (32 bytes)")
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
    # scrypt cost of a new software key store (2**17: ~0.4 s and 128 MiB once per start);
    # an existing store keeps the cost it was created with. Lower values are for tests.
    scrypt_n: int = Field(2**17, ge=2**10)
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


class WalletsSettings(BaseModel):
    """Patients' RecoverableWallets (guardian recovery; docs/wallet-recovery.md)."""

    enabled: bool = True
    # Shortest recovery delay POST /wallets accepts: the time an owner has to notice and
    # cancel a recovery that guardians started without them (a day by default).
    min_recovery_delay: int = Field(86_400, ge=0, le=2**32 - 1)
    # The factory's manifest; default beside the chain's. Share one factory per consortium:
    # a node recognises (and relays for) only its factory's wallets.
    deployment_manifest: Path | None = None


class ThrottleSettings(BaseModel):
    """Token buckets by authenticated caller (429 with Retry-After when empty).

    Rates are requests per second, refilled continuously; a burst is the bucket's size. A
    valid API token has a bucket of its own (by its role) and also draws from the
    hospital-wide bucket; a wallet session has one per wallet address; everyone else (no,
    unknown, expired or revoked credential) shares one stricter bucket per client address.
    """

    enabled: bool = False
    hospital_token_rate: float = Field(5000.0, gt=0)
    hospital_token_burst: int = Field(10000, ge=1)
    admin_token_rate: float = Field(5000.0, gt=0)
    admin_token_burst: int = Field(10000, ge=1)
    auditor_token_rate: float = Field(500.0, gt=0)
    auditor_token_burst: int = Field(1000, ge=1)
    wallet_rate: float = Field(50.0, gt=0)
    wallet_burst: int = Field(100, ge=1)
    anonymous_rate: float = Field(20.0, gt=0)
    anonymous_burst: int = Field(40, ge=1)
    # Every API token of this hospital together.
    hospital_rate: float = Field(10000.0, gt=0)
    hospital_burst: int = Field(20000, ge=1)
    # Reverse proxies (IPs or CIDRs) whose X-Forwarded-For names the client; from any other
    # peer the header is ignored. The client is the right-most address not in this list.
    trusted_proxies: list[str] = []

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, data: Any) -> Any:
        old = {"requester_rate", "requester_burst"} & set(data if isinstance(data, dict) else ())
        if old:
            raise ValueError(
                f"{', '.join(sorted(old))}: replaced by per-caller limits "
                "(hospital_token_*, admin_token_*, auditor_token_*, wallet_*, anonymous_*)"
            )
        return data

    @field_validator("trusted_proxies")
    @classmethod
    def _check_proxies(cls, value: list[str]) -> list[str]:
        import ipaddress

        for item in value:
            try:
                ipaddress.ip_network(item.strip(), strict=False)
            except ValueError:
                raise ValueError(f"{item!r} is not an IP address or CIDR") from None
        return [item.strip() for item in value]


class BreakGlassSettings(BaseModel):
    """Emergency access (POST /break-glass): who may open it, who approves it, for how long
    and how often. Clinician and approver must be in the hospital's directory (POST
    /clinicians) with one of these roles (an expired licence is refused); the caps count
    this node's openings over a rolling window."""

    roles: list[str] = Field(
        ["physician", "nurse", "paramedic", "midwife", "emergency"], min_length=1
    )
    approver_roles: list[str] = Field(["physician", "emergency"], min_length=1)
    # Longest access one opening gives (ConsentRegistry allows at most 24 h).
    max_duration: int = Field(4 * 3600, ge=60, le=24 * 3600)
    window: int = Field(24 * 3600, ge=60, le=90 * 86400)  # seconds, rolling
    max_per_clinician: int = Field(5, ge=1)  # openings for one clinician per window
    max_per_patient: int = Field(3, ge=1)  # openings on one patient per window


class ApiSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = Field(8700, ge=0, le=65535)
    max_upload_bytes: int = Field(10 * 1024 * 1024, ge=1)
    # Group commit: concurrent uploads wait up to this long to share one storage commit.
    upload_batch_window: float = Field(0.005, ge=0, le=1)
    upload_max_batch: int = Field(500, ge=1, le=5000)
    # POST /records/batch: at most this many records per request, the whole multipart body
    # at most batch_max_bytes (413 above; each record still at most max_upload_bytes).
    batch_max_records: int = Field(1000, ge=1, le=10000)
    batch_max_bytes: int = Field(64 * 1024 * 1024, ge=64 * 1024)
    # The URL people and hospital systems use to reach the node (scheme, host, optional port
    # and path). Sign-in messages name it and requests for other hosts are refused.
    # Default http://{host}:{port}; production mode requires it.
    public_url: str | None = None
    # Further Host names the node answers to (besides public_url's; embedded mode also
    # localhost, 127.0.0.1, ::1). "*.example.org" admits every subdomain.
    trusted_hosts: list[str] = []
    # Browser origins (scheme://host[:port]) allowed to call the API cross-origin; none by
    # default.
    cors_origins: list[str] = []
    # Bodies: every route but uploads takes at most max_json_bytes (413 above, checked
    # while streaming); each read of a body must arrive within body_timeout seconds and the
    # whole body within body_total_timeout (408 otherwise).
    max_json_bytes: int = Field(1024 * 1024, ge=1024)
    body_timeout: float = Field(15.0, gt=0)
    body_total_timeout: float = Field(120.0, gt=0)
    # Request line and headers: at most this many bytes (431), all within header_timeout
    # seconds of their first byte (408).
    max_header_bytes: int = Field(32 * 1024, ge=4096)
    header_timeout: float = Field(15.0, gt=0)
    # Sign-In with Ethereum (EIP-4361) parameters.
    siwe_domain: str | None = None  # default: public_url's host[:port]
    challenge_ttl: int = Field(300, ge=10)
    session_ttl: int = Field(3600, ge=60)
    # API tokens expire this many days after creation unless the admin says otherwise
    # (0: they live until revoked). The bootstrap admin token never expires.
    token_ttl_days: int = Field(365, ge=0, le=3650)
    # Seconds an API process serves a looked-up token or session from memory: a revoked
    # one fails on every process within this bound (0: query the database every time).
    auth_cache_ttl: float = Field(2.0, ge=0, le=60)
    # Deprecated: use break_glass.max_duration (EMR_BREAK_GLASS__MAX_DURATION); still
    # honoured as the longest break-glass when that one is not set.
    max_break_glass_seconds: int | None = Field(None, ge=60, le=24 * 3600)
    # API processes `emr-node run` starts beside the worker (0: one per CPU core).
    processes: int = Field(0, ge=0, le=256)

    @field_validator("public_url")
    @classmethod
    def _check_public_url(cls, value: str | None) -> str | None:
        return None if value is None else _http_url("public_url", value, path=True)

    @field_validator("cors_origins")
    @classmethod
    def _check_origins(cls, value: list[str]) -> list[str]:
        return [_http_url("cors_origins", origin, path=False) for origin in value]

    @field_validator("trusted_hosts")
    @classmethod
    def _check_hosts(cls, value: list[str]) -> list[str]:
        hosts = [h.strip().lower().strip("[]") for h in value]
        for host in hosts:
            name = host.removeprefix("*.")
            if not name or "*" in name or "/" in name or " " in name:
                raise ValueError(f"trusted_hosts: {host!r} is not a host name (or *.domain)")
        return hosts

    @property
    def resolved_public_url(self) -> str:
        """public_url, or http://host:port (loopback when listening on every interface)."""
        if self.public_url is not None:
            return self.public_url
        host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(self.host, self.host)
        return f"http://{f'[{host}]' if ':' in host else host}:{self.port}"


class WorkerSettings(BaseModel):
    """The worker role: the one process per hospital that runs the background workers,
    sends the hospital's transactions and, on the embedded default, hosts the chain. API
    processes find it through its lease row in the index database."""

    # Where the worker's internal endpoint listens (chain JSON-RPC on the embedded
    # default, transaction sends, worker status); loopback unless API processes run on
    # other machines.
    host: str = "127.0.0.1"
    port: int = Field(8701, ge=0, le=65535)
    # The address API processes use to reach it (default http://host:port).
    advertise_url: str | None = None
    # Shared secret of the internal endpoint (64 hex digits, the same on every process);
    # default: derived from the key store, which every process of the node opens.
    secret: SecretStr | None = None
    # Lease: held while renewed; another worker takes over lease_ttl after its holder died.
    lease_ttl: float = Field(5.0, ge=1.0, le=300.0)
    lease_renew: float = Field(1.0, gt=0, le=60.0)

    @property
    def resolved_url(self) -> str:
        if self.advertise_url is not None:
            return self.advertise_url.rstrip("/")
        host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(self.host, self.host)
        return f"http://{f'[{host}]' if ':' in host else host}:{self.port}"


class FhirSettings(BaseModel):
    """The FHIR R4 façade under /fhir (node/api/routers/fhir/)."""

    enabled: bool = True
    # Most entries one transaction or batch Bundle may carry (the bulk import path).
    bundle_max_entries: int = Field(1000, ge=1, le=10_000)
    # Default and largest page size of a search (``_count``).
    default_count: int = Field(50, ge=1, le=1000)
    max_count: int = Field(1000, ge=1, le=10_000)


class Hl7Settings(BaseModel):
    """The HL7 v2 listener over MLLP (node/hl7/). Off unless enabled: it opens a TCP port.

    MSH-4 (sending facility) is what a sender says about itself: a message is taken only
    from a peer address in ``allowed_peers`` *and* a facility in ``allowed_facilities``."""

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = Field(2575, ge=0, le=65535)
    allowed_facilities: list[str] = []
    allowed_peers: list[str] = ["127.0.0.1/32", "::1/128"]  # IP networks (CIDR)
    max_message_bytes: int = Field(1024 * 1024, ge=1024)
    idle_timeout: float = Field(300.0, gt=0)  # seconds a connection may stay silent


class DicomSettings(BaseModel):
    """The DICOM Storage SCP (node/dicom/). Off unless enabled: it opens a TCP port.

    The calling AE title is what a modality says about itself: an association is accepted
    only from a peer address in ``allowed_peers`` *and* an AE title in
    ``allowed_calling_aes``."""

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = Field(11112, ge=0, le=65535)
    ae_title: str = Field("EMRNODE", min_length=1, max_length=16)
    allowed_calling_aes: list[str] = []
    allowed_peers: list[str] = ["127.0.0.1/32", "::1/128"]  # IP networks (CIDR)
    max_instance_bytes: int = Field(256 * 1024 * 1024, ge=1024)
    # Assigning authority of a PatientID sent without IssuerOfPatientID (0010,0021): the
    # namespace HL7 ADT links the same MRNs under (docs/dicom.md, "Which patient").
    default_issuer: str | None = Field(None, min_length=1, max_length=64)


class LogSettings(BaseModel):
    """Logs on stderr: ``json`` (one object a line, for collectors) or ``text``."""

    format: Literal["json", "text"] = "json"
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


class MetricsSettings(BaseModel):
    """``/metrics`` (Prometheus): admin and auditor API tokens may scrape, and so may a
    scraper presenting ``scrape_token`` as its bearer token (docs/operations.md)."""

    enabled: bool = True
    scrape_token: SecretStr | None = Field(None, min_length=16)


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
    wallets: WalletsSettings = WalletsSettings()
    break_glass: BreakGlassSettings = BreakGlassSettings()
    worker: WorkerSettings = WorkerSettings()
    fhir: FhirSettings = FhirSettings()
    hl7: Hl7Settings = Hl7Settings()
    dicom: DicomSettings = DicomSettings()
    log: LogSettings = LogSettings()  # issue 14: structured logs
    metrics: MetricsSettings = MetricsSettings()  # issue 14: Prometheus /metrics

    @model_validator(mode="after")
    def _legacy_break_glass_limit(self) -> Settings:
        legacy = self.api.max_break_glass_seconds  # deprecated, see ApiSettings
        if legacy is not None and "max_duration" not in self.break_glass.model_fields_set:
            self.break_glass = self.break_glass.model_copy(update={"max_duration": legacy})
        return self

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

    @model_validator(mode="after")
    def _production_public_url(self) -> Settings:
        if self.mode == "production" and self.api.public_url is None:
            raise ValueError(
                "production mode needs api.public_url (EMR_API__PUBLIC_URL): the URL people "
                "use to reach this node, e.g. https://emr.hospital.example; sign-in messages "
                "name it and requests for other hosts are refused"
            )
        return self

    @property
    def resolved_data_dir(self) -> Path:
        return self.data_dir.expanduser().resolve()


def _http_url(field: str, value: str, *, path: bool) -> str:
    """``value`` as an http(s) URL without a trailing slash (an origin when not ``path``)."""
    url = value.strip().rstrip("/")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises on a bad port)
    except ValueError as err:
        raise ValueError(f"{field}: {value!r} is not a URL: {err}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{field}: {value!r} must be an http:// or https:// URL with a host")
    if parts.username or parts.password or parts.query or parts.fragment or "*" in url:
        raise ValueError(f"{field}: {value!r} must not carry credentials, a query or a fragment")
    if parts.path and not path:
        raise ValueError(f"{field}: {value!r} must be an origin (scheme://host[:port]), no path")
    return url


def _as_dict(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if isinstance(value, BaseModel):
        return value.model_dump(exclude_unset=True)
    return dict(value)
