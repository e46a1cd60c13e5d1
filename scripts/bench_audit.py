"""The auditor explorer's routes on a large audit trail (issue 13): `emr-node run` (the
embedded default: API processes and the worker) is seeded with a trail of about --events
events, then this process (not the node's) times single requests with an auditor token,
one after the other on one keep-alive connection, and reports the median and p95 (nearest
rank) of each route. In the same run, the ceilings: GET /info (a cheap route of the same
node) and the chain's log scan without the route, two ways: a raw ``eth_getLogs`` JSON-RPC
request to the worker's ``/rpc`` (what the API processes read the embedded chain through)
with the parameters the chain client sends for an unfiltered trail, and the node's own
``Web3ChainClient.audit_events()`` run in this process over that same ``/rpc`` (eth_getLogs,
log decoding, block timestamps: what the route calls before filtering, paging and JSON).

    .venv/bin/python scripts/bench_audit.py [--events 5000] [--reads 500] [--requests 20]
        [--profile DIR] [--json FILE]

Seeding: POST /records/batch with a hospital token (--batch-records records of 64 random
bytes a request, patients rotating over --patients fresh wallets): one RecordAnchored event
a record, one BatchAnchored an anchor batch; then --reads reads of the patients' own records
(each wallet signs in with SIWE): one AccessRecorded each. The script waits until every
record is anchored, the access log is flushed and the SQL mirror has every event.

--profile DIR: after the timings, py-spy (--gil: threads holding the GIL) records every
node process for --profile-seconds while this process loops GET /audit/events?limit=50;
the summaries go to DIR/*.md.
"""

from __future__ import annotations

import argparse
import json
import math
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

import httpx
from eth_account import Account

SCRIPTS = Path(__file__).resolve().parent
ROOT = SCRIPTS.parent
sys.path[:0] = [str(SCRIPTS), str(ROOT)]

from bench_http import (  # noqa: E402 - scripts/ is put on the path above
    drain_time,
    free_port,
    hospital_token,
    profiling,
    sign_in,
    start_node,
    stop,
    summarize_profile,
)

CONTENT_SIZE = 64
PAGE = 50


@dataclass
class Timing:
    route: str
    what: str
    n: int
    median_ms: float
    p95_ms: float
    total: int | None = None  # X-Total-Count, or events returned
    body_kb: float | None = None


