"""Several hospitals on one chain, for tests: each hospital is real processes (``emr-node
worker`` + ``emr-node api``) with its own data directory, MySQL database, js-ipfs daemon,
Redis database number and key store (hospital 0's in SoftHSM2), all on ONE hardhat node.

Hospital 0 founds the consortium (its worker deploys the contracts); every other hospital
starts from copies of hospital 0's deployment manifests (chain, zk, wallets) and is admitted
by a governance vote through the node API (``POST /governance/proposals`` at a member, then
``POST /governance/proposals/{id}/vote`` at the other members until a strict majority).

Each hospital reaches MySQL and the chain through its own ``CutProxy`` (tests/tcp_proxy.py),
so a test can cut one hospital's database or chain connection without touching the others;
``Consortium.chain_proxies()`` cuts the chain for everyone. Everything listens on loopback
ports (the tests do not use network namespaces; scripts/consortium.sh does where it can).

    consortium = Consortium.start(3, tmp_path)          # 3 hospitals, all members
    a, b, c = consortium.hospitals
    a.client(a.hospital_token).upload(...)
    a.kill_api(); a.kill_worker(); a.restart()
    consortium.stop()
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from node.client import ApiError, EmrClient
from tests.node.production import TEST_ZK_KEYS, HardhatChain, _script, free_port
from tests.node.roles.cluster import answers, until
from tests.storage.backends.ipfs_fixtures import IpfsCluster
from tests.tcp_proxy import CutProxy

ROOT = Path(__file__).resolve().parents[2]
HSM_TOKEN, HSM_PIN, HSM_SO_PIN = "emr-consortium-0", "consortium-pin-4411", "consortium-so-9902"
NETWORK = "test"
# Redis database numbers 8.. (one per hospital): caches and throttles stay apart.
REDIS_DB_BASE = 8


@dataclass
class Hospital:
    """One hospital's node: a worker process and an API process, restartable."""

    index: int
    name: str
    home: Path  # logs, proxies' notes, the HSM token dir
    data_dir: Path
    env: dict[str, str]
    database: str
    ipfs: IpfsCluster
    mysql_proxy: CutProxy
    chain_proxy: CutProxy
    api_port: int = field(default_factory=free_port)
    worker_port: int = field(default_factory=free_port)
    worker_proc: subprocess.Popen[bytes] | None = None
    api_proc: subprocess.Popen[bytes] | None = None
    address: str = ""
    hospital_token: str = ""
    _logs: list[Path] = field(default_factory=list)

    # -- processes ---------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def worker_url(self) -> str:
        return f"http://127.0.0.1:{self.worker_port}"

    @property
    def admin_token(self) -> str:
        return (self.data_dir / "admin-token").read_text().strip()

    def _spawn(self, role: str, args: list[str], extra: dict[str, str]) -> subprocess.Popen[bytes]:
        log = self.home / f"{role}-{len(self._logs)}.log"
        self._logs.append(log)
        with log.open("wb") as out:
            return subprocess.Popen(
                [sys.executable, "-m", "node.cli.main", *args],
                env={**os.environ, **self.env, **extra},
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
            )

    def start_worker(self, *, timeout: float = 240) -> None:
        """Start the worker role (deploys the contracts on hospital 0's first start) and
        wait until its internal endpoint answers."""
        if self.worker_proc is not None and self.worker_proc.poll() is None:
            return
        proc = self._spawn("worker", ["worker"], {"EMR_WORKER__PORT": str(self.worker_port)})
        self.worker_proc = proc
        until(
            lambda: answers(self.worker_url + "/status") or proc.poll() is not None,
            timeout=timeout,
        )
        assert proc.poll() is None, self.output()

    def start_api(self, *, timeout: float = 120) -> None:
        if self.api_proc is not None and self.api_proc.poll() is None:
            return
        proc = self._spawn("api", ["api", "--port", str(self.api_port), "--processes", "1"], {})
        self.api_proc = proc
        until(lambda: answers(self.url + "/health") or proc.poll() is not None, timeout=timeout)
        assert proc.poll() is None, self.output()

    def start(self) -> None:
        self.start_worker()
        self.start_api()

    @staticmethod
    def _kill(proc: subprocess.Popen[bytes] | None) -> None:
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)

    def kill_api(self) -> None:
        """SIGKILL the API process (no shutdown hooks run)."""
        self._kill(self.api_proc)

    def kill_worker(self) -> None:
        """SIGKILL the worker role (anchors, relays, mirrors stop mid-flight)."""
        self._kill(self.worker_proc)

    def restart(self) -> None:
        """Start whatever is not running (same ports, same data): worker first, then API."""
        self.start_worker()
        self.start_api()

    def stop(self) -> None:
        for proc in (self.api_proc, self.worker_proc):
            if proc is not None and proc.poll() is None:
                proc.terminate()
        for proc in (self.api_proc, self.worker_proc):
            if proc is None:
                continue
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    @property
    def running(self) -> bool:
        return all(p is not None and p.poll() is None for p in (self.worker_proc, self.api_proc))

    # -- clients -----------------------------------------------------------------------
    def client(self, token: str | None = None, *, timeout: float = 30) -> EmrClient:
        """A client of this hospital's API (``token`` None: the admin token)."""
        return EmrClient(
            self.url, token if token is not None else self.admin_token, timeout=timeout
        )

    def admin(self) -> EmrClient:
        return self.client(self.admin_token)

    def hospital(self) -> EmrClient:
        """A client with this hospital's own hospital-role token (made at start)."""
        return self.client(self.hospital_token)

    def info(self) -> dict[str, object]:
        return httpx.get(self.url + "/info", timeout=10).json()

    def output(self) -> str:
        return "\n".join(
            f"--- {p}\n{p.read_text(errors='replace')[-4000:]}" for p in self._logs if p.exists()
        )

    # -- faults ------------------------------------------------------------------------
    def kill_ipfs(self) -> None:
        self.ipfs.stop_node(0)

    def start_ipfs(self) -> None:
        self.ipfs.start(timeout=120)


