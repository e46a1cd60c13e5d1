"""Helpers for the IPFS blob store tests: a js-ipfs cluster run by scripts/ipfs.sh, a
request counter, and a fake Kubo RPC node that lies about the bytes it stores."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import threading
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx

from storage.backends.ipfs import IpfsClusterBlobStore
from storage.backends.ipfs_rpc import KuboRPC
from storage.cid import parse_cid

REPO_ROOT = Path(__file__).resolve().parents[3]
SCRIPT = REPO_ROOT / "scripts" / "ipfs.sh"
# The first run installs js-ipfs from npm (about 3 minutes); later runs reuse .tools/ipfs.
START_TIMEOUT = 900


class IpfsCluster:
    """js-ipfs daemons in a private state dir, driven through scripts/ipfs.sh."""

    def __init__(self, state: Path, size: int) -> None:
        self.state = state
        self.size = size
        self.env = {**os.environ, "EMR_IPFS_STATE": str(state), "EMR_IPFS_PORTS": "auto"}
        self.urls: list[str] = []
        self._rpcs: list[KuboRPC] = []

    def run(self, *args: str, timeout: float = 120) -> str:
        done = subprocess.run(
            ["bash", str(SCRIPT), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"ipfs.sh {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
        return done.stdout

    def start(self, timeout: float = 120) -> None:
        """Start every daemon that is not running (a no-op for running ones) and peer them."""
        lines = self.run("start", str(self.size), timeout=timeout).splitlines()
        running = [line.split() for line in lines if line.startswith("node")]
        assert [fields[1] for fields in running] == ["running"] * self.size, lines
        self.urls = [fields[2] for fields in running]

    def stop_node(self, i: int) -> None:
        self.run("stop-node", str(i))

    def wipe_node(self, i: int) -> None:
        self.run("wipe-node", str(i))

    def stop(self) -> None:
        for rpc in self._rpcs:
            rpc.close()
        self.run("stop")

    def rpcs(self) -> list[KuboRPC]:
        """A client per daemon, to look behind the store's back (made once: an httpx
        client costs ~20 ms to build). A node keeps its URL across restarts."""
        if not self._rpcs:
            self._rpcs = [KuboRPC(url, timeout=5) for url in self.urls]
        return self._rpcs

    def block_files(self, cid: str) -> list[Path]:
        """The flatfs files holding ``cid``'s block on every node (js-ipfs repo layout:
        base32 of the multihash, sharded by its next-to-last two characters)."""
        multihash = b"\x12\x20" + parse_cid(cid)
        key = base64.b32encode(multihash).decode().rstrip("=")
        found = []
        for i in range(self.size):
            path = self.state / f"node{i}" / "repo" / "blocks" / key[-3:-1] / f"{key}.data"
            if path.exists():
                found.append(path)
        return found


@contextmanager
def count_requests(store: IpfsClusterBlobStore) -> Iterator[Counter[tuple[int, str]]]:
    """Count the RPC requests ``store`` sends, as ``{(node index, command): n}``."""
    counts: Counter[tuple[int, str]] = Counter()
    lock = threading.Lock()
    hooks = []
    for i, node in enumerate(store._nodes):

        def hook(request: httpx.Request, i: int = i) -> None:
            command = request.url.path.split("/api/v0/", 1)[1]
            with lock:
                counts[i, command] += 1

        node.http.event_hooks["request"].append(hook)
        hooks.append((node, hook))
    try:
        yield counts
    finally:
        for node, hook in hooks:
            node.http.event_hooks["request"].remove(hook)


class FakeNode:
    """A Kubo RPC look-alike on 127.0.0.1: claims to pin every CID it is asked about and
    answers ``block/get`` with ``served`` bytes; ``dag/import`` reports ``import_roots``."""

    def __init__(self, served: bytes = b"tampered", import_roots: list[str] | None = None) -> None:
        self.served = served
        self.import_roots = import_roots or []
        self.calls: Counter[str] = Counter()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                url = urlsplit(self.path)
                command = url.path.removeprefix("/api/v0/")
                fake.calls[command] += 1
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                query: Mapping[str, list[str]] = parse_qs(url.query)
                if command == "pin/ls":
                    keys = {cid: {"Type": "recursive"} for cid in query.get("arg", [])}
                    self._reply(json.dumps({"Keys": keys}).encode())
                elif command == "block/get":
                    self._reply(fake.served, "application/octet-stream")
                elif command == "dag/import":
                    lines = [
                        json.dumps({"Root": {"Cid": {"/": cid}, "PinErrorMsg": ""}})
                        for cid in fake.import_roots
                    ]
                    self._reply("\n".join(lines).encode())
                else:
                    self.send_error(404)

            def _reply(self, body: bytes, content_type: str = "application/json") -> None:
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
