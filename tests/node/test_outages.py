"""Production mode under failure, against real services: MySQL, Redis or the chain cut
off (through a TCP proxy; the machine's servers keep running), an IPFS daemon killed, and
the node itself killed with SIGKILL in the middle of a burst of uploads."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from eth_account import Account

from node.client import ApiError, EmrClient, Scope
from tests.node.conftest import RunningNode, start_node
from tests.node.production import TEST_ZK_KEYS, ProductionServices, free_port
from tests.tcp_proxy import CutProxy

pytestmark = pytest.mark.integration


def _until(predicate, timeout: float = 60.0, step: float = 0.2) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached")
        time.sleep(step)


@pytest.fixture
def proxies() -> Iterator[dict[str, CutProxy]]:
    made = {"mysql": CutProxy(3306), "redis": CutProxy(6379)}
    yield made
    for p in made.values():
        p.close()


def _node_behind_proxies(
    services: ProductionServices, data_dir: Path, proxies: dict[str, CutProxy], **storage: object
) -> RunningNode:
    chain_proxy = CutProxy(services.chain.port)
    proxies["chain"] = chain_proxy
    settings = services.settings(
        data_dir,
        storage={
            "mysql_port": proxies["mysql"].port,
            "redis_url": f"redis://127.0.0.1:{proxies['redis'].port}/0",
            **storage,
        },
        chain={"rpc_url": chain_proxy.url},
    )
    return start_node(data_dir, settings)


@pytest.fixture
def outage_node(
    production_services: ProductionServices, tmp_path: Path, proxies: dict[str, CutProxy]
) -> Iterator[RunningNode]:
    rn = _node_behind_proxies(production_services, tmp_path / "node", proxies)
    yield rn
    for p in proxies.values():
        if p._listener is None:  # a test that failed mid-outage: reconnect before stopping
            p.restore()
    rn.stop()


def _clients(rn: RunningNode) -> tuple[EmrClient, EmrClient, EmrClient]:
    admin = rn.client(rn.admin_token)
    return admin, rn.client(admin.create_token("ehr", "hospital")), rn.client()


def test_mysql_down_gives_clean_503s_and_nothing_is_lost(
    outage_node: RunningNode, proxies: dict[str, CutProxy]
) -> None:
    _admin, hospital, public = _clients(outage_node)
    patient = Account.create()
    before = hospital.upload(patient.address, b"before the outage", category="lab")["record_id"]
    proxies["mysql"].cut()
    with pytest.raises(ApiError) as err:
        hospital.upload(patient.address, b"during the outage", category="lab")
    assert err.value.status == 503 and err.value.code == "backend_unavailable"
    assert "password" not in err.value.detail.lower()
    proxies["mysql"].restore()
    after = hospital.upload(patient.address, b"after the outage", category="lab")["record_id"]
    rows = outage_node.node.index.list_records(patient=patient.address)
    assert {r.content_type for r in rows} == {"application/octet-stream"}
    assert len(rows) == 2  # the refused upload left no index row
    session = public.login(patient)
    assert public.read(before, session).content == b"before the outage"
    assert public.read(after, session).content == b"after the outage"
    hospital.wait_anchored(before)
    hospital.wait_anchored(after)


def test_redis_down_the_node_keeps_serving_and_says_so(
    outage_node: RunningNode, proxies: dict[str, CutProxy]
) -> None:
    admin, hospital, public = _clients(outage_node)
    patient, doc = Account.create(), Account.create()
    rid = hospital.upload(patient.address, b"cached", category="lab")["record_id"]
    public.grant(patient, doc.address, Scope.record(rid))
    session = public.login(doc)
    assert public.read(rid, session).content == b"cached"
    assert admin.health()["status"] == "ok"
    proxies["redis"].cut()
    assert hospital.upload(patient.address, b"no cache", category="lab")["record_id"]
    assert public.read(rid, session).content == b"cached"  # served without Redis
    health = admin.health()
    assert health["status"] == "degraded"
    assert health["components"]["cache"]["ok"] is False
    assert health["components"]["throttle"]["mode"] == "local"
    # a revoke while Redis is away still wins at once
    public.revoke(patient, doc.address, Scope.record(rid))
    with pytest.raises(ApiError) as denied:
        public.read(rid, session)
    assert denied.value.status == 403
    proxies["redis"].restore()
    _until(lambda: admin.health()["components"]["cache"]["ok"], timeout=60)


def test_chain_down_anchors_and_consents_queue_and_drain(
    outage_node: RunningNode, proxies: dict[str, CutProxy]
) -> None:
    admin, hospital, public = _clients(outage_node)
    patient, doc = Account.create(), Account.create()
    proxies["chain"].cut()
    rid = hospital.upload(patient.address, b"while the chain is away", category="lab")["record_id"]
    body = public.sign_consent(
        patient,
        "Grant",
        doc.address,
        Scope.record(rid),
        nonce=0,
        domain={
            "name": "EMR Consent",
            "version": "1",
            "chainId": outage_node.node.chain.chain_id,
            "verifyingContract": outage_node.node.chain.deployment.consent_registry,
        },
    )
    r = httpx.post(f"{outage_node.url}/consents/grant", json=body)
    assert r.status_code == 202 and r.json()["status"] == "queued"
    relay_id = r.json()["relay_id"]
    time.sleep(1.0)
    assert hospital.receipt(rid)["status"] == "pending"
    assert admin.health()["pending_consent_relays"] == 1
    # a forged consent is not queued: only the patient's own signature is
    forged = dict(
        body,
        signature=public.sign_consent(
            Account.create(),
            "Grant",
            doc.address,
            Scope.record(rid),
            nonce=0,
            domain=body["domain"],
        )["signature"],
    )
    assert httpx.post(f"{outage_node.url}/consents/grant", json=forged).status_code == 503
    proxies["chain"].restore()
    hospital.wait_anchored(rid, timeout=60)
    _until(
        lambda: (
            httpx.get(f"{outage_node.url}/consents/relays/{relay_id}").json()["status"] == "relayed"
        )
    )
    assert public.read(rid, public.login(doc)).content == b"while the chain is away"


def test_an_ipfs_daemon_lost_during_uploads(
    production_services: ProductionServices, tmp_path: Path
) -> None:
    cluster = production_services.ipfs  # three daemons; every blob on two of them
    rn = start_node(tmp_path / "node", production_services.settings(tmp_path / "node"))
    try:
        _admin, hospital, public = _clients(rn)
        patient = Account.create()
        session = public.login(patient)
        contents = {}
        for i in range(6):
            contents[hospital.upload(patient.address, b"r%d" % i, category="lab")["record_id"]] = (
                b"r%d" % i
            )
        cluster.stop_node(2)
        try:
            for i in range(6):  # min 2 is still met by the two live daemons
                rid = hospital.upload(patient.address, b"d%d" % i, category="lab")["record_id"]
                contents[rid] = b"d%d" % i
            for rid, content in contents.items():  # reads fall back to the live daemons
                assert public.read(rid, session).content == content
        finally:
            cluster.start()
        cids = [rn.node.index.get_record(bytes.fromhex(r[2:])).cid for r in contents]
        assert rn.node.blobs.repair(cids).healthy == len(cids)  # type: ignore[attr-defined]

        cluster.wipe_node(0)  # a daemon loses its disk and comes back empty
        cluster.start()
        report = rn.node.blobs.repair(cids)  # type: ignore[attr-defined]
        assert report.repaired >= 1 and report.unrecoverable == 0 and report.degraded == 0
        assert rn.node.blobs.repair(cids).healthy == len(cids)  # type: ignore[attr-defined]
        for rid, content in contents.items():
            assert public.read(rid, session).content == content
    finally:
        rn.stop()


def test_kill_9_mid_burst_loses_no_acknowledged_upload(
    production_services: ProductionServices, tmp_path: Path
) -> None:
    data_dir = tmp_path / "node"
    settings = production_services.settings(data_dir)
    port = free_port()
    env = dict(
        os.environ,
        EMR_MODE="production",
        EMR_API__PUBLIC_URL=f"http://127.0.0.1:{port}",
        EMR_DATA_DIR=str(data_dir),
        EMR_HSM__PASSPHRASE="test passphrase",
        EMR_HSM__SCRYPT_N="1024",
        EMR_HSM__ALLOW_SOFTWARE_IN_PRODUCTION="true",
        EMR_ZK__ALLOW_DEV_KEYS_IN_PRODUCTION="true",
        EMR_ZK__KEYS_DIR=str(TEST_ZK_KEYS),
        EMR_CHAIN__RPC_URL=settings.chain.rpc_url,
        EMR_CHAIN__NETWORK="test",
        EMR_CHAIN__FUND_DEV_ACCOUNT="true",
        EMR_CHAIN__ANCHOR_INTERVAL="0.5",
        EMR_STORAGE__IPFS_NODES=settings.storage.model_dump_json(include={"ipfs_nodes"})[14:-1],
        EMR_STORAGE__MYSQL_DATABASE=settings.storage.mysql_database,
        EMR_THROTTLE__ENABLED="false",
    )

    def launch() -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "node.cli.main", "run", "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _until(lambda: _answers(port), timeout=90)
        assert proc.poll() is None, "the node that answered is not the one just started"
        return proc

    proc = launch()
    admin = EmrClient(f"http://127.0.0.1:{port}", (data_dir / "admin-token").read_text().strip())
    hospital = EmrClient(admin.base_url, admin.create_token("ehr", "hospital"), timeout=10)
    patient = Account.create()
    acknowledged: dict[str, bytes] = {}
    lock = threading.Lock()
    stop = threading.Event()

    def burst(worker: int) -> None:
        i = 0
        while not stop.is_set():
            content = b"w%d-%d" % (worker, i)
            try:
                rid = hospital.upload(patient.address, content, category="lab")["record_id"]
            except Exception:  # the node died under us: this one was never acknowledged
                return
            with lock:
                acknowledged[rid] = content
            i += 1

    threads = [threading.Thread(target=burst, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    _until(lambda: len(acknowledged) >= 40, timeout=120, step=0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    stop.set()
    for t in threads:
        t.join(timeout=30)
    assert len(acknowledged) >= 40
    # The killed parent's API processes get SIGTERM and finish their requests first; a
    # new node started while they still listen could not bind, and they would answer.
    _until(lambda: _port_free(port), timeout=60)

    proc = launch()
    try:
        public = EmrClient(admin.base_url)
        session = public.login(patient)
        for rid, content in acknowledged.items():
            assert public.read(rid, session).content == content
        for rid in acknowledged:
            assert hospital.wait_anchored(rid, timeout=120)["status"] == "anchored"
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def _port_free(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _answers(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
