"""HL7 v2 ORU^R01 over one MLLP connection against `emr-node run` (another process), one
message in flight (send, wait for the ACK, send the next: how an MLLP sender works), and in
the same run the ceiling: the same listener answering without storing, in a process of its
own: ``echo`` ACKs from the header alone, ``parse`` also decodes, checks and parses each
message as the node does.

    .venv/bin/python scripts/bench_hl7.py [--messages 3000] [--connections 1] [--obx 10]
    .venv/bin/python scripts/bench_hl7.py --profile build/profiles   # py-spy on the node
    .venv/bin/python scripts/bench_hl7.py --breakdown --messages 1000 # stage timings
    .venv/bin/python scripts/bench_hl7.py --key-audit-window 0        # experiment
    .venv/bin/python scripts/bench_hl7.py --serve-bare parse --port P  # (internal) ceiling

Each ACK the node sends follows the commit of its record (blob, index, anchoring queue);
the listener groups the messages of concurrent connections into one commit with no wait
window, so ``--connections N`` shows what several interface-engine channels reach.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from eth_account import Account

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_http import free_port, node_command, stop, summarize_profile, wait_ready

ROOT = Path(__file__).resolve().parents[1]
FACILITY = "BENCHLAB"


# -- messages --------------------------------------------------------------------------
def oru(control_id: str, number: str, obx: int) -> bytes:
    segments = [
        f"MSH|^~\\&|LIS|{FACILITY}|EMR|NODE|20260101120000||ORU^R01^ORU_R01|{control_id}|P|2.5.1",
        f"PID|1||{number}^^^{FACILITY}^MR||Doe^Jane||19800101|F",
        "OBR|1|PL1|FL1|24323-8^Comprehensive metabolic panel^LN|||20260101103000",
    ]
    segments += [
        f"OBX|{i}|NM|2345-7^Glucose^LN||{5 + i / 10:.1f}|mmol/L|3.9-6.1|N|||F"
        for i in range(1, obx + 1)
    ]
    return ("\r".join(segments) + "\r").encode()


def adt(control_id: str, number: str, wallet: str) -> bytes:
    return (
        f"MSH|^~\\&|ADT|{FACILITY}|EMR|NODE|20260101120000||ADT^A04^ADT_A01|{control_id}|P|2.5.1\r"
        f"EVN|A04|20260101120000\rPID|1||{number}^^^{FACILITY}^MR~{wallet}^^^^WALLET\r"
    ).encode()


class Sender:
    """One MLLP connection: send a frame, read its ACK."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""

    def call(self, message: bytes) -> bytes:
        self.sock.sendall(b"\x0b" + message + b"\x1c\r")
        while b"\x1c\r" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("the listener closed the connection")
            self.buffer += chunk
        ack, self.buffer = self.buffer.split(b"\x1c\r", 1)
        return ack

    def close(self) -> None:
        self.sock.close()


def msa(ack: bytes) -> str:
    for seg in ack.split(b"\r"):
        if seg.startswith(b"MSA|"):
            return seg.split(b"|")[1].decode()
    return "?"


