"""scripts/bench_http.py: wrk's result line, the py-spy summary, and (when wrk is installed)
one short run of each scenario end to end. No timing is asserted."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_http", ROOT / "scripts/bench_http.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_http"] = module
    spec.loader.exec_module(module)
    return module


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


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk: bash scripts/bench_tools.sh")
@pytest.mark.parametrize("scenario", ["upload", "read"])
def test_runs_end_to_end(scenario: str, tmp_path: Path) -> None:
    out = tmp_path / "result.json"
    cmd = [sys.executable, str(ROOT / "scripts/bench_http.py"), "--scenario", scenario]
    cmd += ["--duration", "2", "--connections", "4", "--json", str(out)]
    subprocess.run(cmd, check=True, cwd=ROOT, timeout=300, capture_output=True)
    result = json.loads(out.read_text())
    assert result["node"]["requests"] > 0 and result["ceiling"]["requests"] > 0
    assert result["node"]["errors"] == 0
    assert result["rss"] and all(r["rss_mb"] > 0 for r in result["rss"])
    if scenario == "upload":
        assert result["records"] >= result["node"]["requests"]  # every one stored, anchored
