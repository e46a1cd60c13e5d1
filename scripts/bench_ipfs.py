"""Micro-benchmark of IpfsClusterBlobStore: ``python scripts/bench_ipfs.py [--n 1000]``.

Needs running daemons: ``bash scripts/ipfs.sh start 2`` (API on 127.0.0.1:5001 and :5002).
Prints blobs/s for one put_many of ``n`` blobs, for ``n`` single put() calls spread over
``threads`` threads (coalesced by the group commit), and for get() of them.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from storage.backends.ipfs import IpfsClusterBlobStore


def _report(name: str, n: int, run: Callable[[], object]) -> None:
    start = time.perf_counter()
    run()
    elapsed = time.perf_counter() - start
    print(f"{name:<40} {n:>6} in {elapsed * 1000:8.1f} ms  {n / elapsed:>10,.0f} blobs/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--nodes", nargs="+", default=["http://127.0.0.1:5001", "http://127.0.0.1:5002"]
    )
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--min", type=int, default=2, help="replication_min (and max)")
    parser.add_argument("--window", type=float, default=0.005, help="batch_window, seconds")
    args = parser.parse_args()
    n, size = args.n, args.size

    store = IpfsClusterBlobStore(
        args.nodes,
        replication_min=args.min,
        replication_max=args.min,
        batch_window=args.window,
    )
    try:
        agents = [probe.get("agent") for probe in store.health().values()]
        print(f"{len(args.nodes)} nodes {agents}, replication {args.min}")
        batch = [os.urandom(size) for _ in range(n)]
        _report(f"put_many {n} x {size} B", n, lambda: store.put_many(batch))

        singles = [os.urandom(size) for _ in range(n)]
        with ThreadPoolExecutor(args.threads) as pool:
            _report(
                f"put {n} x {size} B from {args.threads} threads",
                n,
                lambda: list(pool.map(store.put, singles)),
            )
            cids = store.put_many(singles)
            _report(
                f"get {n} x {size} B from {args.threads} threads",
                n,
                lambda: list(pool.map(store.get, cids)),
            )
    finally:
        store.close()


if __name__ == "__main__":
    main()
