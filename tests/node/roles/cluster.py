"""A hospital node as separate processes for tests: worker roles (`emr-node worker`) and API
processes (`emr-node api`), each on its own port, sharing a data directory (embedded) or the
production services."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from node.client import EmrClient
from tests.node.production import TEST_ZK_KEYS, ProductionServices, free_port


def until(predicate: Callable[[], object], timeout: float = 60.0, step: float = 0.1) -> object:
    """Poll ``predicate`` until it returns something truthy (returned); TimeoutError after
    ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        time.sleep(step)


def embedded_env(data_dir: Path) -> dict[str, str]:
    return {
        "EMR_DATA_DIR": str(data_dir),
        "EMR_HSM__PASSPHRASE": "test passphrase",
        "EMR_HSM__SCRYPT_N": "1024",
        "EMR_ZK__KEYS_DIR": str(TEST_ZK_KEYS),
        "EMR_CHAIN__ANCHOR_INTERVAL": "0.3",
        "EMR_CHAIN__ACCESS_LOG_INTERVAL": "0.3",
        "EMR_API__PUBLIC_URL": "http://127.0.0.1",
        "EMR_API__AUTH_CACHE_TTL": "1",
        "EMR_THROTTLE__ENABLED": "false",
        "EMR_WORKER__LEASE_TTL": "2",
        "EMR_WORKER__LEASE_RENEW": "0.5",
    }


def production_env(services: ProductionServices, data_dir: Path) -> dict[str, str]:
    """The same, on MariaDB (a fresh database), Redis, the IPFS daemons and the hardhat
    node: the processes share only these services and the key store file."""
    settings = services.settings(data_dir)
    return {
        **embedded_env(data_dir),
        "EMR_MODE": "production",
        "EMR_HSM__ALLOW_SOFTWARE_IN_PRODUCTION": "true",
        "EMR_ZK__ALLOW_DEV_KEYS_IN_PRODUCTION": "true",
        "EMR_CHAIN__RPC_URL": settings.chain.rpc_url,
        "EMR_CHAIN__NETWORK": "test",
        "EMR_CHAIN__FUND_DEV_ACCOUNT": "true",
        "EMR_STORAGE__IPFS_NODES": json.dumps(settings.storage.ipfs_nodes),
        "EMR_STORAGE__MYSQL_DATABASE": settings.storage.mysql_database,
    }


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code < 500
    except httpx.HTTPError:
        return False


@dataclass
class Cluster:
    """Processes of one hospital; everything started is stopped by ``close``."""

    data_dir: Path
    env: Mapping[str, str]
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)

    def _spawn(self, args: list[str], extra: Mapping[str, str]) -> subprocess.Popen[bytes]:
        log = self.data_dir.parent / f"proc-{len(self.logs)}.log"
        self.logs.append(log)
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "node.cli.main", *args],
                env={**os.environ, **self.env, **extra},
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.procs.append(proc)
        return proc

    def worker(self, *, wait: bool = True) -> tuple[subprocess.Popen[bytes], str]:
        port = free_port()
        proc = self._spawn(["worker"], {"EMR_WORKER__PORT": str(port)})
        url = f"http://127.0.0.1:{port}"
        if wait:
            until(lambda: answers(url + "/status") or proc.poll() is not None, timeout=300)
            assert proc.poll() is None, self.output()
        return proc, url

    def api(self) -> tuple[subprocess.Popen[bytes], str]:
        port = free_port()
        proc = self._spawn(["api", "--port", str(port), "--processes", "1"], {})
        url = f"http://127.0.0.1:{port}"
        until(lambda: answers(url + "/health") or proc.poll() is not None, timeout=120)
        assert proc.poll() is None, self.output()
        return proc, url

    def admin(self, url: str) -> EmrClient:
        return EmrClient(url, (self.data_dir / "admin-token").read_text().strip(), timeout=30)

    def output(self) -> str:
        return "\n".join(f"--- {p}\n{p.read_text(errors='replace')[-4000:]}" for p in self.logs)

    def kill(self, proc: subprocess.Popen[bytes]) -> None:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
