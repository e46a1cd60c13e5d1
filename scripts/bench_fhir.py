"""FHIR bulk import: transaction Bundles of 100 DocumentReferences (4 KiB each) POSTed to
``/fhir`` of ``emr-node run`` (the embedded default) by wrk, a separate load process. In
the same run, the ceilings: the same documents through ``POST /records/batch`` (100
records per request) on the same node, and a bare handler that only reads and parses the
Bundle and answers a transaction-response of the same size. Also measured in-process: what
fhir.resources validation and the mapping cost per document.

    .venv/bin/python scripts/bench_fhir.py [--duration 10] [--connections 4]
        [--entries 100] [--profile build/profiles]

Target (issue 12): >= 2,000 documents/s. Numbers on a shared machine are noisy; compare the
ratio to the ceilings measured in the same run.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from eth_account import Account
from fastapi import FastAPI, Request
from fastapi.responses import Response

SCRIPTS = Path(__file__).resolve().parent
ROOT = SCRIPTS.parent
sys.path[:0] = [str(SCRIPTS), str(ROOT)]

from bench_http import (  # noqa: E402 - scripts/ is put on the path above
    WrkResult,
    free_port,
    hospital_token,
    profiling,
    run_wrk,
    start_node,
    stop,
    summarize_profile,
    wait_ready,
)

CONTENT_SIZE = 4096
BARE_ENV = "EMR_BENCH_FHIR_ENTRIES"

LUA = r"""
-- POST a pre-built body (args: TOKEN PATH BODY_FILE); prints WRK_RESULT like bench_http.lua
local threads = {}
function setup(thread) table.insert(threads, thread) end
non2xx = 0
statuses = {}
local body, path, token
function init(args)
  token, path = args[1], args[2]
  local f = assert(io.open(args[3], "rb")); body = f:read("*a"); f:close()
end
function request()
  return wrk.format("POST", path, {
    ["Authorization"] = "Bearer " .. token,
    ["Content-Type"] = "application/fhir+json",
    ["Accept"] = "application/fhir+json",
  }, body)
end
function response(status, headers, b)
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
    statuses[status] = (statuses[status] or 0) + 1
  end
end
function done(summary, latency, requests)
  local bad, by_status = 0, {}
  for _, t in ipairs(threads) do
    bad = bad + (t:get("non2xx") or 0)
    local s = t:get("statuses")
    if s then for c, n in pairs(s) do by_status[c] = (by_status[c] or 0) + n end end
  end
  local codes = {}
  for c, n in pairs(by_status) do table.insert(codes, string.format("\"%d\": %d", c, n)) end
  local e = summary.errors
  io.write(string.format(
    "WRK_RESULT {\"requests\": %d, \"duration_us\": %d, \"bytes\": %d, \"non2xx\": %d, "
      .. "\"statuses\": {%s}, \"connect_errors\": %d, \"read_errors\": %d, "
      .. "\"write_errors\": %d, \"timeouts\": %d, \"p50_us\": %d, \"p95_us\": %d, "
      .. "\"p99_us\": %d, \"max_us\": %d, \"mean_us\": %d}\n",
    summary.requests, summary.duration, summary.bytes, bad, table.concat(codes, ", "),
    e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(95), latency:percentile(99),
    latency.max, latency.mean))
end
"""


def wrk(url: str, lua: Path, lua_args: list[str], duration: float, connections: int) -> WrkResult:
    cmd = [
        "wrk", f"-t{max(1, min(2, connections))}", f"-c{connections}",
        f"-d{max(1, round(duration))}s", "--timeout", "60s", "-s", str(lua), url, "--",
        *lua_args,
    ]  # fmt: skip
    return WrkResult.parse(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)


def make_bundle(entries: int, patients: list[str]) -> dict[str, Any]:
    resources = []
    for i in range(entries):
        content = secrets.token_bytes(CONTENT_SIZE)
        resources.append(
            {
                "fullUrl": f"urn:uuid:00000000-0000-4000-8000-{i:012d}",
                "resource": {
                    "resourceType": "DocumentReference",
                    "status": "current",
                    "subject": {"reference": f"Patient/{patients[i % len(patients)]}"},
                    "type": {"coding": [{"system": "http://loinc.org", "code": "11502-2"}]},
                    "category": [{"coding": [{"system": "urn:emr-node:category", "code": "lab"}]}],
                    "date": "2024-06-01T12:00:00Z",
                    "description": f"bench document {i}",
                    "content": [
                        {
                            "attachment": {
                                "contentType": "application/octet-stream",
                                "data": base64.b64encode(content).decode(),
                            }
                        }
                    ],
                },
                "request": {"method": "POST", "url": "DocumentReference"},
            }
        )
    return {"resourceType": "Bundle", "type": "transaction", "entry": resources}


def bare_app() -> FastAPI:
    """The bare handler: read and parse the Bundle, answer a transaction-response of the
    same shape as the node's, store nothing (uvicorn ``bench_fhir:bare_app --factory``)."""
    app = FastAPI()
    rid = "00" * 32

    @app.post("/fhir")
    async def bundle(request: Request) -> Response:
        data = json.loads(await request.body())
        entries = [
            {
                "fullUrl": f"DocumentReference/{rid}",
                "response": {
                    "status": "201 Created",
                    "location": f"DocumentReference/{rid}/_history/{rid}",
                    "etag": f'W/"{rid}"',
                    "lastModified": "2024-06-01T12:00:00Z",
                },
            }
            for _ in data["entry"]
        ]
        body = {"resourceType": "Bundle", "type": "transaction-response", "entry": entries}
        return Response(json.dumps(body), media_type="application/fhir+json")

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    return app