def nearest_rank(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def timed(
    route: str,
    what: str,
    call: Callable[[], tuple[int | None, int]],
    requests: int,
    budget_s: float,
    min_requests: int = 5,
) -> Timing:
    """``requests`` timed calls after one warm-up (fewer, but at least ``min_requests``, when
    they take more than ``budget_s`` together). ``call`` returns (a count, bytes)."""
    total, size = call()  # warm-up: caches (block timestamps), connection
    samples: list[float] = []
    started = time.perf_counter()
    while len(samples) < requests:
        t0 = time.perf_counter()
        total, size = call()
        samples.append((time.perf_counter() - t0) * 1000)
        if len(samples) >= min_requests and time.perf_counter() - started > budget_s:
            break
    t = Timing(
        route=route,
        what=what,
        n=len(samples),
        median_ms=round(statistics.median(samples), 1),
        p95_ms=round(nearest_rank(samples, 0.95), 1),
        total=total,
        body_kb=round(size / 1024, 1),
    )
    print(f"  {route}: median {t.median_ms} ms, p95 {t.p95_ms} ms (n={t.n})", flush=True)
    return t


# -- seeding -----------------------------------------------------------------------------
def new_token(url: str, admin: str, role: str) -> str:
    r = httpx.post(
        f"{url}/admin/tokens",
        json={"name": f"bench-{role}", "role": role},
        headers={"Authorization": f"Bearer {admin}"},
        timeout=30,
    )
    r.raise_for_status()
    return str(r.json()["token"])


def upload_records(
    url: str, token: str, patients: list[str], records: int, per_request: int
) -> list[tuple[str, str]]:
    """(patient, record id) of every record, uploaded by two client threads."""
    sizes = [min(per_request, records - i) for i in range(0, records, per_request)]

    def post(job: tuple[int, int]) -> list[tuple[str, str]]:
        start, k = job
        manifest = []
        files: list[tuple[str, tuple[str | None, bytes | str, str]]] = []
        for i in range(k):
            part = f"r{i}"
            manifest.append(
                {
                    "part": part,
                    "patient": patients[(start + i) % len(patients)],
                    "category": "lab",
                    "content_type": "application/octet-stream",
                }
            )
            content = secrets.token_bytes(CONTENT_SIZE)
            files.append((part, (part, content, "application/octet-stream")))
        parts = [("manifest", (None, json.dumps(manifest), "application/json")), *files]
        r = httpx.post(
            f"{url}/records/batch",
            files=parts,
            headers={"Authorization": f"Bearer {token}"},
            timeout=300,
        )
        r.raise_for_status()
        return [
            (m["patient"], str(o["record_id"])) for m, o in zip(manifest, r.json(), strict=True)
        ]

    jobs, start = [], 0
    for k in sizes:
        jobs.append((start, k))
        start += k
    with ThreadPoolExecutor(2) as pool:
        return [row for rows in pool.map(post, jobs) for row in rows]


def read_records(
    url: str, accounts: list[Any], uploaded: list[tuple[str, str]], reads: int
) -> None:
    """``reads`` reads, each by the record's patient (a SIWE session per wallet)."""
    if reads <= 0:
        return
    by_patient: dict[str, list[str]] = {}
    for patient, rid in uploaded:
        by_patient.setdefault(patient, []).append(rid)
    sessions = {a.address: sign_in(url, a) for a in accounts}
    addresses = [a.address for a in accounts]
    with httpx.Client(base_url=url, timeout=60) as c:
        for i in range(reads):
            patient = addresses[i % len(addresses)]
            rid = by_patient[patient][(i // len(addresses)) % len(by_patient[patient])]
            r = c.get(
                f"/records/{rid}/content",
                headers={"Authorization": f"Bearer {sessions[patient]}"},
            )
            r.raise_for_status()


def trail_count(c: httpx.Client, source: str) -> int:
    r = c.get("/audit/events", params={"limit": 1, "source": source})
    r.raise_for_status()
    return int(r.headers["X-Total-Count"])


def wait_mirror(c: httpx.Client, timeout: float = 600) -> tuple[int, int, float]:
    """(chain count, mirror count, seconds waited) once the mirror has every event."""
    started = time.perf_counter()
    while True:
        chain, mirror = trail_count(c, "chain"), trail_count(c, "mirror")
        waited = time.perf_counter() - started
        if mirror >= chain or waited > timeout:
            return chain, mirror, waited
        time.sleep(0.5)


# -- the chain scan without the route ----------------------------------------------------
def chain_scan_calls(
    data_dir: Path, worker_port: int, secret: bytes
) -> tuple[Callable[[], tuple[int | None, int]], Callable[[], tuple[int | None, int]]]:
    """(raw eth_getLogs to the worker's /rpc, Web3ChainClient.audit_events over it)."""
    from node.chain.abc import TransactionSenderAPI
    from node.chain.client import _AUDIT_EVENTS, Web3ChainClient
    from node.chain.deploy import Deployment
    from node.chain.worker_rpc import authorization, connect_worker_rpc

    worker = f"http://127.0.0.1:{worker_port}"
    deployment = Deployment.from_json((data_dir / "deployment.json").read_text())
    w3 = connect_worker_rpc(worker, secret)
    # Reads only: audit_events never sends, so no sender is needed.
    client = Web3ChainClient(w3, deployment, None, sender=cast(TransactionSenderAPI, object()))
    names = [n for group in _AUDIT_EVENTS.values() for n in group] + ["BatchAnchored"]
    # The parameters Web3ChainClient.audit_events sends for an unfiltered trail.
    params = {
        "fromBlock": hex(deployment.block_number),
        "toBlock": "latest",
        "address": [
            deployment.record_registry,
            deployment.consent_registry,
            deployment.access_log,
        ],
        "topics": [client._topic0(names)],
    }
    rpc = httpx.Client(headers={"Authorization": authorization(secret)}, timeout=300)

    def raw() -> tuple[int | None, int]:
        body = {"jsonrpc": "2.0", "id": 1, "method": "eth_getLogs", "params": [params]}
        r = rpc.post(f"{worker}/rpc", json=body)
        r.raise_for_status()
        data = r.json()
        if "error" in data:
            raise RuntimeError(f"eth_getLogs: {data['error']}")
        return len(data["result"]), len(r.content)

    def decoded() -> tuple[int | None, int]:
        return len(client.audit_events()), 0

    return raw, decoded


# -- the run -----------------------------------------------------------------------------
def run(args: argparse.Namespace) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="bench-audit-"))
    data_dir = tmp / "node"
    data_dir.mkdir()
    secret = secrets.token_bytes(32)
    port, worker_port = free_port(), free_port()
    url = f"http://127.0.0.1:{port}"
    records = max(1, args.events - args.reads)
    accounts = [Account.create() for _ in range(args.patients)]
    patients = [a.address for a in accounts]
    proc = start_node(ROOT, data_dir, port, worker_port, None, {"EMR_WORKER__SECRET": secret.hex()})
    out: dict[str, Any] = {"args": {k: str(v) for k, v in vars(args).items()}}
    try:
        admin, hospital = hospital_token(url, data_dir)
        auditor = new_token(url, admin, "auditor")
        print(f"seeding {records} records, {args.reads} reads ...", flush=True)
        t0 = time.perf_counter()
        uploaded = upload_records(url, hospital, patients, records, args.batch_records)
        uploaded_s = time.perf_counter() - t0
        drain_time(url, admin, "pending_anchors", t0, timeout=1200)
        anchored_s = time.perf_counter() - t0
        read_records(url, accounts, uploaded, args.reads)
        drain_time(url, admin, "pending_access_log", t0, timeout=1200)
        logged_s = time.perf_counter() - t0
        c = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {auditor}"}, timeout=600)
        chain_total, mirror_total, mirror_wait = wait_mirror(c)
        seeded_s = time.perf_counter() - t0
        out["seeding"] = {
            "records": records,
            "reads": args.reads,
            "uploaded_s": round(uploaded_s, 1),
            "anchored_s": round(anchored_s, 1),
            "access_log_flushed_s": round(logged_s, 1),
            "mirror_caught_up_s": round(seeded_s, 1),
            "mirror_waited_s": round(mirror_wait, 1),
            "chain_events": chain_total,
            "mirror_events": mirror_total,
        }
        print(f"seeded: {out['seeding']}", flush=True)

        def get(path: str, **params: Any) -> Callable[[], tuple[int | None, int]]:
            def call() -> tuple[int | None, int]:
                r = c.get(path, params=params)
                r.raise_for_status()
                count = r.headers.get("X-Total-Count")
                return (int(count) if count is not None else None), len(r.content)

            return call

        patient = patients[0]
        last_chain = max(0, chain_total - PAGE)
        last_mirror = max(0, mirror_total - PAGE)
        n, budget = args.requests, args.route_budget
        raw, decoded = chain_scan_calls(data_dir, worker_port, secret)
        rows = [
            timed("GET /info", "ceiling: a cheap route", get("/info"), n, budget),
            timed("eth_getLogs via the worker's /rpc", "ceiling: raw log scan", raw, n, budget),
            timed(
                "Web3ChainClient.audit_events() in the bench process",
                "ceiling: log scan + decoding + timestamps",
                decoded,
                n,
                budget,
            ),
            timed(
                f"GET /audit/events?limit={PAGE}",
                "first page, chain",
                get("/audit/events", limit=PAGE),
                n,
                budget,
            ),
            timed(
                f"GET /audit/events?limit={PAGE}&offset={last_chain}",
                "last page, chain",
                get("/audit/events", limit=PAGE, offset=last_chain),
                n,
                budget,
            ),
            timed(
                f"GET /audit/events?limit={PAGE}&source=mirror",
                "first page, mirror",
                get("/audit/events", limit=PAGE, source="mirror"),
                n,
                budget,
            ),
            timed(
                f"GET /audit/events?limit={PAGE}&offset={last_mirror}&source=mirror",
                "last page, mirror",
                get("/audit/events", limit=PAGE, offset=last_mirror, source="mirror"),
                n,
                budget,
            ),
            timed(
                f"GET /audit/events?limit={PAGE}&patient=P",
                "one patient's first page, chain",
                get("/audit/events", limit=PAGE, patient=patient),
                n,
                budget,
            ),
            timed(
                f"GET /audit/events?limit={PAGE}&patient=P&source=mirror",
                "one patient's first page, mirror",
                get("/audit/events", limit=PAGE, patient=patient, source="mirror"),
                n,
                budget,
            ),
            timed(
                "GET /audit/events/csv", "whole trail, chain", get("/audit/events/csv"), n, budget
            ),
            timed("GET /audit/stats", "whole trail, chain", get("/audit/stats"), n, budget),
        ]
        out["timings"] = [asdict(r) for r in rows]
        if args.profile is not None:
            tag = f"audit-events-{chain_total}"
            first_page = get("/audit/events", limit=PAGE)
            with profiling(proc.pid, args.profile, args.profile_seconds, tag, True) as files:
                end = time.perf_counter() + args.profile_seconds + 2
                loops = 0
                while time.perf_counter() < end:
                    first_page()
                    loops += 1
            out["profile"] = {"files": [str(f) for f in files], "requests": loops}
            for f in files:
                if f.exists():
                    f.with_suffix(".md").write_text(summarize_profile([f]))
        c.close()
    finally:
        stop(proc)
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def report(out: dict[str, Any]) -> str:
    s = out["seeding"]
    lines = [
        f"trail: {s['chain_events']:,} events on the chain ({s['mirror_events']:,} mirrored): "
        f"{s['records']:,} records, {s['reads']:,} reads; uploaded in {s['uploaded_s']} s, "
        f"all anchored {s['anchored_s']} s, access log flushed {s['access_log_flushed_s']} s, "
        f"mirror complete {s['mirror_caught_up_s']} s after the first upload",
        "",
        "| route | what | n | median ms | p95 ms | events (X-Total-Count) | body KiB |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for t in out["timings"]:
        total = "" if t["total"] is None else f"{t['total']:,}"
        body = "" if not t["body_kb"] else f"{t['body_kb']:,}"
        lines.append(
            f"| `{t['route']}` | {t['what']} | {t['n']} | {t['median_ms']:,} | "
            f"{t['p95_ms']:,} | {total} | {body} |"
        )
    if "profile" in out:
        lines += ["", f"py-spy: {out['profile']}"]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=5000, help="events to seed (about)")
    parser.add_argument("--reads", type=int, default=500, help="of them, patients' reads")
    parser.add_argument("--patients", type=int, default=50)
    parser.add_argument("--batch-records", type=int, default=200, help="records a request")
    parser.add_argument("--requests", type=int, default=20, help="timed requests a route")
    parser.add_argument(
        "--route-budget",
        type=float,
        default=60.0,
        help="seconds a route may take: fewer requests then (at least 5)",
    )
    parser.add_argument("--profile", type=Path, default=None, help="py-spy output directory")
    parser.add_argument("--profile-seconds", type=float, default=10.0)
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()
    out = run(args)
    print(report(out))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
