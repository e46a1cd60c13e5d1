"""Upload benchmarks on the embedded default. ``scripts/bench_upload.py`` is the entry point.

Two measurements: the upload flow in process (encrypt, store, index, queue; batches of
``batch`` records as a bulk importer would send them), and single-record uploads over
HTTP from ``concurrency`` client threads to ``emr-node run`` in its own process, as
hospital systems send them. Both then time how long the anchorer takes to put every
record on-chain after the last upload.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from eth_account import Account

from node.flows.upload_record import UploadRequest, upload_records
from node.settings import ChainSettings, HSMSettings, Settings
from node.wiring import Node, build_node


def softhsm_env(directory: Path) -> dict[str, str]:
    """A fresh SoftHSM2 token in ``directory`` (scripts/softhsm.sh) and the environment that
    points a node at it."""
    pin = secrets.token_hex(8)
    root = Path(__file__).resolve().parents[1]
    subprocess.run(
        ["bash", str(root / "scripts/softhsm.sh"), "init", str(directory), "emr-bench"],
        env={**os.environ, "EMR_HSM_SO_PIN": secrets.token_hex(8), "EMR_HSM_PIN": pin},
        check=True,
        capture_output=True,
    )
    return {
        "SOFTHSM2_CONF": str(directory / "softhsm2.conf"),
        "EMR_HSM__BACKEND": "pkcs11",
        "EMR_HSM__TOKEN_LABEL": "emr-bench",
        "EMR_HSM__PIN": pin,
    }


def _node(data_dir: Path, hsm_env: dict[str, str] | None = None) -> Node:
    hsm = HSMSettings(passphrase="bench", scrypt_n=2**10)
    if hsm_env is not None:
        os.environ["SOFTHSM2_CONF"] = hsm_env["SOFTHSM2_CONF"]
        hsm = HSMSettings(
            backend="pkcs11",
            token_label=hsm_env["EMR_HSM__TOKEN_LABEL"],
            pin=hsm_env["EMR_HSM__PIN"],
        )
    return build_node(
        Settings(
            data_dir=data_dir,
            hsm=hsm,
            chain=ChainSettings(
                anchor_interval=0.5, access_log_interval=1.0, anchor_batch_size=1000
            ),
        )
    )


def _drain_anchors(node: Node, timeout: float = 600) -> float:
    t0 = time.perf_counter()
    while node.index.count_pending_anchors():
        if time.perf_counter() - t0 > timeout:
            raise TimeoutError("anchoring did not finish")
        time.sleep(0.05)
    return time.perf_counter() - t0


def bench_flow(
    n: int, size: int, batch: int, hsm_env: dict[str, str] | None = None
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        node = _node(Path(tmp), hsm_env)
        patients = [Account.create().address for _ in range(50)]
        payloads = [os.urandom(size) for _ in range(n)]
        member_id = node.chain.member_id(node.hospital)
        node.start()
        t0 = time.perf_counter()
        for i in range(0, n, batch):
            upload_records(
                [
                    UploadRequest(patients[j % 50], "lab", "application/octet-stream", payloads[j])
                    for j in range(i, min(i + batch, n))
                ],
                hospital=node.hospital,
                member_id=member_id,
                blobs=node.blobs,
                index=node.index,
                keys=node.keys,
            )
        upload_s = time.perf_counter() - t0
        anchor_s = _drain_anchors(node)
        total_s = time.perf_counter() - t0
        node.stop()
    return {
        "records": n,
        "size": size,
        "batch": batch,
        "uploads_per_s": round(n / upload_s),
        "anchored_all_after_s": round(total_s, 2),
        "anchor_tail_s": round(anchor_s, 2),
    }


def production_env(rpc_url: str, ipfs_nodes: list[str]) -> dict[str, str]:
    """Settings for a production-mode node against running services (fresh database)."""
    return {
        "EMR_MODE": "production",
        "EMR_HSM__ALLOW_SOFTWARE_IN_PRODUCTION": "true",
        "EMR_ZK__ALLOW_DEV_KEYS_IN_PRODUCTION": "true",
        "EMR_CHAIN__RPC_URL": rpc_url,
        "EMR_CHAIN__NETWORK": "bench",
        "EMR_CHAIN__FUND_DEV_ACCOUNT": "true",
        "EMR_STORAGE__IPFS_NODES": json.dumps(ipfs_nodes),
        "EMR_STORAGE__REPLICATION_MIN": str(min(2, len(ipfs_nodes))),
        "EMR_STORAGE__REPLICATION_MAX": str(min(2, len(ipfs_nodes))),
        "EMR_STORAGE__MYSQL_DATABASE": "emr_bench_" + secrets.token_hex(4),
        "EMR_THROTTLE__ENABLED": "false",
    }


def _serve(
    data_dir: Path, port: int, extra_env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """``emr-node run`` in its own process, as a hospital runs it."""
    env = dict(
        os.environ,
        EMR_DATA_DIR=str(data_dir),
        EMR_HSM__PASSPHRASE="bench",
        EMR_HSM__SCRYPT_N="1024",
        EMR_CHAIN__ANCHOR_INTERVAL="0.5",
        EMR_API__PUBLIC_URL=f"http://127.0.0.1:{port}",
        **(extra_env or {}),
    )
    cmd = [sys.executable, "-m", "node.cli.main", "run", "--port", str(port)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while True:
        try:
            httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).raise_for_status()
            return proc
        except httpx.HTTPError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise RuntimeError("the benchmark node did not start") from None
            time.sleep(0.2)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def bench_http(
    n: int, size: int, concurrency: int, extra_env: dict[str, str] | None = None
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        proc = _serve(Path(tmp), port, extra_env)
        try:
            admin = (Path(tmp) / "admin-token").read_text().strip()
            with httpx.Client(base_url=url) as c:
                token = c.post(
                    "/admin/tokens",
                    json={"name": "bench", "role": "hospital"},
                    headers={"Authorization": f"Bearer {admin}"},
                ).json()["token"]
            patients = [Account.create().address for _ in range(50)]
            payloads = [secrets.token_bytes(size) for _ in range(n)]
            latencies: list[float] = []
            lock = threading.Lock()
            local = threading.local()

            def one(i: int) -> None:
                client = getattr(local, "client", None)
                if client is None:
                    client = local.client = httpx.Client(
                        base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60
                    )
                t = time.perf_counter()
                r = client.post(
                    "/records",
                    data={"patient": patients[i % 50], "category": "lab"},
                    files={"file": ("r", payloads[i], "application/octet-stream")},
                )
                r.raise_for_status()
                with lock:
                    latencies.append(time.perf_counter() - t)

            t0 = time.perf_counter()
            with ThreadPoolExecutor(concurrency) as pool:
                list(pool.map(one, range(n)))
            upload_s = time.perf_counter() - t0
            t1 = time.perf_counter()
            operator = {"Authorization": f"Bearer {admin}"}  # queues are for operators
            while httpx.get(f"{url}/health", headers=operator).json()["pending_anchors"]:
                if time.perf_counter() - t1 > 600:
                    raise TimeoutError("anchoring did not finish")
                time.sleep(0.1)
            anchor_s = time.perf_counter() - t1
        finally:
            proc.terminate()
            proc.wait(timeout=60)
    latencies.sort()
    return {
        "records": n,
        "size": size,
        "concurrency": concurrency,
        "uploads_per_s": round(n / upload_s),
        "p50_ms": round(statistics.median(latencies) * 1000, 1),
        "p99_ms": round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 1),
        "anchor_tail_s": round(anchor_s, 2),
    }
