"""A real node on the embedded default, served over real HTTP on a free loopback port."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn

from hsm.abc import KeyStoreAPI
from node.api.app import create_app
from node.api.server import server_options
from node.audit.keystore import AuditedKeyStore
from node.client import EmrClient
from node.observability.metrics import MeteredKeyStore
from node.settings import ApiSettings, ChainSettings, HSMSettings, Settings, ZkSettings
from node.wiring import Node, build_node
from tests.node.production import (
    TEST_ZK_KEYS,
    HardhatChain,
    IpfsCluster,
    ProductionServices,
    drop_test_database,
)


def make_settings(data_dir: Path, **chain: object) -> Settings:
    defaults: dict[str, object] = {
        "anchor_interval": 0.2,
        "access_log_interval": 0.2,
        # Tests that count blocks expect no background sends: anchor only when asked.
        "key_audit_anchor_interval": 3600.0,
        "anchor_batch_size": 50,
    }
    return Settings(
        data_dir=data_dir,
        hospital_name="Test General",
        hsm=HSMSettings(passphrase="test passphrase", scrypt_n=2**10),
        chain=ChainSettings(**{**defaults, **chain}),  # type: ignore[arg-type]
        api=ApiSettings(max_upload_bytes=64 * 1024),
        zk=ZkSettings(keys_dir=TEST_ZK_KEYS),
    )


def key_backend(keys: KeyStoreAPI) -> KeyStoreAPI:
    """The backend under a node's key-store wrappers (key audit log, metrics): for tests
    that look into its private state (what must never leak)."""
    while isinstance(keys, AuditedKeyStore | MeteredKeyStore):
        keys = keys.inner
    return keys


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RunningNode:
    node: Node
    url: str
    admin_token: str
    server: uvicorn.Server
    thread: threading.Thread

    def client(self, token: str | None = None) -> EmrClient:
        return EmrClient(self.url, token)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        drop_test_database(self.node.settings)


def start_node(data_dir: Path, settings: Settings | None = None, **chain: object) -> RunningNode:
    settings = settings or make_settings(data_dir, **chain)
    port = _free_port()
    # Serve where the settings say: the derived public URL (SIWE domain, trusted host)
    # names this port, unless the test configured one.
    api = settings.api.model_copy(update={"port": port})
    node = build_node(settings.model_copy(update={"api": api}))
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(node),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            lifespan="on",
            proxy_headers=False,  # as `emr-node run`: only throttle.trusted_proxies count
            **server_options(api),  # as `emr-node run`: bounded request heads
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            node.stop()
            raise RuntimeError("test node did not start")
        time.sleep(0.05)
    token = (data_dir / "admin-token").read_text().strip()
    return RunningNode(node, f"http://127.0.0.1:{port}", token, server, thread)


@pytest.fixture(scope="session")
def production_services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProductionServices]:
    services = ProductionServices(
        IpfsCluster(tmp_path_factory.mktemp("ipfs"), 3),
        HardhatChain(tmp_path_factory.mktemp("chain")),
    )
    try:
        services.start()
        yield services
    finally:
        services.stop()


@pytest.fixture
def embedded_node(tmp_path: Path) -> Iterator[RunningNode]:
    rn = start_node(tmp_path / "node")
    yield rn
    rn.stop()


@pytest.fixture(params=["embedded", pytest.param("production", marks=pytest.mark.integration)])
def running_node(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RunningNode]:
    """A node on the embedded default, and again on the production backends."""
    data_dir = tmp_path / "node"
    settings = None
    if request.param == "production":
        services: ProductionServices = request.getfixturevalue("production_services")
        settings = services.settings(data_dir)
    rn = start_node(data_dir, settings)
    yield rn
    rn.stop()


@pytest.fixture
def hospital(running_node: RunningNode) -> Iterator[EmrClient]:
    with running_node.client(running_node.admin_token) as admin:
        token = admin.create_token("ehr", "hospital")
    with running_node.client(token) as c:
        yield c


@pytest.fixture
def auditor(running_node: RunningNode) -> Iterator[EmrClient]:
    with running_node.client(running_node.admin_token) as admin:
        token = admin.create_token("audit", "auditor")
    with running_node.client(token) as c:
        yield c


@pytest.fixture
def public(running_node: RunningNode) -> Iterator[EmrClient]:
    with running_node.client() as c:
        yield c