def in_process_costs(bundle: dict[str, Any]) -> dict[str, float]:
    """Milliseconds per Bundle: json.loads, fhir.resources validation of each entry, the
    whole plan (validation + mapping to uploads), a whole-Bundle model validation (what the
    façade avoids)."""
    from fhir.resources.R4B.bundle import Bundle
    from fhir.resources.R4B.documentreference import DocumentReference

    from node.fhir.bundle import plan

    raw = json.dumps(bundle).encode()
    entries = bundle["entry"]
    rounds = 20

    def timed(fn: Any) -> float:
        fn()
        start = time.perf_counter()
        for _ in range(rounds):
            fn()
        return round((time.perf_counter() - start) / rounds * 1000, 2)

    writes = frozenset({"DocumentReference", "Binary"})
    return {
        "json_loads_ms": timed(lambda: json.loads(raw)),
        "validate_entries_ms": timed(
            lambda: [DocumentReference.model_validate(e["resource"]) for e in entries]
        ),
        "plan_ms": timed(lambda: plan(entries, resolve=None, max_bytes=10**7, may_write=writes)),
        "whole_bundle_model_ms": timed(lambda: Bundle.model_validate(bundle)),
    }


def run(args: argparse.Namespace) -> str:
    tmp = Path(tempfile.mkdtemp(prefix="bench-fhir-"))
    lua = tmp / "bundle.lua"
    lua.write_text(LUA)
    patients = [Account.create().address for _ in range(50)]
    bundle = make_bundle(args.entries, patients)
    body_file = tmp / "bundle.json"
    body_file.write_text(json.dumps(bundle))
    costs = in_process_costs(bundle)

    port, worker_port = free_port(), free_port()
    data_dir = tmp / "node"
    data_dir.mkdir()
    extra = {"EMR_API__BATCH_MAX_RECORDS": str(max(1000, args.entries))}
    proc = start_node(ROOT, data_dir, port, worker_port, None, extra)
    url = f"http://127.0.0.1:{port}"
    try:
        _admin, token = hospital_token(url, data_dir)
        check = httpx.post(
            f"{url}/fhir",
            content=body_file.read_bytes(),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json"},
            timeout=120,
        )
        if check.status_code != 200:
            raise RuntimeError(f"POST /fhir answered {check.status_code}: {check.text[:500]}")
        with profiling(proc.pid, args.profile, args.duration, "fhir", gil=True) as files:
            fhir = wrk(
                url + "/fhir",
                lua,
                [token, "/fhir", str(body_file)],
                args.duration,
                args.connections,
            )
        patients_file = tmp / "patients.txt"
        patients_file.write_text("\n".join(patients))
        content_file = tmp / "content.bin"
        content_file.write_bytes(secrets.token_bytes(CONTENT_SIZE))
        batch = run_wrk(
            url + "/records/batch",
            ["batch", token, str(patients_file), str(content_file), str(args.entries)],
            args.duration,
            args.connections,
        )
    finally:
        stop(proc)
    bare_port = free_port()
    bare = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "bench_fhir:bare_app",
            "--factory",
            "--app-dir",
            str(SCRIPTS),
            "--host",
            "127.0.0.1",
            "--port",
            str(bare_port),
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_ready(f"http://127.0.0.1:{bare_port}", bare, tmp / "bare.log")
        ceiling = wrk(
            f"http://127.0.0.1:{bare_port}/fhir",
            lua,
            ["-", "/fhir", str(body_file)],
            args.duration,
            args.connections,
        )
    finally:
        stop(bare)
    out = report(args, fhir, batch, ceiling, costs)
    if files:
        out += "\n\n" + summarize_profile(files)
    return out


def report(
    args: argparse.Namespace,
    fhir: WrkResult,
    batch: WrkResult,
    ceiling: WrkResult,
    costs: dict[str, float],
) -> str:
    k = args.entries

    def row(name: str, r: WrkResult) -> str:
        return (
            f"| {name} | {r.rps:.1f} | {r.rps * k:,.0f} | {r.p50_ms} | {r.p95_ms} | "
            f"{r.errors} {r.statuses or ''} |"
        )

    lines = [
        f"{k} DocumentReferences of {CONTENT_SIZE} B per request, {args.connections} "
        f"connections, {args.duration:g} s each, `emr-node run` (embedded default)",
        "",
        "| path | requests/s | documents/s | p50 ms | p95 ms | errors |",
        "|---|---|---|---|---|---|",
        row("POST /fhir transaction Bundle", fhir),
        row("ceiling: POST /records/batch, same node", batch),
        row("ceiling: bare handler (parse Bundle, answer)", ceiling),
        "",
        f"target >= 2,000 documents/s: {'met' if fhir.rps * k >= 2000 else 'MISSED'} "
        f"({fhir.rps * k:,.0f}); {fhir.rps / batch.rps:.0%} of /records/batch, "
        f"{fhir.rps / ceiling.rps:.0%} of the bare handler",
        "",
        f"in-process, per Bundle of {k}: " + ", ".join(f"{n} {v}" for n, v in costs.items()),
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--entries", type=int, default=100)
    parser.add_argument("--profile", type=Path, default=None, help="py-spy output directory")
    print(run(parser.parse_args()))


if __name__ == "__main__":
    main()
