"""One hospital as several processes: a worker role and API processes that share nothing but
the data directory's databases and the worker's endpoint (issue 11).

Each API process is an `emr-node api` on its own port, so every request goes to a known
process; the tests check that what one process does, every other one honours."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account

from node.client import ApiError, EmrClient, Scope
from node.settings import Settings
from node.wiring import build_node
from tests.node.production import ProductionServices, drop_test_database
from tests.node.roles.cluster import Cluster, embedded_env, production_env, until

pytestmark = pytest.mark.integration


@pytest.fixture(params=["embedded", "production"])
def cluster(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Cluster]:
    """Worker and API processes on the embedded default (sharing the data directory's SQLite
    files and the worker-hosted chain), and on the production services."""
    data_dir = tmp_path / "node"
    if request.param == "production":
        services: ProductionServices = request.getfixturevalue("production_services")
        env = production_env(services, data_dir)
    else:
        env = embedded_env(data_dir)
    c = Cluster(data_dir, env)
    try:
        yield c
    finally:
        c.close()
        if request.param == "production":
            drop_test_database(
                services.settings(
                    data_dir, storage={"mysql_database": env["EMR_STORAGE__MYSQL_DATABASE"]}
                )
            )


def _anchor_counts(data_dir: Path, env: dict[str, str]) -> dict[str, int]:
    """RecordAnchored events per record id, read from the chain after every process stopped."""
    if "EMR_CHAIN__RPC_URL" in env:  # production: the hardhat node
        from web3 import HTTPProvider, Web3

        from node.chain.deploy import Deployment

        w3 = Web3(HTTPProvider(env["EMR_CHAIN__RPC_URL"]))
        deployment = Deployment.load(data_dir / "deployments" / "test.json")
        return _count(w3, deployment.record_registry)
    settings = Settings(
        data_dir=data_dir,
        hsm={"passphrase": env["EMR_HSM__PASSPHRASE"], "scrypt_n": 1024},
        zk={"enabled": False},
    )
    node = build_node(settings)  # the embedded chain lives in the data directory
    try:
        return _count(node.chain.web3, node.chain.deployment.record_registry)  # type: ignore[attr-defined]
    finally:
        node.stop()


def _count(w3: Any, address: str) -> dict[str, int]:
    registry = w3.eth.contract(address=address, abi=_registry_abi())
    counts: dict[str, int] = {}
    for ev in registry.events.RecordAnchored().get_logs(from_block=0):
        rid = "0x" + bytes(ev["args"]["recordId"]).hex()
        counts[rid] = counts.get(rid, 0) + 1
    return counts


def _registry_abi() -> list[dict[str, object]]:
    from node.chain.artifacts import load_artifact

    return load_artifact("RecordRegistry").abi


def test_two_api_processes_one_worker_share_everything(cluster: Cluster) -> None:
    cluster.worker()
    _pa, url_a = cluster.api()
    _pb, url_b = cluster.api()
    admin_a, admin_b = cluster.admin(url_a), cluster.admin(url_b)
    assert admin_b.health()["status"] == "ok", admin_b.health()
    hospital_a = EmrClient(url_a, admin_a.create_token("ehr", "hospital"))
    hospital_b = EmrClient(url_b, hospital_a.token)  # a token made on A works on B
    patient, clinician = Account.create(), Account.create()

    # 1. upload through both processes; the worker anchors both
    rid_a = hospital_a.upload(patient.address, b"lab A", category="lab")["record_id"]
    rid_b = hospital_b.upload(patient.address, b"lab B", category="lab")["record_id"]
    for rid in (rid_a, rid_b):
        assert hospital_b.wait_anchored(rid, timeout=60)["status"] == "anchored"

    # 2. consent granted through B (relayed by the worker), honoured by A and B
    public_a, public_b = EmrClient(url_a), EmrClient(url_b)
    relayed = public_b.grant(patient, clinician.address, Scope.category("lab"))
    assert relayed["status"] == "relayed", relayed
    session = public_a.login(clinician)  # a session made on A works on B
    assert public_a.read(rid_a, session).content == b"lab A"
    assert public_b.read(rid_b, session).content == b"lab B"

    # 3. revoked through A: refused by both processes from the next block on, although
    # both have just cached a "granted" decision
    assert public_a.revoke(patient, clinician.address, Scope.category("lab"))["status"] == (
        "relayed"
    )
    for public in (public_a, public_b):
        with pytest.raises(ApiError) as refused:
            public.read(rid_a, session)
        assert refused.value.status == 403

    # 4. the audit trail (through the worker's mirror) shows the reads of both processes
    auditor = EmrClient(url_b, admin_a.create_token("audit", "auditor"))

    def accesses() -> int:
        events = auditor.audit_events(patient=patient.address)
        return sum(1 for e in events if e["event"] == "AccessRecorded")

    until(lambda: accesses() >= 4, timeout=60, step=0.3)

    # 5. a token revoked through A is refused by B within the auth cache's bound (1 s here)
    doomed = admin_a.issue_token("doomed", "hospital")
    doomed_b = EmrClient(url_b, doomed["token"])
    doomed_b.records(patient=patient.address)  # B has it cached now
    admin_a.revoke_token(doomed["id"])
    time.sleep(1.5)
    with pytest.raises(ApiError) as revoked:
        doomed_b.records(patient=patient.address)
    assert revoked.value.status == 401


def test_worker_killed_mid_burst_a_standby_takes_over_and_anchors_each_record_once(
    cluster: Cluster,
) -> None:
    first, _ = cluster.worker()
    _standby, _ = cluster.worker(wait=False)  # waits for the lease
    _api, url = cluster.api()
    admin = cluster.admin(url)
    hospital = EmrClient(url, admin.create_token("ehr", "hospital"), timeout=30)
    patient = Account.create()
    acknowledged: dict[str, bytes] = {}
    lock = threading.Lock()
    stop = threading.Event()

    def burst(n: int) -> None:
        i = 0
        while not stop.is_set():
            content = b"w%d-%d" % (n, i)
            try:
                rid = hospital.upload(patient.address, content, category="lab")["record_id"]
            except ApiError:
                continue
            with lock:
                acknowledged[rid] = content
            i += 1

    threads = [threading.Thread(target=burst, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    until(lambda: len(acknowledged) >= 60, timeout=120, step=0.05)
    cluster.kill(first)  # SIGKILL: no release, the lease expires
    until(lambda: len(acknowledged) >= 150, timeout=120, step=0.05)
    stop.set()
    for t in threads:
        t.join(timeout=60)
    for rid in list(acknowledged):
        assert hospital.wait_anchored(rid, timeout=120)["status"] == "anchored"
    status = admin.health()
    assert status["workers"], status
    # The API process follows the new holder (another port) for chain reads and sends.
    clinician = Account.create()
    public = EmrClient(url)
    assert public.grant(patient, clinician.address, Scope.category("lab"))["status"] == "relayed"
    rid, content = next(iter(acknowledged.items()))
    assert public.read(rid, public.login(clinician)).content == content
    cluster.close()
    # The standby took the lease with the next fence and did the anchoring after the kill.
    assert "lease fence 2" in cluster.logs[1].read_text(), cluster.output()
    counts = _anchor_counts(cluster.data_dir, dict(cluster.env))
    assert {rid: counts.get(rid, 0) for rid in acknowledged} == dict.fromkeys(acknowledged, 1)


def test_api_process_killed_mid_request_leaves_no_partial_record(cluster: Cluster) -> None:
    cluster.worker()
    api, url = cluster.api()
    admin = cluster.admin(url)
    token = admin.create_token("ehr", "hospital")
    patient = Account.create()
    acknowledged: dict[str, bytes] = {}
    lock = threading.Lock()

    def burst(n: int) -> None:
        client = EmrClient(url, token, timeout=30)
        i = 0
        while True:
            content = b"k%d-%d" % (n, i)
            try:
                rid = client.upload(patient.address, content, category="lab")["record_id"]
            except Exception:  # the process died under this request
                return
            with lock:
                acknowledged[rid] = content
            i += 1

    threads = [threading.Thread(target=burst, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    until(lambda: len(acknowledged) >= 40, timeout=120, step=0.02)
    cluster.kill(api)
    for t in threads:
        t.join(timeout=60)
    _api2, url2 = cluster.api()
    hospital = EmrClient(url2, token)
    public = EmrClient(url2)
    session = public.login(patient)
    listed = hospital.records(patient=patient.address, limit=1000)
    # Every record the index holds is whole: its ciphertext is there and decrypts.
    for row in listed:
        assert public.read(row["record_id"], session).status_code == 200
    listed_ids = {row["record_id"] for row in listed}
    assert set(acknowledged) <= listed_ids
    for rid, content in acknowledged.items():
        assert public.read(rid, session).content == content


def test_a_worker_that_loses_its_lease_stops_and_exits(tmp_path: Path) -> None:
    """Another holder took the lease (here: written straight into the index, as a standby
    would after an expiry the old holder did not notice): the old worker's next renewal
    fails, it stops its workers and exits with code 3 instead of sending on."""
    import sqlite3

    data_dir = tmp_path / "node"
    c = Cluster(data_dir, embedded_env(data_dir))
    try:
        worker, _url = c.worker()
        with sqlite3.connect(data_dir / "index.sqlite") as db:
            db.execute(
                "UPDATE worker_leases SET holder = 'elsewhere', fence = fence + 100,"
                " expires_at = expires_at + 3600 WHERE name = 'worker'"
            )
        assert worker.wait(timeout=60) == 3, c.output()
        assert "lost the worker lease" in c.output()
    finally:
        c.close()
