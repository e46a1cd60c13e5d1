"""HTTP load on a running node with wrk, and in the same run the ceiling: bare FastAPI
handlers with the same route signatures (scripts/bench_ceiling.py), served by uvicorn with
the same number of processes. Numbers on a shared machine are noisy; the ratio to the
ceiling measured minutes apart is what to compare between runs.

    bash scripts/bench_tools.sh                     # wrk (Debian) and py-spy, once
    .venv/bin/python scripts/bench_http.py --scenario upload [--processes N] [--duration 10]
    .venv/bin/python scripts/bench_http.py --scenario read
    .venv/bin/python scripts/bench_http.py --scenario batch [--batch-records 100]
    .venv/bin/python scripts/bench_http.py --scenario upload --profile build/profiles
    .venv/bin/python scripts/bench_http.py --production --scenario upload
        MariaDB, Redis, 2 IPFS daemons (replication 2), a SoftHSM2 token and a hardhat
        node; services not answering are started with scripts/services.sh, ipfs.sh and
        chain.sh (and left running).
    .venv/bin/python scripts/bench_http.py --summarize FILE.raw ...   py-spy raw -> summary

upload: wrk POSTs a 4 KiB multipart record per request (patient rotating over --patients
addresses) with a hospital token; after the burst the script waits until every record is
anchored and prints the seconds from the burst's end. batch: the same with POST
/records/batch, --batch-records 4 KiB records per request (a JSON manifest part and one file
part per record); reports records/s (requests/s x K) besides requests/s. read: one record is
uploaded for a fresh patient wallet, the wallet signs in (SIWE) and wrk GETs the record's
content with the session. All print the RSS of every node process near the end of the burst.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
from eth_account import Account
from eth_account.messages import encode_defunct

ROOT = Path(__file__).resolve().parents[1]
LUA = ROOT / "scripts" / "bench_http.lua"
CONTENT_SIZE = 4096
BATCH_MAX_RECORDS = 1000  # api.batch_max_records' default


# -- processes ---------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def node_command() -> list[str]:
    return [sys.executable, "-m", "node.cli.main"]


def tree_env(tree: Path) -> dict[str, str]:
    """The environment that runs the node's code from ``tree`` (a checkout, or an export
    of another commit: `git archive HEAD | tar -x -C DIR`)."""
    return dict(os.environ, PYTHONPATH=str(tree))


def run_supports_processes(tree: Path) -> bool:
    """Whether ``emr-node run`` has ``--processes`` (issue 11 adds it)."""
    out = subprocess.run(
        [*node_command(), "run", "--help"],
        capture_output=True,
        text=True,
        env={**tree_env(tree), "COLUMNS": "200", "NO_COLOR": "1"},
        cwd=tree,
        check=False,
    ).stdout
    return "--processes" in out


def wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            httpx.get(f"{url}/health", timeout=2).raise_for_status()
            return
        except httpx.HTTPError:
            if proc.poll() is not None or time.monotonic() > deadline:
                stop(proc)
                tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
                raise RuntimeError(f"{url} did not start; log tail:\n{tail}") from None
            time.sleep(0.2)


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process, then kill whatever of its tree is left."""
    try:
        tree = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        tree = []
    proc.terminate()
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    _, alive = psutil.wait_procs(tree, timeout=10)
    for child in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.kill()


def start_node(
    tree: Path,
    data_dir: Path,
    port: int,
    worker_port: int,
    processes: int | None,
    extra_env: dict[str, str],
) -> subprocess.Popen[bytes]:
    """``emr-node run``; ``processes`` None: the tree's ``run`` as it is (no flag), 0: one
    process for every role (``--single-process``), N: N API processes and the worker."""
    env = dict(
        tree_env(tree),
        EMR_DATA_DIR=str(data_dir),
        EMR_HSM__PASSPHRASE="bench",
        EMR_HSM__SCRYPT_N="1024",
        EMR_CHAIN__ANCHOR_INTERVAL="0.5",
        EMR_API__PUBLIC_URL=f"http://127.0.0.1:{port}",
        EMR_WORKER__PORT=str(worker_port),
        **extra_env,
    )
    cmd = [*node_command(), "run", "--port", str(port)]
    if processes == 0:
        cmd.append("--single-process")
    elif processes is not None:
        cmd += ["--processes", str(processes)]
    log = data_dir / "node.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=tree)
    wait_ready(f"http://127.0.0.1:{port}", proc, log)
    return proc


