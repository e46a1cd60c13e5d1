"""The node's one configuration object. Environment variables use the ``EMR_`` prefix and
``__`` between nesting levels (``EMR_CHAIN__ANCHOR_INTERVAL=5``). ``wiring.py`` hands each
package only its own sub-model; packages never read the environment."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class StorageSettings(BaseModel):
    # sqlite: one file, one fsync per batch (default); files: one CID-named file per blob.
    blob_backend: Literal["sqlite", "files"] = "sqlite"
    cache_max_bytes: int = Field(64 * 1024 * 1024, ge=0)


class HSMSettings(BaseModel):
    backend: Literal["software"] = "software"
    # Passphrase of the software key store. Unset on the embedded default: the node then
    # generates one into <data_dir>/keystore.pass (0600) and says so at start.
    passphrase: SecretStr | None = None
    scrypt_n: int = Field(2**15, ge=2**10)


class ChainSettings(BaseModel):
    backend: Literal["embedded"] = "embedded"
    # Anchor when this many records wait, or when the oldest has waited this long.
    anchor_batch_size: int = Field(1000, ge=1, le=5000)
    anchor_interval: float = Field(2.0, gt=0)
    # Access-log entries are batched the same way (one transaction per flush).
    access_log_interval: float = Field(2.0, gt=0)
    funded_balance_wei: int = 10**30


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
    model_config = SettingsConfigDict(env_prefix="EMR_", env_nested_delimiter="__", extra="ignore")

    data_dir: Path = Path("~/.emr-node")
    hospital_name: str = "Embedded Hospital"
    storage: StorageSettings = StorageSettings()
    hsm: HSMSettings = HSMSettings()
    chain: ChainSettings = ChainSettings()
    api: ApiSettings = ApiSettings()

    @property
    def resolved_data_dir(self) -> Path:
        return self.data_dir.expanduser().resolve()