def run_load(port: int, messages: int, connections: int, number: str, obx: int) -> dict[str, float]:
    """``messages`` ORU^R01 over ``connections`` connections, each sequential."""
    latencies: list[float] = []
    codes: dict[str, int] = {}
    lock = threading.Lock()
    per = messages // connections

    def one(k: int) -> None:
        sender = Sender(port)
        mine: list[float] = []
        seen: dict[str, int] = {}
        try:
            for i in range(per):
                msg = oru(f"B{k}-{i}-{secrets.token_hex(4)}", number, obx)
                t0 = time.perf_counter()
                code = msa(sender.call(msg))
                mine.append(time.perf_counter() - t0)
                seen[code] = seen.get(code, 0) + 1
        finally:
            sender.close()
        with lock:
            latencies.extend(mine)
            for c, n in seen.items():
                codes[c] = codes.get(c, 0) + n

    threads = [threading.Thread(target=one, args=(k,)) for k in range(connections)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    latencies.sort()
    return {
        "messages": float(len(latencies)),
        "rate": len(latencies) / elapsed,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000,
        "aa": float(codes.get("AA", 0)),
        "other": float(sum(n for c, n in codes.items() if c != "AA")),
    }


# -- the ceiling: the same listener, no storage -----------------------------------------
def serve_bare(mode: str, port: int) -> None:
    from node.hl7.ack import build_ack
    from node.hl7.message import Hl7Error, Message, read_header
    from node.hl7.mllp import MllpListener
    from node.settings import Hl7Settings

    class Bare:
        def handle(self, raw: bytes) -> bytes:
            header = read_header(raw)
            if mode == "parse":
                try:
                    Message(raw, header)
                except Hl7Error:
                    return build_ack(header, "AR")
            return build_ack(header, "AA", text="not stored")

        def too_large(self, head: bytes) -> bytes:
            return build_ack(read_header(head), "AR")

        def close(self) -> None:
            pass

    listener = MllpListener(Hl7Settings(enabled=True, port=port), Bare())
    listener.start()
    print("ready", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        threading.Event().wait()


def serve_node(key_audit_window: float) -> None:
    """Every role in this process, without HTTP, with the key-audit log's group-commit
    window set to ``key_audit_window`` (an experiment: the node's is fixed)."""
    from node.settings import Settings
    from node.wiring import build_node

    node = build_node(Settings())
    node.key_audit._batcher._window = key_audit_window  # type: ignore[attr-defined]
    node.start()
    try:
        with contextlib.suppress(KeyboardInterrupt):
            signal.sigwait({signal.SIGTERM, signal.SIGINT})
    finally:
        node.stop()


def breakdown(args: argparse.Namespace) -> None:
    """Where one message's time goes: a node in this process (every role, no HTTP), the
    service called directly (no socket), each commit stage timed."""
    import node.flows.upload_record as upload_record
    from node.settings import Hl7Settings, HSMSettings, Settings
    from node.wiring import build_node

    with tempfile.TemporaryDirectory(prefix="bench-hl7-") as tmp:
        settings = Settings(
            data_dir=Path(tmp),
            hsm=HSMSettings(passphrase="bench", scrypt_n=1024),
            hl7=Hl7Settings(enabled=True, port=0, allowed_facilities=[FACILITY]),
        )
        node = build_node(settings)
        if args.key_audit_window is not None:
            node.key_audit._batcher._window = args.key_audit_window  # type: ignore[attr-defined]
        node.start()
        try:
            (listener,) = node.listeners
            service = listener._handler  # type: ignore[attr-defined]
            times: dict[str, list[float]] = {}

            def timed(name: str, owner: object, attr: str) -> None:
                inner = getattr(owner, attr)

                def wrapper(*a: object, **kw: object) -> object:
                    t0 = time.perf_counter()
                    try:
                        return inner(*a, **kw)
                    finally:
                        times.setdefault(name, []).append(time.perf_counter() - t0)

                setattr(owner, attr, wrapper)

            timed("commit (all stages)", service, "_commit")
            timed("  seal_many (encrypt + key-audit entry)", upload_record, "seal_many")
            timed("  blobs.put_many", node.blobs, "put_many")
            timed("  index.add_records", node.index, "add_records")
            number = "MRN1"
            service.handle(adt("REG", number, Account.create().address))
            for i in range(args.messages):
                message = oru(f"D{i}", number, args.obx)
                t0 = time.perf_counter()
                service.handle(message)
                times.setdefault("handle (whole message)", []).append(time.perf_counter() - t0)
        finally:
            node.stop()
    window = "0.002 (the node's)" if args.key_audit_window is None else args.key_audit_window
    print(f"{args.messages} ORU^R01 one after another, key-audit window {window} s")
    for name in ("handle (whole message)", *[n for n in times if n.startswith(("c", " "))]):
        v = times[name]
        print(f"  {name:42s} p50 {statistics.median(v) * 1000:6.2f} ms  mean "
              f"{statistics.mean(v) * 1000:6.2f} ms")  # fmt: skip


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("the process exited before listening")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port}")


def ceiling(mode: str, args: argparse.Namespace) -> dict[str, float]:
    port = free_port()
    cmd = [sys.executable, __file__, "--serve-bare", mode, "--port", str(port)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL)
    try:
        wait_port(port, proc)
        run_load(port, min(args.messages, 500), args.connections, "X", args.obx)  # warm-up
        return run_load(port, args.messages, args.connections, "X", args.obx)
    finally:
        stop(proc)


# -- the node ----------------------------------------------------------------------------
def bench_node(args: argparse.Namespace, data_dir: Path) -> dict[str, float]:
    port, hl7_port, worker_port = free_port(), free_port(), free_port()
    env = dict(
        os.environ,
        EMR_DATA_DIR=str(data_dir),
        EMR_HSM__PASSPHRASE="bench",
        EMR_HSM__SCRYPT_N="1024",
        EMR_CHAIN__ANCHOR_INTERVAL="0.5",
        EMR_API__PUBLIC_URL=f"http://127.0.0.1:{port}",
        EMR_WORKER__PORT=str(worker_port),
        EMR_HL7__ENABLED="true",
        EMR_HL7__PORT=str(hl7_port),
        EMR_HL7__ALLOWED_FACILITIES=f'["{FACILITY}"]',
    )
    cmd = [*node_command(), "run", "--port", str(port), "--processes", "1"]
    if args.key_audit_window is not None:  # the experiment: a node of its own, no HTTP
        cmd = [sys.executable, __file__, "--serve-node", "--key-audit-window"]
        cmd.append(str(args.key_audit_window))
    log = data_dir / "node.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    spy: subprocess.Popen[bytes] | None = None
    try:
        if args.key_audit_window is None:
            wait_ready(f"http://127.0.0.1:{port}", proc, log)
        wait_port(hl7_port, proc)
        number = "MRN" + secrets.token_hex(4)
        sender = Sender(hl7_port)
        code = msa(sender.call(adt("REG-" + number, number, Account.create().address)))
        sender.close()
        if code != "AA":
            raise RuntimeError(f"registering the bench patient answered {code}")
        run_load(hl7_port, min(args.messages, 500), args.connections, number, args.obx)
        if args.profile:
            spy = start_profile(args.profile, hl7_port)
        return run_load(hl7_port, args.messages, args.connections, number, args.obx)
    finally:
        if spy is not None:
            spy.send_signal(signal.SIGINT)  # py-spy writes its profile on SIGINT
            spy.wait(timeout=120)
            print(summarize_profile([args.profile / "hl7-node.raw"]))
        stop(proc)


def start_profile(out_dir: Path, hl7_port: int) -> subprocess.Popen[bytes]:
    """py-spy on the process that listens on the HL7 port (the worker role)."""
    import psutil

    out_dir.mkdir(parents=True, exist_ok=True)
    for p in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            if any(c.laddr.port == hl7_port for c in p.net_connections(kind="tcp")):
                target = p.pid
                break
    else:
        raise RuntimeError("no process listens on the HL7 port")
    out = out_dir / "hl7-node.raw"
    spy = [str(Path(sys.executable).with_name("py-spy")), "record", "--pid", str(target)]
    # --gil: only the thread holding the GIL, i.e. where the CPU goes, not who waits.
    spy += ["--format", "raw", "--threads", "--gil", "--output", str(out)]
    print(f"profiling pid {target} into {out}", file=sys.stderr)
    return subprocess.Popen(spy, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--connections", type=int, default=1)
    parser.add_argument("--obx", type=int, default=10, help="OBX segments per ORU^R01")
    parser.add_argument("--profile", type=Path, default=None)
    parser.add_argument("--serve-bare", choices=["echo", "parse"], default=None)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument(
        "--key-audit-window",
        type=float,
        default=None,
        help="experiment: the node in a process of its own (no HTTP) with this key-audit "
        "group-commit window (the node's: 0.002 s)",
    )
    parser.add_argument("--serve-node", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--breakdown", action="store_true", help="time the stages of one message, in process"
    )
    args = parser.parse_args()
    if args.breakdown:
        breakdown(args)
        return
    if args.serve_node:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
        serve_node(args.key_audit_window)
        return
    if args.serve_bare:
        serve_bare(args.serve_bare, args.port)
        return
    size = len(oru("B0-0-00000000", "MRN00000000", args.obx))
    with tempfile.TemporaryDirectory(prefix="bench-hl7-") as tmp:
        node = bench_node(args, Path(tmp))
    echo = ceiling("echo", args)
    parse = ceiling("parse", args)
    print(
        f"ORU^R01 ({size} bytes, {args.obx} OBX), {args.messages} messages over "
        f"{args.connections} MLLP connection(s), one in flight each"
    )
    label = "node (stored, ACK after commit)"
    if args.key_audit_window is not None:
        label = f"node, key-audit window {args.key_audit_window:g} s"
    for name, r in (
        (label, node),
        ("ceiling: bare listener, parse + ACK", parse),
        ("ceiling: bare listener, ACK only", echo),
    ):
        print(
            f"  {name:38s} {r['rate']:8.0f} msg/s  p50 {r['p50_ms']:6.2f} ms  "
            f"p99 {r['p99_ms']:6.2f} ms  AA {r['aa']:.0f}  other {r['other']:.0f}"
        )


if __name__ == "__main__":
    main()