def read_status(client: EmrClient, record: str, session: str) -> tuple[int, bytes]:
    """A record read through ``client``: (200, content), or (the refusal's status, b"")."""
    try:
        return 200, client.read(record, session).content
    except ApiError as err:
        return err.status, b""


@dataclass
class Consortium:
    chain: HardhatChain
    hospitals: list[Hospital]
    home: Path
    own_chain: bool = True

    # -- start -------------------------------------------------------------------------
    @classmethod
    def start(
        cls,
        n: int,
        tmp: Path,
        *,
        members: int | None = None,
        chain: HardhatChain | None = None,
        hsm: bool = True,
    ) -> Consortium:
        """Start ``n`` hospitals; the first ``members`` (default all) are consortium members
        (hospital 0 founds, the others are admitted by vote), the rest run but wait for a
        test to admit them. ``chain``: an already running hardhat node (default: start one
        in ``tmp``). ``hsm``: hospital 0's keys in SoftHSM2."""
        assert n >= 1
        members = n if members is None else members
        _script("services.sh", "start", timeout=600)  # MariaDB + Redis (idempotent)
        own = chain is None
        if chain is None:
            chain = HardhatChain(tmp / "chain")
            chain.start()
        consortium = cls(chain=chain, hospitals=[], home=tmp, own_chain=own)
        try:
            for i in range(n):
                consortium.hospitals.append(consortium._make(i, hsm=hsm and i == 0))
            # Hospital 0 deploys; the others need its manifests before their worker starts.
            first = consortium.hospitals[0]
            first.start_worker()
            for h in consortium.hospitals[1:]:
                consortium._copy_manifests(first, h)
            # Workers one after another (each funds its account from the same dev account),
            # each API while the next worker starts.
            first.start_api()
            for h in consortium.hospitals[1:]:
                h.start_worker()
                h.start_api()
            for h in consortium.hospitals:
                h.address = str(h.info()["hospital"])
                h.hospital_token = h.admin().create_token(f"ehr-{h.index}", "hospital")
            for i in range(1, members):
                consortium.admit(i)
        except BaseException:
            consortium.stop()
            raise
        return consortium

    def _make(self, i: int, *, hsm: bool) -> Hospital:
        home = self.home / f"hospital-{i}"
        data_dir = home / "data"
        data_dir.mkdir(parents=True, exist_ok=True)
        ipfs = IpfsCluster(home / "ipfs", 1)
        ipfs.start(timeout=900)  # the first run installs js-ipfs
        database = "emr_test_c" + secrets.token_hex(4)
        mysql_proxy = CutProxy(3306)
        chain_proxy = CutProxy(self.chain.port)
        env = {
            "EMR_MODE": "production",
            "EMR_DATA_DIR": str(data_dir),
            "EMR_HOSPITAL_NAME": f"Hospital {i}",
            "EMR_HSM__PASSPHRASE": "test passphrase",
            "EMR_HSM__SCRYPT_N": "1024",
            "EMR_HSM__ALLOW_SOFTWARE_IN_PRODUCTION": "true",
            "EMR_ZK__KEYS_DIR": str(TEST_ZK_KEYS),
            "EMR_ZK__ALLOW_DEV_KEYS_IN_PRODUCTION": "true",
            "EMR_CHAIN__RPC_URL": chain_proxy.url,
            "EMR_CHAIN__NETWORK": NETWORK,
            "EMR_CHAIN__FUND_DEV_ACCOUNT": "true",
            "EMR_CHAIN__ANCHOR_INTERVAL": "0.3",
            "EMR_CHAIN__ACCESS_LOG_INTERVAL": "0.3",
            "EMR_STORAGE__IPFS_NODES": json.dumps(ipfs.urls),
            "EMR_STORAGE__REPLICATION_MIN": "1",
            "EMR_STORAGE__REPLICATION_MAX": "1",
            "EMR_STORAGE__MYSQL_PORT": str(mysql_proxy.port),
            "EMR_STORAGE__MYSQL_DATABASE": database,
            "EMR_STORAGE__REDIS_URL": f"redis://127.0.0.1:6379/{REDIS_DB_BASE + i}",
            "EMR_API__PUBLIC_URL": "http://127.0.0.1",
            "EMR_API__AUTH_CACHE_TTL": "1",
            "EMR_THROTTLE__ENABLED": "false",
            # A lease that survives a few seconds of stall: three hospitals starting on two
            # busy cores (or a short MySQL cut) must not cost a worker its lease; a restarted
            # worker waits out at most this long before it takes the lease back.
            "EMR_WORKER__LEASE_TTL": "8",
            "EMR_WORKER__LEASE_RENEW": "1",
        }
        if hsm:
            token_dir = home / "hsm"
            subprocess.run(
                ["bash", str(ROOT / "scripts/softhsm.sh"), "init", str(token_dir), HSM_TOKEN],
                env={**os.environ, "EMR_HSM_SO_PIN": HSM_SO_PIN, "EMR_HSM_PIN": HSM_PIN},
                check=True,
                capture_output=True,
                timeout=120,
            )
            env |= {
                "SOFTHSM2_CONF": str(token_dir / "softhsm2.conf"),
                "EMR_HSM__BACKEND": "pkcs11",
                "EMR_HSM__TOKEN_LABEL": HSM_TOKEN,
                "EMR_HSM__PIN": HSM_PIN,
            }
        return Hospital(
            index=i,
            name=f"Hospital {i}",
            home=home,
            data_dir=data_dir,
            env=env,
            database=database,
            ipfs=ipfs,
            mysql_proxy=mysql_proxy,
            chain_proxy=chain_proxy,
        )

    @staticmethod
    def _copy_manifests(source: Hospital, target: Hospital) -> None:
        """Hospital 0's deployment manifests (chain, zk, wallets): what a joining hospital
        is given out of band."""
        src, dst = source.data_dir / "deployments", target.data_dir / "deployments"
        dst.mkdir(parents=True, exist_ok=True)
        for manifest in sorted(src.glob(f"{NETWORK}*.json")):
            shutil.copy2(manifest, dst / manifest.name)

    # -- governance --------------------------------------------------------------------
    def propose(self, proposer: int, kind: str, subject: int) -> dict[str, object]:
        """Proposal (admit or remove hospital ``subject``) made at ``proposer``'s node."""
        target = self.hospitals[subject]
        return (
            self.hospitals[proposer]
            .hospital()
            .governance.propose(kind, target.address, target.name if kind == "admit" else None)
        )

    def vote_until_executed(
        self, proposal: dict[str, object], voters: list[int]
    ) -> dict[str, object]:
        for i in voters:
            if proposal["executed"]:
                break
            proposal = self.hospitals[i].hospital().governance.vote(int(proposal["id"]))  # type: ignore[arg-type]
        assert proposal["executed"], proposal
        return proposal

    def members(self) -> list[int]:
        """Indexes of the hospitals that are consortium members now (read at hospital 0)."""
        listed = {m["address"] for m in self.hospitals[0].info()["members"]}  # type: ignore[union-attr]
        return [h.index for h in self.hospitals if h.address in listed]

    def admit(self, subject: int, proposer: int = 0) -> dict[str, object]:
        """Admit hospital ``subject``: proposed at ``proposer``, voted by the other members."""
        current = self.members()
        proposal = self.propose(proposer, "admit", subject)
        return self.vote_until_executed(proposal, [i for i in current if i != proposer])

    def remove(self, subject: int, proposer: int = 0) -> dict[str, object]:
        current = self.members()
        proposal = self.propose(proposer, "remove", subject)
        return self.vote_until_executed(proposal, [i for i in current if i != proposer])

    # -- faults ------------------------------------------------------------------------
    def chain_proxies(self) -> list[CutProxy]:
        """Every hospital's chain connection (cut them all: the chain is down)."""
        return [h.chain_proxy for h in self.hospitals]

    # -- stop --------------------------------------------------------------------------
    def stop(self) -> None:
        for h in self.hospitals:
            with contextlib.suppress(Exception):
                h.stop()
        for h in self.hospitals:
            for stop in (h.ipfs.stop, h.mysql_proxy.close, h.chain_proxy.close):
                with contextlib.suppress(Exception):
                    stop()
            with contextlib.suppress(Exception):
                _drop_database(h.database)
        if self.own_chain:
            with contextlib.suppress(Exception):
                self.chain.stop()

    def output(self) -> str:
        return "\n".join(h.output() for h in self.hospitals)


def _drop_database(name: str) -> None:
    import pymysql

    assert name.startswith("emr_test_")
    conn = pymysql.connect(host="127.0.0.1", port=3306, user="root", password="")
    try:
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
    finally:
        conn.close()


__all__ = ["Consortium", "Hospital", "until"]
