"""`emr-node run` with two API processes and its worker role: one PROMETHEUS_MULTIPROC_DIR
(emptied at start), and /metrics on any API process sums every process's series, the
worker role's own included."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from eth_account import Account
from prometheus_client.parser import text_string_to_metric_families

from node.client import EmrClient
from tests.node.production import free_port
from tests.node.roles.cluster import embedded_env, until


@pytest.fixture
def run_node(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    data_dir = tmp_path / "node"
    stale = data_dir / "metrics" / "counter_999999.db"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"left over from a previous run")
    port = free_port()
    env = {**os.environ, **embedded_env(data_dir), "EMR_LOG__FORMAT": "json"}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "node.cli.main", "run", "--processes", "2", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"emr-node run exited with {proc.returncode}")
        try:
            return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        until(up, timeout=180, step=0.5)
        assert not stale.exists()  # emptied at start
        yield url, data_dir
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _samples(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


def test_metrics_sum_every_process(run_node: tuple[str, Path]) -> None:
    url, data_dir = run_node
    admin_token = (data_dir / "admin-token").read_text().strip()
    with EmrClient(url, admin_token) as admin:
        token = admin.create_token("ehr", "hospital")
        auditor = admin.create_token("audit", "auditor")
    patient = Account.create()
    with EmrClient(url, token) as hospital:
        rids = [
            hospital.upload(patient.address, f"k {i}".encode(), category="lab")["record_id"]
            for i in range(6)
        ]
        hospital.wait_anchored(rids[-1], timeout=60)
    files = list((data_dir / "metrics").glob("*.db"))
    pids = {f.stem.rsplit("_", 1)[-1] for f in files}
    assert len(pids) >= 2, files  # the worker role and at least one API process write

    def scraped() -> dict[str, list[tuple[dict[str, str], float]]]:
        r = httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {auditor}"})
        assert r.status_code == 200, r.text
        return _samples(r.text)

    samples = scraped()
    # the worker role's own series reach the API processes' scrape
    rounds = {lb["worker"] for lb, v in samples["emr_worker_rounds_total"] if v > 0}
    assert "anchorer" in rounds
    signs = [
        v
        for lb, v in samples["emr_hsm_operation_duration_seconds_count"]
        if lb["operation"] == "sign"
    ]
    assert signs and signs[0] >= 1
    uploads = sum(v for _, v in samples["emr_records_uploaded_total"])
    assert uploads == 6
    posts = sum(
        v
        for lb, v in samples["emr_http_requests_total"]
        if lb["route"] == "/records" and lb["method"] == "POST" and lb["status"] == "201"
    )
    assert posts == 6  # summed over both API processes, whichever served each
    queues = {lb["queue"] for lb, _ in samples["emr_queue_depth"]}
    assert queues == {"anchors", "access_log", "consent_relays", "erasures"}
