"""The production services for node tests: MariaDB and Redis (scripts/services.sh), three
js-ipfs daemons (scripts/ipfs.sh; each blob pinned on two) and a hardhat node
(scripts/chain.sh), each private to the test session where it can be (own IPFS state, own
chain port, own database)."""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from node.settings import Settings
from tests.storage.backends.ipfs_fixtures import IpfsCluster

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _script(name: str, *args: str, env: dict[str, str] | None = None, timeout: float = 300) -> str:
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / name), *args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{name} {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


@dataclass
class HardhatChain:
    state: Path
    port: int = field(default_factory=free_port)

    @property
    def env(self) -> dict[str, str]:
        return {"EMR_CHAIN_PORT": str(self.port), "EMR_CHAIN_DIR": str(self.state)}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        _script("chain.sh", "start", env=self.env)

    def stop(self) -> None:
        _script("chain.sh", "stop", env=self.env)


@dataclass
class ProductionServices:
    ipfs: IpfsCluster
    chain: HardhatChain

    def start(self) -> None:
        _script("services.sh", "start", timeout=600)
        self.ipfs.start(timeout=900)  # the first run installs js-ipfs
        self.chain.start()

    def stop(self) -> None:
        for stop in (self.chain.stop, self.ipfs.stop):
            # Best effort at teardown; the next start is idempotent.
            with contextlib.suppress(Exception):
                stop()

    def settings(self, data_dir: Path, **overrides: object) -> Settings:
        """Production settings with a fresh database and a fresh contract deployment."""
        chain = {
            "rpc_url": self.chain.url,
            "network": "test",
            "fund_dev_account": True,
            "anchor_interval": 0.2,
            "access_log_interval": 0.2,
            "anchor_batch_size": 50,
        }
        chain.update(overrides.pop("chain", {}))  # type: ignore[arg-type]
        storage = {
            "ipfs_nodes": self.ipfs.urls,
            "replication_min": 2,  # of three daemons: one may be lost
            "replication_max": 2,
            "mysql_database": "emr_test_" + secrets.token_hex(4),
        }
        storage.update(overrides.pop("storage", {}))  # type: ignore[arg-type]
        return Settings(
            mode="production",
            data_dir=data_dir,
            hospital_name="Test General",
            hsm={
                "passphrase": "test passphrase",
                "scrypt_n": 2**10,
                "allow_software_in_production": True,
            },
            chain=chain,
            storage=storage,
            # Test nodes listen on a free loopback port; the host is what matters here.
            api={"max_upload_bytes": 64 * 1024, "public_url": "http://127.0.0.1"},
            # Every test client calls from 127.0.0.1: one anonymous and few wallet buckets.
            throttle={
                "enabled": True,
                "anonymous_rate": 1000,
                "anonymous_burst": 2000,
                "wallet_rate": 1000,
                "wallet_burst": 2000,
            },
            zk={"keys_dir": TEST_ZK_KEYS, "allow_dev_keys_in_production": True},
            **overrides,  # type: ignore[arg-type]
        )


# Dev ZK keys shared by every test node of a checkout (a setup takes seconds).
TEST_ZK_KEYS = Path(__file__).resolve().parents[2] / "build" / "test-zk-keys"


def drop_test_database(settings: Settings) -> None:
    """Remove a test node's MySQL database (a no-op for other indexes)."""
    s = settings.storage
    if s.index_backend != "mysql" or not s.mysql_database.startswith("emr_test_"):
        return
    import pymysql

    conn = pymysql.connect(
        host=s.mysql_host,
        port=3306,
        user=s.mysql_user,
        password=s.mysql_password.get_secret_value(),
    )
    try:
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{s.mysql_database}`")
    finally:
        conn.close()
