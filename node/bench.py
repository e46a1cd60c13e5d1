"""Upload benchmarks on the embedded default. ``scripts/bench_upload.py`` is the entry point.

Two measurements: the upload flow in process (encrypt, store, index, queue; batches of
``batch`` records as a bulk importer would send them), and single-record uploads over
HTTP from ``concurrency`` client threads, as hospital systems send them. Both then time
how long the anchorer takes to put every record on-chain.
"""

from __future__ import annotations

import os
import secrets
import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from eth_account import Account

from node.api.app import create_app
from node.flows.upload_record import UploadRequest, upload_records
from node.settings import ChainSettings, HSMSettings, Settings
from node.wiring import Node, build_embedded_node


def _node(data_dir: Path) -> Node:
    return build_embedded_node(
        Settings(
            data_dir=data_dir,
            hsm=HSMSettings(passphrase="bench", scrypt_n=2**10),
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


def bench_flow(n: int, size: int, batch: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        node = _node(Path(tmp))
        patients = [Account.create().address for _ in range(50)]
        payloads = [os.urandom(size) for _ in range(n)]
        node.start()
        t0 = time.perf_counter()
        for i in range(0, n, batch):
            upload_records(
                [
                    UploadRequest(patients[j % 50], "lab", "application/octet-stream", payloads[j])
                    for j in range(i, min(i + batch, n))
                ],
                hospital=node.hospital,
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


def bench_http(n: int, size: int, concurrency: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        node = _node(Path(tmp))
        server = uvicorn.Server(
            uvicorn.Config(create_app(node), host="127.0.0.1", port=0, log_level="error")
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.05)
        port = server.servers[0].sockets[0].getsockname()[1]
        url = f"http://127.0.0.1:{port}"
        admin = (Path(tmp) / "admin-token").read_text().strip()
        with httpx.Client(base_url=url) as c:
            token = c.post(
                "/admin/tokens",
                json={"name": "bench", "role": "hospital"},
                headers={"Authorization": f"Bearer {admin}"},
            ).json()["token"]
        patients = [Account.create().address for _ in range(50)]
        latencies: list[float] = []
        lock = threading.Lock()
        local = threading.local()

        def one(i: int) -> None:
            client = getattr(local, "client", None)
            if client is None:
                client = local.client = httpx.Client(
                    base_url=url, headers={"Authorization": f"Bearer {token}"}
                )
            t = time.perf_counter()
            r = client.post(
                "/records",
                data={"patient": patients[i % 50], "category": "lab"},
                files={"file": ("r", secrets.token_bytes(size), "application/octet-stream")},
            )
            r.raise_for_status()
            with lock:
                latencies.append(time.perf_counter() - t)

        t0 = time.perf_counter()
        with ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(one, range(n)))
        upload_s = time.perf_counter() - t0
        anchor_s = _drain_anchors(node)
        server.should_exit = True
        thread.join(timeout=60)
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
