"""scripts/bench_http.py: wrk's result line, the py-spy summary, the report, the ceiling's batch
route, and (when wrk is installed) one short run of each scenario end to end. No timing is
asserted."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return _load("bench_http")


def _wrk_result(bench: ModuleType, rps: float) -> object:
    return bench.WrkResult(
        requests=int(rps), seconds=1.0, rps=rps, p50_ms=1.0, p95_ms=2.0, p99_ms=3.0, errors=0
    )


def test_parse_wrk_result(bench: ModuleType) -> None:
    out = (
        "Running 2s test @ http://127.0.0.1:1\n"
        'WRK_RESULT {"requests": 500, "duration_us": 2000000, "bytes": 1, "non2xx": 3, '
        '"statuses": {"503": 3}, "connect_errors": 0, "read_errors": 1, "write_errors": 0, '
        '"timeouts": 2, "p50_us": 1500, "p95_us": 9000, "p99_us": 20000, "max_us": 1, '
        '"mean_us": 1}\n'
    )
    r = bench.WrkResult.parse(out)
    assert (r.requests, r.rps, r.p50_ms, r.p95_ms, r.p99_ms) == (500, 250.0, 1.5, 9.0, 20.0)
    assert r.errors == 6
    assert r.statuses == {"503": 3}
    with pytest.raises(RuntimeError):
        bench.WrkResult.parse("no result")


def test_summarize_profile(bench: ModuleType, tmp_path: Path) -> None:
    raw = tmp_path / "upload-gil-node-1.raw"
    raw.write_text(
        'thread (11): "anchorer";Thread.run (threading.py:982);'
        "anchor_pending (node/flows/anchor_records.py:28);"
        "BaseComputation.apply_computation (eth/vm/computation.py:1) 30\n"
        'thread (10): "MainThread";Runner.run (asyncio/runners.py:118);'
        "MultiPartParser.parse (starlette/formparsers.py:200) 10\n"
    )
    summary = bench.summarize_profile([raw])
    assert "samples: 40" in summary
    assert "| 30 | 75.0 | `anchorer: EVM execution (py-evm)` |" in summary
    assert "| 10 | 25.0 | `HTTP: multipart parsing` |" in summary


def test_report_batch_records_per_second(bench: ModuleType) -> None:
    outcome = bench.Outcome(
        scenario="batch",
        processes=2,
        node=_wrk_result(bench, 36.4),
        ceiling=_wrk_result(bench, 233.3),
        drain_s=1.5,
        drain_what="all anchored",
        records=3640,
        records_per_request=100,
    )
    row = bench.report(outcome).splitlines()[2]
    assert row.startswith("| batch (100 records/request) | 2 | 36.4 | 3,640 | 1.0 |")
    assert "| 233.3 | 23,330 | 2.0 | 0.16 |" in row


def test_ceiling_batch_reads_manifest_and_files() -> None:
    """The ceiling's POST /records/batch takes node/client.py's body and answers one result
    per entry, in order."""
    ceiling = _load("bench_ceiling")
    patients = ["0x" + f"{i:040x}" for i in range(1, 4)]
    manifest = [
        {"part": f"r{i}", "patient": p, "category": "lab", "content_type": "text/plain"}
        for i, p in enumerate(patients)
    ]
    files = [(f"r{i}", (f"r{i}", b"x" * (i + 1), "text/plain")) for i in range(len(patients))]
    parts = [("manifest", (None, json.dumps(manifest), "application/json")), *files]

    async def post(body: list[Any]) -> httpx.Response:
        transport = httpx.ASGITransport(app=ceiling.create_app())
        async with httpx.AsyncClient(transport=transport, base_url="http://ceiling") as c:
            return await c.post("/records/batch", files=body)

    r = asyncio.run(post(parts))
    assert r.status_code == 201, r.text
    body = r.json()
    assert [b["patient"].lower() for b in body] == patients
    assert [b["size"] for b in body] == [1, 2, 3]
    assert {b["content_type"] for b in body} == {"text/plain"}
    missing = asyncio.run(post(parts[:-1]))
    assert missing.status_code == 422


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk: bash scripts/bench_tools.sh")
@pytest.mark.parametrize("scenario", ["upload", "batch", "read"])
def test_runs_end_to_end(scenario: str, tmp_path: Path) -> None:
    out = tmp_path / "result.json"
    cmd = [sys.executable, str(ROOT / "scripts/bench_http.py"), "--scenario", scenario]
    cmd += ["--duration", "2", "--connections", "4", "--json", str(out)]
    if scenario == "batch":
        cmd += ["--batch-records", "20"]
    subprocess.run(cmd, check=True, cwd=ROOT, timeout=300, capture_output=True)
    result = json.loads(out.read_text())
    assert result["node"]["requests"] > 0 and result["ceiling"]["requests"] > 0
    assert result["node"]["errors"] == 0
    assert result["rss"] and all(r["rss_mb"] > 0 for r in result["rss"])
    if scenario == "upload":
        assert result["records"] >= result["node"]["requests"]  # every one stored, anchored
    if scenario == "batch":
        assert result["records_per_request"] == 20
        assert result["records"] >= 20 * result["node"]["requests"]
        assert result["records_per_s"] == pytest.approx(20 * result["node"]["rps"], abs=0.1)
