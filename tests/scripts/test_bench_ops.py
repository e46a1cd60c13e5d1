"""scripts/bench_ops.py: the profile breakdown, the ratio to the neighbouring bare-ceiling
runs, the ceiling app with and without the node's middleware, and (when wrk is installed)
one short run end to end. No timing is asserted."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_ops", ROOT / "scripts" / "bench_ops.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_ops"] = module
    spec.loader.exec_module(module)
    return module


def _result(bench: ModuleType, rps: float) -> object:
    return bench.WrkResult(
        requests=int(rps), seconds=1.0, rps=rps, p50_ms=1.0, p95_ms=2.0, p99_ms=3.0, errors=0
    )


def test_profile_parts_counts_own_work_apart_from_what_it_calls(
    bench: ModuleType, tmp_path: Path
) -> None:
    loop = "thread (1): MainThread;Runner.run (asyncio/runners.py:118)"
    cycle = "RequestResponseCycle.run_asgi (uvicorn/protocols/http/httptools_impl.py:416)"
    app = f"{cycle};FastAPI.__call__ (fastapi/applications.py:1);"
    mw = app + "RequestObservability.__call__ (node/api/routers/ops.py:160)"
    raw = tmp_path / "healthz-parent-1.raw"
    raw.write_text(
        f"{loop};{mw};RequestObservability._record (node/api/routers/ops.py:190);"
        "Logger.info (logging/__init__.py:1);Logger._log (logging/__init__.py:2);"
        "Logger.handle (logging/__init__.py:3);StreamHandler.emit (logging/__init__.py:4) 6\n"
        f"{loop};{mw};TrustedHosts.__call__ (node/api/edge.py:150) 10\n"
        f"{loop};{mw};send_with_id (node/api/routers/ops.py:170);"
        "RequestResponseCycle.send (uvicorn/protocols/http/httptools_impl.py:522) 4\n"
        f"{loop};BaseEventLoop._run_once (asyncio/base_events.py:1) 2\n"
        "thread (2): upload-commit;Thread.run (threading.py:1) 50\n"
    )
    table = {
        line.split("|")[1].strip(): int(line.split("|")[2])
        for line in bench.profile_parts([raw]).splitlines()
        if line.startswith("| ") and not line.startswith("| part")
    }
    assert table["RequestObservability, its own work, of which:"] == 6  # not the inner 10, 4
    assert table["the request log line (Logger.info)"] == 6
    assert table["StreamHandler.emit: the write to stderr"] == 6
    assert table["uvicorn: writing the answer (RequestResponseCycle.send)"] == 4
    assert table["send_with_id (copies the headers)"] == 0
    assert table["asyncio event loop, outside uvicorn"] == 2
    assert "event-loop samples: 22" in bench.profile_parts([raw])  # upload-commit left out


def test_summary_ratio_is_to_the_neighbouring_bare_runs(bench: ModuleType) -> None:
    bare = bench.CEILINGS[0][1]
    runs = [(bare, 1000.0), ("a", 500.0), (bare, 3000.0), ("b", 1000.0), (bare, 1000.0)]
    rows = [bench.Row(what=w, result=_result(bench, x), load="1.00/1.00", round=1) for w, x in runs]
    rows.append(bench.Row(what="a", result=_result(bench, 9.0), load="1/1", round=0))  # py-spy
    summary = {s["what"]: s for s in bench.summary_rows(rows)}
    assert summary["a"]["ratios"] == [0.25]  # 500 / mean(1000, 3000)
    assert summary["b"]["ratios"] == [0.5]
    assert summary["a"]["runs"] == 1
    assert summary[bare]["rps"] == 1000.0 and summary[bare]["runs"] == 3


@pytest.mark.parametrize("observe", [None, "json"])
def test_ceiling_app(
    bench: ModuleType, observe: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bare ceiling answers /healthz as the node does; with the middleware it also
    echoes a request id, as the node's outermost middleware does."""
    monkeypatch.syspath_prepend(str(ROOT / "scripts"))
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level  # ceiling_app configures logging
    monkeypatch.setattr(root, "handlers", handlers[:])
    monkeypatch.setattr(root, "level", level)
    if observe is None:
        monkeypatch.delenv(bench.OBSERVE_ENV, raising=False)
    else:
        monkeypatch.setenv(bench.OBSERVE_ENV, observe)

    async def get() -> httpx.Response:
        transport = httpx.ASGITransport(app=bench.ceiling_app())
        async with httpx.AsyncClient(transport=transport, base_url="http://ceiling") as c:
            return await c.get("/healthz", headers={"X-Request-ID": "bench-1"})

    r = asyncio.run(get())
    assert r.status_code == 200 and r.json() == {"status": "alive"}
    assert r.headers.get("x-request-id") == (None if observe is None else "bench-1")


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk: bash scripts/bench_tools.sh")
def test_runs_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "result.json"
    cmd = [sys.executable, str(ROOT / "scripts/bench_ops.py"), "--duration", "1"]
    cmd += ["--connections", "4", "--rounds", "1", "--scrapes", "3", "--cold-scrapes", "0"]
    cmd += ["--json", str(out)]
    subprocess.run(cmd, check=True, cwd=ROOT, timeout=300, capture_output=True)
    result = json.loads(out.read_text())
    names = [s["what"] for s in result["summary"]]
    assert len(names) == 5 and all(s["errors"] == 0 for s in result["summary"])
    assert all(s["rps"] > 0 for s in result["summary"])
    scrapes = result["scrapes"]
    assert scrapes["n"] == 3 and scrapes["samples"] > 0
    assert scrapes["series_names"] >= 5
