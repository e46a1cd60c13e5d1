"""The cost of operations (issue 14): the outermost middleware (request id, one log line per
request, the HTTP metrics), liveness, and the /metrics scrape. wrk drives a real embedded node
(`emr-node run`) from its own process; the ceilings are measured in the same run.

    bash scripts/bench_tools.sh                         # wrk (Debian) and py-spy, once
    .venv/bin/python scripts/bench_ops.py [--duration 8] [--connections 32] [--rounds 3]
        [--scrapes 50] [--cold-scrapes 5] [--profile DIR [--gil]] [--json FILE]
    .venv/bin/python scripts/bench_ops.py --summarize FILE.raw ...   py-spy raw -> summary

Every server is started first and stays up (idle but for the one wrk drives; their
background threads together use ~1 % of a core, printed); wrk then GETs /healthz on each:

1. The node, `emr-node run --processes 1` (each on its own data directory), in three
   settings: the default (metrics on, JSON logs), EMR_METRICS__ENABLED=false with JSON
   logs, and metrics off with EMR_LOG__FORMAT=text. The middleware stays installed in all
   three (with metrics off it records into NullMetrics).
2. Ceilings, served by uvicorn as `emr-node run --processes 1` serves the node (the node's
   protocol class and options; ``--serve-ceiling``): a bare FastAPI app with the node's
   async /healthz handler, and the same app with only the node's RequestObservability
   (Prometheus metrics in one process's registry) and JSON logging added.

--rounds rounds; in each the bare ceiling runs before and after every other target (their
order rotating), and each run's ratio is to the mean of the two bare runs beside it: the
load on this shared machine drifts within minutes, ratios to a neighbour hold.

3. With --profile: py-spy records the default node's API process during one more burst
   (not counted) and the script prints where the event loop's time goes, part by part.
4. /metrics: `emr-node run --processes 2` (multi-process mode), some traffic (uploads,
   listings, a 404, a /healthz burst), then --scrapes sequential scrapes with the admin
   token back to back (state gauges mostly from their 2 s cache) and --cold-scrapes more,
   2.2 s apart (state recomputed); beside them GET /healthz on the same client: the floor.

The load average (os.getloadavg) is printed beside every run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
from eth_account import Account

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_http  # scripts/: the node, ceiling, wrk and py-spy helpers
from bench_http import (
    ROOT,
    WrkResult,
    free_port,
    hospital_token,
    profiling,
    python_processes,
    run_wrk,
    start_node,
    stop,
    summarize_profile,
    upload_one,
)

OBSERVE_ENV = "EMR_BENCH_OPS_OBSERVE"  # ceiling_app: json or text adds the middleware

# The ceilings: bare, and with the node's outermost middleware only (scripts/bench_ops.py
# --serve-ceiling, uvicorn configured as the node's API process).
CEILINGS: list[tuple[str | None, str]] = [
    (None, "ceiling: bare FastAPI app, async GET /healthz, 1 process"),
    ("json", "ceiling + RequestObservability (metrics on, json logs) only"),
]

# Node settings per scenario (environment of `emr-node run`).
VARIANTS: dict[str, dict[str, str]] = {
    "node: metrics on, json logs (default)": {},
    "node: metrics off, json logs": {"EMR_METRICS__ENABLED": "false"},
    "node: metrics off, text logs": {"EMR_METRICS__ENABLED": "false", "EMR_LOG__FORMAT": "text"},
}


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"{one:.2f}/{five:.2f}"


# -- the ceilings ------------------------------------------------------------------------
def ceiling_app() -> Any:
    """A bare FastAPI app with the node's ``/healthz`` handler (async, the same response
    model), nothing else; with ``EMR_BENCH_OPS_OBSERVE=json|text`` also the node's outermost
    middleware (RequestObservability with Prometheus metrics) and its logging, as
    node/api/app.py installs them. ``uvicorn bench_ops:ceiling_app --factory``."""
    from fastapi import FastAPI

    from node.api.routers.ops import LiveOut, install_observability
    from node.api.server import configure_bounded_protocol
    from node.observability.logging import configure_logging
    from node.observability.metrics import PrometheusMetrics
    from node.settings import ApiSettings

    configure_bounded_protocol(ApiSettings())  # as node/api/asgi.py does per process
    app = FastAPI(title="emr-node bench_ops ceiling")

    @app.get("/healthz", response_model=LiveOut)
    async def healthz() -> LiveOut:
        return LiveOut()

    @app.get("/health")  # bench_http.wait_ready
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    fmt = os.environ.get(OBSERVE_ENV)
    if fmt in ("json", "text"):
        configure_logging(fmt, "INFO")
        install_observability(app, PrometheusMetrics())
    return app


def serve_ceiling(port: int) -> None:
    """uvicorn as `emr-node run --processes 1` runs it (node/cli/main.py ``_serve_api``)."""
    import uvicorn

    from node.api.server import process_server_options
    from node.settings import ApiSettings

    uvicorn.run(
        "bench_ops:ceiling_app",
        factory=True,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        log_config=None,
        proxy_headers=False,
        **process_server_options(ApiSettings(), 1),
    )


def start_ops_ceiling(port: int, observe: str | None, log: Path) -> Any:
    """``ceiling_app`` in its own process (``--serve-ceiling``); output into ``log``."""
    import subprocess

    cmd = [sys.executable, str(Path(__file__).resolve()), "--serve-ceiling", str(port)]
    env = dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{ROOT / 'scripts'}")
    env.pop(OBSERVE_ENV, None)
    if observe is not None:
        env[OBSERVE_ENV] = observe
    with log.open("ab") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    bench_http.wait_ready(f"http://127.0.0.1:{port}", proc, log)
    return proc


# -- results -----------------------------------------------------------------------------
@dataclass
class Row:
    what: str
    result: WrkResult
    load: str
    round: int = 0  # 0: not one of the timed rounds (py-spy attached)


@dataclass
class Scrapes:
    processes: int
    n: int
    median_ms: float
    p90_ms: float
    max_ms: float
    cold_n: int
    cold_median_ms: float
    healthz_median_ms: float
    body_bytes: int
    samples: int
    series_names: int
    load: str


@dataclass
class Outcome:
    rows: list[Row] = field(default_factory=list)
    scrapes: Scrapes | None = None
    profile: str = ""
    profiles: list[Path] = field(default_factory=list)
    idle_cpu: float = 0.0


def _wrk_get(url: str, path: str, duration: float, connections: int, token: str = "-") -> Row:
    """GET ``path`` with scripts/bench_http.lua's read mode (``-``: a dummy bearer, which
    no GET route without a body looks at)."""
    before = load()
    result = run_wrk(url, ["read", token, path], duration, connections)
    return Row(what="", result=result, load=before)


# -- node runs ---------------------------------------------------------------------------
@contextlib.contextmanager
def node(
    data_dir: Path, processes: int, extra_env: dict[str, str]
) -> Iterator[tuple[str, int, int]]:
    """``emr-node run --processes N`` on ``data_dir`` (reused: deployed once); yields
    (url, root pid, worker port)."""
    port, worker_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if k in VARIANTS_KEYS}
    for key in env:  # the variants set what they need; nothing leaks from the caller
        os.environ.pop(key)
    try:
        proc = start_node(ROOT, data_dir, port, worker_port, processes, extra_env)
    finally:
        os.environ.update(env)
    try:
        yield f"http://127.0.0.1:{port}", proc.pid, worker_port
    finally:
        stop(proc)


VARIANTS_KEYS = {"EMR_METRICS__ENABLED", "EMR_LOG__FORMAT", "PROMETHEUS_MULTIPROC_DIR"}


def api_pids(root_pid: int, worker_port: int) -> list[int]:
    return [p.pid for p, role in python_processes(root_pid, worker_port) if role != "worker"]


def traffic(url: str, token: str, duration: float, connections: int) -> None:
    """Requests on a few route templates, so the scrape has series to merge."""
    content = os.urandom(4096)
    patients = [Account.create().address for _ in range(4)]
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}) as c:
        for i in range(20):
            upload_one(url, token, patients[i % len(patients)], content)
        for p in patients:
            c.get("/records", params={"patient": p}).raise_for_status()
        c.get("/no-such-route")  # unmatched
        c.get("/readyz")
    run_wrk(url, ["read", "-", "/healthz"], duration, connections)


def _timed_get(client: httpx.Client, path: str) -> tuple[float, httpx.Response]:
    start = time.perf_counter()
    r = client.get(path)
    elapsed = (time.perf_counter() - start) * 1000
    r.raise_for_status()
    return elapsed, r


def measure_scrapes(url: str, admin: str, n: int, cold: int, processes: int) -> Scrapes:
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {admin}"}, timeout=60) as c:
        _timed_get(c, "/metrics")  # warm the connection and the caller's token cache
        warm = [_timed_get(c, "/metrics") for _ in range(n)]
        floor = [_timed_get(c, "/healthz")[0] for _ in range(n)]
        cold_times = []
        for _ in range(cold):
            time.sleep(2.2)  # past NodeState's 2 s cache: the gauges are read again
            cold_times.append(_timed_get(c, "/metrics")[0])
    times = sorted(t for t, _ in warm)
    text = warm[-1][1].text
    samples = [line for line in text.splitlines() if line and not line.startswith("#")]
    names = {re.split(r"[{ ]", s, maxsplit=1)[0] for s in samples}
    return Scrapes(
        processes=processes,
        n=n,
        median_ms=round(statistics.median(times), 2),
        p90_ms=round(times[int(0.9 * (len(times) - 1))], 2),
        max_ms=round(times[-1], 2),
        cold_n=cold,
        cold_median_ms=round(statistics.median(cold_times), 2) if cold_times else 0.0,
        healthz_median_ms=round(statistics.median(floor), 2),
        body_bytes=len(warm[-1][1].content),
        samples=len(samples),
        series_names=len(names),
        load=load(),
    )


# -- the profile -------------------------------------------------------------------------
# Samples of the API process's event-loop thread per part of the request path: a sample
# counts for a part when the part's frame is on its stack and, after it, none of the
# excluded frames (what the part calls into that is counted elsewhere).
PARTS: list[tuple[str, str, tuple[str, ...]]] = [
    ("uvicorn: protocol, parsing, outside the app", "httptools_impl.py", ("run_asgi",)),
    ("uvicorn: writing the answer (RequestResponseCycle.send)", "RequestResponseCycle.send", ()),
    ("the ASGI app (all of run_asgi), of which:", "run_asgi", ()),
    (
        "  FastAPI/Starlette outer layers (ServerErrorMiddleware...)",
        "FastAPI.__call__",
        ("RequestObservability.__call__", "RequestResponseCycle.send"),
    ),
    (
        "  RequestObservability, its own work, of which:",
        "RequestObservability.__call__",
        ("TrustedHosts.__call__", "RequestResponseCycle.send"),
    ),
    ("    the request log line (Logger.info)", "Logger.info", ()),
    ("      LogRecord creation (makeRecord, findCaller)", "Logger._log", ("Logger.handle",)),
    ("      JsonFormatter.format (json.dumps, strftime, scrub)", "JsonFormatter.format", ()),
    ("      TextFormatter.format", "TextFormatter.format", ()),
    ("      StreamHandler.emit: the write to stderr", "StreamHandler.emit", ("Formatter.format",)),
    ("    metrics (PrometheusMetrics.count + .observe)", "PrometheusMetrics.", ()),
    ("      of which metric.labels(...) lookups", "MetricWrapperBase.labels", ()),
    ("    new_request_id (secrets.token_hex)", "new_request_id", ()),
    ("    send_with_id (copies the headers)", "send_with_id", ("RequestResponseCycle.send",)),
    ("  TrustedHosts, own", "TrustedHosts.__call__", ("SecurityHeaders.__call__",)),
    (
        "  SecurityHeaders, own",
        "SecurityHeaders.__call__",
        ("BodyGuard.__call__", "RequestResponseCycle.send"),
    ),
    ("  BodyGuard, own", "BodyGuard.__call__", ("ExceptionMiddleware.__call__",)),
    (
        "  Starlette ExceptionMiddleware + router matching",
        "ExceptionMiddleware.__call__",
        ("get_request_handler", "RequestResponseCycle.send"),
    ),
    (
        "  FastAPI endpoint: dependencies, handler, serialisation",
        "get_request_handler",
        ("RequestResponseCycle.send",),
    ),
    ("asyncio event loop, outside uvicorn", "Runner.run", ("httptools_impl.py",)),
]


def _counts(stack: str, needle: str, excluded: tuple[str, ...]) -> bool:
    frames = stack.split(";")
    at = next((i for i, f in enumerate(frames) if needle in f), None)
    if at is None:
        return False
    rest = ";".join(frames[at:])
    return not any(x in rest for x in excluded)


def _event_loop_samples(paths: list[Path]) -> Iterator[tuple[str, int]]:
    for path in paths:
        for line in path.read_text(errors="replace").splitlines():
            stack, _, count = line.rpartition(" ")
            thread = stack.split(";", 1)[0]
            if stack and count.isdigit() and thread.endswith("MainThread"):
                yield stack, int(count)


def profile_parts(paths: list[Path]) -> str:
    """The ``PARTS`` table for py-spy raw files of API processes (MainThread only)."""
    counts: Counter[str] = Counter()
    total = 0
    for stack, n in _event_loop_samples(paths):
        total += n
        for label, needle, excluded in PARTS:
            if _counts(stack, needle, excluded):
                counts[label] += n
    if not total:
        return "no samples\n"
    lines = [f"event-loop samples: {total}", "| part | samples | % |"]
    lines.append("|---|---:|---:|")
    for label, _, _ in PARTS:
        lines.append(f"| {label} | {counts[label]} | {100 * counts[label] / total:.1f} |")
    return "\n".join(lines) + "\n"


# -- the run -----------------------------------------------------------------------------
@dataclass
class Target:
    what: str
    url: str
    pid: int
    worker_port: int | None = None


def idle_cpu(targets: list[Target], seconds: float = 3.0) -> float:
    """Percent of one core the idle servers use together (their background threads)."""
    procs = []
    for t in targets:
        with contextlib.suppress(psutil.Error):
            root = psutil.Process(t.pid)
            procs += [root, *root.children(recursive=True)]
    for p in procs:
        with contextlib.suppress(psutil.Error):
            p.cpu_percent(None)
    time.sleep(seconds)
    total = 0.0
    for p in procs:
        with contextlib.suppress(psutil.Error):
            total += p.cpu_percent(None)
    return round(total, 1)


def bench(args: argparse.Namespace) -> Outcome:
    """Every server up at once, idle but for the one wrk drives; --rounds rounds, each
    target once a round, the order rotating: the ratios compare runs minutes apart at most."""
    out = Outcome()
    d, c = args.duration, args.connections
    with tempfile.TemporaryDirectory(prefix="emr-bench-ops-") as tmp_s:
        tmp = Path(tmp_s)
        targets: list[Target] = []
        with contextlib.ExitStack() as servers:
            for observe, what in CEILINGS:
                port = free_port()
                proc = start_ops_ceiling(port, observe, tmp / f"ceiling-{observe}.log")
                servers.callback(stop, proc)
                targets.append(Target(what, f"http://127.0.0.1:{port}", proc.pid))
            for i, (what, env) in enumerate(VARIANTS.items()):
                data_dir = tmp / f"node-{i}"
                data_dir.mkdir()
                url, pid, wport = servers.enter_context(node(data_dir, 1, env))
                targets.append(Target(what + ", 1 API process", url, pid, wport))
            out.idle_cpu = idle_cpu(targets)
            # The bare ceiling runs between every two others: each run's ratio is to the mean
            # of the bare runs just before and after it (the load drifts within minutes).
            bare, others = targets[0], targets[1:]
            for r in range(args.rounds):
                order = others[r % len(others) :] + others[: r % len(others)]
                for t in [bare, *(x for o in order for x in (o, bare))]:
                    row = _wrk_get(t.url, "/healthz", d, c)
                    row.what, row.round = t.what, r + 1
                    out.rows.append(row)
                    print(_rows_table(out.rows[-1:]), file=sys.stderr)

            if args.profile is not None:
                t = targets[len(CEILINGS)]  # the node with its defaults
                assert t.worker_port is not None
                api = set(api_pids(t.pid, t.worker_port))
                with profiling(t.pid, args.profile, d - 2, "healthz", args.gil) as files:
                    row = _wrk_get(t.url, "/healthz", d, c)
                row.what = t.what + ", py-spy attached (not comparable)"
                out.rows.append(row)
                out.profiles = [
                    f for f in files if f.exists() and int(f.stem.rsplit("-", 1)[1]) in api
                ]
                out.profile = profile_parts(out.profiles)
                if out.profiles:
                    out.profile += "\n" + summarize_profile(out.profiles, top=15)

        if args.scrapes:
            data_dir = tmp / "node-0"
            with node(data_dir, 2, {}) as (url, _pid, _wport):
                admin, token = hospital_token(url, data_dir)
                traffic(url, token, min(d, 5), c)
                out.scrapes = measure_scrapes(url, admin, args.scrapes, args.cold_scrapes, 2)
    return out


def _rows_table(rows: list[Row]) -> str:
    lines = [
        "| round | what | req/s | p50 ms | p99 ms | errors | load 1/5 min before |",
        "|---:|---|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        w = r.result
        lines.append(
            f"| {r.round} | {r.what} | {w.rps:,.0f} | {w.p50_ms} | {w.p99_ms} | {w.errors} "
            f"| {r.load} |"
        )
    return "\n".join(lines)


def summary_rows(rows: list[Row]) -> list[dict[str, Any]]:
    """Per target: medians over the rounds, and the median ratio to the bare ceiling (each
    run to the mean of the bare runs just before and after it)."""
    timed = [r for r in rows if r.round]
    ratios: dict[str, list[float]] = {}
    for i, r in enumerate(timed):
        if r.what == CEILINGS[0][1]:
            continue
        bare = [
            timed[j].result.rps
            for j in (i - 1, i + 1)
            if 0 <= j < len(timed) and timed[j].what == CEILINGS[0][1]
        ]
        ratios.setdefault(r.what, []).append(r.result.rps / statistics.mean(bare))
    out = []
    for what in dict.fromkeys(r.what for r in timed):
        mine = [r for r in timed if r.what == what]
        mine_ratios = ratios.get(what, [1.0])  # the bare ceiling: 1 by definition
        out.append(
            {
                "what": what,
                "runs": len(mine),
                "rps": round(statistics.median(r.result.rps for r in mine), 1),
                "p50_ms": round(statistics.median(r.result.p50_ms for r in mine), 2),
                "p99_ms": round(statistics.median(r.result.p99_ms for r in mine), 1),
                "errors": sum(r.result.errors for r in mine),
                "ratio": round(statistics.median(mine_ratios), 3),
                "ratios": [round(x, 2) for x in mine_ratios],
                "loads": [r.load for r in mine],
            }
        )
    return out


def _span(values: list[float]) -> str:
    low, high = min(values), max(values)
    return f"{low:.1f}" if low == high else f"{low:.1f}-{high:.1f}"


def report(o: Outcome) -> str:
    lines = [_rows_table(o.rows), "", f"idle servers together: {o.idle_cpu} % of a core", ""]
    lines += [
        "| what | req/s (median) | p50 ms | p99 ms | errors | ratio to the bare ceiling "
        "(median; per run) | load (1 min) before the runs |",
        "|---|---:|---:|---:|---:|---|---|",
    ]
    for s in summary_rows(o.rows):
        lines.append(
            f"| {s['what']} | {s['rps']:,.0f} | {s['p50_ms']} | {s['p99_ms']} | {s['errors']} "
            f"| {s['ratio']:.2f} ({', '.join(f'{x:.2f}' for x in s['ratios'][:9])}) "
            f"| {_span([float(x.split('/')[0]) for x in s['loads']])} |"
        )
    s = o.scrapes
    if s is not None:
        lines += [
            "",
            f"/metrics, {s.processes} API processes, multi-process mode (load {s.load}):",
            f"  {s.n} scrapes back to back: median {s.median_ms} ms, p90 {s.p90_ms}, "
            f"max {s.max_ms}; {s.cold_n} with the state recomputed: median {s.cold_median_ms} ms",
            f"  GET /healthz on the same client: median {s.healthz_median_ms} ms",
            f"  body {s.body_bytes:,} bytes, {s.samples} samples, {s.series_names} sample names",
        ]
    if o.profile:
        lines += ["", o.profile]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3, help="wrk runs per target")
    parser.add_argument("--scrapes", type=int, default=50, help="0: no /metrics part")
    parser.add_argument("--cold-scrapes", type=int, default=5)
    parser.add_argument("--profile", type=Path, help="py-spy raw profiles into this directory")
    parser.add_argument("--gil", action="store_true", help="profile only threads holding the GIL")
    parser.add_argument("--json", type=Path, help="also write the results as JSON")
    parser.add_argument("--summarize", type=Path, nargs="+", help="summarize py-spy raw files")
    parser.add_argument("--serve-ceiling", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_ceiling:
        serve_ceiling(args.serve_ceiling)
        return
    if args.summarize:
        print(profile_parts(args.summarize))
        print(summarize_profile(args.summarize, top=15))
        return
    outcome = bench(args)
    print(report(outcome))
    for path in outcome.profiles:
        print(f"profile: {path}")
    if args.json:
        data = {
            "rows": [
                {"what": r.what, "round": r.round, "load": r.load, **asdict(r.result)}
                for r in outcome.rows
            ],
            "summary": summary_rows(outcome.rows),
            "idle_cpu_percent": outcome.idle_cpu,
            "scrapes": asdict(outcome.scrapes) if outcome.scrapes else None,
            "load_now": load(),
            "cpu_percent": psutil.cpu_percent(interval=0.2),
        }
        args.json.write_text(json.dumps(data, indent=2))


if __name__ == "__main__":
    main()