def start_ceiling(
    tree: Path, port: int, processes: int, content_file: Path, log: Path
) -> subprocess.Popen[bytes]:
    cmd = [
        sys.executable, "-m", "uvicorn", "bench_ceiling:create_app", "--factory",
        "--app-dir", str(ROOT / "scripts"), "--host", "127.0.0.1", "--port", str(port),
        "--log-level", "warning", "--no-access-log",
    ]  # fmt: skip
    if processes > 1:
        # The same server as the node's API processes: they take turns accepting.
        cmd += ["--workers", str(processes), "--loop", "node.api.server:TakingTurnsEventLoop"]
    env = dict(tree_env(tree), EMR_BENCH_CEILING_CONTENT=str(content_file))
    with log.open("ab") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=tree)
    wait_ready(f"http://127.0.0.1:{port}", proc, log)
    return proc


def _listens(proc: psutil.Process) -> set[int]:
    try:
        conns = proc.net_connections(kind="tcp")
    except psutil.Error:
        return set()
    return {c.laddr.port for c in conns if c.status == psutil.CONN_LISTEN}


def python_processes(
    root_pid: int, worker_port: int | None = None
) -> list[tuple[psutil.Process, str]]:
    """The node's processes and their roles: the one listening on the worker port is the
    worker; other children are API processes."""
    try:
        root = psutil.Process(root_pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []
    labelled = []
    for p in procs:
        try:
            cmd = " ".join(p.cmdline())
        except psutil.Error:
            continue
        if "resource_tracker" in cmd or "py-spy" in cmd:
            continue
        worker = worker_port is not None and worker_port in _listens(p)
        if p.pid == root_pid and len(procs) == 1:
            role = "node (all roles)"
        elif p.pid == root_pid:
            role = "parent+worker" if worker else "parent"
        else:
            role = "worker" if worker else "api"
        labelled.append((p, role))
    return labelled


class RssSampler:
    """Samples the RSS of every process of a tree until stopped: the last sample before the
    burst ends, and each process's peak."""

    def __init__(self, root_pid: int, worker_port: int, interval: float = 0.5) -> None:
        self.root_pid = root_pid
        self.worker_port = worker_port
        self.interval = interval
        self.last: dict[int, tuple[str, int]] = {}
        self.peak: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            sample: dict[int, tuple[str, int]] = {}
            for proc, role in python_processes(self.root_pid, self.worker_port):
                with contextlib.suppress(psutil.Error):
                    sample[proc.pid] = (role, proc.memory_info().rss)
            if sample:
                self.last = sample
                for pid, (_, rss) in sample.items():
                    self.peak[pid] = max(self.peak.get(pid, 0), rss)

    def rows(self) -> list[dict[str, Any]]:
        return [
            {
                "pid": pid,
                "role": role,
                "rss_mb": round(rss / 2**20),
                "peak_mb": round(self.peak.get(pid, rss) / 2**20),
            }
            for pid, (role, rss) in sorted(self.last.items())
        ]


# -- wrk ---------------------------------------------------------------------------------
@dataclass
class WrkResult:
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    errors: int  # non-2xx answers plus socket errors and timeouts
    statuses: dict[str, int] = field(default_factory=dict)

    @classmethod
    def parse(cls, out: str) -> WrkResult:
        match = re.search(r"^WRK_RESULT (\{.*\})$", out, re.M)
        if match is None:
            raise RuntimeError(f"wrk printed no result:\n{out[-2000:]}")
        r = json.loads(match.group(1))
        seconds = r["duration_us"] / 1e6
        socket_errors = r["connect_errors"] + r["read_errors"] + r["write_errors"]
        return cls(
            requests=r["requests"],
            seconds=round(seconds, 2),
            rps=round(r["requests"] / seconds, 1),
            p50_ms=round(r["p50_us"] / 1000, 1),
            p95_ms=round(r["p95_us"] / 1000, 1),
            p99_ms=round(r["p99_us"] / 1000, 1),
            errors=r["non2xx"] + socket_errors + r["timeouts"],
            statuses=r["statuses"],
        )


def run_wrk(url: str, lua_args: list[str], duration: float, connections: int) -> WrkResult:
    threads = max(1, min(2, connections))
    cmd = [
        "wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(duration))}s",
        "--timeout", "30s", "-s", str(LUA), url, "--", *lua_args,
    ]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return WrkResult.parse(out)


# -- the node's API ----------------------------------------------------------------------
def hospital_token(url: str, data_dir: Path) -> tuple[str, str]:
    """(admin token, a new hospital token)."""
    admin = (data_dir / "admin-token").read_text().strip()
    r = httpx.post(
        f"{url}/admin/tokens",
        json={"name": "bench", "role": "hospital"},
        headers={"Authorization": f"Bearer {admin}"},
        timeout=30,
    )
    r.raise_for_status()
    return admin, str(r.json()["token"])


def upload_one(url: str, token: str, patient: str, content: bytes) -> str:
    r = httpx.post(
        f"{url}/records",
        data={"patient": patient, "category": "lab", "content_type": "application/octet-stream"},
        files={"file": ("record", content, "application/octet-stream")},
        headers={"Authorization": f"Bearer {token}"},
        timeout=60,
    )
    r.raise_for_status()
    return str(r.json()["record_id"])


def sign_in(url: str, account: Any) -> str:
    """SIWE: challenge, personal_sign, login; the session token."""
    with httpx.Client(base_url=url, timeout=30) as c:
        challenge = c.post("/auth/challenge", json={"address": account.address})
        challenge.raise_for_status()
        message = challenge.json()["message"]
        signed = account.sign_message(encode_defunct(text=message))
        r = c.post(
            "/auth/login", json={"message": message, "signature": "0x" + signed.signature.hex()}
        )
        r.raise_for_status()
        return str(r.json()["token"])


def health(url: str, admin: str) -> dict[str, Any]:
    r = httpx.get(f"{url}/health", headers={"Authorization": f"Bearer {admin}"}, timeout=30)
    r.raise_for_status()
    return dict(r.json())


def _pending(report: dict[str, Any], queue: str) -> int:
    value = report.get(queue)
    if value is None:  # an API process may report it per component only
        value = report.get("components", {}).get("index", {}).get(queue)
    if value is None or value < 0:
        raise RuntimeError(f"/health reports no {queue}: {report}")
    return int(value)


def drain_time(url: str, admin: str, queue: str, since: float, timeout: float = 600) -> float:
    """Seconds from ``since`` (a perf_counter time) until ``queue`` on /health is empty."""
    while _pending(health(url, admin), queue):
        if time.perf_counter() - since > timeout:
            raise TimeoutError(f"{queue} not drained after {timeout} s")
        time.sleep(0.1)
    return time.perf_counter() - since


# -- py-spy ------------------------------------------------------------------------------
@contextlib.contextmanager
def profiling(
    root_pid: int, out_dir: Path | None, seconds: float, tag: str, gil: bool
) -> Iterator[list[Path]]:
    """py-spy record (raw, per thread) of every node process while the body runs; starts
    after a second of warm-up."""
    files: list[Path] = []
    if out_dir is None:
        yield files
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    procs: list[subprocess.Popen[bytes]] = []

    def start() -> None:
        time.sleep(1.0)
        for proc, role in python_processes(root_pid):
            path = out_dir / f"{tag}-{role.split()[0]}-{proc.pid}.raw"
            cmd = [
                str(Path(sys.executable).with_name("py-spy")), "record", "-p", str(proc.pid),
                "-d", str(max(1, int(seconds))), "-f", "raw", "--threads", "-o", str(path),
            ]  # fmt: skip
            if gil:
                cmd.append("--gil")
            procs.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
            files.append(path)

    starter = threading.Thread(target=start, daemon=True)
    starter.start()
    try:
        yield files
    finally:
        starter.join()
        for p in procs:
            _, err = p.communicate(timeout=seconds + 60)
            if p.returncode:
                print(f"py-spy failed: {err.decode(errors='replace')[-500:]}", file=sys.stderr)


_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


_PACKAGES = ("node", "storage", "hsm", "zk", "scripts")


def _project_path(file: str) -> str | None:
    """``node/flows/x.py`` for a file of this project in any source tree, else None."""
    parts = file.split("/")
    for i, part in enumerate(parts):
        if part in _PACKAGES and i + 1 < len(parts) and "site-packages" not in parts[:i]:
            return "/".join(parts[i:])
    return None


def _module(file: str) -> str:
    """A short package name for a source file path (py-spy prints paths relative to their
    sys.path entry: ``web3/eth/eth.py``, ``threading.py``, ``node/flows/x.py``)."""
    file = file.split("site-packages/", 1)[-1]
    project = _project_path(file)
    if project is not None:
        return ".".join(project.split("/")[:2]).removesuffix(".py")
    if file.startswith("/"):  # an absolute path py-spy did not shorten
        return file.rsplit("/", 1)[-1].removesuffix(".py")
    return file.split("/", 1)[0].removesuffix(".py")


def _short(file: str) -> str:
    if "site-packages/" in file:
        return file.split("site-packages/", 1)[1]
    return _project_path(file) or file.rsplit("/", 1)[-1]


# Where a sample goes: the first rule whose thread prefix and stack substrings match.
_CATEGORIES: list[tuple[str, str, tuple[str, ...]]] = [
    ("anchorer: EVM execution (py-evm)", "anchorer", ("eth/vm/",)),
    ("anchorer: signing", "anchorer", ("eth_account/", "eth_keys/", "coincurve/")),
    ("anchorer: web3 + eth-tester plumbing (formatters, middleware, RLP)", "anchorer", ()),
    ("audit-mirror: eth_getLogs + log decoding", "audit-mirror", ()),
    ("access-log: reads queued for the chain", "access-log", ()),
    ("upload-commit: group commit (encrypt, blobs, index)", "upload-commit", ()),
    ("HTTP: multipart parsing", "", ("formparsers.py", "python_multipart/")),
    ("HTTP: route handler (node/api/routers, flows)", "", ("node/api/routers/",)),
    ("HTTP: auth + identity (token/session lookup)", "", ("node/api/deps.py", "identity.py")),
    ("HTTP: threadpool hand-off (anyio)", "", ("anyio/",)),
    ("HTTP: FastAPI/Starlette (routing, middleware, validation)", "", ("fastapi/", "starlette/")),
    ("HTTP: uvicorn + event loop", "MainThread", ()),
]


def _category(thread_name: str, stack: str) -> str:
    for name, thread, needles in _CATEGORIES:
        if thread_name.startswith(thread) and (not needles or any(n in stack for n in needles)):
            return name
    return f"other: {thread_name}"


def summarize_profile(paths: list[Path], top: int = 25) -> str:
    """Samples per thread, per package of the innermost frame (self time), and the
    functions with the most inclusive samples."""
    threads: Counter[str] = Counter()
    self_pkg: Counter[str] = Counter()
    self_func: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    categories: Counter[str] = Counter()
    total = 0
    for path in paths:
        for line in path.read_text(errors="replace").splitlines():
            stack, _, count_s = line.rpartition(" ")
            if not stack or not count_s.isdigit():
                continue
            count = int(count_s)
            frames = stack.split(";")
            thread = next((f for f in frames if f.startswith("thread ")), "?")
            thread = re.sub(r"\(0x[0-9A-Fa-f]+\)", "", thread).strip()
            code = [m for f in frames if not f.startswith(("thread ", "process ")) for m in
                    [_FRAME.match(f)] if m]  # fmt: skip
            total += count
            name = re.sub(r"^thread \(\d+\): ", "", thread).strip('"')
            categories[_category(name, stack)] += count
            threads[thread if len(paths) == 1 else f"{path.stem}: {thread}"] += count
            if code:
                leaf = code[-1]
                self_pkg[_module(leaf["file"])] += count
                self_func[f"{leaf['func']} ({_module(leaf['file'])})"] += count
            seen = set()
            for m in code:
                key = f"{m['func']} ({_short(m['file'])})"
                if key not in seen:
                    seen.add(key)
                    incl[key] += count
    if not total:
        return "no samples\n"

    def table(title: str, counter: Counter[str], n: int) -> list[str]:
        lines = [f"## {title}", "| samples | % | what |", "|---:|---:|---|"]
        for key, c in counter.most_common(n):
            lines.append(f"| {c} | {100 * c / total:.1f} | `{key}` |")
        return [*lines, ""]

    out = [f"# py-spy summary: {', '.join(p.name for p in paths)}", f"samples: {total}", ""]
    out += table("where the time goes (first matching rule)", categories, 40)
    out += table("samples per thread", threads, 40)
    out += table("self time by package (innermost frame)", self_pkg, top)
    out += table("self time by function (innermost frame)", self_func, top)
    out += table("inclusive time by function", incl, 2 * top)
    return "\n".join(out)


# -- production services -----------------------------------------------------------------
def _answers(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex((host, port)) == 0


def ensure_services(rpc_url: str, ipfs: list[str]) -> None:
    """Start MariaDB/Redis, the IPFS daemons and the hardhat node when they do not answer,
    and install SoftHSM2 when missing."""

    def run(*args: str) -> None:
        print(f"starting: {' '.join(args)}", file=sys.stderr)
        subprocess.run(["bash", *args], cwd=ROOT, check=True)

    if not (_answers("127.0.0.1", 3306) and _answers("127.0.0.1", 6379)):
        run("scripts/services.sh", "start")
    ipfs_ports = [int(u.rsplit(":", 1)[1].strip("/")) for u in ipfs]
    if not all(_answers("127.0.0.1", p) for p in ipfs_ports):
        run("scripts/ipfs.sh", "start", str(len(ipfs)))
    if not _answers("127.0.0.1", int(rpc_url.rsplit(":", 1)[1].strip("/"))):
        run("scripts/chain.sh", "start")
    if shutil.which("softhsm2-util") is None:
        run("scripts/softhsm.sh", "install")


def drop_database(name: str) -> None:
    import pymysql

    with contextlib.suppress(pymysql.MySQLError):
        conn = pymysql.connect(host="127.0.0.1", user="root", password="")
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
        conn.close()


# -- scenarios ---------------------------------------------------------------------------
@dataclass
class Outcome:
    scenario: str
    processes: int
    node: WrkResult
    ceiling: WrkResult
    drain_s: float | None = None
    drain_what: str = ""
    records: int | None = None
    records_per_request: int = 1
    rss: list[dict[str, Any]] = field(default_factory=list)
    profiles: list[Path] = field(default_factory=list)


def bench(args: argparse.Namespace) -> Outcome:
    tree = args.tree.resolve()
    processes_flag = run_supports_processes(tree)
    processes = args.processes
    if not processes_flag and (processes != 1 or args.single_process):
        print(
            f"note: `emr-node run` has no --processes yet: running 1 process, not {processes}",
            file=sys.stderr,
        )
        processes = 1
    node_processes = (0 if args.single_process else processes) if processes_flag else None
    extra_env: dict[str, str] = {}
    database = None
    with tempfile.TemporaryDirectory(prefix="emr-bench-") as tmp_s:
        tmp = Path(tmp_s)
        data_dir = tmp / "node"
        data_dir.mkdir()
        if args.production:
            from node.bench import production_env, softhsm_env

            ensure_services(args.rpc_url, args.ipfs)
            hsm_dir = tmp / "hsm"
            hsm_dir.mkdir()
            extra_env = {**production_env(args.rpc_url, args.ipfs), **softhsm_env(hsm_dir)}
            database = extra_env["EMR_STORAGE__MYSQL_DATABASE"]
        content = secrets.token_bytes(CONTENT_SIZE)
        content_file = tmp / "content.bin"
        content_file.write_bytes(content)
        patients = [Account.create().address for _ in range(args.patients)]
        patients_file = tmp / "patients.txt"
        patients_file.write_text("\n".join(patients) + "\n")

        port = free_port()
        url = f"http://127.0.0.1:{port}"
        worker_port = free_port()
        proc = start_node(tree, data_dir, port, worker_port, node_processes, extra_env)
        try:
            admin, token = hospital_token(url, data_dir)
            if args.scenario == "upload":
                lua_args = ["upload", token, str(patients_file), str(content_file)]
                ceiling_path = ""
            elif args.scenario == "batch":
                lua_args = ["batch", token, str(patients_file), str(content_file)]
                lua_args.append(str(args.batch_records))
                ceiling_path = ""
            else:
                wallet = Account.create()
                record_id = upload_one(url, token, wallet.address, content)
                session = sign_in(url, wallet)
                path = f"/records/{record_id}/content"
                check = httpx.get(url + path, headers={"Authorization": f"Bearer {session}"})
                check.raise_for_status()
                if check.content != content:
                    raise RuntimeError("the node served other bytes than were uploaded")
                lua_args = ["read", session, path]
                ceiling_path = path
            tag = args.scenario + ("-gil" if args.gil else "")
            writes = args.scenario in ("upload", "batch")
            queue = "pending_anchors" if writes else "pending_access_log"
            with (
                RssSampler(proc.pid, worker_port) as rss,
                profiling(proc.pid, args.profile, args.duration - 2, tag, args.gil) as profiles,
            ):
                node_result = run_wrk(url, lua_args, args.duration, args.connections)
            burst_end = time.perf_counter()
            drain = drain_time(url, admin, queue, burst_end)
            records = None
            if writes:
                records = count_records(url, token, patients)
        finally:
            stop(proc)
            if database is not None:
                drop_database(database)

        cport = free_port()
        cproc = start_ceiling(tree, cport, processes, content_file, tmp / "ceiling.log")
        try:
            ceiling = run_wrk(
                f"http://127.0.0.1:{cport}",
                lua_args if not ceiling_path else ["read", "-", ceiling_path],
                args.duration,
                args.connections,
            )
        finally:
            stop(cproc)
    mode = " (production)" if args.production else ""
    mode += " single-process" if node_processes == 0 else ""
    return Outcome(
        scenario=args.scenario + mode,
        processes=processes,
        node=node_result,
        ceiling=ceiling,
        drain_s=round(drain, 2),
        drain_what="all anchored" if writes else "access log flushed",
        records=records,
        records_per_request=args.batch_records if args.scenario == "batch" else 1,
        rss=rss.rows(),
        profiles=profiles,
    )


def count_records(url: str, token: str, patients: list[str]) -> int:
    """Records of the benchmark's (fresh) patients, as the index lists them."""
    total = 0
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}) as c:
        for p in patients:
            offset = 0
            while True:
                rows = c.get("/records", params={"patient": p, "limit": 1000, "offset": offset})
                rows.raise_for_status()
                n = len(rows.json())
                total += n
                offset += n
                if n < 1000:
                    break
    return total


def report(o: Outcome) -> str:
    n, c = o.node, o.ceiling
    k = o.records_per_request
    head = (
        "| scenario | processes | req/s | records/s | p50 ms | p95 ms | p99 ms | errors "
        "| ceiling req/s | ceiling records/s | ceiling p95 ms | ratio |"
    )
    scenario = o.scenario + (f" ({k} records/request)" if k > 1 else "")
    lines = [
        head,
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| {scenario} | {o.processes} | {n.rps:,.1f} | {n.rps * k:,.0f} | {n.p50_ms} "
        f"| {n.p95_ms} | {n.p99_ms} | {n.errors} | {c.rps:,.1f} | {c.rps * k:,.0f} "
        f"| {c.p95_ms} | {n.rps / c.rps:.2f} |",
        "",
    ]
    if n.statuses:
        lines.append(f"non-2xx answers by status: {n.statuses}")
    if c.errors:
        lines.append(f"ceiling errors: {c.errors} {c.statuses}")
    stored = f" ({o.records} records stored)" if o.records is not None else ""
    lines.append(f"{o.drain_what} {o.drain_s} s after the burst ended{stored}")
    lines.append("RSS near the end of the burst (MiB, peak in the burst):")
    lines += [
        f"  {r['role']:<18} pid {r['pid']:<8} {r['rss_mb']:>5} ({r['peak_mb']})" for r in o.rss
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scenario", choices=["upload", "batch", "read"], default="upload")
    parser.add_argument("--processes", type=int, default=1, help="API processes (emr-node run)")
    parser.add_argument(
        "--single-process",
        action="store_true",
        help="every role in one process (emr-node run --single-process: today's node)",
    )
    parser.add_argument("--production", action="store_true")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--patients", type=int, default=8, help="upload, batch: patients to rotate")
    parser.add_argument(
        "--batch-records",
        type=int,
        default=100,
        metavar="K",
        help=f"batch: 4 KiB records per request (1..{BATCH_MAX_RECORDS})",
    )
    parser.add_argument("--rpc-url", default="http://127.0.0.1:8545")
    parser.add_argument(
        "--ipfs", nargs="+", default=["http://127.0.0.1:5001", "http://127.0.0.1:5002"]
    )
    parser.add_argument("--profile", type=Path, help="py-spy raw profiles into this directory")
    parser.add_argument("--gil", action="store_true", help="profile only threads holding the GIL")
    parser.add_argument(
        "--tree", type=Path, default=ROOT, help="run the node's code from this source tree"
    )
    parser.add_argument("--json", type=Path, help="also write the results as JSON")
    parser.add_argument("--summarize", type=Path, nargs="+", help="summarize py-spy raw files")
    args = parser.parse_args()
    if not 1 <= args.batch_records <= BATCH_MAX_RECORDS:
        parser.error(f"--batch-records: 1..{BATCH_MAX_RECORDS}")
    if args.summarize:
        print(summarize_profile(args.summarize))
        return
    outcome = bench(args)
    print(report(outcome))
    for path in outcome.profiles:
        if path.exists():
            summary = path.with_suffix(".md")
            summary.write_text(summarize_profile([path]))
            print(f"profile: {path} -> {summary}")
    if args.json:
        data = {
            "scenario": outcome.scenario,
            "processes": outcome.processes,
            "node": outcome.node.__dict__,
            "ceiling": outcome.ceiling.__dict__,
            "drain_s": outcome.drain_s,
            "drain_what": outcome.drain_what,
            "records": outcome.records,
            "records_per_request": outcome.records_per_request,
            "records_per_s": round(outcome.node.rps * outcome.records_per_request, 1),
            "ceiling_records_per_s": round(outcome.ceiling.rps * outcome.records_per_request, 1),
            "rss": outcome.rss,
        }
        args.json.write_text(json.dumps(data, indent=2))


if __name__ == "__main__":
    main()
